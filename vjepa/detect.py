"""Frozen AVA detection (appendix B.2, Table 7): a RoIAlign + linear head on frozen V-JEPA features.

Features: the normed outputs of `out_layers` (the last block and three intermediate ones, e.g.
[18, 20, 22, 24] for ViT-L) **concatenated along channels**, [B, N, 4D] -> [B, 4D, T', H', W']:
a RoIAlign + linear head needs one channel vector per location (V-JEPA 2's token-axis concat suits
attentive probes, not RoI pooling). Then, as SlowFast's ResNetRoIHead: temporal average pool,
RoIAlign 7x7 (spatial_scale 1/patch, sampling_ratio 0, aligned=True) on person boxes, spatial max
pool, dropout 0.5, a linear layer to 80 classes, sigmoid + binary cross-entropy.
Training uses ground-truth boxes; evaluation uses the detector's proposals (above a score threshold,
chosen when the dataset is built) and reports frame-level mAP@0.5 over the 60 evaluation classes.

Box items (our contract): {"video": [C, T, H, W], "boxes": [K, 4] normalised (x1, y1, x2, y2) in the
clip as given, "labels": [K, num_classes] multi-hot (zeros for proposals), "video_id": str,
"sec": int}, or None for an unreadable clip. At test the clip is the full frame (SlowFast: short
side resized, no crop), so the boxes are the original normalised coordinates.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from torchvision.ops import roi_align
from tqdm.auto import tqdm

from vjepa.ava_eval import AVA_EVAL_CLASS_IDS, DETECTION_COLUMNS, frame_map, official_top_k, write_detections_csv
from vjepa.checkpoint import CheckpointError, load, load_into, save_atomic
from vjepa.config import FieldError, check_range, to_dict
from vjepa.data.datasets import TooManySkipped
from vjepa.data.transforms import normalize, resize, to_clip_tensor
from vjepa.probe import AUTOCAST, param_groups
from vjepa.runtime import autocast_for, check_resume, epoch_generator, write_json
from vjepa.schedules import warmup_cosine_lr


@dataclass
class DetectConfig:
    """Table 7 defaults (ViT-L layers)."""

    out_layers: list[int] = field(default_factory=lambda: [18, 20, 22, 24])  # ViT-H: [26, 28, 30, 32]
    num_classes: int = 80
    eval_classes: list[int] = field(default_factory=lambda: list(AVA_EVAL_CLASS_IDS))
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-4
    weight_decay: float = 0.05
    warmup_epochs: float = 2.0
    warmup_lr: float = 1e-6
    min_lr: float = 1e-6
    dropout: float = 0.5
    roi_resolution: int = 7
    top_k: int = 50               # the official command-line tool's detections per keyframe
    precision: str = "bf16"
    max_skipped_fraction: float = 0.01  # unreadable keyframes allowed (per epoch, and at test) before the run stops
    num_workers: int = 0
    seed: int = 0
    device: str | None = None

    def validate(self) -> None:
        check_range(self, "epochs", "batch_size", "roi_resolution", "top_k", "num_classes", ge=1)
        check_range(self, "lr", "weight_decay", "warmup_epochs", "warmup_lr", "min_lr", "num_workers", ge=0)
        check_range(self, "dropout", "max_skipped_fraction", ge=0, le=1)
        check_range(self, "out_layers", ge=1)
        if not self.out_layers:
            raise ValueError("out_layers needs at least one block number")
        if self.precision not in AUTOCAST:
            raise FieldError("precision", f"must be one of {sorted(AUTOCAST)}, got {self.precision!r}")
        bad = [c for c in self.eval_classes if not 1 <= c <= self.num_classes]
        if bad:
            raise ValueError(f"eval_classes {bad} outside 1..{self.num_classes}")


def feature_map(encoder: nn.Module, video: torch.Tensor, out_layers: list[int]) -> torch.Tensor:
    """[B, C, T, H, W] -> [B, L*D, T', H', W']: the normed outputs of the L blocks `out_layers`,
    concatenated along channels (layer-major), tokens laid back on their (t, h, w) grid."""
    layers = encoder(video, out_layers=out_layers)           # L x [B, N, D]
    x = torch.cat(layers, dim=-1)                            # [B, N, L*D]
    t, h, w = encoder.token_grid(video)
    return x.view(x.shape[0], t, h, w, x.shape[-1]).permute(0, 4, 1, 2, 3)


class DetectionHead(nn.Module):
    """Temporal average pool, RoIAlign, spatial max pool, dropout, linear -> per-box logits."""

    def __init__(self, in_dim: int, num_classes: int = 80, patch_size: int = 16, resolution: int = 7,
                 dropout: float = 0.5):
        super().__init__()
        self.spatial_scale, self.resolution = 1.0 / patch_size, resolution
        self.dropout = nn.Dropout(dropout)
        self.projection = nn.Linear(in_dim, num_classes)
        nn.init.normal_(self.projection.weight, std=0.01)  # SlowFast's head init
        nn.init.zeros_(self.projection.bias)

    def roi_features(self, fmap: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        """fmap [B, C, T', H', W'], rois [K, 5] = (batch index, x1, y1, x2, y2) in input pixels -> [K, C, r, r]."""
        x = fmap.mean(dim=2)                                  # temporal average pool -> [B, C, H', W']
        return roi_align(x, rois.to(x.dtype), (self.resolution, self.resolution), spatial_scale=self.spatial_scale,
                         sampling_ratio=0, aligned=True)

    def forward(self, fmap: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        x = self.roi_features(fmap, rois).amax(dim=(2, 3))   # spatial max pool -> [K, C]
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
    out["labels"] = torch.cat([torch.as_tensor(it["labels"], dtype=torch.float32).reshape(len(b), -1)
                               for it, b in zip(kept, boxes)])
    out["key"] = [(str(it["video_id"]), int(it["sec"])) for it, b in zip(kept, boxes) for _ in range(len(b))]
    return out


@dataclass
class AvaClipConfig:
    """AVA clips and boxes as SlowFast's frozen-detection recipe reads them (cv2 path)."""

    num_frames: int = 16
    frame_step: int = 4                    # 16 frames at stride 4 around the keyframe (~2.1 s)
    train_scale: list[int] = field(default_factory=lambda: [256, 320])  # random short side, train
    crop_size: int = 224                   # random square crop after scaling, train
    test_size: int = 256                   # short side at test; the full frame, no crop
    hflip: bool = True                     # train: frames and boxes flipped together with p 0.5
    proposal_score_threshold: float = 0.9  # SlowFast's default (its c2 R101 config: 0.8)

    def validate(self) -> None:
        check_range(self, "num_frames", "frame_step", "crop_size", "test_size", "train_scale", ge=1)
        check_range(self, "proposal_score_threshold", ge=0, le=1)
        if len(self.train_scale) != 2 or self.train_scale[0] > self.train_scale[1]:
            raise FieldError("train_scale", f"must be [low, high] with low <= high, got {self.train_scale}")
        if self.crop_size > self.train_scale[0]:
            raise FieldError("crop_size", f"{self.crop_size} exceeds the smallest training scale {self.train_scale[0]}")


def ava_gt_boxes(groundtruth: pd.DataFrame, num_classes: int = 80) -> dict[tuple[str, int], tuple[np.ndarray, np.ndarray]]:
    """Ground-truth rows -> {(video_id, sec): (boxes [K, 4], multi-hot labels [K, num_classes])}:
    rows with the same box on the same keyframe are one person with several actions."""
    out: dict = {}
    for (vid, sec), rows in groundtruth.groupby(["video_id", "timestamp"], sort=True):
        boxes = rows[["x1", "y1", "x2", "y2"]].to_numpy(np.float32)
        uniq, inverse = np.unique(boxes, axis=0, return_inverse=True)
        labels = np.zeros((len(uniq), num_classes), np.float32)
        labels[inverse.reshape(-1), rows["action_id"].to_numpy() - 1] = 1.0
        out[(str(vid), int(sec))] = (uniq, labels)
    return out


def ava_proposal_boxes(proposals: Mapping[tuple[str, int], np.ndarray], num_classes: int = 80) -> dict:
    """Proposals {(video_id, sec): [N, 5]} (already thresholded) -> the same form, labels all zero."""
    return {k: (np.asarray(a, np.float32)[:, :4], np.zeros((len(a), num_classes), np.float32))
            for k, a in sorted(proposals.items())}


class AvaBoxDataset(Dataset):
    """One item per keyframe: the clip around it and its person boxes (see the module docstring).
    Training: random short side in train_scale, random crop_size crop (boxes shifted and clipped),
    joint flip; test: short side test_size, full frame. Randomness is drawn from (seed, epoch, index)."""

    def __init__(self, frames, boxes: Mapping[tuple[str, int], tuple[np.ndarray, np.ndarray]], cfg: AvaClipConfig,
                 train: bool, seed: int = 0):
        self.frames, self.boxes, self.cfg, self.train, self.seed = frames, dict(boxes), cfg, train, seed
        self.keys = sorted(self.boxes)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> dict | None:
        vid, sec = self.keys[i]
        boxes, labels = self.boxes[(vid, sec)]
        try:
            clip = to_clip_tensor(self.frames.load_clip(vid, sec, self.cfg.num_frames, self.cfg.frame_step))
        except OSError:  # an unreadable JPEG: skipped and counted, as undecodable videos are
            return None
        boxes = torch.as_tensor(boxes, dtype=torch.float32)
        H, W = clip.shape[-2:]
        rng = np.random.default_rng([self.seed, self.epoch, i])
        short = int(rng.integers(self.cfg.train_scale[0], self.cfg.train_scale[1] + 1)) if self.train else self.cfg.test_size
        h, w = (short, max(short, round(W * short / H))) if H <= W else (max(short, round(H * short / W)), short)
        clip = resize(clip, (h, w))
        if self.train:
            c = self.cfg.crop_size
            top, left = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
            clip = clip[..., top:top + c, left:left + c]
            px = boxes * torch.tensor([w, h, w, h]) - torch.tensor([left, top, left, top])
            boxes = px.clamp(0, c) / c
            if self.cfg.hflip and rng.random() < 0.5:
                clip, boxes = hflip_boxes(clip, boxes)
        return {"video": normalize(clip), "boxes": boxes, "labels": torch.as_tensor(labels),
                "video_id": vid, "sec": sec}


def hflip_boxes(clip: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror a clip [C, T, H, W] and its normalised boxes [K, 4] together."""
    return clip.flip(-1), torch.stack([1 - boxes[:, 2], boxes[:, 1], 1 - boxes[:, 0], boxes[:, 3]], dim=1)


def _json_safe(x):
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    return x


@torch.no_grad()
def predict(encoder: nn.Module, head: DetectionHead, dataset: Dataset, cfg: DetectConfig, device,
            autocast) -> tuple[pd.DataFrame, int]:
    """Detections in SlowFast's order (for each box, one row per evaluation class, score = sigmoid)
    and the number of unreadable keyframes skipped."""
    head.eval()
    loader = DataLoader(dataset, cfg.batch_size, shuffle=False, collate_fn=collate_boxes, num_workers=cfg.num_workers)
    cls = torch.tensor(cfg.eval_classes) - 1
    frames, skipped = [], 0
    for batch in tqdm(loader, desc="detect eval", leave=False):
        skipped += batch["skipped"]
        if "video" not in batch or not len(batch["rois"]):
            continue
        with autocast():
            fmap = feature_map(encoder, batch["video"].to(device), cfg.out_layers)
            scores = torch.sigmoid(head(fmap, batch["rois"].to(device)).float())[:, cls].cpu().numpy()
        K, C = scores.shape
        boxes = batch["boxes"].numpy()
        frames.append(pd.DataFrame({
            "video_id": np.repeat([k[0] for k in batch["key"]], C), "timestamp": np.repeat([k[1] for k in batch["key"]], C),
            "x1": np.repeat(boxes[:, 0], C), "y1": np.repeat(boxes[:, 1], C), "x2": np.repeat(boxes[:, 2], C),
            "y2": np.repeat(boxes[:, 3], C), "action_id": np.tile(cfg.eval_classes, K), "score": scores.reshape(-1)}))
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=DETECTION_COLUMNS)), skipped


def _check_skipped(count: int, size: int, max_fraction: float, where: str) -> None:
    """Stop, as the video runs do, when more keyframes than allowed could not be read."""
    if count > max_fraction * size:
        raise TooManySkipped(f"{count} of {size} keyframes could not be read in {where} "
                             f"({count / max(size, 1):.2%}), more than the allowed {max_fraction:.2%}")


def run_detection(cfg: DetectConfig, encoder: nn.Module, train_set: Dataset, val_set: Dataset,
                  groundtruth: pd.DataFrame, out_dir: str | Path,
                  exclusions: Iterable[tuple[str, int]] | None = None,
                  labelmap: Mapping[int, str] | None = None) -> dict:
    """Train the head on ground-truth boxes, predict on proposals, and write out_dir/metrics.json,
    out_dir/detections.csv (the official result format) and out_dir/head.pt. `groundtruth` is the
    validation table (video_id, timestamp, x1, y1, x2, y2, action_id). Resumes per epoch."""
    out = Path(out_dir)
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    autocast = autocast_for(device, cfg.precision)
    encoder = encoder.to(device).eval().requires_grad_(False)
    torch.manual_seed(cfg.seed)
    head = DetectionHead(encoder.embed_dim * len(cfg.out_layers), cfg.num_classes, encoder.patch_size,
                         cfg.roi_resolution, cfg.dropout).to(device)
    opt = torch.optim.AdamW(param_groups(head), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = math.ceil(len(train_set) / cfg.batch_size)
    warmup = int(round(cfg.warmup_epochs * steps))
    state_path, start, history, skipped = out / "detect_state.pt", 0, [], 0
    if state_path.exists():
        state = load(state_path)
        check_resume(state["config"], to_dict(cfg), state_path)
        load_into(head, state["head"], where=str(state_path))
        opt.load_state_dict(state["opt"])
        start, history, skipped = state["epoch"], state["history"], state["skipped"]
        torch.set_rng_state(state["rng"])  # dropout continues as in an uninterrupted run

    t0 = time.time()
    for epoch in range(start, cfg.epochs):
        head.train()
        if hasattr(train_set, "set_epoch"):  # fresh augmentation per epoch, reproducible on resume
            train_set.set_epoch(epoch)
        g = epoch_generator(cfg.seed, epoch)
        loader = DataLoader(train_set, cfg.batch_size, shuffle=True, generator=g, collate_fn=collate_boxes,
                            num_workers=cfg.num_workers)
        total, n, skipped = 0.0, 0, 0
        for i, batch in enumerate(tqdm(loader, desc=f"detect epoch {epoch + 1}/{cfg.epochs}", leave=False)):
            skipped += batch["skipped"]
            if "video" not in batch or not len(batch["rois"]):
                continue
            for group in opt.param_groups:  # warmup from warmup_lr, then cosine to min_lr (Table 7)
                group["lr"] = warmup_cosine_lr(epoch * steps + i + 1, lr=cfg.lr, start_lr=cfg.warmup_lr,
                                               final_lr=cfg.min_lr, warmup=warmup, total=cfg.epochs * steps)
            with torch.no_grad(), autocast():
                fmap = feature_map(encoder, batch["video"].to(device), cfg.out_layers)
            with autocast():
                logits = head(fmap, batch["rois"].to(device))
            # sigmoid + BCE (SlowFast), computed as one numerically safer op
            loss = F.binary_cross_entropy_with_logits(logits.float(), batch["labels"].to(device))
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            total, n = total + float(loss.detach()) * len(batch["rois"]), n + len(batch["rois"])
        _check_skipped(skipped, len(train_set), cfg.max_skipped_fraction, f"training epoch {epoch + 1}")
        history.append(total / max(n, 1))
        save_atomic({"epoch": epoch + 1, "history": history, "config": to_dict(cfg), "head": head.state_dict(),
                     "opt": opt.state_dict(), "rng": torch.get_rng_state(), "skipped": skipped}, state_path)

    detections, val_skipped = predict(encoder, head, val_set, cfg, device, autocast)
    _check_skipped(val_skipped, len(val_set), cfg.max_skipped_fraction, "evaluation")
    api = frame_map(groundtruth, detections, cfg.eval_classes, exclusions)
    cli = frame_map(groundtruth, official_top_k(detections, cfg.eval_classes, cfg.top_k), cfg.eval_classes, exclusions)
    names = labelmap or {}
    metrics = {"mAP": api["mAP"], "mAP_official_cli": cli["mAP"],
               "per_class": {names.get(c, str(c)): ap for c, ap in api["per_class"].items()},
               "per_class_official_cli": {names.get(c, str(c)): ap for c, ap in cli["per_class"].items()},
               "num_gt": {names.get(c, str(c)): k for c, k in api["num_gt"].items()},
               "num_detections": len(detections), "num_keyframes": int(detections.groupby(["video_id", "timestamp"]).ngroups),
               "skipped_train": skipped, "skipped_val": val_skipped, "train_loss": history, "epochs": cfg.epochs, "out_layers": cfg.out_layers,
               "seconds": round(time.time() - t0, 1)}
    write_detections_csv(detections, out / "detections.csv")
    save_atomic({"head": head.state_dict(), "config": to_dict(cfg)}, out / "head.pt")
    write_json(out / "metrics.json", _json_safe(metrics))
    return metrics
