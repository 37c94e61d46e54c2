"""What every stage does around its `vjepa` call: a work folder that survives a kill, a result
recorded before publishing (so a kill between the two resumes as finished), publishing without
temporary files, the metrics file, and the torchrun launch.

A stage computes in runs/.work/<name>/ (not a DVC output, so DVC never deletes it) and moves the
finished folder to its output path at the end. Killed halfway, it resumes from the checkpoint it
left there when re-run on the same inputs: the folder is keyed by the stage's settings and by the
content of what it reads (upstream outputs hashed whole, release annotation files by their stamp),
never by their names, so a resume after any of them changed starts over and says which one. One
process at a time works in a folder (a lock naming it), and a stage started by `dvc repro` stops
when that dvc process dies instead of running on as an orphan.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterable

from vjepa.infra.runtime import read_json, source_stamp, write_json, write_text

PREPARED = Path("data/prepared")  # the prepare stage's output: the small suite, or a real-data profile's index
RUNS = Path("runs")
WORK = RUNS / ".work"
LOCKS = RUNS / ".locks"
RESULT = "result.json"
_HELD: dict[str, int] = {}  # lock file -> the descriptor holding it, for the process's life


class StageBusy(RuntimeError):
    """Another process is working in a stage's work folder."""


def _fingerprint(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def input_stamps(upstream: Iterable[str | os.PathLike] = (), external: Iterable[str | os.PathLike] = ()) -> dict:
    """{path: content} of what a stage reads. `upstream`: outputs of earlier stages, hashed whole
    (a file's size:hash, a folder's every file; absent: None). `external`: release data outside
    the pipeline (annotation files, lists), stamped as prepare's index stamps them."""
    stamps = {}
    for p in map(Path, upstream):
        if p.is_dir():
            stamps[str(p)] = {str(f.relative_to(p)): source_stamp(str(f)) for f in sorted(p.rglob("*")) if f.is_file()}
        else:
            stamps[str(p)] = source_stamp(str(p)) if p.is_file() else None
    for p in dict.fromkeys(map(str, external)):
        stamps[p] = source_stamp(p) if os.path.exists(p) else None
    return stamps


def _changes(old: dict, new: dict, prefix: str = "") -> list[str]:
    """The dotted keys where two settings/inputs mappings differ."""
    out = []
    for k in sorted(set(old) | set(new), key=str):
        a, b, key = old.get(k), new.get(k), f"{prefix}{k}"
        if isinstance(a, dict) and isinstance(b, dict) and not prefix.startswith("inputs"):
            out += _changes(a, b, f"{key}.")
        elif a != b:
            out.append(key)
    return out


def _lock(name: str) -> None:
    """Hold runs/.locks/<name>.lock for this process's life; refuse if another process holds it.
    (Beside the work folder, not in it: publishing moves the folder. Never deleted: unlinking a
    lock file lets a process that opened it before lock a file nobody else can see.)"""
    LOCKS.mkdir(parents=True, exist_ok=True)
    path = LOCKS / f"{name}.lock"
    if str(path.resolve()) in _HELD:
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = Path(path).read_text().strip() or "another process"
        os.close(fd)
        raise StageBusy(f"{WORK / name} is in use by {holder}; wait for it to finish or stop it, then re-run") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} ({' '.join(sys.argv)})\n".encode())
    _HELD[str(path.resolve())] = fd


def _proc(pid: int) -> tuple[str, int, str] | None:
    """(command name, parent pid, start time) of a live process, from /proc (None: gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
    return comm, int(rest[1]), rest[19]


def _stop_with_dvc(name: str) -> None:
    """Under `dvc repro` (DVC_STAGE set), stop this stage when the dvc process that started it
    dies: a SIGTERM to dvc would otherwise leave it running, overwriting what a later run restores."""
    if "DVC_STAGE" not in os.environ or not Path("/proc/self/stat").exists():
        return
    pid = os.getppid()
    info = _proc(pid)
    while info and info[0] in ("sh", "bash", "dash", "zsh", "fish") and info[1] > 1:  # DVC runs `$SHELL -c cmd`
        pid, info = info[1], _proc(info[1])
    if info is None:
        return
    started = info[2]

    def watch():
        while True:
            time.sleep(1.0)
            now = _proc(pid)
            if now is None or now[2] != started:
                print(
                    f"[{name}] the dvc process that started this stage (pid {pid}) is gone: stopping; "
                    f"re-running resumes from the last checkpoint",
                    file=sys.stderr,
                    flush=True,
                )
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=watch, name="stop-with-dvc", daemon=True).start()


def work_dir(name: str, settings: dict, upstream: Iterable = (), external: Iterable = ()) -> Path:
    """runs/.work/<name>, kept across a crash and locked to this process; wiped, naming what
    changed, when the stage's settings or the content of what it reads (input_stamps) changed."""
    _lock(name)
    _stop_with_dvc(name)
    w = WORK / name
    stamp = w / "settings.json"
    state = {"settings": json.loads(json.dumps(settings, default=str)), "inputs": input_stamps(upstream, external)}
    fp = _fingerprint(state)
    if w.exists():
        old = read_json(stamp) if stamp.exists() else {}
        if old.get("fingerprint") != fp:
            changed = _changes({k: old.get(k, {}) for k in state}, state)
            print(
                f"[{name}] starting over: {', '.join(changed[:5]) or 'an unreadable earlier state'} changed since the "
                f"interrupted run in {w}",
                flush=True,
            )
            shutil.rmtree(w)
        else:
            print(f"[{name}] resuming the interrupted run in {w} (same settings and inputs)", flush=True)
    w.mkdir(parents=True, exist_ok=True)
    write_json(stamp, {"fingerprint": fp, **state})
    return w


def shared_work_dir(name: str, settings: dict, upstream: Iterable = (), external: Iterable = ()) -> Path:
    """work_dir in the process that runs the stage; torchrun's workers, which it launched
    (launch_torchrun), share the folder it prepared (resumed or started over)."""
    return WORK / name if "LOCAL_RANK" in os.environ else work_dir(name, settings, upstream, external)


def is_rank0() -> bool:
    """True outside torchrun and in its rank 0: the one process that logs, records and publishes."""
    return int(os.environ.get("RANK", "0")) == 0


def once(work: Path, compute: Callable[[], dict], record: bool = True) -> dict:
    """compute()'s result, recorded in the work folder before anything is published: a stage killed
    after computing and before publishing finds it there and does not compute again. Under torchrun
    every process calls it (so all skip or all compute) and only rank 0 records."""
    done = work / RESULT
    if done.exists():
        print(f"[{work.name}] finished before the interruption: publishing its result", flush=True)
        return read_json(done)
    result = compute()
    if record:
        write_json(done, result)
    return result


def publish(work: Path, out: Path) -> Path:
    """Move a finished work folder to the stage's output path (replacing an older one). Temporary
    files a kill left behind (a checkpoint half-saved) are deleted first, never published."""
    for tmp in [
        p
        for p in work.rglob("*")
        if p.is_file() and (p.name.endswith(".tmp") or p.name.startswith(".") and ".tmp" in p.name)
    ]:
        tmp.unlink()
    (work / RESULT).unlink(missing_ok=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        shutil.rmtree(out)
    os.replace(work, out)
    return out


def checkpoint_path(seed: int, stage: str = "pretrain") -> Path:
    """The published checkpoint of one seed's pretraining (or of its `cooldown` stage)."""
    return RUNS / stage / f"seed{seed}" / "checkpoint.pth.tar"


# The numbers a user compares across runs and profiles (`dvc metrics show`, `dvc exp show`): top-1
# per probe kind, top-5, mAP, final loss and target std, margins. Everything else a stage reports
# (per-class AP, per-clip outcomes, histories, timings, byte counts) is a detail the report reads.
HEADLINE_KEYS = ("top1_by_kind", "top1", "top5", "mAP", "final_loss", "final_target_std", "margin")
DETAILS = "details"


def headline_numbers(metrics: dict) -> dict:
    """The HEADLINE_KEYS entries of a stage's results (empty for stages with no headline number)."""
    return {k: metrics[k] for k in HEADLINE_KEYS if k in metrics}


def details_path(metrics_dir: Path, name: str) -> Path:
    """<metrics_dir>/details/<name>.json: everything a stage reports, for the report (a plain DVC
    output, uncached and committed like the metrics, so a clone rebuilds the report without a pull)."""
    return metrics_dir / DETAILS / f"{name}.json"


def finish(tracker, metrics_dir: Path, name: str, metrics: dict, *artifacts: Path, log_details: bool = True) -> dict:
    """Write the stage's results: all of them to details_path(), the headline numbers to the DVC
    metrics file <metrics_dir>/<name>.json (when the stage has any); log them (every numeric
    detail too unless log_details is False) and the files as artifacts to MLflow."""
    from pipeline.tracking import headline

    paths = [write_json(details_path(metrics_dir, name), metrics)]
    top = headline_numbers(metrics)
    if top:
        paths.append(write_json(metrics_dir / f"{name}.json", top))
    if log_details:
        tracker.metrics(metrics)
    tracker.metrics(headline(metrics))  # top1_attentive, top1_linear, map: the same names in every run
    for a in (*paths, *artifacts):
        tracker.artifact(a)
    return metrics


def curves_path(profile: str, seed: int, stage: str = "pretrain") -> Path:
    """metrics/<profile>/curves/<stage>/seed<k>.csv: one seed's pretraining (or cooldown) curves (dvc.yaml `plots`)."""
    return Path("metrics") / profile / "curves" / stage / f"seed{seed}.csv"


def write_curves(jsonl: Path, out: Path, columns: tuple[str, ...] = ("step", "loss", "target_std", "lr")) -> Path:
    """The per-step curves DVC plots draw, as CSV: the deterministic columns of a training log
    (metrics.jsonl also holds timings and memory, which vary run to run)."""
    rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    missing = [c for c in columns if rows and c not in rows[0]]
    if missing:
        raise KeyError(f"{jsonl}: no {missing} in its rows (it has {sorted(rows[0])})")
    text = (
        ",".join(columns)
        + "\n"
        + "".join(",".join(repr(r[c]) if isinstance(r[c], float) else str(r[c]) for c in columns) + "\n" for r in rows)
    )
    return write_text(out, text)


def launch_torchrun(stage: str, key: str | None, params_path: str, num_gpus: int) -> bool:
    """With several GPUs and not yet under torchrun, run this stage once per GPU under torchrun."""
    if num_gpus <= 1 or "LOCAL_RANK" in os.environ:
        return False
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={num_gpus}",
        "-m",
        "pipeline",
        stage,
        *([key] if key is not None else []),
        "--params",
        params_path,
    ]
    print("launching:", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    return True
