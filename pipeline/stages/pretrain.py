"""pretrain: V-JEPA pretraining with one seed (official-layout checkpoint, step metrics, summary)."""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.config import Params
from pipeline.plumbing import (
    PREPARED,
    RUNS,
    curves_path,
    finish,
    is_rank0,
    launch_torchrun,
    once,
    publish,
    shared_work_dir,
    write_curves,
)
from pipeline.tracking import stage_run
from vjepa.infra.config import to_dict
from pipeline.stages.pretraining import run_pretraining


def run(params: Params, seed: str | int | None = None, params_path: str = "params.yaml") -> dict | None:
    """Pretrain with one seed; writes runs/pretrain/seed<k>/ (checkpoint.pth.tar, metrics.jsonl: the
    step curve without timings) and metrics/<profile>/pretrain/seed<k>.json (with them)."""
    seed = params.main_seed if seed is None else int(seed)
    cfg = params.pretrain_config(seed)
    settings = {"pretrain": to_dict(cfg), "data": to_dict(params.pretrain.data)}
    name = f"pretrain-seed{seed}"
    work = shared_work_dir(name, settings, [PREPARED], params.pretrain.data.sources)
    if launch_torchrun("pretrain", str(seed), params_path, torch.cuda.device_count()):
        return None
    rank0 = is_rank0()
    with stage_run("pretrain", settings, {"profile": params.profile, "seed": seed}, enabled=rank0) as t:
        summary = once(work, lambda: run_pretraining(params, cfg, seed, work, t), record=rank0)
        if not rank0:
            return summary
        if (work / "latest.pth.tar").exists():
            (work / "latest.pth.tar").replace(work / "checkpoint.pth.tar")
        out = publish(work, RUNS / "pretrain" / f"seed{seed}")
        summary["checkpoint"] = str(out / "checkpoint.pth.tar")
        summary["samples_seen"] = summary["steps"] * summary["global_batch"]
        curves = write_curves(out / "metrics.jsonl", curves_path(params.profile, seed))  # what `dvc plots` draws
        return finish(
            t,
            Path("metrics") / params.profile,
            f"pretrain/seed{seed}",
            {"profile": params.profile, "seed": seed, **summary},
            out / "metrics.jsonl",
            curves,
        )
