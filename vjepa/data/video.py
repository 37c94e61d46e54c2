"""Decoding clips with decord or PyAV, every file either decoded right or refused.

Readers are opened per call, inside the DataLoader worker that needs them: a decord reader opened
in the parent and used in forked workers aborts the worker.

Before any pixel is decoded, PyAV demuxes the file's packets once (no decoding) to index its frames
(presentation order, as decord numbers them) and to check the container against itself: a
packet the demuxer flags as corrupt or cut short, fewer packets than the frames the container
declares, or (where no frame count is declared) fewer frames than its declared duration holds, or
a demuxer error, all refuse the file (VideoDecodeError). What this cannot see is in
docs/videos-and-loader.md ("Broken files").

Backends (`backend`, per run; DEFAULT_BACKEND, "pyav", everywhere unless a run says otherwise):
- "pyav": seeks to the keyframe before the clip, decodes only up to its last frame (frames that no
  other frame references and the clip does not need are skipped by the decoder, `skip_frame`),
  converts only the clip's frames to RGB, and refuses the clip on a decoder error or a frame the
  decoder flags as corrupt. The RGB frames are the same bytes as decord's (pinned by a test).
- "decord" (the official loader's library): used for the pixels; a file decord cannot open, whose
  frame count it reads differently from the demuxer, whose frames it cannot copy (widths
  DECORD_BROKEN_WIDTHS) or returns in another shape is decoded with PyAV instead, and the result
  says so (`fallback`), so that datasets can count such files. decord conceals decoder errors:
  damaged packets inside the clip are only refused by the "pyav" backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from vjepa.data.sampling import ClipSampling, clip_indices
from vjepa.infra.configs import BACKENDS, DEFAULT_BACKEND


class VideoDecodeError(RuntimeError):
    """A video cannot be opened or decoded (zero bytes, truncated, broken container, too short)."""


def _last_line(e: BaseException) -> str:
    lines = [x for x in str(e).splitlines() if x.strip()]
    return lines[-1].strip() if lines else type(e).__name__


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"video_backend must be one of {BACKENDS}, got {backend!r}")
    return backend


@dataclass
class VideoIndex:
    """A video stream's frames as the demuxer finds them: presentation timestamps in order (frame i
    has pts[i]), the keyframes' pts, the frame rate and the frame size."""

    pts: np.ndarray
    key_pts: np.ndarray
    fps: float
    height: int
    width: int
    declared_over: int = 0  # frames the container declares beyond those it holds (tolerated: DECLARED_SLACK)

    def __len__(self) -> int:
        return len(self.pts)

    @property
    def frame_bytes(self) -> int:
        return self.height * self.width * 3


_ERROR = 16  # FFmpeg's AV_LOG_ERROR; lower numbers are worse

# Frames a container may declare beyond those it holds and still be read, as players read it: muxers
# (OpenCV's own box.mp4 sample among them) count one frame more than they write. A file short by
# more is truncated and refused; one within the slack is decoded and counted (`declared_over`).
DECLARED_SLACK = 1


def _errors(logs) -> list[str]:
    return [f"{name}: {msg.strip()}" for level, name, msg in logs if level <= _ERROR]


def _open_av(path: str, num_threads: int):
    import av
    import av.logging

    if av.logging.get_level() is None:  # route FFmpeg's messages through PyAV, so Capture sees them
        av.logging.set_level(av.logging.ERROR)

    container = av.open(path, metadata_errors="ignore")
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(f"{path}: no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "SLICE"  # no frame threads: skip_frame then applies to the packet just sent
    stream.thread_count = max(int(num_threads), 1)
    return container, stream


def index_video(container, stream, path: str) -> VideoIndex:
    """Demux every packet of the stream (no decoding); raise VideoDecodeError where the container
    shows the file is cut short or damaged."""
    pts, keys = [], []
    for p in container.demux(stream):
        if p.size == 0 or p.is_discard:  # the flush packet; frames an edit list drops
            continue
        if p.is_corrupt:
            raise VideoDecodeError(
                f"{path}: damaged or truncated: the packet at byte {p.pos} is cut short or "
                "flagged corrupt by the demuxer"
            )
        t = packet_time(p)
        if t is None:
            raise VideoDecodeError(f"{path}: packets without timestamps; frames cannot be located")
        pts.append(t)
        if p.is_keyframe:
            keys.append(t)
    n = len(pts)
    rate = stream.average_rate or stream.guessed_rate
    fps = float(rate) if rate else 0.0
    declared = int(stream.frames or 0)
    if declared and n < declared - DECLARED_SLACK:
        raise VideoDecodeError(
            f"{path}: truncated: the container declares {declared} frames, {n} are in the file "
            f"(up to {DECLARED_SLACK} missing is tolerated)"
        )
    if not declared and fps > 0:
        # the stream's own duration (Matroska: its DURATION tag) to half a frame; else the container's,
        # which is the longest stream's (audio may outlast the video), loosely
        dur, slack = _stream_seconds(stream), 0.5
        if dur is None and container.duration:
            dur = container.duration / 1e6
            slack = max(2.0, 0.02 * dur * fps)
        if dur and n < dur * fps - slack:
            raise VideoDecodeError(
                f"{path}: truncated: the container declares {dur:.3f} s ({dur * fps:.1f} frames "
                f"at {fps:.3g} fps), {n} frames are in the file"
            )
    if n == 0:
        raise VideoDecodeError(f"{path}: no frames")
    if not keys:
        raise VideoDecodeError(f"{path}: no keyframe: the frames cannot be decoded")
    return VideoIndex(
        np.sort(np.asarray(pts, dtype=np.int64)),
        np.sort(np.asarray(keys, dtype=np.int64)),
        fps,
        int(stream.height),
        int(stream.width),
        max(declared - n, 0),
    )


def packet_time(packet) -> int | None:
    """A packet's timestamp, which frames are located by: its pts, else its dts."""
    return packet.pts if packet.pts is not None else packet.dts


def skip_mode(packet, want) -> str:
    """The decoder's skip_frame for `packet` when the clip needs the frames whose timestamps are in
    `want`: frames nothing refers to are skipped unless the clip needs them (the same pixels: pinned
    by a test); the flush packet and packets without timestamps are decoded."""
    t = packet_time(packet)
    return "DEFAULT" if (t is None or t in want or packet.size == 0) else "NONREF"


def _stream_seconds(stream) -> float | None:
    if stream.duration:
        return float(stream.duration * stream.time_base)
    tag = (stream.metadata or {}).get("DURATION")  # Matroska, e.g. "00:00:03.600000000"
    try:
        h, m, sec = tag.split(":")
        return int(h) * 3600 + int(m) * 60 + float(sec)
    except (AttributeError, ValueError):
        return None


def _decode_av(container, stream, index: VideoIndex, frames: np.ndarray, path: str) -> np.ndarray:
    """uint8 [len(frames), H, W, 3] of the given frame numbers (any order, repeats allowed). An
    FFmpeg error logged while decoding a packet the clip depends on (from the clip's keyframe on;
    not the leading frames of an open GOP, which it does not use) refuses the clip: H.264 decoders
    conceal most damage and return frames anyway."""
    import av
    import av.logging
    from av.video.reformatter import VideoReformatter

    order = np.unique(frames)
    want = {int(index.pts[i]): k for k, i in enumerate(order)}
    first = int(index.pts[order[0]])
    start = index.key_pts[max(np.searchsorted(index.key_pts, first, side="right") - 1, 0)]
    out = np.empty((len(order), index.height, index.width, 3), dtype=np.uint8)
    got, missing = np.zeros(len(order), dtype=bool), len(order)
    cc = stream.codec_context
    # one converter for the clip, on this thread: frame.to_ndarray(format=...) builds a new one per
    # frame with a thread per CPU, 3 to 5x the time of converting (the same bytes: pinned by a test)
    rgb = VideoReformatter()
    for attempt in range(2):  # a seek that lands past the keyframe asked for: decode from the start
        container.seek(
            int(start) if attempt == 0 else int(index.key_pts[0]), stream=stream, backward=True, any_frame=False
        )
        cc.flush_buffers()
        done = False
        try:
            with av.logging.Capture() as logs:
                for packet in container.demux(stream):
                    t = packet_time(packet)
                    cc.skip_frame = skip_mode(packet, want)
                    seen = len(logs)
                    decoded = packet.decode()
                    if len(logs) > seen and (t is None or t >= start) and _errors(logs[seen:]):
                        raise VideoDecodeError(
                            f"{path}: damaged: decoding the clip's packets: {_errors(logs[seen:])[0]}"
                        )
                    if decoded:
                        missing -= _scan(decoded, want, order, index, out, got, path, rgb)
                    if missing == 0:
                        done = True
                        break
        except av.error.FFmpegError as e:
            raise VideoDecodeError(f"{path}: decoder error on the clip's packets: {_last_line(e)}") from None
        finally:
            cc.skip_frame = "DEFAULT"
        if done:
            break
    if not got.all():
        raise VideoDecodeError(f"{path}: frames {order[~got].tolist()} listed by the container did not decode")
    if len(order) == len(frames) and (order == frames).all():  # the usual clip: in order, no repeats
        return out
    return out[np.searchsorted(order, frames)]


def _scan(decoded, want, order, index, out, got, path, rgb) -> int:
    """Copy the wanted frames among `decoded` into out; how many were not in before (a count,
    not got.all() per packet: that numpy call cost 3 ms of a clip's 130)."""
    new = 0
    for f in decoded:
        k = want.get(f.pts)
        if k is None:
            continue
        if f.is_corrupt:
            raise VideoDecodeError(f"{path}: damaged: the decoder flags frame {order[k]} corrupt")
        if (f.height, f.width) != (index.height, index.width):
            raise VideoDecodeError(
                f"{path}: frame {order[k]} is {f.width}x{f.height}, the stream {index.width}x{index.height}"
            )
        out[k] = rgb.reformat(f, format="rgb24", threads=1).to_ndarray()
        new += not got[k]
        got[k] = True
    return new


class DecodedClips(NamedTuple):
    frames: np.ndarray  # uint8 [S*T, H, W, 3]
    indices: list[np.ndarray]  # per segment
    fallback: str | None  # why decord's result was replaced by PyAV's (None: not replaced)
    declared_over: int = 0  # frames the container declares but does not hold (within DECLARED_SLACK)


def _check_shape(frames: np.ndarray, cfg: ClipSampling, path: str) -> None:
    if frames.ndim != 4 or frames.shape[0] != cfg.num_segments * cfg.num_frames or frames.shape[-1] != 3:
        raise VideoDecodeError(
            f"{path}: decoded an array of shape {frames.shape}, expected [{cfg.num_segments * cfg.num_frames}, H, W, 3]"
        )


def _decord_frames(
    path: str, index: VideoIndex, frames: np.ndarray, num_threads: int
) -> tuple[np.ndarray | None, str | None]:
    """decord's frames, or (None, why) when decord cannot open the file, reads it differently from
    the demuxer, cannot copy its frames or returns another shape."""
    from decord import DECORDError, VideoReader, cpu

    try:
        vr = VideoReader(path, ctx=cpu(0), num_threads=num_threads)
        if len(vr) != len(index):
            return None, f"decord counts {len(vr)} frames, the demuxer {len(index)}"
        out = vr.get_batch(frames.tolist()).asnumpy()
    except (DECORDError, RuntimeError, OSError, IndexError) as e:
        why = _last_line(e)
        if "size must exactly match" in str(e):
            why = f"decord 0.6 cannot copy frames {index.width} pixels wide"
        return None, f"decord: {why}"
    if out.shape != (len(frames), index.height, index.width, 3):
        return None, f"decord returned frames of shape {out.shape[1:]}, the stream is {index.height}x{index.width}"
    return out, None


def video_frames(
    path: str,
    frames: np.ndarray,
    index: VideoIndex,
    container,
    stream,
    backend: str = DEFAULT_BACKEND,
    num_threads: int = 1,
) -> tuple[np.ndarray, str | None]:
    """uint8 [len(frames), H, W, 3] and the fallback reason (None when `backend` decoded them)."""
    why = None
    if backend == "decord":
        out, why = _decord_frames(path, index, frames, num_threads)
        if out is not None:
            return out, None
    return _decode_av(container, stream, index, frames, path), why


def with_index(path: str, num_threads: int, fn):
    """Open the file with PyAV, index it and run fn(container, stream, index); PyAV and OS errors
    become VideoDecodeError naming the file."""
    import av
    import av.logging

    try:
        container, stream = _open_av(path, num_threads)
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise VideoDecodeError(f"{path}: cannot open: {_last_line(e)}") from None
    try:
        with av.logging.Capture() as logs:
            index = index_video(container, stream, path)
        if _errors(logs):  # e.g. Matroska's "File ended prematurely": a packet lost without a flag
            raise VideoDecodeError(f"{path}: damaged or truncated: the demuxer reports {_errors(logs)[0]}")
        return fn(container, stream, index)
    except av.error.FFmpegError as e:
        raise VideoDecodeError(f"{path}: cannot decode: {_last_line(e)}") from None
    finally:
        container.close()


def video_info(path: str, num_threads: int = 1) -> tuple[int, float, tuple[int, int]]:
    """(number of frames, frames per second, (height, width)) of a video file, after the checks."""
    return with_index(path, num_threads, lambda c, s, ix: (len(ix), ix.fps, (ix.height, ix.width)))


class FrameCache:
    """Whole decoded videos kept in memory (per process) within a byte budget, for small datasets
    read many times (the CPU profile's pretraining): the same frames as decoding each clip, since the
    clip indices are drawn the same way, without the per-clip open and seek. A video larger than
    what is left of the budget is not cached (its clips are decoded one by one)."""

    def __init__(self, max_bytes: int):
        self.max_bytes, self.bytes, self.videos = int(max_bytes), 0, {}
        self.too_big: set[str] = set()

    def get(
        self, path: str, num_threads: int, backend: str = DEFAULT_BACKEND
    ) -> tuple[np.ndarray, float, str | None, int] | None:
        if path in self.videos:
            return self.videos[path]
        if path in self.too_big or self.bytes >= self.max_bytes:
            return None

        def whole(container, stream, index):
            need = len(index) * index.frame_bytes
            if self.bytes + need > self.max_bytes:
                self.too_big.add(path)
                return None
            frames, why = video_frames(path, np.arange(len(index)), index, container, stream, backend, num_threads)
            return frames, index.fps, why, index.declared_over

        got = with_index(path, num_threads, whole)
        if got is not None:
            self.videos[path] = got
            self.bytes += got[0].nbytes
        return got


def decode_clips(
    path: str,
    cfg: ClipSampling,
    rng: np.random.Generator | None = None,
    num_threads: int = 1,
    cache: FrameCache | None = None,
    backend: str = DEFAULT_BACKEND,
) -> DecodedClips:
    """Decode the cfg.num_segments clips of one video (checked as the module docstring says)."""
    check_backend(backend)

    def indices(n: int, fps: float) -> list[np.ndarray]:
        if n < cfg.num_segments:
            raise VideoDecodeError(f"{path}: has {n} frames, fewer than the {cfg.num_segments} segments asked for")
        try:
            return clip_indices(n, cfg, rng, fps)  # frame_step_for reads the rate only when the clip asks for it
        except ValueError as e:
            raise VideoDecodeError(f"{path}: {e}") from None

    cached = cache.get(path, num_threads, backend) if cache is not None else None
    if cached is not None:
        all_frames, fps, why, over = cached
        idx = indices(len(all_frames), fps)
        frames = all_frames[np.concatenate(idx)]
    else:

        def clips(container, stream, index):
            idx = indices(len(index), index.fps)
            return (
                *video_frames(path, np.concatenate(idx), index, container, stream, backend, num_threads),
                idx,
                index.declared_over,
            )

        frames, why, idx, over = with_index(path, num_threads, clips)
    _check_shape(frames, cfg, path)
    return DecodedClips(frames, idx, why, over)


def read_clips(
    path: str,
    cfg: ClipSampling,
    rng: np.random.Generator | None = None,
    num_threads: int = 1,
    cache: FrameCache | None = None,
    backend: str = DEFAULT_BACKEND,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Decode the cfg.num_segments clips of one video: (uint8 [S*T, H, W, 3], per-segment indices)."""
    got = decode_clips(path, cfg, rng, num_threads, cache, backend)
    return got.frames, got.indices


class VideoFile:
    """One video opened and indexed once for many reads, as a long video cut into windows needs:
    its frame count, average frame rate, each frame's presentation time in seconds (from the
    container's timestamps, so variable frame rates are timed right), and frames by index, with
    the same checks and decord-to-PyAV fallback as the clip decoder."""

    def __init__(self, path: str, num_threads: int = 1, backend: str = DEFAULT_BACKEND):
        import av
        import av.logging

        self.path, self.num_threads, self.backend = str(path), num_threads, check_backend(backend)
        self.fallbacks: list[str] = []
        try:
            self._container, self._stream = _open_av(self.path, num_threads)
        except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
            raise VideoDecodeError(f"{path}: cannot open: {_last_line(e)}") from None
        try:
            with av.logging.Capture() as logs:
                self.index = index_video(self._container, self._stream, self.path)
            if _errors(logs):
                raise VideoDecodeError(f"{path}: damaged or truncated: the demuxer reports {_errors(logs)[0]}")
        except av.error.FFmpegError as e:
            self.close()
            raise VideoDecodeError(f"{path}: cannot decode: {_last_line(e)}") from None
        except VideoDecodeError:
            self.close()
            raise
        self.fps = self.index.fps
        self.time_base = self._stream.time_base  # a Fraction: the resolution of the frames' times

    def __len__(self) -> int:
        return len(self.index)

    def times(self) -> np.ndarray:
        """float64 [num_frames]: the start time of each frame in seconds, from the stream's start."""
        start = self._stream.start_time if self._stream.start_time is not None else int(self.index.pts[0])
        return (self.index.pts - start).astype(np.float64) * float(self._stream.time_base)

    def frames(self, indices) -> np.ndarray:
        """uint8 [K, H, W, 3] of the frames at `indices`."""
        import av

        try:
            out, why = video_frames(
                self.path,
                np.asarray(indices, dtype=np.int64),
                self.index,
                self._container,
                self._stream,
                self.backend,
                self.num_threads,
            )
        except av.error.FFmpegError as e:
            raise VideoDecodeError(f"{self.path}: cannot decode: {_last_line(e)}") from None
        if why is not None and why not in self.fallbacks:
            self.fallbacks.append(why)
        return out

    def close(self) -> None:
        self._container.close()
