import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

# Quiet, offline, reproducible test runs: no telemetry, no writes to the home folder.
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


# A tiny small-suite (every real format), built once per test session for tests that read it.
TINY_SUITE = dict(
    k400_train=120,
    k400_val=4,
    k400_frames=16,
    ssv2_train=8,
    ssv2_val=4,
    ssv2_frames=8,
    in1k_train=80,
    in1k_val=10,
    inat_train=120,
    inat_val=6,
    places_train=4,
    places_val=2,
    ava_train_videos=1,
    ava_val_videos=1,
    ava_keyframes=2,
    footage_size=32,
    footage_chunk_frames=48,
)


@pytest.fixture(scope="session")
def tiny_suite(tmp_path_factory):
    from vjepa.infra.config import from_dict
    from vjepa.data.small_suite import build_small_suite
    from vjepa.infra.configs import SmallSuiteConfig

    root = tmp_path_factory.mktemp("tiny_suite") / "data"
    summary = build_small_suite(from_dict(SmallSuiteConfig, TINY_SUITE, "data"), root)
    return root, summary


@pytest.fixture(scope="session")
def release_tree(tmp_path_factory):
    """tests/release_tree.py's dataset tree in the releases' own layouts (its paths and counts),
    built once per test session."""
    from release_tree import build_release_tree

    return build_release_tree(tmp_path_factory.mktemp("release") / "tree")


def with_sources(params: dict) -> dict:
    """A params mapping with its generated `sources` section derived from its data paths, as
    `python -m pipeline profile` writes it (a test that edits paths by hand must regenerate it)."""
    from pipeline.config import from_mapping

    return {**params, "sources": from_mapping({**params, "sources": None}).derived_sources()}


# -- the smoke profile's DAG, run once per test session in a copy of this checkout -----------------

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
NOT_RESULTS = ("wall", "seconds", "per_s", "memory", "time")  # wall clock and machine load, not results


def checkout_copy(dst: Path, without: tuple[str, ...] = ()) -> Path:
    """This working tree's files (tracked and new, not ignored; none under the `without` prefixes),
    committed in a fresh git repository at `dst`."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for f in files:
        if (ROOT / f).is_file() and not (without and f.startswith(without)):
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dst / f)
    for cmd in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "copy"],
    ):
        subprocess.run(cmd, cwd=dst, check=True, capture_output=True)
    return dst


def run_torchrun(script: str, out: Path, processes: int = 2) -> Path:
    """Run a test file as the worker of `processes` CPU processes under torchrun (one thread each),
    its only argument the folder `out` it writes into; asserts it succeeded and returns `out`."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*cmd, script, str(out)], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def run_dvc(repo: Path, *args, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run dvc in `repo` with MLflow off, whatever its exit status (for runs that must fail)."""
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "VJEPA_MLFLOW": "0", "DVC_NO_ANALYTICS": "1"}
    return subprocess.run([str(BIN / "dvc"), *args], cwd=repo, env=env, capture_output=True, text=True, timeout=timeout)


def dvc(repo: Path, *args, timeout: int = 900) -> str:
    """Run dvc in `repo` with MLflow off; fails the test with DVC's output."""
    done = run_dvc(repo, *args, timeout=timeout)
    assert done.returncode == 0, f"dvc {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def results(metrics, prefix: str = "") -> dict[str, float]:
    """The numeric leaves of a metrics file that are results (accuracies, losses, counts)."""
    out = {}
    items = metrics.items() if isinstance(metrics, dict) else enumerate(metrics)
    for k, v in items:
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, (dict, list)):
            out.update(results(v, key))
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and not any(w in key for w in NOT_RESULTS):
            out[key] = v
    return out


@dataclass
class SmokeRun:
    repo: Path  # the copy the DAG ran in (tests may change it afterwards)
    log: str  # `dvc repro`'s output
    metrics: dict[str, dict]  # every metrics/smoke/ file as the run left it, by path


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> SmokeRun:
    """`python -m pipeline profile smoke && dvc repro` in a copy of this checkout, once per session:
    the end-to-end tests read it, and the Prefect pool's results are compared with it."""
    from pipeline.profiles import use_profile

    repo = checkout_copy(tmp_path_factory.mktemp("smoke") / "checkout")
    use_profile("smoke", repo)
    log = dvc(repo, "repro")
    metrics = {
        str(p.relative_to(repo)): json.loads(p.read_text()) for p in sorted((repo / "metrics/smoke").rglob("*.json"))
    }
    return SmokeRun(repo, log, metrics)
