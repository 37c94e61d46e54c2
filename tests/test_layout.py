"""The code's layout holds: no import cycle, no private or sideways import, and each folder of vjepa/
imports only the layers under it. Every import statement counts, those inside functions included
(static analysis of the source, so a lazy import cannot hide a cycle)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# what each part of vjepa/ may import (besides itself); the top-level modules (hub, extract) may import
# everything in vjepa, and vjepa never imports the orchestration (pipeline)
LAYERS = {
    "vjepa.infra": set(),
    "vjepa.models": {"vjepa.infra"},
    "vjepa.data": {"vjepa.infra"},
    "vjepa.jepa": {"vjepa.infra", "vjepa.models"},
    "vjepa.evals": {"vjepa.infra", "vjepa.models", "vjepa.data"},
    "vjepa.train": {"vjepa.infra", "vjepa.models", "vjepa.data", "vjepa.jepa", "vjepa.evals.frozen"},
}
# inside a folder, modules that several others share; the rest (a training loop, an evaluation, a
# stage) never import each other
SHARED = {
    "vjepa.train": {"vjepa.train.batches"},
    "vjepa.evals": {"vjepa.evals.frozen", "vjepa.evals.ava_eval", "vjepa.evals.stats"},
    "pipeline.stages": {"pipeline.stages.common", "pipeline.stages.pretraining", "pipeline.stages.released"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for d in ("vjepa", "pipeline") for p in sorted((ROOT / d).rglob("*.py"))}


def defined_names(path: Path) -> set[str]:
    """Names a module defines at top level (functions, classes, assignments)."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def imports(path: Path) -> list[tuple[int, str, str | None]]:
    """(line, module, name) of every import of a project module in the file; name None for `import m`."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, None) for a in node.names if a.name.split(".")[0] in ("vjepa", "pipeline")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("vjepa", "pipeline"):
            out += [(node.lineno, node.module, a.name) for a in node.names]
    return out


def edges(path: Path) -> set[str]:
    """The project modules the file imports (`from pkg import module` names the module)."""
    out = set()
    for _, module, name in imports(path):
        out.add(f"{module}.{name}" if name and f"{module}.{name}" in MODULES else module)
    return out & set(MODULES)


GRAPH = {m: edges(p) - {m} for m, p in MODULES.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == "open":
                return stack[stack.index(n) :] + [n]
            if n not in state and (found := visit(n)):
                return found
        state[m] = "done"
        stack.pop()
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def part_of(module: str) -> str:
    for part in sorted(LAYERS, key=len, reverse=True):
        if module == part or module.startswith(part + "."):
            return part
    return module


def allowed(src: str, dst: str) -> bool:
    """May module src import module dst under the layering?"""
    if src.startswith("vjepa") and dst.startswith("pipeline"):
        return False
    if not src.startswith("vjepa.") or part_of(src) not in LAYERS:
        return True  # the orchestration and vjepa's top level (hub, extract) sit above every layer
    if dst == "vjepa":
        return False
    below = LAYERS[part_of(src)]
    return part_of(dst) == part_of(src) or part_of(dst) in below or dst in below


def sideways(src: str, dst: str) -> bool:
    """Two modules of one folder that are not its shared helpers (a loop importing another loop)."""
    for folder, shared in SHARED.items():
        if src.startswith(folder + ".") and dst.startswith(folder + "."):
            return src not in shared and dst not in shared
    return False


def test_no_import_cycle():
    assert find_cycle(GRAPH) is None, f"import cycle: {' -> '.join(find_cycle(GRAPH))}"


def test_the_cycle_check_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_each_folder_imports_only_the_layers_under_it_and_nothing_sideways():
    bad = [
        f"{src} imports {dst}"
        for src, dsts in sorted(GRAPH.items())
        for dst in sorted(dsts)
        if not allowed(src, dst) or sideways(src, dst)
    ]
    assert bad == []


@pytest.mark.parametrize(
    "src, dst, ok",
    [
        ("vjepa.infra.runtime", "vjepa.models.vit", False),  # infrastructure under the models
        ("vjepa.models.vit", "vjepa.train.pretrain", False),
        ("vjepa.evals.probe", "vjepa.hub", False),  # serving sits above the evaluations
        ("vjepa.train.finetune", "vjepa.evals.probe", False),  # only the shared frozen-evaluation helpers
        ("vjepa.train.finetune", "vjepa.evals.frozen", True),
        ("vjepa.data.readers", "pipeline.config", False),
        ("vjepa.hub", "vjepa.evals.frozen", True),
        ("pipeline.stages.probe", "vjepa.evals.probe", True),
    ],
)
def test_the_layer_rule_refuses_what_it_should(src, dst, ok):
    assert allowed(src, dst) == ok


def test_sideways_rule():
    assert sideways("vjepa.train.finetune", "vjepa.train.pretrain")
    assert sideways("vjepa.evals.detect", "vjepa.evals.probe")
    assert sideways("pipeline.stages.ablate", "pipeline.stages.pretrain")
    assert not sideways("vjepa.train.finetune", "vjepa.train.batches")


def test_no_private_name_is_imported_from_another_module_and_names_come_from_where_they_are_defined():
    """`from m import name` takes a name m defines (or a submodule, or a package's re-export), never
    a private one and never a name m itself imported from elsewhere."""
    bad = []
    for path in [*MODULES.values(), *sorted((ROOT / "tests").glob("*.py")), *sorted((ROOT / "scripts").glob("*.py"))]:
        for line, module, name in imports(path):
            if name is None or module not in MODULES or f"{module}.{name}" in MODULES:
                continue
            where = f"{path.relative_to(ROOT)}:{line}: from {module} import {name}"
            if name.startswith("_") and path.parent.name != "tests":  # a test may test a private helper
                bad.append(where + " (private)")
            elif MODULES[module].name != "__init__.py" and name not in defined_names(MODULES[module]):
                bad.append(where + " (not defined there)")
    assert bad == []
