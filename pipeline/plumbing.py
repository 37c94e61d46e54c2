"""What every stage does around its `vjepa` call: a work folder that survives a kill, a result
recorded before publishing (so a kill between the two resumes as finished), publishing without
temporary files, the metrics file, and the torchrun launch.

A stage computes in runs/.work/<name>/ (not a DVC output, so DVC never deletes it) and moves the
finished folder to its output path at the end. Killed halfway, it resumes from the checkpoint it
left there when re-run with the same settings; with other settings it starts over.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

from vjepa.runtime import read_json, write_json

RUNS = Path("runs")
WORK = RUNS / ".work"
RESULT = "result.json"


def _fingerprint(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def work_dir(name: str, settings: dict) -> Path:
    """runs/.work/<name>, kept across a crash; wiped when the stage's settings changed since."""
    w = WORK / name
    stamp = w / "settings.json"
    fp = _fingerprint(settings)
    if w.exists():
        old = read_json(stamp).get("fingerprint") if stamp.exists() else None
        if old != fp:
            print(f"[{name}] settings changed since the interrupted run in {w}: starting over", flush=True)
            shutil.rmtree(w)
        else:
            print(f"[{name}] resuming the interrupted run in {w}", flush=True)
    w.mkdir(parents=True, exist_ok=True)
    write_json(stamp, {"fingerprint": fp, "settings": settings})
    return w


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
    for tmp in [p for p in work.rglob("*") if p.is_file() and (p.name.endswith(".tmp") or p.name.startswith(".") and
                                                                   ".tmp" in p.name)]:
        tmp.unlink()
    (work / RESULT).unlink(missing_ok=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        shutil.rmtree(out)
    os.replace(work, out)
    return out


def checkpoint_path(seed: int) -> Path:
    """The published pretraining checkpoint of one seed."""
    return RUNS / "pretrain" / f"seed{seed}" / "checkpoint.pth.tar"


def finish(tracker, metrics_dir: Path, name: str, metrics: dict, *artifacts: Path) -> dict:
    """Write the stage's DVC metrics file <metrics_dir>/<name>.json and log it (and artifacts) to MLflow."""
    from pipeline.tracking import headline

    path = write_json(metrics_dir / f"{name}.json", metrics)
    tracker.metrics(metrics)
    tracker.metrics(headline(metrics))  # top1_attentive, top1_linear, map: the same names in every run
    for a in (path, *artifacts):
        tracker.artifact(a)
    return metrics


def launch_torchrun(stage: str, key: str | None, params_path: str, num_gpus: int) -> bool:
    """With several GPUs and not yet under torchrun, run this stage once per GPU under torchrun."""
    if num_gpus <= 1 or "LOCAL_RANK" in os.environ:
        return False
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={num_gpus}",
           "-m", "pipeline", stage, *([key] if key is not None else []), "--params", params_path]
    print("launching:", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    return True
