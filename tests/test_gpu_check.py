"""The GPU check's rehearsal paths (`gpu_check.sh --rehearse --dry`): every part parses its arguments
and imports what it runs, and all of it comes from the GPU machine's image, the carried wheels, the
standard library or this checkout (never DVC, MLflow, Prefect or scikit-video). No timings."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def allowed_distributions() -> set[str]:
    """The image's package list plus the wheels that gpu_wheels.sh carries, and this project."""
    image = [
        ln.strip()
        for ln in (ROOT / "benchmarks" / "gpu_image_packages.txt").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    carried = re.search(r"^PACKAGES=\(([^)]*)\)", (ROOT / "benchmarks" / "gpu_wheels.sh").read_text(), re.M)
    assert carried, "benchmarks/gpu_wheels.sh: no PACKAGES=(...) line"
    return {_norm(n) for n in [*image, *carried.group(1).split(), "vjepa-repro"]}


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu_check")
    log = tmp / "imports"
    log.mkdir()
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "GPU_IMAGE_IMPORT_LOG": str(log),
        "PYTHONPATH": os.pathsep.join(
            [str(ROOT / "tests" / "gpu_image"), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
    }
    env.pop("OUT", None)
    proc = subprocess.run(
        [
            "bash",
            str(ROOT / "benchmarks" / "gpu_check.sh"),
            "--rehearse",
            "--dry",
            "--results",
            str(tmp / "results.json"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    logs = [json.loads(p.read_text()) for p in sorted(log.glob("*.json"))]
    return proc, tmp / "results.json", logs


def test_every_part_runs_its_imports_and_arguments(dry_run):
    proc, results, _ = dry_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(results.read_text())
    assert r["env"]["rehearsal"] is True and r["env"]["device"] == "cpu"
    assert [k for k in r if k not in ("env", "parts")] == ["vitl_eager", "vitl_compile", "vith384", "loader", "learn"]
    assert all(r[k]["dry"] for k in ("vitl_eager", "vitl_compile", "vith384", "loader", "learn"))
    assert r["learn"]["profile"] == "smoke"
    assert len(r["parts"]) == 5 and {p["status"] for p in r["parts"].values()} == {"ok"}
    assert proc.stdout.count("dry: ") == 5 and "0 of 5 parts failed" in proc.stdout


def test_the_check_imports_only_what_the_gpu_image_has(dry_run):
    proc, _, logs = dry_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # every process: the env and status calls, each part, and the learn part's pipeline commands
    assert len(logs) >= 12
    allowed = allowed_distributions()
    foreign = {}
    for entry in logs:
        for name, m in entry["modules"].items():
            if m["file"] and Path(m["file"]).resolve().is_relative_to(ROOT):
                continue  # this checkout: vjepa, pipeline, the benchmarks
            if not m["dists"] or not any(_norm(d) in allowed for d in m["dists"]):
                foreign.setdefault(name, (m["dists"], " ".join(entry["argv"])[:120]))
    assert not foreign, f"imported, but not on the GPU machine: {foreign}"
    imported = set().union(*(e["modules"] for e in logs))
    assert {"torch", "av", "decord", "vjepa", "pipeline"} <= imported
    assert not imported & {"dvc", "mlflow", "prefect", "skvideo"}
