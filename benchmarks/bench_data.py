"""Decoded-and-transformed clips per second with 0, 1 and 2 DataLoader workers, on the small
suite's motion videos (32 px) and on a 224 px clip written with PyAV, with the pretraining
transform. Prints clips/s and the ratios to 0 workers, all measured in this one run.

    python benchmarks/bench_data.py                 # builds a small suite in a temporary folder
    python benchmarks/bench_data.py --data data     # or uses one that `prepare` already built
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from vjepa.data import ClipSampling, VideoDataset, collate, pretrain_transform, read_path_label_list
from vjepa.data.datasets import worker_threads_init
from vjepa.data.small_suite import build_small_suite, write_video
from vjepa.infra.configs import SmallSuiteConfig


def clips_per_second(dataset, workers: int, batch_size: int) -> float:
    """Steady-state throughput: the clock starts once the first batch is out (worker start-up excluded)."""
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=collate,
        worker_init_fn=worker_threads_init if workers else None,
    )
    it = iter(loader)
    next(it)
    n, t0 = 0, time.perf_counter()
    for batch in it:
        n += len(batch["label"])
    return n / (time.perf_counter() - t0)


def clip_224(folder: Path) -> str:
    """A 10 s, 30 fps, 224x224 H.264 clip of moving noise blobs (GOP 16)."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (224 + 300, 224 + 300, 3), dtype=np.uint8)
    frames = np.stack([base[t : t + 224, t : t + 224] for t in range(300)])
    path = folder / "clip224.mp4"
    write_video(path, frames, fps=30)
    return str(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="a built small suite (default: build one in a temporary folder)")
    ap.add_argument("--items", type=int, default=320, help="clips per measurement on the small suite")
    ap.add_argument("--items-224", type=int, default=96, help="clips per measurement at 224 px")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = args.data
        if data is None:
            data = tmp / "data"
            build_small_suite(
                SmallSuiteConfig(
                    k400_train=8,
                    k400_val=4,
                    ssv2_train=args.items,
                    ssv2_val=4,
                    in1k_train=4,
                    in1k_val=2,
                    inat_train=4,
                    inat_val=2,
                    places_train=3,
                    places_val=3,
                    ava_train_videos=1,
                    ava_val_videos=1,
                ),
                data,
            )
        small = read_path_label_list(data / "ssv2" / "train.csv")[: args.items]
        big = [(clip_224(tmp), 0)] * args.items_224
        setups = {
            "small suite, 8x4 frames, 32 px": (
                VideoDataset(small, ClipSampling(num_frames=8, frame_step=4), pretrain_transform(32), seed=0),
                16,
            ),
            "224 px clip, 16x4 frames, 224 px": (
                VideoDataset(big, ClipSampling(num_frames=16, frame_step=4), pretrain_transform(224), seed=0),
                8,
            ),
        }
        print(f"main process: {torch.get_num_threads()} torch threads; workers: 1 thread each, decord 1 thread")
        for name, (ds, bs) in setups.items():
            rates = {w: clips_per_second(ds, w, bs) for w in args.workers}
            base = rates.get(0)
            row = ", ".join(
                f"{w} workers {r:7.1f} clips/s" + (f" (x{r / base:.2f})" if base and w else "")
                for w, r in rates.items()
            )
            print(f"{name}: {row}")


if __name__ == "__main__":
    main()
