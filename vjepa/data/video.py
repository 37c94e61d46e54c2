"""Decoding clips with decord. A VideoReader is opened per call, inside the DataLoader worker that
needs it: a reader opened in the parent and used in forked workers aborts the worker."""
from __future__ import annotations

import numpy as np

from vjepa.data.sampling import ClipSampling, clip_indices


# decord 0.6.0 cannot return frames of these widths (its copy fails with "The size must exactly match")
DECORD_BROKEN_WIDTHS = (2, 4, 6, 8, 12, 16, 24, 48, 72)


class VideoDecodeError(RuntimeError):
    """A video cannot be opened or decoded (zero bytes, truncated, broken container, too short)."""


def video_info(path: str, num_threads: int = 1) -> tuple[int, float, tuple[int, int]]:
    """(number of frames, frames per second, (height, width)) of a video file."""
    from decord import DECORDError, VideoReader, cpu

    try:
        vr = VideoReader(path, ctx=cpu(0), num_threads=num_threads)
        h, w = vr[0].shape[:2] if len(vr) else (0, 0)
        return len(vr), float(vr.get_avg_fps()), (int(h), int(w))
    except (DECORDError, RuntimeError, OSError, IndexError) as e:
        raise VideoDecodeError(f"{path}: cannot decode: {_last_line(e)}") from None


def _last_line(e: BaseException) -> str:
    lines = [x for x in str(e).splitlines() if x.strip()]
    return lines[-1].strip() if lines else type(e).__name__


class FrameCache:
    """Whole decoded videos kept in memory (per process) up to a byte budget, for small datasets
    read many times (the CPU profile's pretraining): the same frames as decoding each clip, since the
    clip indices are drawn the same way, without decord's per-clip open and seek."""

    def __init__(self, max_bytes: int):
        self.max_bytes, self.bytes, self.videos = int(max_bytes), 0, {}

    def get(self, path: str, num_threads: int) -> tuple[np.ndarray, float] | None:
        if path in self.videos:
            return self.videos[path]
        if self.bytes >= self.max_bytes:
            return None
        from decord import VideoReader, cpu

        vr = VideoReader(path, ctx=cpu(0), num_threads=num_threads)
        frames = vr.get_batch(list(range(len(vr)))).asnumpy()
        self.videos[path] = (frames, float(vr.get_avg_fps()))
        self.bytes += frames.nbytes
        return self.videos[path]


def read_clips(path: str, cfg: ClipSampling, rng: np.random.Generator | None = None,
               num_threads: int = 1, cache: FrameCache | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
    """Decode the cfg.num_segments clips of one video: (uint8 [S*T, H, W, 3], per-segment indices)."""
    from decord import DECORDError, VideoReader, cpu

    try:
        cached = cache.get(path, num_threads) if cache is not None else None
        vr = None if cached is not None else VideoReader(path, ctx=cpu(0), num_threads=num_threads)
        n = len(cached[0]) if cached is not None else len(vr)
        if n < cfg.num_segments:
            raise VideoDecodeError(f"{path}: has {n} frames, fewer than the {cfg.num_segments} segments asked for")
        fps = (cached[1] if cached is not None else float(vr.get_avg_fps())) if cfg.clip_duration is not None else None
        idx = clip_indices(n, cfg, rng, fps)
        if cached is not None:
            frames = cached[0][np.concatenate(idx)]
        else:
            frames = vr.get_batch(np.concatenate(idx).tolist()).asnumpy()
    except (DECORDError, RuntimeError, OSError, IndexError) as e:
        if isinstance(e, VideoDecodeError):
            raise
        hint = (f" (decord 0.6 cannot decode frames {DECORD_BROKEN_WIDTHS} pixels wide; re-encode wider)"
                if "size must exactly match" in str(e) else "")
        raise VideoDecodeError(f"{path}: cannot decode: {_last_line(e)}{hint}") from None
    if frames.ndim != 4 or frames.shape[0] != cfg.num_segments * cfg.num_frames or frames.shape[-1] != 3:
        raise VideoDecodeError(f"{path}: decoded an array of shape {frames.shape}, expected "
                               f"[{cfg.num_segments * cfg.num_frames}, H, W, 3]")
    return frames, idx


class VideoFile:
    """One video opened once for many reads, as a long video cut into windows needs: its frame
    count, average frame rate, each frame's presentation time in seconds (from the container's
    timestamps, so variable frame rates are timed right), and frames by index."""

    def __init__(self, path: str, num_threads: int = 1):
        from decord import DECORDError, VideoReader, cpu

        self.path, self._errors = str(path), (DECORDError, RuntimeError, OSError, IndexError)
        try:
            self._vr = VideoReader(self.path, ctx=cpu(0), num_threads=num_threads)
            self.fps = float(self._vr.get_avg_fps())
        except self._errors as e:
            raise VideoDecodeError(f"{path}: cannot decode: {_last_line(e)}") from None
        if len(self._vr) == 0:
            raise VideoDecodeError(f"{path}: has no video frames")

    def __len__(self) -> int:
        return len(self._vr)

    def times(self) -> np.ndarray:
        """float64 [num_frames]: the start time of each frame, seconds."""
        try:
            return np.asarray(self._vr.get_frame_timestamp(list(range(len(self))))[:, 0], dtype=np.float64)
        except self._errors as e:
            raise VideoDecodeError(f"{self.path}: cannot read frame timestamps: {_last_line(e)}") from None

    def frames(self, indices) -> np.ndarray:
        """uint8 [K, H, W, 3] of the frames at `indices`."""
        try:
            out = self._vr.get_batch(np.asarray(indices, dtype=np.int64).tolist()).asnumpy()
        except self._errors as e:
            hint = (f" (decord 0.6 cannot decode frames {DECORD_BROKEN_WIDTHS} pixels wide; re-encode wider)"
                    if "size must exactly match" in str(e) else "")
            raise VideoDecodeError(f"{self.path}: cannot decode: {_last_line(e)}{hint}") from None
        if out.ndim != 4 or out.shape[0] != len(indices) or out.shape[-1] != 3:
            raise VideoDecodeError(f"{self.path}: decoded an array of shape {out.shape}, expected [{len(indices)}, H, W, 3]")
        return out
