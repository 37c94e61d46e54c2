"""Features of a frozen V-JEPA encoder for one's own videos, of any length, resolution and frame rate.

Each video is cut into sliding windows of the model's clip (num_frames frames, frame_step apart,
so a window spans num_frames * frame_step frames); a window starts every `stride` frames, or every
`stride` seconds of presentation time (the first frame at or after each multiple, so variable frame
rates are timed by their timestamps). Windows that would run past the end are not taken; a video
shorter than one window gives one window whose last frame repeats. Each window goes through the
single-view evaluation transform (short side resized, centre crop, ImageNet normalisation) and the
encoder; its tokens are mean-pooled (`mean`), kept (`tokens`, [N, D] per window) or pooled by an
attentive probe's query (`probe`, the pooler's [D] feature before its linear layer).

Writes, under the output folder: `<name>.npy` per video (float32 [windows, ...]) or one
`features.npz` (format `npz`, one array per video), the window index `windows.csv` (video, file,
row, window, first/last frame, their times in seconds; `.parquet` by option) and `skipped.txt` (each
undecodable video and why). Command line: `python -m vjepa.extract VIDEO_OR_LIST --checkpoint X --out DIR`.
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from vjepa.data.transforms import eval_transform
from vjepa.data.video import VideoDecodeError, VideoFile
from vjepa.runtime import PRECISIONS, autocast_for

POOLINGS = ("mean", "tokens", "probe")


@dataclass
class ExtractConfig:
    """How windows are cut and pooled."""

    frame_step: int = 4                 # frames between a window's frames (paper 4; the default profile 2)
    stride: float | None = None         # between window starts; null: one window span (no overlap)
    stride_unit: str = "frames"         # "frames" | "seconds"
    pooling: str = "mean"               # "mean" | "tokens" | "probe"
    img_size: int | None = None         # null: the encoder's resolution
    resize_ratio: float = 256 / 224     # short side to img_size * ratio before the centre crop (official 1 view)
    batch_size: int = 8                 # windows per encoder call
    precision: str = "fp32"             # "fp32" | "bf16" | "fp16" (autocast, as everywhere; features stored as float32)
    device: str | None = None           # null: cuda when available, else cpu
    decode_threads: int = 1

    def validate(self) -> None:
        if self.frame_step < 1 or self.batch_size < 1:
            raise ValueError("frame_step and batch_size must be >= 1")
        if self.stride is not None and self.stride <= 0:
            raise ValueError(f"stride must be > 0, got {self.stride}")
        if self.stride_unit not in ("frames", "seconds"):
            raise ValueError(f"stride_unit must be 'frames' or 'seconds', got {self.stride_unit!r}")
        if self.stride_unit == "frames" and self.stride is not None and self.stride != int(self.stride):
            raise ValueError(f"a stride in frames must be a whole number, got {self.stride}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {self.precision!r}")


def window_starts(times: np.ndarray, span: int, stride: float | None, unit: str = "frames") -> np.ndarray:
    """First frame of each window of `span` frames in a video whose frames start at `times` (s)."""
    n = len(times)
    if n <= span:
        return np.zeros(1, dtype=np.int64)
    last = n - span  # the last start that still fits
    if stride is None:
        return np.arange(0, last + 1, span, dtype=np.int64)
    if unit == "frames":
        return np.arange(0, last + 1, int(stride), dtype=np.int64)
    targets = times[0] + stride * np.arange(math.floor((times[last] - times[0]) / stride) + 1)
    # the first frame at or after each target time (a tiny tolerance for float timestamps)
    starts = np.searchsorted(times, targets - 1e-9, side="left")
    return np.unique(starts[starts <= last]).astype(np.int64)


def window_indices(start: int, num_frames: int, frame_step: int, num_video_frames: int) -> np.ndarray:
    """The num_frames frame indices of the window starting at `start` (the last frame repeats past the end)."""
    return np.minimum(start + frame_step * np.arange(num_frames), num_video_frames - 1).astype(np.int64)


def _pool(tokens: torch.Tensor, pooling: str, probe: nn.Module | None) -> torch.Tensor:
    if pooling == "mean":
        return tokens.mean(dim=1)
    if pooling == "tokens":
        return tokens
    return probe.pooler(tokens).squeeze(1)


def extract_video(path: str, encoder: nn.Module, cfg: ExtractConfig, probe: nn.Module | None = None,
                  device: torch.device | None = None, progress: bool = False) -> tuple[np.ndarray, pd.DataFrame]:
    """The features of one video's windows (float32 [W, D], or [W, N, D] for `tokens`) and a table
    of the windows (window, first and last frame, their presentation times). Raises VideoDecodeError."""
    cfg.validate()
    if cfg.pooling == "probe" and probe is None:
        raise ValueError("pooling 'probe' needs an attentive probe (probe=...)")
    device = device or next(encoder.parameters()).device
    video = VideoFile(path, cfg.decode_threads)
    times = video.times()
    n, T = len(video), encoder.num_frames
    span = T * cfg.frame_step
    starts = window_starts(times, span, cfg.stride, cfg.stride_unit)
    transform = eval_transform(cfg.img_size or encoder.img_size, 1, cfg.resize_ratio)
    autocast = autocast_for(device, cfg.precision)
    feats, rows = [], []
    bar = tqdm(total=len(starts), desc=Path(path).name, unit="window", leave=False, disable=not progress)
    for b in range(0, len(starts), cfg.batch_size):
        batch = starts[b:b + cfg.batch_size]
        idx = [window_indices(s, T, cfg.frame_step, n) for s in batch]
        wanted = np.unique(np.concatenate(idx))  # decode each frame once, in order
        # the eval transform acts frame by frame, so each decoded frame is transformed once even
        # when overlapping windows share it
        frames = transform(video.frames(wanted))[0]                      # [C, K, size, size]
        pos = {f: k for k, f in enumerate(wanted.tolist())}
        clips = torch.stack([frames[:, [pos[f] for f in i.tolist()]] for i in idx]).to(device)
        with torch.no_grad(), autocast():
            feats.append(_pool(encoder(clips), cfg.pooling, probe).float().cpu())
        for s, i in zip(batch.tolist(), idx):
            end = int(i[-1])
            rows.append({"window": len(rows), "start_frame": s, "end_frame": end, "start_s": float(times[s]),
                         "end_s": float(times[end])})
        bar.update(len(batch))
    bar.close()
    return torch.cat(feats).numpy(), pd.DataFrame(rows)


def read_video_list(path: str | Path) -> list[str]:
    """Video paths, one per line (blank lines and '#' comments skipped); a trailing integer label
    (the path-label list format) is dropped when the whole line is not itself a file."""
    out = []
    for line in Path(path).read_text(encoding="utf-8-sig").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        head, _, tail = line.rpartition(" ")
        out.append(head if head and tail.lstrip("-").isdigit() and not Path(line).is_file() else line)
    return out


def _unique_names(paths: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    names = []
    for p in paths:
        stem = Path(p).stem or "video"
        k = seen.get(stem, 0)
        seen[stem] = k + 1
        names.append(stem if k == 0 else f"{stem}_{k}")
    return names


def extract(videos: Iterable[str], encoder: nn.Module, cfg: ExtractConfig, out_dir: str | Path,
            probe: nn.Module | None = None, fmt: str = "npy", index_name: str = "windows.csv") -> dict:
    """Extract every video's window features into out_dir (see the module docstring); undecodable
    videos are skipped and listed. Returns a summary (videos, windows, skipped [(path, reason)])."""
    cfg.validate()
    if fmt not in ("npy", "npz"):
        raise ValueError(f"format must be 'npy' or 'npz', got {fmt!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    encoder = encoder.to(device).eval()
    probe = probe.to(device).eval() if probe is not None else None
    videos = list(videos)
    arrays, tables, skipped = {}, [], []
    for path, name in tqdm(list(zip(videos, _unique_names(videos))), desc="videos", unit="video"):
        try:
            feats, table = extract_video(path, encoder, cfg, probe, device, progress=True)
        except VideoDecodeError as e:
            skipped.append((path, str(e)))
            continue
        file = "features.npz" if fmt == "npz" else f"{name}.npy"
        if fmt == "npy":
            _save_npy(out / file, feats)
        else:
            arrays[name] = feats
        tables.append(table.assign(video=path, name=name, file=file, row=table["window"]))
    if fmt == "npz" and arrays:
        tmp = out / "features.tmp.npz"
        np.savez(tmp, **arrays)
        tmp.replace(out / "features.npz")
    cols = ["video", "name", "file", "row", "window", "start_frame", "end_frame", "start_s", "end_s"]
    index = pd.concat(tables, ignore_index=True)[cols] if tables else pd.DataFrame(columns=cols)
    tmp = out / f".{index_name}.tmp"
    index.to_parquet(tmp, index=False) if index_name.endswith(".parquet") else index.to_csv(tmp, index=False)
    tmp.replace(out / index_name)
    (out / "skipped.txt").write_text("".join(f"{p}\t{r}\n" for p, r in skipped))
    return {"videos": len(videos) - len(skipped), "windows": len(index), "skipped": skipped,
            "index": str(out / index_name)}


def _save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m vjepa.extract", description=__doc__.split("\n\n")[0])
    p.add_argument("videos", nargs="+", help="video files, or one text file listing videos (one per line)")
    p.add_argument("--checkpoint", required=True, help="official-layout file or released name (vitl16, ...)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--key", default="target_encoder", help="encoder entry of the checkpoint")
    p.add_argument("--num-frames", type=int, help="the encoder's clip length, when its weights do not say")
    p.add_argument("--num-heads", type=int, help="the encoder's heads, for a non-standard width")
    p.add_argument("--frame-step", type=int, default=4)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--stride", type=int, help="frames between window starts (default: one window span)")
    g.add_argument("--stride-seconds", type=float, help="seconds between window starts")
    p.add_argument("--pooling", choices=POOLINGS, default="mean")
    p.add_argument("--probe", help="pooling 'probe': an attentive probe file or released name (vitl16/k400)")
    p.add_argument("--img-size", type=int)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--bf16", action="store_true", help="bf16 autocast")
    p.add_argument("--device")
    p.add_argument("--format", choices=("npy", "npz"), default="npy")
    p.add_argument("--index", default="windows.csv", help="index file name (.csv or .parquet)")
    a = p.parse_args(argv)
    from vjepa.hub import load_encoder, load_probe

    videos = a.videos
    if len(videos) == 1 and Path(videos[0]).suffix.lower() in (".txt", ".csv", ".lst", ".list"):
        videos = read_video_list(videos[0])
    cfg = ExtractConfig(frame_step=a.frame_step, stride=a.stride_seconds or a.stride,
                        stride_unit="seconds" if a.stride_seconds else "frames", pooling=a.pooling,
                        img_size=a.img_size, batch_size=a.batch_size, precision="bf16" if a.bf16 else "fp32", device=a.device)
    encoder = load_encoder(a.checkpoint, key=a.key, num_frames=a.num_frames, num_heads=a.num_heads)
    probe = None
    if a.pooling == "probe":
        if not a.probe:
            p.error("--pooling probe needs --probe")
        probe = load_probe(a.probe, encoder.num_heads)
    summary = extract(videos, encoder, cfg, a.out, probe, a.format, a.index)
    print(f"{summary['videos']} videos, {summary['windows']} windows -> {summary['index']}")
    for path, reason in summary["skipped"]:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    return summary


if __name__ == "__main__":
    main()
