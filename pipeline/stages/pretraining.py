"""One pretraining run over the params' data, shared by the pretrain and ablate stages."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import Params, PretrainData
from vjepa.data import ClipSampling, MixtureDataset, VideoDataset, pretrain_transform, read_path_label_list
from vjepa.infra.configs import PretrainConfig
from vjepa.train.pretrain import pretrain as vjepa_pretrain


def pretrain_dataset(
    params: Params, cfg: PretrainConfig, seed: int, data: PretrainData | None = None
) -> MixtureDataset:
    """The `pretrain.data` mix (or `data`, an ablation point's) at the model's resolution."""
    data = data or params.pretrain.data
    clip = ClipSampling(num_frames=data.num_frames, frame_step=data.frame_step, random=True)
    transform = pretrain_transform(cfg.model.img_size, data.scale, data.ratio, data.hflip, data.finish_on_device)
    parts = [
        VideoDataset(
            read_path_label_list(p),
            clip,
            transform,
            data.decode_threads,
            seed=seed,
            cache_mb=data.cache_mb,
            video_backend=data.video_backend,
        )
        for p in data.sources
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
