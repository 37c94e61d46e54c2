"""The pretraining loader beside the official V-JEPA loader, at the paper's clip settings (16 frames,
stride 4; 224 and 384 px crops) on Kinetics-like H.264 files this benchmark writes (340x256 at 30
fps and 456x256 at 25 fps, 10 s, x264's default GOP of 250 frames and B-frames). Per clip, in this
one process (a DataLoader worker's work: one torch thread, decoders on one thread unless the
official loader asks for more): clips per second of wall time (per worker), clips per CPU-second
(per core: user + system time of every thread of the process), and the decode / transform split.
Every loader reads the same clip windows (the official loader's draw from numpy's global RNG,
replayed for ours). Rows:

- official: facebookresearch/jepa's VideoDataset.loadvideo_decord + app/vjepa/transforms, called
  from a checkout outside this repository (--official-repo; its decord reader runs num_threads=-1);
- floor: PyAV decoding every packet from the clip's keyframe to its last frame, nothing converted;
- floor, needed frames: the same, but the decoder skips the frames that no other frame references
  and the clip does not use (skip_frame, as our pyav backend does): the least decoding that gives
  the clip's frames, the stricter floor;
- ours decord / ours pyav: vjepa.data.video.decode_clips + the pretraining transform;
- ours pyav, finish on <device>: pretrain.data.finish_on_device: the worker decodes and cuts the
  uint8 box, collate gathers the batch's boxes into one buffer (UnfinishedClips); float
  conversion, resize, flip and normalisation run in the consumer (UnfinishedClips.finish on
  --device, cpu here: "worker CPU" is then what the loader worker keeps).

Each loader also makes its batches (--batch clips) as its DataLoader worker does, timed as
"collate": the official collator's default_collate, our dataset's item and vjepa.data.collate; for
the finish row the finish (on the consumer's device) is counted as transform, not worker, time.

    git clone https://github.com/facebookresearch/jepa ../jepa-official    # outside this repository
    python benchmarks/bench_loader.py --official-repo ../jepa-official [--clips 24] [--device cuda]

Prints a table and the ratios to the official loader and to the floor, all measured in this run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
import types
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's vjepa, wherever it runs from
from vjepa.data import ClipSampling, collate  # noqa: E402
from vjepa.data.datasets import stack_segments  # noqa: E402
from vjepa.data.transforms import pretrain_transform  # noqa: E402
from vjepa.data.video import decode_clips, skip_mode, with_index  # noqa: E402

FILES = {"340x256@30": (340, 256, 30), "456x256@25": (456, 256, 25)}
SECONDS = 10


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def write_kinetics_like(path: Path, width: int, height: int, fps: int, seed: int, preset: str) -> str:
    """10 s of a smooth random texture panning and zooming, H.264 yuv420p with x264's defaults
    (GOP 250, 3 B-frames) as Kinetics' YouTube-derived files mostly are."""
    import av

    rng = np.random.default_rng(seed)
    n = SECONDS * fps
    base = rng.integers(0, 256, (height // 4 + 40, width // 4 + 40, 3), dtype=np.uint8)
    base = np.repeat(np.repeat(base, 4, 0), 4, 1).astype(np.float32)
    base = (base + np.roll(base, 2, 0) + np.roll(base, 2, 1) + np.roll(base, 2, (0, 1))) / 4
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(fps))
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.options = {"preset": preset, "crf": "23"}
        for t in range(n):
            y, x = int(40 * t / n), 10 + int(80 * t / n) + int(10 * np.sin(t / 7))
            img = base[y : y + height, x : x + width]
            img = np.clip(img * (0.85 + 0.15 * np.sin(t / 11)) + rng.normal(0, 3, img.shape), 0, 255)
            frame = av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24")
            frame.pts = t
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return str(path)


def load_official(repo: Path):
    """The official VideoDataset and make_transforms. Their module imports cv2 (OpenCV) for a numpy
    resize the pretraining transform never calls; where OpenCV is not installed, an empty stand-in
    module lets the import through (the benchmark fails loudly if anything touches it)."""
    sys.path.insert(0, str(repo))
    try:
        import cv2  # noqa: F401
    except ImportError:
        sys.modules["cv2"] = types.ModuleType("cv2")
    from app.vjepa.transforms import make_transforms
    from src.datasets.video_dataset import VideoDataset

    return VideoDataset, make_transforms


class SameWindow:
    """An rng for clip_indices that returns the window end the official loader draws after
    np.random.seed(seed): np.random.randint(clip_len, partition_len)."""

    def __init__(self, seed: int):
        self.seed = seed

    def integers(self, low: int, high: int) -> int:
        return int(np.random.RandomState(self.seed).randint(low, high))


class Row:
    def __init__(self, name: str):
        self.name, self.wall, self.cpu, self.decode, self.transform, self.worker_cpu = name, 0.0, 0.0, 0.0, 0.0, 0.0
        self.collate = 0.0
        self.clips = 0

    def add(self, wall, cpu_decode, cpu_tf, worker_cpu=None):
        self.decode += cpu_decode
        self.transform += cpu_tf
        self.wall += wall
        self.cpu += cpu_decode + cpu_tf
        self.worker_cpu += cpu_decode + cpu_tf if worker_cpu is None else worker_cpu
        self.clips += 1

    def figures(self) -> dict:
        """The row's figures as the table prints them (per clip)."""
        return {
            "clips_per_s_per_worker": self.clips / self.wall,
            "clips_per_cpu_s": self.clips / self.cpu,
            "decode_cpu_ms": 1e3 * self.decode / self.clips,
            "transform_cpu_ms": 1e3 * self.transform / self.clips,
            "collate_cpu_ms": 1e3 * self.collate / self.clips,
            "worker_cpu_ms": 1e3 * self.worker_cpu / self.clips,
            "clips": self.clips,
        }

    def add_batch(self, make_batch, worker: bool = True):
        """Time one batch's collation (in the worker's CPU when `worker`)."""
        _, wall, cpu = timed(make_batch)
        self.wall += wall
        self.cpu += cpu
        self.collate += cpu
        self.worker_cpu += cpu if worker else 0.0


def timed(fn):
    t0, c0 = time.perf_counter(), cpu_seconds()
    out = fn()
    return out, time.perf_counter() - t0, cpu_seconds() - c0


def floor_decode(path: str, frames: np.ndarray, needed_only: bool = False) -> None:
    """Decode the packets from the keyframe before frames[0] to frames[-1] (no RGB conversion):
    every one, or with needed_only those the clip's frames need (unreferenced frames outside the
    clip skipped)."""

    def run(container, stream, index):
        want = {int(index.pts[i]) for i in frames}
        want_last = int(index.pts[frames.max()])
        first = int(index.pts[frames.min()])
        start = index.key_pts[max(np.searchsorted(index.key_pts, first, side="right") - 1, 0)]
        container.seek(int(start), stream=stream, backward=True, any_frame=False)
        cc = stream.codec_context
        seen = set()
        for packet in container.demux(stream):
            if needed_only:
                cc.skip_frame = skip_mode(packet, want)  # the rule our pyav backend decodes by
            for f in packet.decode():
                seen.add(f.pts)
            if want_last in seen:
                return

    with_index(path, 1, run)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official-repo", type=Path, help="a checkout of facebookresearch/jepa (omit: ours only)")
    ap.add_argument("--clips", type=int, default=24, help="clips per row and setting")
    ap.add_argument("--sizes", type=int, nargs="+", default=[224, 384])
    ap.add_argument("--files-per-format", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8, help="clips per collated batch")
    ap.add_argument("--preset", default="medium", help="x264 preset of the written files")
    ap.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="where the 'finish' rows convert, resize, flip and normalise",
    )
    ap.add_argument("--json", type=Path, help="also write the rows' figures here ({size: {row: figures}})")
    args = ap.parse_args()
    torch.set_num_threads(1)  # as in a DataLoader worker
    official = load_official(args.official_repo) if args.official_repo else None
    cfg = ClipSampling(num_frames=16, frame_step=4, random=True)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        paths = [
            write_kinetics_like(Path(tmp) / f"{name}_{k}.mp4", w, h, fps, k, args.preset)
            for name, (w, h, fps) in FILES.items()
            for k in range(args.files_per_format)
        ]
        print(
            f"wrote {len(paths)} files of {SECONDS} s ({', '.join(FILES)}, x264 {args.preset}) in "
            f"{time.perf_counter() - t0:.0f} s; {os.cpu_count()} CPUs, torch threads 1; {args.clips} clips per row"
        )
        results = {}
        for size in args.sizes:
            rows = _measure(paths, cfg, size, args, official)
            results[size] = rows
            _print(size, rows, args.device)
        _closing(results, args.device)
    if args.json:
        args.json.write_text(
            json.dumps(
                {str(size): {name: r.figures() for name, r in rows.items()} for size, rows in results.items()}, indent=1
            )
            + "\n"
        )


def _measure(paths, cfg, size, args, official) -> dict[str, Row]:
    tf, deferred = pretrain_transform(size), pretrain_transform(size, finish_on_device=True)
    rows = {
        k: Row(k)
        for k in ("official", "floor", "floor, needed frames", "ours decord", "ours pyav", "ours pyav, finish")
    }
    if official is None:
        del rows["official"]
    else:
        VideoDataset, make_transforms = official
        off_tf = make_transforms(
            random_horizontal_flip=True,
            random_resize_aspect_ratio=(3 / 4, 4 / 3),
            random_resize_scale=(0.3, 1.0),
            crop_size=size,
        )
        off_ds = VideoDataset.__new__(VideoDataset)  # only the attributes loadvideo_decord reads
        off_ds.__dict__.update(
            frames_per_clip=16,
            frame_step=4,
            num_clips=1,
            random_clip_sampling=True,
            allow_clip_overlap=False,
            filter_short_videos=False,
            filter_long_videos=int(10**9),
            duration=None,
        )
    batches = {name: [] for name in rows if not name.startswith("floor")}
    clip = torch.zeros(1, 3, 16, size, size)  # [V, C, T, H, W]
    box = deferred(np.zeros((16, size, size, 3), np.uint8), rng=np.random.default_rng(0))
    warm = {
        name: [([clip[0]], 0, [0]) if name == "official" else box if name.endswith("finish") else clip] * args.batch
        for name in batches
    }
    for _ in range(2):  # untimed: the allocator's first batches of this size cost several times the later ones
        _collate_batches(
            {name: Row(name) for name in batches}, {n: list(b) for n, b in warm.items()}, paths[0], args.device
        )
    for k in range(args.clips):
        path = paths[k % len(paths)]
        seed = 1000 * size + k
        # the official loader draws its window with numpy's global RNG: seeded alike for each loader
        if official is not None:
            np.random.seed(seed)
            (buf, _), d_wall, d_cpu = timed(lambda: off_ds.loadvideo_decord(path))
            out, t_wall, t_cpu = timed(lambda: off_tf(buf))
            rows["official"].add(d_wall + t_wall, d_cpu, t_cpu)
            batches["official"].append(([out], 0, [0]))  # its item: (clips, label, clip indices)
        for backend in ("decord", "pyav"):
            got, d_wall, d_cpu = timed(lambda: decode_clips(path, cfg, SameWindow(seed), backend=backend))
            out, t_wall, t_cpu = timed(lambda: tf(got.frames, rng=np.random.default_rng(seed)))
            rows[f"ours {backend}"].add(d_wall + t_wall, d_cpu, t_cpu)
            batches[f"ours {backend}"].append(out)
        frames = np.concatenate(got.indices)
        _, f_wall, f_cpu = timed(lambda: floor_decode(path, frames))
        rows["floor"].add(f_wall, f_cpu, 0.0)
        _, f_wall, f_cpu = timed(lambda: floor_decode(path, frames, needed_only=True))
        rows["floor, needed frames"].add(f_wall, f_cpu, 0.0)
        # pretrain.data.finish_on_device: the worker decodes and cuts the box, collate gathers the
        # batch's boxes (UnfinishedClips), the consumer finishes them on the device
        got, d_wall, d_cpu = timed(lambda: decode_clips(path, cfg, SameWindow(seed), backend="pyav"))
        unfinished, c_wall, c_cpu = timed(lambda: deferred(got.frames, rng=np.random.default_rng(seed)))
        rows["ours pyav, finish"].add(d_wall + c_wall, d_cpu, c_cpu)
        batches["ours pyav, finish"].append(unfinished)
        if len(batches["ours pyav"]) == args.batch or k == args.clips - 1:
            _collate_batches(rows, batches, path, args.device)
    return rows


def _collate_batches(rows: dict[str, Row], batches: dict[str, list], path: str, device: str) -> None:
    """Make each loader's batch from its clips as its DataLoader would, timed, then drop them."""
    for name, outs in batches.items():
        if name == "official":
            make = lambda: torch.utils.data.default_collate(outs)  # noqa: E731
        elif name.endswith("finish"):  # the boxes gathered in the worker, finished on the consumer's device
            items = [{"video": o, "label": 0, "index": 0, "path": path} for o in outs]
            got = []
            rows[name].add_batch(lambda: got.append(collate(items)["video"]))  # in the worker
            batch = got[0]
            if device != "cpu":
                batch = batch.pin_memory()  # the DataLoader's pin_memory thread (not the worker)
            _, f_wall, f_cpu = timed(lambda: _synced(batch.finish(device)))
            rows[name].wall += f_wall
            rows[name].cpu += f_cpu
            rows[name].transform += f_cpu
            outs.clear()
            continue
        else:  # VideoDataset's item (its one segment), then the batch collate
            make = lambda: collate(
                [
                    {"video": stack_segments([o]), "label": 0, "index": 0, "path": path}  # noqa: E731
                    for o in outs
                ]
            )
        rows[name].add_batch(make, worker=not name.endswith("finish"))
        outs.clear()


def _synced(t: torch.Tensor) -> torch.Tensor:
    if t.device.type == "cuda":
        torch.cuda.synchronize()
    return t


def _print(size: int, rows: dict[str, Row], device: str) -> None:
    print(f"\n{size} px crops, 16 frames x stride 4")
    print(
        f"{'loader (per clip)':<30}{'clips/s/worker':>15}{'clips/CPU-s':>13}{'decode CPU ms':>15}"
        f"{'transform CPU ms':>18}{'collate CPU ms':>16}{'worker CPU ms':>15}"
    )
    for r in rows.values():
        name = r.name + (f" on {device}" if r.name.endswith("finish") else "")
        print(
            f"{name:<30}{r.clips / r.wall:>15.2f}{r.clips / r.cpu:>13.2f}{1e3 * r.decode / r.clips:>15.1f}"
            f"{1e3 * r.transform / r.clips:>18.1f}{1e3 * r.collate / r.clips:>16.1f}"
            f"{1e3 * r.worker_cpu / r.clips:>15.1f}"
        )


def _closing(results: dict[int, dict[str, Row]], device: str) -> None:
    print("\nratios (measured in this run):")
    for size, rows in results.items():
        ours, parts = rows["ours pyav"], []
        if "official" in rows:
            off = rows["official"]
            for name in ("ours decord", "ours pyav"):
                r = rows[name]
                parts.append(
                    f"{name} / official: {(r.clips / r.wall) / (off.clips / off.wall):.2f}x clips/s per "
                    f"worker, {(r.clips / r.cpu) / (off.clips / off.cpu):.2f}x clips per CPU-s"
                )
        fin = rows["ours pyav, finish"]
        for fname in ("floor", "floor, needed frames"):
            floor = rows[fname]
            parts.append(
                f"ours pyav / {fname}: {ours.wall / floor.wall:.2f} (wall), {ours.cpu / floor.cpu:.2f} (CPU), "
                f"its decode alone {ours.decode / floor.decode:.2f} (CPU); finish on {device}: worker CPU "
                f"{fin.worker_cpu / floor.cpu:.2f}x"
            )
        parts.append(f"finish on {device}: worker CPU per clip {fin.worker_cpu / ours.worker_cpu:.2f}x of ours pyav")
        print(f"  {size} px: " + "; ".join(parts))


if __name__ == "__main__":
    main()
