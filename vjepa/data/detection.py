"""AVA detection's datasets (appendix B.2): the files of an AVA v2.2 folder, the clip settings of
SlowFast's frozen-detection recipe, and one function that assembles the training set (ground-truth
boxes, excluded keyframes dropped) and the validation set (the detector's proposals above a score
threshold) from them. Box items are described in `vjepa.evals.detect`'s docstring."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from vjepa.data.ava import AvaFrameFolder, read_ava_csv, read_ava_exclusions, read_ava_proposals
from vjepa.data.transforms import normalize, resize, to_clip_tensor
from vjepa.infra.configs import AvaFiles, AvaClipConfig


def ava_gt_boxes(
    groundtruth: pd.DataFrame, num_classes: int = 80
) -> dict[tuple[str, int], tuple[np.ndarray, np.ndarray]]:
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
    return {
        k: (np.asarray(a, np.float32)[:, :4], np.zeros((len(a), num_classes), np.float32))
        for k, a in sorted(proposals.items())
    }


class AvaBoxDataset(Dataset):
    """One item per keyframe: the clip around it and its person boxes (see the module docstring).
    Training: random short side in train_scale, random crop_size crop (boxes shifted and clipped),
    joint flip; test: short side test_size, full frame. Randomness is drawn from (seed, epoch, index)."""

    def __init__(
        self,
        frames,
        boxes: Mapping[tuple[str, int], tuple[np.ndarray, np.ndarray]],
        cfg: AvaClipConfig,
        train: bool,
        seed: int = 0,
    ):
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
        short = (
            int(rng.integers(self.cfg.train_scale[0], self.cfg.train_scale[1] + 1))
            if self.train
            else self.cfg.test_size
        )
        h, w = (short, max(short, round(W * short / H))) if H <= W else (max(short, round(H * short / W)), short)
        clip = resize(clip, (h, w))
        if self.train:
            c = self.cfg.crop_size
            top, left = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
            clip = clip[..., top : top + c, left : left + c]
            px = boxes * torch.tensor([w, h, w, h]) - torch.tensor([left, top, left, top])
            boxes = px.clamp(0, c) / c
            if self.cfg.hflip and rng.random() < 0.5:
                clip, boxes = hflip_boxes(clip, boxes)
        return {
            "video": normalize(clip),
            "boxes": boxes,
            "labels": torch.as_tensor(labels),
            "video_id": vid,
            "sec": sec,
        }


def hflip_boxes(clip: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror a clip [C, T, H, W] and its normalised boxes [K, 4] together."""
    return clip.flip(-1), torch.stack([1 - boxes[:, 2], boxes[:, 1], 1 - boxes[:, 0], boxes[:, 3]], dim=1)


@dataclass
class AvaSets:
    """What detection trains and is scored on."""

    train: AvaBoxDataset  # ground-truth boxes, excluded keyframes dropped
    val: AvaBoxDataset  # proposals above the score threshold
    val_groundtruth: pd.DataFrame  # the table mAP is computed against
    val_exclusions: set | None


def ava_datasets(files: AvaFiles, clip: AvaClipConfig, num_classes: int = 80, seed: int = 0) -> AvaSets:
    """Read an AVA folder's annotation files (errors name the file and line) and build both box
    datasets; the label map (the evaluation classes) is the caller's, it configures the scoring."""
    frames = AvaFrameFolder(files.frames)
    train_gt = read_ava_csv(files.train_groundtruth)
    if files.train_exclusions:
        excluded = read_ava_exclusions(files.train_exclusions)
        train_gt = train_gt[[(v, s) not in excluded for v, s in zip(train_gt["video_id"], train_gt["timestamp"])]]
    proposals = read_ava_proposals(files.val_proposals, clip.proposal_score_threshold)
    return AvaSets(
        train=AvaBoxDataset(frames, ava_gt_boxes(train_gt, num_classes), clip, train=True, seed=seed),
        val=AvaBoxDataset(frames, ava_proposal_boxes(proposals, num_classes), clip, train=False, seed=seed),
        val_groundtruth=read_ava_csv(files.val_groundtruth),
        val_exclusions=read_ava_exclusions(files.val_exclusions) if files.val_exclusions else None,
    )
