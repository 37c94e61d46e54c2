"""One pretraining run over the params' data, shared by the pretrain, cooldown and ablate stages,
and the stage around it that pretrain and cooldown share."""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.config import Params, PretrainData
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
from vjepa.data import ClipSampling, MixtureDataset, VideoDataset, pretrain_transform, read_path_label_list
from vjepa.infra.configs import PretrainConfig
from vjepa.train.pretrain import pretrain as vjepa_pretrain


def pretrain_dataset(
    params: Params, cfg: PretrainConfig, seed: int, data: PretrainData | None = None
) -> MixtureDataset:
    """The `pretrain.data` mix (or `data`, an ablation point's) at the model's resolution."""
    data = data or params.pretrain.data
    transform = pretrain_transform(cfg.model.img_size, data.scale, data.ratio, data.hflip, data.finish_on_device)
    parts = [
        VideoDataset(
            read_path_label_list(p),
            ClipSampling(num_frames=frames, frame_step=data.frame_step, fps=data.fps, random=True),
            transform,
            data.decode_threads,
            seed=seed,
            cache_mb=data.cache_mb,
            video_backend=data.video_backend,
        )
        for p, frames in zip(data.sources, data.frames_per_clip())
    ]
    return MixtureDataset(parts, data.weights)


def run_pretraining(
    params: Params, cfg: PretrainConfig, seed: int, work: Path, tracker, data: PretrainData | None = None
) -> dict:
    """vjepa.train.pretrain.pretrain on `data` (default `pretrain.data`), its step metrics mirrored to
    MLflow every pretrain.mlflow_every steps."""
    every = params.pretrain.mlflow_every

    def log(metrics, step):
        if step % every == 0:
            tracker.metrics({k: v for k, v in metrics.items() if k != "step"}, step=step)

    return vjepa_pretrain(cfg, pretrain_dataset(params, cfg, seed, data), work, log_fn=log)


def run_stage(
    params: Params, stage: str, seed: int, cfg: PretrainConfig, data: PretrainData, upstream: list, params_path: str
) -> dict | None:
    """The `stage` ("pretrain" or "cooldown") of one seed: writes runs/<stage>/seed<k>/ (checkpoint.pth.tar,
    metrics.jsonl: the step curve without timings) and metrics/<profile>/<stage>/seed<k>.json (with
    them); with several GPUs, relaunched under torchrun."""
    settings = {"pretrain": to_dict(cfg), "data": to_dict(data)}
    work = shared_work_dir(f"{stage}-seed{seed}", settings, [PREPARED, *upstream], data.sources)
    if launch_torchrun(stage, str(seed), params_path, torch.cuda.device_count()):
        return None
    rank0 = is_rank0()
    with stage_run(stage, settings, {"profile": params.profile, "seed": seed}, enabled=rank0) as t:
        summary = once(work, lambda: run_pretraining(params, cfg, seed, work, t, data), record=rank0)
        if not rank0:
            return summary
        if (work / "latest.pth.tar").exists():
            (work / "latest.pth.tar").replace(work / "checkpoint.pth.tar")
        out = publish(work, RUNS / stage / f"seed{seed}")
        summary["checkpoint"] = str(out / "checkpoint.pth.tar")
        summary["samples_seen"] = summary["steps"] * summary["global_batch"]
        curves = write_curves(out / "metrics.jsonl", curves_path(params.profile, seed, stage))  # what `dvc plots` draws
        return finish(
            t,
            Path("metrics") / params.profile,
            f"{stage}/seed{seed}",
            {"profile": params.profile, "seed": seed, **summary},
            out / "metrics.jsonl",
            curves,
        )
