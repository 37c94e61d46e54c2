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

from vjepa.runtime import read_json, write_json, write_text

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


def curves_path(profile: str, seed: int) -> Path:
    """metrics/<profile>/curves/pretrain/seed<k>.csv: one seed's pretraining curves (dvc.yaml `plots`)."""
    return Path("metrics") / profile / "curves" / "pretrain" / f"seed{seed}.csv"


def write_curves(jsonl: Path, out: Path, columns: tuple[str, ...] = ("step", "loss", "target_std", "lr")) -> Path:
    """The per-step curves DVC plots draw, as CSV: the deterministic columns of a training log
    (metrics.jsonl also holds timings and memory, which vary run to run)."""
    rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    missing = [c for c in columns if rows and c not in rows[0]]
    if missing:
        raise KeyError(f"{jsonl}: no {missing} in its rows (it has {sorted(rows[0])})")
    text = ",".join(columns) + "\n" + "".join(",".join(repr(r[c]) if isinstance(r[c], float) else str(r[c])
                                                      for c in columns) + "\n" for r in rows)
    return write_text(out, text)


def launch_torchrun(stage: str, key: str | None, params_path: str, num_gpus: int) -> bool:
    """With several GPUs and not yet under torchrun, run this stage once per GPU under torchrun."""
    if num_gpus <= 1 or "LOCAL_RANK" in os.environ:
        return False
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={num_gpus}",
           "-m", "pipeline", stage, *([key] if key is not None else []), "--params", params_path]
    print("launching:", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    return True
