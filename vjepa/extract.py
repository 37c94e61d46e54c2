"""Features of a frozen V-JEPA encoder for one's own videos, of any length, resolution and frame rate.

Each video is cut into sliding windows of the model's clip (num_frames frames, frame_step apart,
so a window spans num_frames * frame_step frames); a window starts every `stride` frames, or every
`stride` seconds of presentation time (the first frame at or after each multiple, so variable frame
rates are timed by their timestamps). Windows that would run past the end are not taken; a video
shorter than one window gives one window whose last frame repeats. Each window goes through the
single-view evaluation transform (short side resized, centre crop, ImageNet normalisation) and the
encoder; its tokens are mean-pooled (`mean`), kept (`tokens`, [N, D] per window) or pooled by an
attentive probe's query (`probe`, the pooler's [D] feature before its linear layer).

Inputs are video files, folders (searched recursively for the video extensions, `--ext`) or one
text file listing videos. Each output is named by the video's path relative to the inputs' common
folder (`a/clip.mp4` -> `a/clip.npy`, the extension kept where two names would otherwise meet), so
no two videos share a file; an existing output is never overwritten. Anything that is not a regular
file (a FIFO, a device) is skipped unread.

The clip (frames, frame step or V-JEPA 2's frames per second, resolution) is the one the checkpoint
says the encoder was trained on where it records it; an option that differs from it is used, with a
warning, and where the checkpoint records nothing the options' defaults are used, with a warning.

Writes, under the output folder: `<name>.npy` per video (float32 [windows, ...]) or one
`features.npz` (format `npz`, one array per video), the window index `windows.csv` (video, file,
row, window, first/last frame, their times in seconds rounded to the stream's time base; `.parquet`
by option) and `skipped.txt` (each unreadable video and why). Exits non-zero when no video was
extracted. Command line: `python -m vjepa.extract VIDEO_FOLDER_OR_LIST --checkpoint X --out DIR`.
"""

from __future__ import annotations

import argparse
import math
import os
import stat
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from vjepa.infra.runtime import CheckpointError
from vjepa.data.transforms import eval_transform
from vjepa.data.sampling import ClipSampling, frame_step_for
from vjepa.data.video import VideoDecodeError, VideoFile
from vjepa.infra.runtime import PRECISIONS, autocast_for

POOLINGS = ("mean", "tokens", "probe")
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts")
FRAME_STEP = 4  # the paper's, used when the checkpoint does not record the one it was trained with


@dataclass
class ExtractConfig:
    """How windows are cut and pooled."""

    frame_step: int = 4  # frames between a window's frames (paper 4; the default profile 2)
    fps: float | None = None  # V-JEPA 2's sampling: set, each video's step is ceil(its fps) // fps
    stride: float | None = None  # between window starts; null: one window span (no overlap)
    stride_unit: str = "frames"  # "frames" | "seconds"
    pooling: str = "mean"  # "mean" | "tokens" | "probe"
    img_size: int | None = None  # null: the encoder's resolution
    resize_ratio: float = 256 / 224  # short side to img_size * ratio before the centre crop (official 1 view)
    batch_size: int = 8  # windows per encoder call
    precision: str = "fp32"  # "fp32" | "bf16" | "fp16" (autocast, as everywhere; features stored as float32)
    device: str | None = None  # null: cuda when available, else cpu
    decode_threads: int = 1

    def validate(self) -> None:
        if self.frame_step < 1 or self.batch_size < 1:
            raise ValueError("frame_step and batch_size must be >= 1")
        if self.fps is not None and self.fps <= 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")
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


def check_clip_shape(encoder: nn.Module, cfg: ExtractConfig) -> None:
    """Refuse a clip the encoder cannot tokenise: a size that is not a whole number of its patches."""
    size, patch = cfg.img_size or encoder.img_size, encoder.patch_size
    if size % patch:
        raise ValueError(
            f"img_size {size}: the encoder cuts frames into {patch}px patches, so the clip's size must be "
            f"a multiple of {patch} (its training size is {encoder.img_size}px)"
        )


def _round_to(times: np.ndarray, time_base) -> np.ndarray:
    """Seconds rounded to the decimals that the stream's time base can express (1/1000: ms), so that
    float noise of pts * time_base does not reach the index (0.30000000000000004 -> 0.3)."""
    den = time_base.denominator if time_base else 0
    return np.round(times, max(math.ceil(math.log10(den)), 0)) if den > 1 else times


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


def extract_video(
    path: str,
    encoder: nn.Module,
    cfg: ExtractConfig,
    probe: nn.Module | None = None,
    device: torch.device | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, pd.DataFrame]:
    """The features of one video's windows (float32 [W, D], or [W, N, D] for `tokens`) and a table
    of the windows (window, first and last frame, their presentation times). Raises VideoDecodeError."""
    cfg.validate()
    if cfg.pooling == "probe" and probe is None:
        raise ValueError("pooling 'probe' needs an attentive probe (probe=...)")
    check_clip_shape(encoder, cfg)
    device = device or next(encoder.parameters()).device
    video = VideoFile(path, cfg.decode_threads)
    times = _round_to(video.times(), video.time_base)
    n, T = len(video), encoder.num_frames
    try:
        step = frame_step_for(ClipSampling(num_frames=T, frame_step=cfg.frame_step, fps=cfg.fps), video.fps)
    except ValueError as e:
        raise VideoDecodeError(f"{path}: {e}") from None
    span = T * step
    starts = window_starts(times, span, cfg.stride, cfg.stride_unit)
    transform = eval_transform(cfg.img_size or encoder.img_size, 1, cfg.resize_ratio)
    autocast = autocast_for(device, cfg.precision)
    feats, rows = [], []
    bar = tqdm(total=len(starts), desc=Path(path).name, unit="window", leave=False, disable=not progress)
    for b in range(0, len(starts), cfg.batch_size):
        batch = starts[b : b + cfg.batch_size]
        idx = [window_indices(s, T, step, n) for s in batch]
        wanted = np.unique(np.concatenate(idx))  # decode each frame once, in order
        # the eval transform acts frame by frame, so each decoded frame is transformed once even
        # when overlapping windows share it
        frames = transform(video.frames(wanted))[0]  # [C, K, size, size]
        pos = {f: k for k, f in enumerate(wanted.tolist())}
        clips = torch.stack([frames[:, [pos[f] for f in i.tolist()]] for i in idx]).to(device)
        with torch.no_grad(), autocast():
            feats.append(_pool(encoder(clips), cfg.pooling, probe).float().cpu())
        for s, i in zip(batch.tolist(), idx):
            end = int(i[-1])
            rows.append(
                {
                    "window": len(rows),
                    "start_frame": s,
                    "end_frame": end,
                    "start_s": float(times[s]),
                    "end_s": float(times[end]),
                }
            )
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


def find_videos(
    inputs: Iterable[str], extensions: Iterable[str] = VIDEO_EXTENSIONS
) -> tuple[list[str], list[tuple[str, str]]]:
    """(videos, skipped [(path, why)]) of files and folders: a folder gives its files with one of
    `extensions` (any depth, sorted); a path that is missing or not a regular file (a FIFO, which
    would block the reader, a device) is skipped, as is the same file given twice."""
    exts = tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)
    videos, skipped, seen = [], [], set()

    def add(p: str) -> None:
        try:
            mode = os.stat(p).st_mode
        except OSError as e:
            skipped.append((p, f"not found ({e.strerror})"))
            return
        if not stat.S_ISREG(mode):
            skipped.append((p, "not a regular file (a FIFO, socket or device is not read)"))
        elif os.path.realpath(p) in seen:
            skipped.append((p, "given twice; extracted once"))
        else:
            seen.add(os.path.realpath(p))
            videos.append(p)

    for item in inputs:
        if os.path.isdir(item):
            found = sorted(str(f) for f in Path(item).rglob("*") if f.suffix.lower() in exts and not f.is_dir())
            if not found:
                skipped.append((item, f"a folder with no {'/'.join(exts)} file"))
            for f in found:
                add(f)
        else:
            add(item)
    return videos, skipped


def output_names(videos: list[str]) -> list[str]:
    """Each video's name under the output folder: its path relative to the videos' common folder,
    without its extension unless two videos would then share a name (a/clip.mp4, a/clip.webm)."""
    if not videos:
        return []
    full = [os.path.abspath(v) for v in videos]
    root = os.path.commonpath([os.path.dirname(f) for f in full])
    rel = [Path(os.path.relpath(f, root)).as_posix() for f in full]
    stems = [str(Path(r).with_suffix("")) if Path(r).suffix else r for r in rel]
    clash = {n for n in stems if stems.count(n) > 1}
    return [r if n in clash else n for r, n in zip(rel, stems)]


def extract(
    videos: Iterable[str],
    encoder: nn.Module,
    cfg: ExtractConfig,
    out_dir: str | Path,
    probe: nn.Module | None = None,
    fmt: str = "npy",
    index_name: str = "windows.csv",
    skipped: list[tuple[str, str]] | None = None,
) -> dict:
    """Extract every video's window features into out_dir (see the module docstring); unreadable
    videos are skipped and listed (after `skipped`, those the caller already set aside). Refuses,
    before reading any video, to overwrite an existing output. Returns a summary (videos, windows,
    skipped [(path, reason)], index)."""
    cfg.validate()
    check_clip_shape(encoder, cfg)
    if fmt not in ("npy", "npz"):
        raise ValueError(f"format must be 'npy' or 'npz', got {fmt!r}")
    out = Path(out_dir)
    videos = list(videos)
    names = output_names(videos)
    files = ["features.npz"] if fmt == "npz" else [f"{n}.npy" for n in names]
    existing = [str(out / f) for f in (*files, index_name, "skipped.txt") if (out / f).exists()]
    if existing:
        raise FileExistsError(
            f"refusing to overwrite {len(existing)} existing output(s) in {out}, e.g. "
            f"{', '.join(existing[:3])}; choose another --out or remove them"
        )
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    encoder = encoder.to(device).eval()
    probe = probe.to(device).eval() if probe is not None else None
    arrays, tables, skipped = {}, [], list(skipped or [])
    failed = 0
    terminal = sys.stderr.isatty()  # one bar on a terminal; a plain line per video in a log
    bar = tqdm(total=len(videos), desc="videos", unit="video", disable=not terminal)
    for k, (path, name) in enumerate(zip(videos, names), 1):
        try:
            feats, table = extract_video(path, encoder, cfg, probe, device)
        except VideoDecodeError as e:
            skipped.append((path, str(e)))
            failed += 1
            if not terminal:
                print(f"[{k}/{len(videos)}] skipped {path}: {e}", file=sys.stderr, flush=True)
            bar.update(1)
            continue
        file = "features.npz" if fmt == "npz" else f"{name}.npy"
        if fmt == "npy":
            _save_npy(out / file, feats)
        else:
            arrays[name] = feats
        tables.append(table.assign(video=path, name=name, file=file, row=table["window"]))
        if not terminal:
            print(f"[{k}/{len(videos)}] {path}: {len(table)} windows -> {file}", file=sys.stderr, flush=True)
        bar.update(1)
    bar.close()
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
    return {"videos": len(videos) - failed, "windows": len(index), "skipped": skipped, "index": str(out / index_name)}


def _save_npy(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
    tmp.replace(path)


def recorded_clip(path: str | os.PathLike) -> dict:
    """The clip a checkpoint says its encoder was trained on, as far as it records it: the
    `preprocessing` entry every pretraining checkpoint of ours carries (what load_processor reads),
    else `num_frames` and `img_size` from the model config and `frame_step` from a data config
    (released files record none of these). Keys it does not record are absent."""
    from vjepa.infra.checkpoint import load

    ck = load(path)
    config = ck.get("config") if isinstance(ck.get("config"), dict) else {}
    model = config.get("model") if isinstance(config.get("model"), dict) else {}
    data = config.get("data") if isinstance(config.get("data"), dict) else {}
    prep = ck.get("preprocessing") if isinstance(ck.get("preprocessing"), dict) else {}
    found = {
        "num_frames": prep.get("num_frames", model.get("num_frames")),
        "img_size": prep.get("img_size", model.get("img_size")),
        "frame_step": prep.get("frame_step", data.get("frame_step", config.get("frame_step"))),
    }
    out = {k: int(v) for k, v in found.items() if isinstance(v, int) and not isinstance(v, bool)}
    fps = prep.get("fps")
    if isinstance(fps, (int, float)) and not isinstance(fps, bool) and fps > 0:
        out["fps"] = fps  # sampled by frames per second (V-JEPA 2): no frame step is recorded
    return out


def clip_options(asked: dict, recorded: dict, defaults: dict, where: str) -> dict:
    """Each clip setting: the option where given (a warning when it differs from what the encoder
    was trained on), else the checkpoint's record, else the default (a warning: not recorded)."""
    out = {}
    for key, default in defaults.items():
        mine, theirs = asked.get(key), recorded.get(key)
        if mine is not None:
            if theirs is not None and mine != theirs:
                warnings.warn(
                    f"{key} {mine} overrides the {theirs} the encoder was trained with ({where})", stacklevel=2
                )
            out[key] = mine
        elif theirs is not None:
            out[key] = theirs
        else:
            if default is not None:
                warnings.warn(
                    f"{where} does not record the {key} its encoder was trained with; using {default} "
                    f"(pass --{key.replace('_', '-')} to choose)",
                    stacklevel=2,
                )
            out[key] = default
    return out


def parser() -> argparse.ArgumentParser:
    """The command line's options, each with its help."""
    p = argparse.ArgumentParser(prog="python -m vjepa.extract", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "videos",
        nargs="+",
        help="video files and folders (searched recursively for --ext), or one "
        "text file (.txt/.csv/.lst/.list) listing videos one per line",
    )
    p.add_argument("--checkpoint", required=True, help="official-layout file or released name (vitl16, ...)")
    p.add_argument("--out", required=True, help="output folder (existing outputs in it are never overwritten)")
    p.add_argument("--key", default="target_encoder", help="encoder entry of the checkpoint (default: %(default)s)")
    p.add_argument(
        "--num-frames",
        type=int,
        help="frames per window: default the checkpoint's record, else what "
        "the encoder's weights say (16 for released files)",
    )
    p.add_argument("--num-heads", type=int, help="the encoder's attention heads, for a non-standard width")
    p.add_argument(
        "--frame-step",
        type=int,
        help=f"frames between a window's frames: default the checkpoint's "
        f"record, else {FRAME_STEP} (the paper's), with a warning",
    )
    p.add_argument(
        "--fps",
        type=float,
        help="sample windows at this many frames per second (V-JEPA 2; step = ceil(video fps) // fps): "
        "default the checkpoint's record, when it was trained so",
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument("--stride", type=int, help="frames between window starts (default: one window span)")
    g.add_argument("--stride-seconds", type=float, help="seconds between window starts")
    p.add_argument(
        "--pooling",
        choices=POOLINGS,
        default="mean",
        help="mean of the tokens, all tokens [N, D], or an attentive probe's pooled feature (default: mean)",
    )
    p.add_argument("--probe", help="pooling 'probe': an attentive probe file or released name (vitl16/k400)")
    p.add_argument(
        "--img-size",
        type=int,
        help="frame size in pixels (a multiple of the patch): default the "
        "checkpoint's record, else the encoder's resolution",
    )
    p.add_argument("--batch-size", type=int, default=8, help="windows per encoder call (default: %(default)s)")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (features are stored as float32)")
    p.add_argument("--device", help="torch device, e.g. cuda:0 or cpu (default: cuda when available)")
    p.add_argument(
        "--format",
        choices=("npy", "npz"),
        default="npy",
        help="one .npy per video, or one features.npz holding every video (default: npy)",
    )
    p.add_argument("--index", default="windows.csv", help="index file name, .csv or .parquet (default: %(default)s)")
    p.add_argument(
        "--ext",
        default=",".join(VIDEO_EXTENSIONS),
        help="comma-separated extensions a folder is searched for (default: %(default)s)",
    )
    return p


def main(argv: list[str] | None = None) -> dict:
    """The command line (see the module docstring); exits 1 when no video was extracted."""
    p = parser()
    a = p.parse_args(argv)
    from vjepa.hub import load_encoder, load_probe, resolve

    try:
        inputs = a.videos
        if (
            len(inputs) == 1
            and Path(inputs[0]).suffix.lower() in (".txt", ".csv", ".lst", ".list")
            and Path(inputs[0]).is_file()
        ):
            inputs = read_video_list(inputs[0])
        videos, skipped = find_videos(inputs, [e.strip() for e in a.ext.split(",") if e.strip()])
        ckpt = resolve(a.checkpoint)
        recorded = recorded_clip(ckpt)
        if a.frame_step is not None and a.fps is None:
            recorded.pop("fps", None)  # a frame step asked for replaces a recorded fps
        if a.fps is not None or "fps" in recorded:
            recorded.setdefault("frame_step", FRAME_STEP)  # unused: the fps sets each video's step
        asked = {"frame_step": a.frame_step, "num_frames": a.num_frames, "img_size": a.img_size, "fps": a.fps}
        clip = clip_options(
            asked, recorded, {"frame_step": FRAME_STEP, "num_frames": None, "img_size": None, "fps": None}, str(ckpt)
        )
        cfg = ExtractConfig(
            frame_step=clip["frame_step"],
            fps=clip["fps"],
            stride=a.stride_seconds or a.stride,
            stride_unit="seconds" if a.stride_seconds else "frames",
            pooling=a.pooling,
            img_size=clip["img_size"],
            batch_size=a.batch_size,
            precision="bf16" if a.bf16 else "fp32",
            device=a.device,
        )
        cfg.validate()
        encoder = load_encoder(ckpt, key=a.key, num_frames=clip["num_frames"], num_heads=a.num_heads)
        check_clip_shape(encoder, cfg)
        probe = None
        if a.pooling == "probe":
            if not a.probe:
                p.error("--pooling probe needs --probe")
            probe = load_probe(a.probe, encoder.num_heads)
        summary = extract(videos, encoder, cfg, a.out, probe, a.format, a.index, skipped)
    except KeyboardInterrupt:
        print(
            "\ninterrupted: the outputs written so far are whole and kept; existing outputs are never "
            "overwritten, so run again with a new --out",
            file=sys.stderr,
        )
        raise SystemExit(130) from None
    except (ValueError, CheckpointError, OSError) as e:  # one line naming the file or option at fault
        p.exit(2, f"error: {e}\n")
    print(f"{summary['videos']} videos, {summary['windows']} windows -> {summary['index']}")
    for path, reason in summary["skipped"]:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    if summary["videos"] == 0:
        p.exit(1, f"error: no video was extracted ({len(summary['skipped'])} skipped, listed above)\n")
    return summary


if __name__ == "__main__":
    main()
