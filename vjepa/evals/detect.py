"""Frozen AVA detection (appendix B.2, Table 7): a RoIAlign + linear head on frozen V-JEPA features.

Features: the normed outputs of `out_layers` (the last block and three intermediate ones, e.g.
[18, 20, 22, 24] for ViT-L) **concatenated along channels**, [B, N, 4D] -> [B, 4D, T', H', W']:
a RoIAlign + linear head needs one channel vector per location (V-JEPA 2's token-axis concat suits
attentive probes, not RoI pooling). Then, as SlowFast's ResNetRoIHead: temporal average pool,
RoIAlign 7x7 (spatial_scale 1/patch, sampling_ratio 0, aligned=True) on person boxes, spatial max
pool, dropout 0.5, a linear layer to 80 classes, sigmoid + binary cross-entropy.
Training uses ground-truth boxes; evaluation uses the detector's proposals (above a score threshold,
chosen when the dataset is built) and reports frame-level mAP@0.5 over the 60 evaluation classes.
Data-parallel under torchrun as the probes (vjepa.evals.probe): each process reads batch_size keyframes of a
global batch of batch_size x processes, the head's gradients are summed over processes (each loss
weighted by its share of the global batch's boxes), and evaluation is split into one block per process.

Box items (our contract): {"video": [C, T, H, W], "boxes": [K, 4] normalised (x1, y1, x2, y2) in the
clip as given, "labels": [K, num_classes] multi-hot (zeros for proposals), "video_id": str,
"sec": int}, or None for an unreadable clip. At test the clip is the full frame (SlowFast: short
side resized, no crop), so the boxes are the original normalised coordinates.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from vjepa.evals.ava_eval import DETECTION_COLUMNS, frame_map, official_top_k, write_detections_csv
from vjepa.infra.checkpoint import load, load_into, save_atomic
from vjepa.infra.config import to_dict
from vjepa.data.datasets import TooManySkipped
from vjepa.infra.distributed import (
    DistEnv,
    all_reduce_grads,
    all_reduce_sum,
    global_count,
    map_blocks,
    process_group,
    sharded_batches,
)
from vjepa.evals.frozen import param_groups
from vjepa.infra.runtime import (
    autocast_for,
    check_resume,
    epoch_generator,
    mix_seed,
    require_finite,
    without_timings,
    write_json,
)
from vjepa.infra.schedules import warmup_cosine_lr
from vjepa.infra.configs import DetectConfig


def feature_map(encoder: nn.Module, video: torch.Tensor, out_layers: list[int]) -> torch.Tensor:
    """[B, C, T, H, W] -> [B, L*D, T', H', W']: the normed outputs of the L blocks `out_layers`,
    concatenated along channels (layer-major), tokens laid back on their (t, h, w) grid. A clip that
    does not tile (the full test frame: short side resized, the long side as it comes) is cut to the
    whole tubelets it holds, as a sin-cos encoder's patch embedding drops the rest; pixel coordinates
    (the boxes') are unchanged."""
    T, H, W = video.shape[-3:]
    tubelet, patch = getattr(encoder, "tubelet_size", 1), encoder.patch_size
    video = video[..., : T - T % tubelet, : H - H % patch, : W - W % patch]
    layers = encoder(video, out_layers=out_layers)  # L x [B, N, D]
    x = torch.cat(layers, dim=-1)  # [B, N, L*D]
    t, h, w = encoder.token_grid(video)
    return x.view(x.shape[0], t, h, w, x.shape[-1]).permute(0, 4, 1, 2, 3)


class DetectionHead(nn.Module):
    """Temporal average pool, RoIAlign, spatial max pool, dropout, linear -> per-box logits."""

    def __init__(
        self, in_dim: int, num_classes: int = 80, patch_size: int = 16, resolution: int = 7, dropout: float = 0.5
    ):
        super().__init__()
        self.spatial_scale, self.resolution = 1.0 / patch_size, resolution
        self.dropout = nn.Dropout(dropout)
        self.projection = nn.Linear(in_dim, num_classes)
        nn.init.normal_(self.projection.weight, std=0.01)  # SlowFast's head init
        nn.init.zeros_(self.projection.bias)

    def roi_features(self, fmap: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        """fmap [B, C, T', H', W'], rois [K, 5] = (batch index, x1, y1, x2, y2) in input pixels -> [K, C, r, r]."""
        from torchvision.ops import roi_align  # here, not at import: torchvision.ops imports torch._dynamo (seconds)

        x = fmap.mean(dim=2)  # temporal average pool -> [B, C, H', W']
        return roi_align(
            x,
            rois.to(x.dtype),
            (self.resolution, self.resolution),
            spatial_scale=self.spatial_scale,
            sampling_ratio=0,
            aligned=True,
        )

    def forward(self, fmap: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        x = self.roi_features(fmap, rois).amax(dim=(2, 3))  # spatial max pool -> [K, C]
        return self.projection(self.dropout(x))


def collate_boxes(items: list[dict | None]) -> dict:
    """Stack box items; rois get their batch index and pixel coordinates of the clip as given."""
    kept = [it for it in items if it is not None]
    out = {"skipped": len(items) - len(kept)}
    if not kept:
        return out
    video = torch.stack([it["video"] for it in kept])
    H, W = video.shape[-2:]
    boxes = [torch.as_tensor(it["boxes"], dtype=torch.float32).reshape(-1, 4) for it in kept]
    scale = torch.tensor([W, H, W, H], dtype=torch.float32)
    out["video"] = video
    out["boxes"] = torch.cat(boxes)
    out["rois"] = torch.cat([torch.cat([torch.full((len(b), 1), float(i)), b * scale], 1) for i, b in enumerate(boxes)])
    out["labels"] = torch.cat(
        [torch.as_tensor(it["labels"], dtype=torch.float32).reshape(len(b), -1) for it, b in zip(kept, boxes)]
    )
    out["key"] = [(str(it["video_id"]), int(it["sec"])) for it, b in zip(kept, boxes) for _ in range(len(b))]
    return out


def _json_safe(x):
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    return x


@torch.no_grad()
def predict(
    encoder: nn.Module,
    head: DetectionHead,
    dataset: Dataset,
    cfg: DetectConfig,
    device,
    autocast,
    env: DistEnv | None = None,
) -> tuple[pd.DataFrame, int]:
    """Detections in SlowFast's order (for each box, one row per evaluation class, score = sigmoid)
    and the number of unreadable keyframes skipped. Under torchrun each process reads one block of
    the dataset and every process gets all the detections, in the dataset's order."""
    env = env or DistEnv()
    parts = map_blocks(lambda d: _predict_part(encoder, head, d, cfg, device, autocast, env), dataset, env)
    frames = [f for f, _ in parts if len(f)]
    detections = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=DETECTION_COLUMNS)
    return detections, sum(k for _, k in parts)


def _predict_part(encoder, head, dataset, cfg, device, autocast, env) -> tuple[pd.DataFrame, int]:
    head.eval()
    loader = DataLoader(dataset, cfg.batch_size, shuffle=False, collate_fn=collate_boxes, num_workers=cfg.num_workers)
    cls = torch.tensor(cfg.eval_classes) - 1
    frames, skipped = [], 0
    for batch in tqdm(loader, desc="detect eval", leave=False, disable=not env.is_main):
        skipped += batch["skipped"]
        if "video" not in batch or not len(batch["rois"]):
            continue
        with autocast():
            fmap = feature_map(encoder, batch["video"].to(device), cfg.out_layers)
            require_finite(fmap, f"features from the frozen encoder at evaluation batch {len(frames) + 1}")
            scores = torch.sigmoid(head(fmap, batch["rois"].to(device)).float())[:, cls].cpu().numpy()
        K, C = scores.shape
        boxes = batch["boxes"].numpy()
        frames.append(
            pd.DataFrame(
                {
                    "video_id": np.repeat([k[0] for k in batch["key"]], C),
                    "timestamp": np.repeat([k[1] for k in batch["key"]], C),
                    "x1": np.repeat(boxes[:, 0], C),
                    "y1": np.repeat(boxes[:, 1], C),
                    "x2": np.repeat(boxes[:, 2], C),
                    "y2": np.repeat(boxes[:, 3], C),
                    "action_id": np.tile(cfg.eval_classes, K),
                    "score": scores.reshape(-1),
                }
            )
        )
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=DETECTION_COLUMNS)), skipped


def _check_skipped(count: int, size: int, max_fraction: float, where: str) -> None:
    """Stop, as the video runs do, when more keyframes than allowed could not be read."""
    if count > max_fraction * size:
        raise TooManySkipped(
            f"{count} of {size} keyframes could not be read in {where} "
            f"({count / max(size, 1):.2%}), more than the allowed {max_fraction:.2%}"
        )


def _epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The shuffled order of epoch `epoch`: a permutation drawn from epoch_generator(seed, epoch) after
    two 64-bit draws. The two draws keep the order of earlier versions, whose shuffling loader, wrapped
    in a progress bar, drew two base seeds from the generator before the permutation."""
    g = epoch_generator(seed, epoch)
    torch.empty(2, dtype=torch.int64).random_(generator=g)
    return torch.randperm(n, generator=g).tolist()


def _train_batches(train_set: Dataset, cfg: DetectConfig, epoch: int, env: DistEnv):
    """This process's batch of each global batch of the epoch (None where its slice is empty)."""
    batches = sharded_batches(_epoch_order(len(train_set), cfg.seed, epoch), cfg.batch_size, env)
    loader = iter(
        DataLoader(
            train_set,
            batch_sampler=[b for b in batches if b],
            collate_fn=collate_boxes,
            num_workers=cfg.num_workers,
            generator=epoch_generator(cfg.seed, epoch),  # the workers' base seed, as a shuffling loader draws it
        )
    )
    for b in batches:
        yield next(loader) if b else {"skipped": 0}


def run_detection(
    cfg: DetectConfig,
    encoder: nn.Module,
    train_set: Dataset,
    val_set: Dataset,
    groundtruth: pd.DataFrame,
    out_dir: str | Path,
    exclusions: Iterable[tuple[str, int]] | None = None,
    labelmap: Mapping[int, str] | None = None,
) -> dict:
    """Train the head on ground-truth boxes, predict on proposals, and write out_dir/metrics.json,
    out_dir/detections.csv (the official result format) and out_dir/head.pt. `groundtruth` is the
    validation table (video_id, timestamp, x1, y1, x2, y2, action_id). Resumes per epoch. Under
    torchrun, data-parallel (module docstring); rank 0 writes the files, every rank returns."""
    with process_group(cfg.device) as env:
        return _run_detection(cfg, encoder, train_set, val_set, groundtruth, Path(out_dir), exclusions, labelmap, env)


def _run_detection(cfg, encoder, train_set, val_set, groundtruth, out: Path, exclusions, labelmap, env) -> dict:
    device = env.device
    autocast = autocast_for(device, cfg.precision)
    encoder = encoder.to(device).eval().requires_grad_(False)
    torch.manual_seed(cfg.seed)
    head = DetectionHead(
        encoder.embed_dim * len(cfg.out_layers), cfg.num_classes, encoder.patch_size, cfg.roi_resolution, cfg.dropout
    ).to(device)
    opt = torch.optim.AdamW(param_groups(head), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = math.ceil(len(train_set) / (cfg.batch_size * env.world_size))
    warmup = int(round(cfg.warmup_epochs * steps))
    state_path, start, history, skipped = out / "detect_state.pt", 0, [], 0
    if state_path.exists():
        state = load(state_path)
        extra = {"processes": (state.get("world_size", 1), env.world_size)}
        check_resume(state["config"], to_dict(cfg), state_path, extra=extra)
        load_into(head, state["head"], where=str(state_path))
        opt.load_state_dict(state["opt"])
        start, history, skipped = state["epoch"], state["history"], state["skipped"]
        torch.set_rng_state(state["rng"])  # dropout continues as in an uninterrupted run

    t0 = time.time()
    for epoch in range(start, cfg.epochs):
        head.train()
        if hasattr(train_set, "set_epoch"):  # fresh augmentation per epoch, reproducible on resume
            train_set.set_epoch(epoch)
        if env.distributed:  # each process its own dropout, reproducible on resume without saving every rank's
            torch.manual_seed(mix_seed(cfg.seed, epoch, env.rank))
        total, n, skipped = 0.0, 0, 0
        batches = tqdm(
            _train_batches(train_set, cfg, epoch, env),
            total=steps,
            desc=f"detect epoch {epoch + 1}/{cfg.epochs}",
            leave=False,
            disable=not env.is_main,
        )
        for i, batch in enumerate(batches):
            skipped += batch["skipped"]
            n_local = len(batch["rois"]) if "video" in batch else 0
            n_global = global_count(n_local, env)
            if n_global == 0:
                continue
            for group in opt.param_groups:  # warmup from warmup_lr, then cosine to min_lr (Table 7)
                group["lr"] = warmup_cosine_lr(
                    epoch * steps + i + 1,
                    lr=cfg.lr,
                    start_lr=cfg.warmup_lr,
                    final_lr=cfg.min_lr,
                    warmup=warmup,
                    total=cfg.epochs * steps,
                )
            where = f"step {epoch * steps + i + 1} (epoch {epoch + 1})"
            if n_local:
                with torch.no_grad(), autocast():
                    fmap = feature_map(encoder, batch["video"].to(device), cfg.out_layers)
                require_finite(fmap, f"features from the frozen encoder at {where}")
                with autocast():
                    logits = head(fmap, batch["rois"].to(device))
                # sigmoid + BCE (SlowFast), computed as one numerically safer op
                loss = F.binary_cross_entropy_with_logits(logits.float(), batch["labels"].to(device))
                require_finite(loss, f"detection loss at {where}", opt)
                (loss if n_local == n_global else loss * (n_local / n_global)).backward()
                total, n = total + float(loss.detach()) * n_local, n + n_local
            all_reduce_grads(head.parameters(), env)
            opt.step()
            opt.zero_grad(set_to_none=True)
        if env.distributed:
            total, n, skipped = all_reduce_sum(
                torch.tensor([total, n, skipped], dtype=torch.float64, device=device), env
            ).tolist()
            n, skipped = int(n), int(skipped)
        _check_skipped(skipped, len(train_set), cfg.max_skipped_fraction, f"training epoch {epoch + 1}")
        history.append(total / max(n, 1))
        if env.is_main:
            save_atomic(
                {
                    "epoch": epoch + 1,
                    "history": history,
                    "config": to_dict(cfg),
                    "head": head.state_dict(),
                    "opt": opt.state_dict(),
                    "rng": torch.get_rng_state(),
                    "skipped": skipped,
                    "world_size": env.world_size,
                },
                out / "detect_state.pt",
            )

    detections, val_skipped = predict(encoder, head, val_set, cfg, device, autocast, env)
    _check_skipped(val_skipped, len(val_set), cfg.max_skipped_fraction, "evaluation")
    api = frame_map(groundtruth, detections, cfg.eval_classes, exclusions)
    cli = frame_map(groundtruth, official_top_k(detections, cfg.eval_classes, cfg.top_k), cfg.eval_classes, exclusions)
    names = labelmap or {}
    metrics = {
        "mAP": api["mAP"],
        "mAP_official_cli": cli["mAP"],
        "per_class": {names.get(c, str(c)): ap for c, ap in api["per_class"].items()},
        "per_class_official_cli": {names.get(c, str(c)): ap for c, ap in cli["per_class"].items()},
        "num_gt": {names.get(c, str(c)): k for c, k in api["num_gt"].items()},
        "num_detections": len(detections),
        "num_keyframes": int(detections.groupby(["video_id", "timestamp"]).ngroups),
        "skipped_train": skipped,
        "skipped_val": val_skipped,
        "train_loss": history,
        "epochs": cfg.epochs,
        "out_layers": cfg.out_layers,
        "seconds": round(time.time() - t0, 1),
    }
    if not env.is_main:
        return metrics
    write_detections_csv(detections, out / "detections.csv")
    save_atomic({"head": head.state_dict(), "config": to_dict(cfg)}, out / "head.pt")
    write_json(out / "metrics.json", _json_safe(without_timings(metrics)))
    return metrics
