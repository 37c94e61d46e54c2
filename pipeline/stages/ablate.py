"""ablate@point: one short pretraining with the point's changes, then a probe (Tables 13-15,
Appendix D), with the mask statistics those tables report."""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.config import Params
from pipeline.plumbing import PREPARED, RUNS, finish, is_rank0, launch_torchrun, once, publish, shared_work_dir
from pipeline.stages.common import frozen_encoder, probe_task, task_files, top1_by_kind
from pipeline.stages.pretraining import run_pretraining
from pipeline.tracking import (
    Tracker,
    ablation_experiment,
    ablation_reference,
    describe_ablations,
    log_ablation,
    stage_run,
)
from vjepa.infra.config import to_dict
from vjepa.infra.distributed import process_group
from vjepa.jepa.masks import mask_statistics
from vjepa.evals.stats import clip_outcomes


def run(params: Params, point: str | None = None, params_path: str = "params.yaml") -> dict | None:
    """Pretrain with the point's changes on top of `ablations.pretrain`, then probe `ablations.task`.
    With several GPUs, relaunched under torchrun: both run data-parallel, one process per GPU."""
    spec, seed, task = params.ablations.points[point], params.main_seed, params.ablations.task
    cfg, data = params.pretrain_config(seed, point), params.ablation_data(point)
    settings = {
        "point": to_dict(spec),
        "pretrain": to_dict(cfg),
        "data": to_dict(data),
        "task": to_dict(params.probe.tasks[task]),
        "defaults": params.probe.defaults,
        "probe": params.ablations.probe,
    }
    tags = {
        "profile": params.profile,
        "ablation": point,
        "tables": ",".join(spec.tables),
        "target": cfg.target,
        "num_masks": len(cfg.masks),
    }
    work = shared_work_dir(
        f"ablate-{point}", settings, [PREPARED], [*data.sources, *task_files(params, params.probe.tasks[task].data)]
    )
    if launch_torchrun("ablate", point, params_path, torch.cuda.device_count()):
        return None
    rank0 = is_rank0()
    experiment = ablation_experiment(params.profile)
    with stage_run("ablate", settings, tags, experiment=experiment, key=f"ablate@{point}", enabled=rank0) as t:

        def compute():
            # no per-step curves in the ablation run: its runs table shows the few numbers it logs
            # (the curves go to the run as the metrics.jsonl artifact below)
            with process_group(cfg.device):  # one group for the pretraining and the probe
                summary = run_pretraining(params, cfg, seed, work / "pretrain", Tracker(), data)
                encoder, _ = frozen_encoder(
                    params, str(work / "pretrain" / "latest.pth.tar"), cfg.model, override=False
                )
                segments = params.probe.tasks[task].segments[0]
                r = probe_task(params, task, encoder, work / "probe", seed, segments, point, params.ablations.probe)
            stats = [mask_statistics(m, cfg.model.grid, batch_size=cfg.batch_size, num_batches=20) for m in cfg.masks]
            return {
                "summary": summary,
                "top1_by_kind": top1_by_kind(r),
                "mask_statistics": stats,
                "clips": clip_outcomes(work / "probe", r) if rank0 else None,  # rank 0 wrote the predictions
            }

        result = once(work, compute, record=rank0)
        if not rank0:
            return result
        (work / "pretrain" / "latest.pth.tar").unlink(
            missing_ok=True
        )  # keep the curve and probe results, not the weights
        publish(work, RUNS / "ablate" / point)
        summary = result["summary"]
        metrics = {
            "profile": params.profile,
            "point": point,
            "label": spec.label,
            "tables": spec.tables,
            "task": task,
            "target": cfg.target,
            "num_masks": len(cfg.masks),
            "masks": [to_dict(m) for m in cfg.masks],
            "mask_statistics": result["mask_statistics"],
            "top1_by_kind": result["top1_by_kind"],
            "clips": result["clips"],
            "final_loss": summary["final_loss"],
            "final_target_std": summary["final_target_std"],
            "samples_seen": summary["steps"] * summary["global_batch"],
        }
        log_ablation(t, point, spec, cfg, result["mask_statistics"], metrics)  # its row of the ablation table in MLflow
        describe_ablations(t, params.profile, ablation_reference(params), params.ablations.task)
        return finish(
            t,
            Path("metrics") / params.profile,
            f"ablate/{point}",
            metrics,
            RUNS / "ablate" / point / "pretrain" / "metrics.jsonl",
            log_details=False,
        )
