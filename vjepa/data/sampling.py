"""Which frames of a video make up each clip (the official `loadvideo_decord` semantics, spec 4.6).

A clip is `num_frames` frames spread over a window of clip_len = num_frames * frame_step frames
(frame_step from `clip_duration` and the video's fps when that is set). The video is cut into
`num_segments` equal partitions and one clip is taken from each:
- partition longer than the window: indices = floor(linspace(start, start + clip_len, num_frames))
  clipped to the window, so the stride is only about frame_step (64/15 for 16x4: 0, 4, 8, 12, 17, ...).
  Training draws the window's end uniformly in [clip_len, partition) (official); evaluation
  (random=False) takes the centred window (official: the partition's first window).
- partition not longer than the window: linspace over the partition with partition // frame_step
  points, padded by repeating the last frame; or, with `allow_overlap` (the official frozen evals),
  windows of up to clip_len frames whose starts are spread evenly over the whole video.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ClipSampling:
    """How clips are cut from a video: S = num_segments clips of num_frames frames each."""

    num_frames: int = 16
    frame_step: int = 4
    clip_duration: float | None = None  # seconds; when set, frame_step = int(duration * fps / num_frames)
    num_segments: int = 1
    random: bool = True  # True for training; False for deterministic evaluation
    allow_overlap: bool = False  # official frozen evals: True
    eval_window: str = "center"  # random=False and a long partition: "center" (ours) or "start" (official)

    def validate(self) -> None:
        if self.num_frames < 1 or self.frame_step < 1 or self.num_segments < 1:
            raise ValueError("num_frames, frame_step and num_segments must be >= 1")
        if self.clip_duration is not None and self.clip_duration <= 0:
            raise ValueError(f"clip_duration must be positive seconds, got {self.clip_duration}")
        if self.eval_window not in ("center", "start"):
            raise ValueError(f"eval_window must be 'center' or 'start', got {self.eval_window!r}")


def clip_window(start: int, clip_len: int, num_frames: int) -> np.ndarray:
    """num_frames indices spread over [start, start + clip_len): floor of a clipped linspace."""
    end = start + clip_len
    return np.clip(np.linspace(start, end, num_frames), start, end - 1).astype(np.int64)


def _padded(length: int, num_points: int, num_frames: int, last: int) -> np.ndarray:
    """linspace(0, length, num_points) padded with `length` up to num_frames, clipped to `last`."""
    idx = np.concatenate([np.linspace(0, length, num_points), np.full(num_frames - num_points, length)])
    return np.clip(idx, 0, last).astype(np.int64)


def frame_step_for(cfg: ClipSampling, fps: float | None) -> int:
    """The frame step: fixed, or from clip_duration and the video's frame rate."""
    if cfg.clip_duration is None:
        return cfg.frame_step
    if not fps or fps <= 0:
        raise ValueError("clip_duration needs the video's frame rate, which is unknown")
    step = int(cfg.clip_duration * fps / cfg.num_frames)
    if step < 1:
        raise ValueError(f"clip_duration {cfg.clip_duration}s at {fps:.3g} fps gives fewer than "
                         f"{cfg.num_frames} frames; shorten num_frames or lengthen clip_duration")
    return step


def clip_indices(num_video_frames: int, cfg: ClipSampling, rng: np.random.Generator | None = None,
                 fps: float | None = None) -> list[np.ndarray]:
    """One int64 array of cfg.num_frames frame indices per segment (S arrays)."""
    n, fpc, S = int(num_video_frames), cfg.num_frames, cfg.num_segments
    if n < S:
        raise ValueError(f"video has {n} frames, fewer than the {S} segments asked for")
    step = frame_step_for(cfg, fps)
    clip_len = fpc * step
    part = n // S
    out = []
    for i in range(S):
        if part > clip_len:
            if cfg.random:
                if rng is None:
                    raise ValueError("random clip sampling needs an rng")
                end = int(rng.integers(clip_len, part))
            elif cfg.eval_window == "center":
                end = (part - clip_len) // 2 + clip_len
            else:
                end = clip_len
            out.append(clip_window(end - clip_len, clip_len, fpc) + i * part)
        elif not cfg.allow_overlap:
            points = min(part // step, fpc)
            out.append(_padded(part, points, fpc, part - 1) + i * part)
        else:
            # official overlap branch: window of min(clip_len, n) - 1 frames, its last frame excluded
            span = min(clip_len, n) - 1
            points = min(span // step, fpc)
            offset = (n - clip_len) // (S - 1) if n > clip_len else 0
            out.append(_padded(span, points, fpc, max(span - 1, 0)) + i * offset)
    return out
