"""dvc.yaml lists, for every stage, each project module its command imports: an edit to any of
them re-runs the stage, so a cached result can never be silently stale."""

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def module_file(name: str) -> Path | None:
    """The file of a project module (pipeline.x, vjepa.x), or None for anything else."""
    if name.split(".")[0] not in ("pipeline", "vjepa"):
        return None
    base = ROOT.joinpath(*name.split("."))
    for f in (base.with_suffix(".py"), base / "__init__.py"):
        if f.is_file():
            return f
    return None


def imports_of(path: Path) -> set[str]:
    """Every module an import statement in the file names, at any depth (lazy imports included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}  # `from pkg import module`
    return names


def closure(module: str) -> list[str]:
    """The project files importing `module` loads: its own, its packages' __init__, transitively."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for k in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ first
            f = module_file(".".join(parts[:k]))
            if f is not None and f not in seen:
                seen.add(f)
                todo += sorted(imports_of(f))
    return sorted(str(f.relative_to(ROOT)) for f in seen)


@pytest.fixture(scope="module")
def imported():
    """{stage: project files its command `python -m pipeline <stage>` imports}: the command line,
    then the stage's module (static analysis of every import statement)."""
    return {
        name: sorted(set(closure("pipeline.__main__")) | set(closure(f"pipeline.stages.{name}"))) for name in STAGES
    }


def covered(path: str, deps: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


@pytest.mark.parametrize("name", sorted(STAGES))
def test_every_imported_project_module_is_a_dep_of_its_stage(name, imported):
    stage = STAGES[name].get("do", STAGES[name])
    deps = [d for d in stage["deps"]]
    files = imported[name]
    assert f"pipeline/stages/{name}.py" in files and "pipeline/config.py" in files  # the probe saw the stage
    missing = [f for f in files if not covered(f, deps)]
    assert missing == [], f"dvc.yaml stage {name} runs code it does not list in deps: {missing}"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_a_stage_lists_no_code_it_does_not_run(name, imported):
    stage = STAGES[name].get("do", STAGES[name])
    code = [d for d in stage["deps"] if d.split("/")[0] in ("pipeline", "vjepa")]
    assert "vjepa" not in code and "pipeline" not in code  # a whole package: any edit would re-run the stage
    assert [d for d in code if d not in imported[name]] == [], f"dvc.yaml stage {name} lists code it does not import"


def test_the_check_fails_when_a_dep_is_dropped(imported):
    deps = [d for d in STAGES["probe"]["do"]["deps"] if d != "pipeline/stages/common.py"]
    assert [f for f in imported["probe"] if not covered(f, deps)] == ["pipeline/stages/common.py"]
