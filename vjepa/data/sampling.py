"""Which frames of a video make up each clip (the official `loadvideo_decord` semantics, spec 4.6).

A clip is `num_frames` frames spread over a window of clip_len = num_frames * frame_step frames
(frame_step from `clip_duration` and the video's fps when that is set, or from `fps`, V-JEPA 2's
frames per second: ceil(video fps) // fps, 7 at 29.97 fps for 4 fps). The video is cut into
`num_segments` equal partitions and one clip is taken from each:
- partition longer than the window: indices = floor(linspace(start, start + clip_len, num_frames))
  clipped to the window, so the stride is only about frame_step (64/15 for 16x4: 0, 4, 8, 12, 17, ...).
  Training draws the window's end uniformly in [clip_len, partition) (official); evaluation
  (random=False) takes the centred window (official: the partition's first window).
- partition not longer than the window: linspace over the partition with partition // frame_step
  points, padded by repeating the last frame; or, with `allow_overlap` (the official frozen evals),
  windows of up to clip_len frames whose starts are spread evenly over the whole video.

Two more methods serve VideoMAE-style finetuning (appendix Table 8):
- "spread" (VideoMAE's Kinetics test views, evaluation only): every frame_step-th frame of the whole
  video (the last repeated up to num_frames), and S windows of num_frames consecutive ones whose
  starts int(s * (L - num_frames) / (S - 1)) spread from the first to the last; S = 1 takes the centre.
- "tsn" (VideoMAE's SSv2 loader, TSN segments): the video is cut into num_frames equal segments and
  one frame is taken from each, so a clip covers the whole video whatever its length (frame_step is
  not used). Training: a random frame per segment; evaluation: frame int(tick * (x + s / S)) of
  segment x for view s, tick = length / num_frames (S = 2: the segment starts, then their midpoints).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vjepa.infra.config import FieldError, check_range


METHODS = ("window", "spread", "tsn")


@dataclass
class ClipSampling:
    """How clips are cut from a video: S = num_segments clips of num_frames frames each."""

    num_frames: int = 16
    frame_step: int = 4
    clip_duration: float | None = None  # seconds; when set, frame_step = int(duration * fps / num_frames)
    fps: float | None = None  # V-JEPA 2's `data.fps`; when set, frame_step = ceil(video fps) // fps
    num_segments: int = 1
    random: bool = True  # True for training; False for deterministic evaluation
    allow_overlap: bool = False  # official frozen evals: True
    eval_window: str = "center"  # random=False and a long partition: "center" (ours) or "start" (official)
    method: str = "window"  # "window" (official, above) | "spread" (VideoMAE K400 test) | "tsn" (VideoMAE SSv2)

    def validate(self) -> None:
        check_range(self, "num_frames", "frame_step", "num_segments", ge=1)
        if self.clip_duration is not None and self.clip_duration <= 0:
            raise FieldError("clip_duration", f"must be positive seconds, got {self.clip_duration}")
        if self.fps is not None and self.fps <= 0:
            raise FieldError("fps", f"must be positive frames per second, got {self.fps}")
        if self.fps is not None and self.clip_duration is not None:
            raise FieldError("fps", "set fps or clip_duration, not both (each fixes the frame step)")
        if self.eval_window not in ("center", "start"):
            raise FieldError("eval_window", f"must be 'center' or 'start', got {self.eval_window!r}")
        if self.method not in METHODS:
            raise FieldError("method", f"must be one of {METHODS}, got {self.method!r}")
        if self.method == "spread" and self.random:
            raise ValueError(
                "method 'spread' builds evaluation views; set random: false (train with 'window' or 'tsn')"
            )


def clip_window(start: int, clip_len: int, num_frames: int) -> np.ndarray:
    """num_frames indices spread over [start, start + clip_len): floor of a clipped linspace."""
    end = start + clip_len
    return np.clip(np.linspace(start, end, num_frames), start, end - 1).astype(np.int64)


def _padded(length: int, num_points: int, num_frames: int, last: int) -> np.ndarray:
    """linspace(0, length, num_points) padded with `length` up to num_frames, clipped to `last`."""
    idx = np.concatenate([np.linspace(0, length, num_points), np.full(num_frames - num_points, length)])
    return np.clip(idx, 0, last).astype(np.int64)


def frame_step_for(cfg: ClipSampling, fps: float | None) -> int:
    """The frame step: fixed, or from the video's frame rate and clip_duration or cfg.fps."""
    if cfg.clip_duration is None and cfg.fps is None:
        return cfg.frame_step
    if not fps or fps <= 0:
        raise ValueError(
            f"{'clip_duration' if cfg.fps is None else 'fps'} needs the video's frame rate, which is unknown"
        )
    if cfg.fps is not None:  # V-JEPA 2's loadvideo_decord: the source rate rounded up, floor-divided
        step = int(math.ceil(fps) // cfg.fps)
        if step < 1:
            raise ValueError(f"the video runs at {fps:.3g} fps, slower than the {cfg.fps:g} fps asked for")
        return step
    step = int(cfg.clip_duration * fps / cfg.num_frames)
    if step < 1:
        raise ValueError(
            f"clip_duration {cfg.clip_duration}s at {fps:.3g} fps gives fewer than "
            f"{cfg.num_frames} frames; shorten num_frames or lengthen clip_duration"
        )
    return step


def clip_indices(
    num_video_frames: int, cfg: ClipSampling, rng: np.random.Generator | None = None, fps: float | None = None
) -> list[np.ndarray]:
    """One int64 array of cfg.num_frames frame indices per segment (S arrays)."""
    n, fpc, S = int(num_video_frames), cfg.num_frames, cfg.num_segments
    if n < S:
        raise ValueError(f"video has {n} frames, fewer than the {S} segments asked for")
    if cfg.method == "tsn":
        return tsn_indices(n, fpc, S, rng if cfg.random else None, cfg.random)
    step = frame_step_for(cfg, fps)
    if cfg.method == "spread":
        return spread_indices(n, fpc, step, S)
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


def spread_indices(num_video_frames: int, num_frames: int, frame_step: int, num_views: int) -> list[np.ndarray]:
    """VideoMAE's Kinetics test views: windows of num_frames consecutive frames of the video
    subsampled every frame_step frames, with starts spread evenly from its first to its last window."""
    sub = np.arange(0, num_video_frames, frame_step)
    if len(sub) < num_frames:  # short video: repeat its last sampled frame
        sub = np.concatenate([sub, np.full(num_frames - len(sub), sub[-1])])
    spare = len(sub) - num_frames
    if num_views == 1:  # VideoMAE divides by S - 1 here; one view takes the centre window
        starts = [spare // 2]
    else:
        starts = [int(s * max(spare / (num_views - 1), 0)) for s in range(num_views)]
    return [sub[t : t + num_frames].astype(np.int64) for t in starts]


def tsn_indices(
    num_video_frames: int,
    num_frames: int,
    num_views: int = 1,
    rng: np.random.Generator | None = None,
    random: bool = False,
) -> list[np.ndarray]:
    """TSN sampling (VideoMAE's SSv2 loader): num_frames equal segments of the whole video, one frame
    from each. random: a uniform frame inside each segment per view; else view s of S takes frame
    int(tick * x + tick * s / S) of segment x (tick = n / num_frames)."""
    n = int(num_video_frames)
    if random:
        if rng is None:
            raise ValueError("random TSN sampling needs an rng")
        seg = n // num_frames
        out = []
        for _ in range(num_views):
            if seg > 0:
                out.append(np.arange(num_frames) * seg + rng.integers(0, seg, size=num_frames))
            else:  # fewer frames than segments: VideoMAE repeats frame 0 (a still clip); we draw sorted frames
                out.append(np.sort(rng.integers(0, n, size=num_frames)))
        return [o.astype(np.int64) for o in out]
    tick = n / float(num_frames)
    return [
        np.array([int(tick * x + tick * s / num_views) for x in range(num_frames)], dtype=np.int64)
        for s in range(num_views)
    ]
