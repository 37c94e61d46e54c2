"""probe@task: frozen attentive and linear probes of the main seed's target encoder (Table 6),
at each temporal coverage in the task's `segments` (Table 11)."""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.config import Params
from pipeline.plumbing import PREPARED, RUNS, finish, is_rank0, launch_torchrun, once, publish, shared_work_dir
from pipeline.stages.common import encoder_files, frozen_encoder, probe_checkpoint, probe_task, task_files, top1_by_kind
from pipeline.tracking import stage_run
from vjepa.infra.config import to_dict
from vjepa.infra.distributed import process_group


def run(params: Params, task: str | None = None, params_path: str = "params.yaml") -> dict | None:
    """Every probe of the grid on one task; writes runs/probe/<task>/. With several GPUs,
    relaunched under torchrun, one process per GPU (global batch = batch x GPUs)."""
    spec = params.probe.tasks[task]
    if spec.evaluate_only is not None:  # a released probe, evaluated as it is
        from pipeline.stages.released import evaluate_only

        return evaluate_only(params, task, params_path)
    seed, ckpt = params.main_seed, probe_checkpoint(params)
    settings = {
        "task": to_dict(spec),
        "defaults": params.probe.defaults,
        "encoder": to_dict(params.probe.encoder),
        "checkpoint": ckpt,
        "seed": seed,
        "data": to_dict(params.tasks[spec.data]),
    }
    work = shared_work_dir(
        f"probe-{task}", settings, [PREPARED, *encoder_files(params, ckpt)], task_files(params, spec.data)
    )
    if launch_torchrun("probe", task, params_path, torch.cuda.device_count()):
        return None
    rank0 = is_rank0()
    with stage_run("probe", settings, {"profile": params.profile, "task": task}, enabled=rank0) as t:

        def compute():
            encoder, enc = frozen_encoder(params, ckpt)
            name = enc.checkpoint or enc.timm_model or "random"
            with process_group(params.probe_defaults().device):  # one group for every run of the stage
                runs = {
                    f"segments{s}": probe_task(params, task, encoder, work / f"segments{s}", seed, s, name)
                    for s in spec.segments
                }
            return {"encoder": enc.checkpoint or enc.timm_model, "runs": runs}

        result = once(work, compute, record=rank0)
        if not rank0:
            return result
        results = result["runs"]
        head = results[f"segments{spec.segments[0]}"]
        publish(work, RUNS / "probe" / task)
        metrics = {
            "profile": params.profile,
            "task": task,
            "seed": seed,
            "encoder": result["encoder"],
            "top1": head["best_top1"],
            "top1_by_kind": top1_by_kind(head),
            "coverage": {s: top1_by_kind(r) for s, r in results.items()},
            "runs": results,
        }
        return finish(t, Path("metrics") / params.profile, f"probe/{task}", metrics)
