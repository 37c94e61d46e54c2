"""Prefect flows over the DVC DAG: the same stages, scheduled on a (GPU) work pool with retries.

No stage logic lives here. Each task runs `dvc repro --single-item <stage>` in its worker's
checkout, so DVC decides what is up to date, caches outputs and records dvc.lock exactly as a local
`dvc repro` does; a retried task resumes its stage from the stage's own checkpoint.

A pool of machines shares no disk, only the Prefect server, a DVC remote and an MLflow server.
Each task carries the DAG's state in its result, a *stage record*: the stage's dvc.lock entry and
the contents of its outputs that DVC does not cache (the small metrics JSON files, `cache: false`).
Before a stage runs, its task writes the records it received into its checkout (dvc.lock entries
and uncached files) and `dvc pull`s the outputs of the stages it depends on; after the stage
succeeds it `dvc push`es the stage's outputs and returns its record. With `as_deployments` every
stage is its own flow run of the `stage` deployment, named after the stage (`ablate@ratio-low`),
on whichever worker picks it up; its record comes back to the parent as a flow-run artifact (kept
by the Prefect server, which every machine reaches). Without a DVC remote configured (one
checkout) nothing is pulled or pushed.

What comes from a flow run is checked before it touches the checkout: every file of a received
record must lie inside the checkout (`vjepa.infra.runtime.confined`), and a stage whose upstream stages
never ran here and came with no record is refused at once, naming them. Such refusals are
deterministic and are not retried (a killed or failed `dvc` run is). A run's `profile` applies to
that run only: the checkout's params.yaml and dvc.lock are put back afterwards.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import yaml
from prefect import flow, get_run_logger, task

ROOT = Path(__file__).resolve().parent.parent
TAIL = 4000  # characters of DVC's output kept in logs and exceptions
RECORD_FENCE = "```json"


def enter_checkout() -> dict:
    """Prefect pull step: run the flow in this machine's checkout, VJEPA_CHECKOUT, read when the flow
    run starts on the worker (a `{{ $VJEPA_CHECKOUT }}` template in prefect.yaml would be filled in
    once, at deploy time, with the deploying machine's path)."""
    checkout = os.environ.get("VJEPA_CHECKOUT")
    if not checkout:
        raise RuntimeError(
            "VJEPA_CHECKOUT is not set on this worker: start it as "
            "`VJEPA_CHECKOUT=/path/to/checkout prefect worker start --pool ...`"
        )
    if not (Path(checkout) / "dvc.yaml").is_file():
        raise RuntimeError(f"VJEPA_CHECKOUT={checkout} is not a checkout of this repository (no dvc.yaml)")
    os.chdir(checkout)
    return {"directory": checkout}


def _dvc(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "dvc", "--wait-for-lock", *args]
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    return subprocess.run(cmd, cwd=cwd, env=env, text=True, capture_output=True)


# how DVC reports a stage command that exited 2: `python -m pipeline` does so for a params or key
# mistake, which the same checkout repeats on every try
CONFIG_EXIT = "exited with 2"


def _dvc_or_raise(target: str, *args: str, cwd: Path) -> str:
    """Run a dvc command; on failure raise naming the stage, the command and DVC's stderr tail
    (StageRefused, never retried, when the stage's command exited 2: a params mistake)."""
    done = _dvc(*args, cwd=cwd)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout)[-TAIL:]
        error = StageRefused if CONFIG_EXIT in tail else RuntimeError
        raise error(f"stage {target}: `dvc {' '.join(args)}` failed in {cwd} (exit {done.returncode}):\n{tail}")
    return done.stdout


def _address(stage, root: Path) -> str:
    """A stage's name as `dvc repro` in `root` takes it (DVC's own `addressing` is relative to the
    process's working directory, which need not be the checkout)."""
    dvcfile = Path(stage.dvcfile.path).resolve()
    return (
        stage.name
        if dvcfile == Path(root).resolve() / "dvc.yaml"
        else f"{dvcfile.relative_to(Path(root).resolve())}:{stage.name}"
    )


def dag_generations(root: Path = ROOT) -> list[list[str]]:
    """Stage names (foreach/matrix items expanded) grouped into generations: every stage of a
    generation depends only on stages of earlier ones, so a generation may run concurrently."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        graph = repo.index.graph.reverse()  # DVC's edges point from a stage to its dependencies
        return [sorted(_address(s, root) for s in gen) for gen in nx.topological_generations(graph)]


def dag_upstream(root: Path = ROOT) -> dict[str, list[str]]:
    """For every stage, the stages whose outputs it reads directly."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        graph = repo.index.graph
        return {_address(s, root): sorted(_address(d, root) for d in graph.successors(s)) for s in graph.nodes}


def select(generations: list[list[str]], upstream: dict[str, list[str]], targets: list[str] | None) -> list[list[str]]:
    """The generations restricted to the targets (a stage name, or a foreach name for all its
    items) and everything they depend on, as `dvc repro <targets>` would run them."""
    if not targets:
        return generations
    unknown = [t for t in targets if not any(s == t or s.startswith(f"{t}@") for gen in generations for s in gen)]
    if unknown:
        raise ValueError(f"no stage named {unknown} in dvc.yaml")
    wanted: set[str] = set()
    todo = [s for gen in generations for s in gen if any(s == t or s.startswith(f"{t}@") for t in targets)]
    while todo:
        s = todo.pop()
        if s not in wanted:
            wanted.add(s)
            todo += upstream[s]
    return [kept for gen in generations if (kept := [s for s in gen if s in wanted])]


# ----------------------------------------------------------------------------------------------
# stage records: what one machine tells the next about a finished stage


def _uncached_outs(root: Path, target: str) -> list[str]:
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        (stage,) = repo.stage.collect(target if ":" in target else f"{Path(root).resolve() / 'dvc.yaml'}:{target}")
        return [str(o.def_path) for o in stage.outs if not o.use_cache]


def _has_remote(root: Path) -> bool:
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return bool(repo.config.get("remote"))


def stage_record(root: Path, target: str) -> dict:
    """The stage's dvc.lock entry and the contents of its uncached outputs (files, or files of a
    folder), as they are in the checkout after the stage ran."""
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"].get(target)
    if lock is None:
        raise RuntimeError(f"stage {target}: no entry in {root / 'dvc.lock'} after `dvc repro`")
    files = {}
    for out in _uncached_outs(root, target):
        p = root / out
        for f in sorted([p] if p.is_file() else (x for x in p.rglob("*") if x.is_file())):
            data = f.read_bytes()
            try:
                files[str(f.relative_to(root))] = {"text": data.decode("utf-8")}
            except UnicodeDecodeError:
                files[str(f.relative_to(root))] = {"base64": base64.b64encode(data).decode()}
    return {"stage": target, "lock": lock, "files": files, "ran_in": f"{socket.gethostname()}:{root}"}


def apply_records(root: Path, records: list[dict]) -> None:
    """Write received stage records into this checkout: their dvc.lock entries (under DVC's repo
    lock, so a concurrent `dvc repro` here cannot lose them) and their uncached output files.
    Every file path is checked first (relative, inside the checkout): a record that names a path
    outside is refused whole, naming it, before anything is written."""
    if not records:
        return
    from dvc.repo import Repo

    from vjepa.infra.runtime import confined

    writes = []
    for r in records:
        if not isinstance(r, dict) or not isinstance(r.get("stage"), str) or not isinstance(r.get("files"), dict):
            raise RecordError(
                f"a received stage record is not {{'stage': str, 'lock': ..., 'files': {{path: ...}}}}: {str(r)[:200]}"
            )
        for rel, content in r["files"].items():
            writes.append((confined(rel, root, f"stage record {r['stage']}: file"), content))
    with Repo(str(root), _wait_for_lock=True) as repo, repo.lock:
        path = root / "dvc.lock"
        lock = yaml.safe_load(path.read_text()) if path.exists() else None
        lock = lock or {"schema": "2.0", "stages": {}}
        for r in records:
            lock["stages"][r["stage"]] = r["lock"]
        for f, content in writes:
            f.parent.mkdir(parents=True, exist_ok=True)
            if "text" in content:
                f.write_text(content["text"], encoding="utf-8")
            else:
                f.write_bytes(base64.b64decode(content["base64"]))
        tmp = path.with_suffix(".lock.tmp")
        tmp.write_text(yaml.safe_dump(lock, sort_keys=False))
        tmp.replace(path)


class StageRefused(RuntimeError):
    """The stage's own command refused its params (exit 2); never retried."""


class RecordError(ValueError):
    """A received stage record is malformed or names a file outside the checkout (never retried)."""


class UpstreamMissing(RuntimeError):
    """A stage's upstream stages have not run in this checkout and no record of them came with the
    run (never retried: the same checkout fails the same way)."""


def unmet_upstream(root: Path, target: str, remote: bool) -> list[str]:
    """The stages `target` reads whose outputs this checkout cannot have: no dvc.lock entry (never
    ran here, no record received), or, without a DVC remote to pull from, an output not on disk."""
    from dvc.repo import Repo

    path = root / "dvc.lock"
    locked = (yaml.safe_load(path.read_text()) or {}).get("stages", {}) if path.exists() else {}
    upstream = dag_upstream(root)[target]
    missing = [u for u in upstream if u not in locked]
    if not remote:
        with Repo(str(root)) as repo:
            for u in upstream:
                if u in missing:
                    continue
                (stage,) = repo.stage.collect(u if ":" in u else f"{Path(root).resolve() / 'dvc.yaml'}:{u}")
                if not all(Path(o.fs_path).exists() for o in stage.outs):
                    missing.append(u)
    return missing


def _refuse_unmet(root: Path, target: str, remote: bool) -> None:
    missing = unmet_upstream(root, target, remote)
    if missing:
        raise UpstreamMissing(
            f"stage {target} reads the outputs of {', '.join(missing)}, which have not run in {root} "
            f"({'no dvc.lock entry' if remote else 'no dvc.lock entry or outputs not on disk, and no DVC remote'}) "
            f"and no record of them came with this run: run them first, e.g. the `reproduce` flow with "
            f"targets=[{target!r}] runs {target} and every stage before it"
        )


# deterministic refusals: the same inputs fail the same way, so a retry only delays the error
NOT_RETRIED = (RecordError, UpstreamMissing, StageRefused, ValueError, KeyError)


def _retry_condition(task, task_run, state) -> bool:
    """Retry a failed stage only when the failure may be transient (a killed process, a network
    error), not when it is one of our deterministic refusals."""
    try:
        state.result()
    except NOT_RETRIED:
        return False
    except BaseException:
        return True
    return True


# ----------------------------------------------------------------------------------------------
# tasks and flows


@task(
    retries=int(os.environ.get("VJEPA_STAGE_RETRIES", "2")),
    retry_delay_seconds=30,
    retry_condition_fn=_retry_condition,
    task_run_name="repro {target}",
)
def repro_stage(target: str, root: str | None = None, received: list[dict] | None = None) -> dict:
    """Reproduce one DVC stage (and nothing else) in this machine's checkout: write the records of
    earlier stages, pull the outputs it reads, repro, push its outputs; returns its stage record.
    Raises (and logs) naming the stage, the dvc command and DVC's stderr tail if a step fails."""
    logger = get_run_logger()
    root = Path(root or ROOT)
    try:
        apply_records(root, received or [])
        remote = _has_remote(root)
        _refuse_unmet(root, target, remote)
        upstream = dag_upstream(root)[target]
        if remote and upstream:
            logger.info(f"{target}: pulling the outputs of {upstream}")
            _dvc_or_raise(target, "pull", *upstream, cwd=root)
        out = _dvc_or_raise(target, "repro", "--single-item", target, cwd=root)
        logger.info(f"{target}: dvc repro output (tail)\n{out[-TAIL:]}")
        if remote:
            _dvc_or_raise(target, "push", target, cwd=root)
        return stage_record(root, target)
    except Exception as e:
        logger.error(str(e))
        raise


@contextmanager
def profile_for_run(profile: str | None, root: str | None = None):
    """Inside, profile `profile` is active in the checkout (params.yaml and its own dvc.lock, as
    `python -m pipeline profile` sets them); after, params.yaml is as it was and the profile that
    was active has its dvc.lock back, so a run's profile never outlives the run on a worker."""
    if not profile:
        yield
        return
    from pipeline.profiles import active_profile, switch_lock, use_profile

    root = Path(root or ROOT)
    params = root / "params.yaml"
    before, (was, _) = (params.read_bytes() if params.exists() else None), active_profile(root)
    use_profile(profile, root)  # an unknown or invalid profile fails here, before any change
    try:
        yield
    finally:
        if was is not None:
            switch_lock(profile, was, root)
        if before is not None:
            tmp = params.with_suffix(".yaml.tmp")
            tmp.write_bytes(before)
            os.replace(tmp, params)


def _record_artifact(record: dict) -> None:
    """Leave the stage record on this flow run (the Prefect server keeps it for the parent)."""
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(
        f"DVC stage `{record['stage']}` finished: its dvc.lock entry and uncached outputs\n\n"
        f"{RECORD_FENCE}\n{json.dumps(record, indent=1)}\n```",
        description=f"stage record of {record['stage']}",
    )


def _lock_artifact(records: dict[str, dict]) -> None:
    """Leave the run's dvc.lock entries on the orchestrating flow run: pasted into any checkout's
    dvc.lock they let `dvc pull` fetch every output of the run from the remote."""
    from prefect.artifacts import create_markdown_artifact

    if records:
        lock = yaml.safe_dump({"schema": "2.0", "stages": {s: r["lock"] for s, r in records.items()}}, sort_keys=False)
        create_markdown_artifact(
            f"dvc.lock of this run ({len(records)} stages)\n\n```yaml\n{lock}```",
            description="dvc.lock entries of every stage of the run",
        )


def _read_record(client, flow_run_id) -> dict:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    arts = client.read_artifacts(
        artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
    )
    for a in arts:
        text = a.data if isinstance(a.data, str) else ""
        if RECORD_FENCE in text:
            return json.loads(text.split(RECORD_FENCE, 1)[1].rsplit("```", 1)[0])
    raise RuntimeError(f"flow run {flow_run_id} completed but left no stage record")


@flow(name="vjepa-stage", flow_run_name="{target}", log_prints=True)
def stage(target: str, root: str | None = None, received: list[dict] | None = None, profile: str | None = None) -> dict:
    """One stage as its own flow run (the unit the DAG fans out to), in the named profile if one is
    given; returns its stage record and leaves it as an artifact of the flow run."""
    with profile_for_run(profile, root):
        record = repro_stage(target, root, received)
    _record_artifact(record)
    return record


def _wait(client, runs: dict[str, object], poll: float = 2.0) -> dict[str, object]:
    """Poll the server until every flow run is in a final state; returns the runs by stage."""
    pending = dict(runs)
    final = {}
    while pending:
        for name, run in list(pending.items()):
            now = client.read_flow_run(run.id)
            if now.state is not None and now.state.is_final():
                final[name] = now
                del pending[name]
        if pending:
            time.sleep(poll)
    return final


def _run_many(
    targets: list[str],
    root: str | None,
    as_deployments: bool,
    deployment: str,
    received: list[dict],
    profile: str | None = None,
) -> list[dict]:
    """Run independent stages at once: one flow run each through the deployment (on any worker of
    the pool), or concurrent tasks in this checkout. Returns their stage records; raises naming
    every stage that failed and why."""
    if not as_deployments:
        futures = {t: repro_stage.submit(t, root, received) for t in targets}
        for f in futures.values():
            f.wait()
        failed = {t: f.state.message for t, f in futures.items() if not f.state.is_completed()}
        if failed:
            raise RuntimeError("stages failed:\n" + "\n".join(f"- {t}: {m}" for t, m in failed.items()))
        return [futures[t].result() for t in targets]
    from prefect import get_client
    from prefect.deployments import run_deployment

    logger = get_run_logger()
    # the child runs in its own worker's checkout: `root` is that machine's business, not ours
    params = {"received": received, "profile": profile}
    created = {
        t: run_deployment(deployment, parameters={"target": t, **params}, flow_run_name=t, timeout=0, as_subflow=True)
        for t in targets
    }
    with get_client(sync_client=True) as client:
        runs = _wait(client, created)
        failed = {t: r.state.message for t, r in runs.items() if not r.state.is_completed()}
        if failed:
            for t, m in failed.items():
                logger.error(f"stage {t} ({runs[t].state.name}, flow run {runs[t].name}): {m}")
            raise RuntimeError("stages failed:\n" + "\n".join(f"- {t}: {m}" for t, m in failed.items()))
        return [_read_record(client, runs[t].id) for t in targets]


def _run_dag(
    targets: list[str] | None, root: str | None, as_deployments: bool, deployment: str, profile: str | None = None
) -> dict[str, dict]:
    """The selected stages generation by generation; each generation receives the records of all
    earlier ones. Returns the stage records by stage."""
    gens = select(dag_generations(Path(root or ROOT)), dag_upstream(Path(root or ROOT)), targets)
    records: dict[str, dict] = {}
    for gen in gens:
        received = list(records.values())
        if len(gen) == 1 and not as_deployments:
            done = [repro_stage(gen[0], root, received)]
        else:
            done = _run_many(gen, root, as_deployments, deployment, received, profile)
        records.update({r["stage"]: r for r in done})
    return records


@flow(name="vjepa-ablations", log_prints=True)
def ablations(
    profile: str | None = None,
    root: str | None = None,
    as_deployments: bool = False,
    deployment: str = "vjepa-stage/stage",
) -> dict[str, dict]:
    """The ablation grid (and the stages it reads): one flow run (or task) per grid point, all at once."""
    with profile_for_run(profile, root):
        records = _run_dag(["ablate"], root, as_deployments, deployment, profile)
    _lock_artifact(records)
    return records


@flow(name="vjepa-reproduce", log_prints=True)
def reproduce(
    profile: str | None = None,
    targets: list[str] | None = None,
    root: str | None = None,
    as_deployments: bool = False,
    deployment: str = "vjepa-stage/stage",
) -> dict[str, dict]:
    """The whole DAG (or the named stages, e.g. ["probe"], with what they depend on) generation by
    generation; independent stages (the ablation grid, the probes) fan out. Returns the stage
    records (every dvc.lock entry of the run and the metrics files DVC does not cache) and leaves
    the run's dvc.lock as an artifact."""
    # here (the DAG's foreach items read params.yaml) and, with deployments, on every worker
    with profile_for_run(profile, root):
        records = _run_dag(targets, root, as_deployments, deployment, profile)
    _lock_artifact(records)
    return records


if __name__ == "__main__":
    reproduce()
