"""Prefect flows over the DVC DAG: the same stages, scheduled on a (GPU) work pool with retries.

No stage logic lives here. Each task runs `dvc repro --single-item <stage>` in the checkout, so
DVC decides what is up to date, caches outputs and records dvc.lock exactly as a local
`dvc repro` does; a retried task resumes its stage from the stage's own checkpoint. The ablation
grid fans out as one flow run per grid point (through the `stage` deployment when deployed, as
concurrent tasks otherwise); on one machine DVC's lock serialises their repro steps, on a pool of
machines each worker runs its own point.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.deployments import run_deployment
from prefect.flow_runs import wait_for_flow_run

ROOT = Path(__file__).resolve().parent.parent


def _dvc(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "dvc", "--wait-for-lock", *args]
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    return subprocess.run(cmd, cwd=cwd, env=env, text=True, capture_output=True)


def dag_generations(root: Path = ROOT) -> list[list[str]]:
    """Stage names (foreach/matrix items expanded) grouped into generations: every stage of a
    generation depends only on stages of earlier ones, so a generation may run concurrently."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        graph = repo.index.graph.reverse()  # DVC's edges point from a stage to its dependencies
        return [sorted(s.addressing for s in gen) for gen in nx.topological_generations(graph)]


@task(retries=2, retry_delay_seconds=30, task_run_name="repro {target}")
def repro_stage(target: str, root: str | None = None) -> str:
    """Reproduce one DVC stage (and nothing else); raises with DVC's output if it fails."""
    logger = get_run_logger()
    done = _dvc("repro", "--single-item", target, cwd=Path(root or ROOT))
    logger.info(done.stdout[-4000:])
    if done.returncode != 0:
        raise RuntimeError(f"dvc repro {target} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return target


@task(task_run_name="select profile {profile}")
def select_profile(profile: str, root: str | None = None) -> None:
    """Write profiles/<profile>.yaml over params.yaml (the documented way to pick a profile)."""
    from pipeline.profiles import use_profile

    use_profile(profile, Path(root or ROOT))


@flow(name="vjepa-stage", log_prints=True)
def stage(target: str, root: str | None = None) -> str:
    """One stage as its own flow run (the unit the ablation grid fans out to)."""
    return repro_stage(target, root)


def _run_many(targets: list[str], root: str, as_deployments: bool, deployment: str) -> list[str]:
    """Run independent stages at once: one flow run each through the deployment, or concurrent tasks."""
    if as_deployments:
        # create every flow run first (timeout=0 returns at once), then wait for all of them
        created = [run_deployment(deployment, parameters={"target": t, "root": root}, timeout=0, as_subflow=True)
                   for t in targets]
        runs = [wait_for_flow_run(r.id, timeout=None) for r in created]
        failed = [t for t, r in zip(targets, runs) if not r.state.is_completed()]
        if failed:
            raise RuntimeError(f"stages failed: {failed}")
        return targets
    return [f.result() for f in [repro_stage.submit(t, root) for t in targets]]


@flow(name="vjepa-ablations", log_prints=True)
def ablations(root: str | None = None, as_deployments: bool = False, deployment: str = "vjepa-stage/stage") -> list[str]:
    """The ablation grid: one flow run per grid point, all at once."""
    points = [s for gen in dag_generations(Path(root or ROOT)) for s in gen if s.startswith("ablate")]
    return _run_many(points, root, as_deployments, deployment)


@flow(name="vjepa-reproduce", log_prints=True)
def reproduce(profile: str | None = None, targets: list[str] | None = None, root: str | None = None,
              as_deployments: bool = False, deployment: str = "vjepa-stage/stage") -> list[str]:
    """The whole DAG (or the named stages, e.g. ["prepare", "probe"]) generation by generation;
    independent stages (the ablation grid, the probes) fan out."""
    if profile:
        select_profile(profile, root)
    done = []
    for gen in dag_generations(Path(root or ROOT)):
        wanted = [s for s in gen if not targets or any(s == t or s.startswith(f"{t}@") for t in targets)]
        if len(wanted) == 1:
            done.append(repro_stage(wanted[0], root))
        elif wanted:
            done += _run_many(wanted, root, as_deployments, deployment)
    return done


if __name__ == "__main__":
    reproduce()
