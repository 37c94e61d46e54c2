"""finetune@task: the main seed's encoder finetuned end to end (Table 8, VideoMAE recipe), tested
on several views."""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.config import Params
from pipeline.plumbing import (
    PREPARED,
    RUNS,
    finish,
    is_rank0,
    launch_torchrun,
    once,
    publish,
    shared_work_dir,
)
from pipeline.stages.common import task_entries, task_files
from pipeline.tracking import stage_run
from vjepa.infra.config import to_dict
from vjepa.train.finetune import build_datasets
from vjepa.train.finetune import finetune as vjepa_finetune


def run(params: Params, task: str | None = None, params_path: str = "params.yaml") -> dict | None:
    """Writes runs/finetune/<task>/ (the finetuned model and its multi-view results); with several
    GPUs, relaunched under torchrun, one process per GPU (global batch = batch x GPUs x accumulation)."""
    seed, data = params.main_seed, params.tasks[params.finetune_data(task)]
    train, val, classes = task_entries(params, params.finetune_data(task))
    cfg = params.finetune_config(task, len(classes), seed)
    ckpt = params.finetune.checkpoint or params.encoder_checkpoint(seed)  # or a released file
    settings = {"finetune": to_dict(cfg), "checkpoint": ckpt, "data": to_dict(data)}
    name = f"finetune-{task}"
    work = shared_work_dir(name, settings, [PREPARED, ckpt], task_files(params, params.finetune_data(task)))
    if launch_torchrun("finetune", task, params_path, torch.cuda.device_count()):
        return None
    rank0 = is_rank0()
    with stage_run("finetune", settings, {"profile": params.profile, "task": task}, enabled=rank0) as t:

        def compute():
            train_set, val_set = build_datasets(cfg, train, val)
            return vjepa_finetune(
                cfg,
                ckpt,
                train_set,
                val_set,
                work,
                log_fn=lambda m, step: t.metrics({k: v for k, v in m.items() if k != "step"}, step=step),
            )

        result = once(work, compute, record=rank0)
        if not rank0:
            return result
        (work / "latest.pth.tar").unlink(missing_ok=True)  # the resume state; the finetuned model stays
        publish(work, RUNS / "finetune" / task)
        return finish(
            t,
            Path("metrics") / params.profile,
            f"finetune/{task}",
            {"profile": params.profile, "task": task, "checkpoint": ckpt, **result},
        )
