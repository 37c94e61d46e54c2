"""probe@task with `probe.tasks.<task>.evaluate_only: {probe: <file>, encoder: <file>}`: a released
probe evaluated as it is on the task's validation set, with the official protocol for that task
(segments and views; overlapping clips in short videos), written where a trained probe's results
go (runs/probe/<task>/, metrics/<profile>/probe/<task>.json) and labelled there as a released probe."""

from __future__ import annotations

import dataclasses
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
from pipeline.stages.common import frozen_encoder, task_entries, task_files, top1_by_kind
from pipeline.tracking import stage_run
from vjepa.infra.config import to_dict
from vjepa.data import task_datasets
from vjepa.evals.probe import evaluate_released
from vjepa.hub import load_probe, resolve


def evaluate_only(params: Params, task: str, params_path: str = "params.yaml") -> dict | None:
    """Evaluate the released probe of one task; returns (and writes) the stage's metrics. With
    several GPUs, relaunched under torchrun, each process evaluating one block of the videos."""
    spec = params.probe.tasks[task]
    released = spec.evaluate_only
    segments, views = released.protocol(task)
    seed = params.main_seed
    encoder_file = released.encoder or params.probe.encoder.checkpoint or params.encoder_checkpoint(seed)
    settings = {
        "task": to_dict(spec),
        "evaluate_only": to_dict(released),
        "encoder": encoder_file,
        "segments": segments,
        "views": views,
        "data": to_dict(params.tasks[spec.data]),
    }
    work = shared_work_dir(
        f"probe-{task}", settings, [PREPARED, encoder_file, released.probe], task_files(params, spec.data)
    )
    if launch_torchrun("probe", task, params_path, torch.cuda.device_count()):
        return None
    rank0 = is_rank0()
    tags = {"profile": params.profile, "task": task, "released": "true"}
    with stage_run("probe", settings, tags, enabled=rank0) as t:

        def compute():
            encoder, _ = frozen_encoder(params, encoder_file, override=False)
            protocol = dataclasses.replace(spec, eval_views=views, allow_overlap=True)  # official frozen-eval clips
            _, val_set, n = task_datasets(
                params.tasks[spec.data],
                protocol,
                params.model.img_size,
                segments,
                seed,
                task_entries(params, spec.data),
            )
            cfg = params.probe_config(task, n, segments, seed)
            # its heads: the ones set, else the encoder's (as the official probes)
            head = load_probe(resolve(released.probe), released.num_heads or getattr(encoder, "num_heads", None))
            out = work / f"segments{segments}"
            return evaluate_released(cfg, encoder, head, released.probe, val_set, out, encoder_file)

        run = once(work, compute, record=rank0)
        if not rank0:
            return run
        publish(work, RUNS / "probe" / task)
        by_kind = top1_by_kind(run)
        metrics = {
            "profile": params.profile,
            "task": task,
            "seed": seed,
            "encoder": encoder_file,
            "released_probe": released.probe,
            "top1": run["best_top1"],
            "top1_by_kind": by_kind,
            "coverage": {f"segments{segments}": by_kind},
            "runs": {f"segments{segments}": run},
        }
        return finish(t, Path("metrics") / params.profile, f"probe/{task}", metrics)
