"""Datasets of clips and still clips, the batch collate, the skipped-video count, and weighted
mixtures of datasets (VideoMix2M = K710 + SSv2 + HowTo100M).

An item is {"video": FloatTensor [S, V, C, T, H, W], "label": int, "index": int, "path": str}, or
None when the file cannot be decoded (a warning names it once per process). `collate` drops the
None items and lists their paths under "skipped", and lists under "fallback" the files decord could
not read right that PyAV decoded instead (vjepa.data.video); `SkipCounter` counts unique skipped
(and fallback) paths over a run and raises when more than a set fraction of the dataset is bad.

Randomness: with `seed` set, an item's clip position and augmentation are a function of
(seed, epoch, index) alone, so they do not depend on the number of workers and a resumed run sees
the same clips (call set_epoch(epoch) on the dataset, or pass (index, key) pairs as indices to
choose the key per draw). Without a seed, the draws come from numpy's global RNG, which torch
seeds in each DataLoader worker.
"""

from __future__ import annotations

import bisect
import os
import warnings
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from vjepa.data.sampling import ClipSampling
from vjepa.data.transforms import UnfinishedClip, UnfinishedClips
from vjepa.data.video import FrameCache, VideoDecodeError, check_backend, decode_clips
from vjepa.infra.configs import DEFAULT_BACKEND

Transform = Callable[..., torch.Tensor]  # (frames uint8 [T, H, W, 3], rng=None) -> [V, C, T, H, W]

# Paths skipped in this process since the last collate: the DataLoader fetches a batch's items and
# collates them in the same process, so collate can name the files behind its None items.
_recent_skips: list[str] = []
_recent_fallbacks: list[str] = []  # likewise, files decoded by PyAV because decord read them wrong
_recent_declared_over: list[str] = []  # and files that declare a frame more than they hold (tolerated)
_warned: set[str] = set()


def _skip(path: str, reason: str) -> None:
    if path not in _warned:
        _warned.add(path)
        warnings.warn(f"skipping undecodable file {path}: {reason}", RuntimeWarning, stacklevel=3)
    _recent_skips.append(path)


class _Seeded:
    seed: int | None = None
    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        """Key of the per-item random draws (only used with a seed)."""
        self.epoch = int(epoch)

    def _rng(self, index) -> tuple[int, np.random.Generator | None]:
        i, key = (int(index[0]), int(index[1])) if isinstance(index, (tuple, list)) else (int(index), self.epoch)
        if self.seed is None:
            return i, np.random.default_rng(np.random.randint(0, 2**31 - 1))
        return i, np.random.default_rng([self.seed, key, i])


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")  # V-JEPA 2's test for an image among videos


def is_image(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in IMAGE_SUFFIXES


def read_image(path: str) -> np.ndarray | None:
    """An image file as uint8 [1, H, W, 3] RGB; None (and a warning naming it once) when it cannot
    be read, or when it is larger than PIL's decompression-bomb limit."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))[None]
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as e:
        _skip(path, str(e) or type(e).__name__)
        return None


class VideoDataset(_Seeded, Dataset):
    """Videos listed as [(path, label)] -> items of S = clip.num_segments clips, each turned into V
    views by `transform`. A listed image (IMAGE_SUFFIXES) is a still clip, as V-JEPA 2 mixes
    ImageNet into pretraining: the image repeated to the clip's frames, then transformed as a clip.
    Files are opened inside __getitem__ (so inside each worker) and decoded with `video_backend`
    ("decord" or "pyav", see vjepa.data.video)."""

    def __init__(
        self,
        entries: Sequence[tuple[str, int]],
        clip: ClipSampling,
        transform: Transform,
        decode_threads: int = 1,
        seed: int | None = None,
        cache_mb: int = 0,
        video_backend: str = DEFAULT_BACKEND,
    ):
        clip.validate()
        self.entries, self.clip, self.transform = (
            entries,
            clip,
            transform,
        )  # compact Entries stay shared by forked workers
        self.decode_threads, self.seed, self.video_backend = decode_threads, seed, check_backend(video_backend)
        self.cache = FrameCache(cache_mb * 2**20) if cache_mb > 0 else None  # one per process (workers copy it)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index) -> dict | None:
        i, rng = self._rng(index)
        path, label = self.entries[i]
        T, S = self.clip.num_frames, self.clip.num_segments
        if is_image(path):  # V-JEPA 2's still clip: the image repeated to the clip's frames, augmented as one
            frame = read_image(path)
            if frame is None:
                return None
            # its one frame transformed, then held for T frames: the numbers of repeating it first, without the copies
            clips = [still_clip(self.transform(frame, rng=rng), T) for _ in range(S)]
        else:
            try:
                decoded = decode_clips(path, self.clip, rng, self.decode_threads, self.cache, self.video_backend)
            except VideoDecodeError as e:
                _skip(path, str(e))
                return None
            frames = decoded.frames
            if decoded.fallback is not None:
                _recent_fallbacks.append(path)
            if decoded.declared_over:
                _recent_declared_over.append(path)
            clips = [self.transform(frames[s * T : (s + 1) * T], rng=rng) for s in range(S)]
        if isinstance(clips[0], UnfinishedClip):  # finished where the batch is consumed (one segment)
            if len(clips) != 1:
                raise ValueError(
                    f"finish_on_device takes one segment per video, the clip sampling asks for {len(clips)}"
                )
            return {"video": clips[0], "label": int(label), "index": i, "path": path}
        video = stack_segments(clips)
        return {"video": video, "label": int(label), "index": i, "path": path}


def still_clip(clip, num_frames: int):
    """A transformed one-frame clip ([V, C, 1, H, W], or an UnfinishedClip of one frame) held for
    `num_frames` frames, as views (no copy until collate)."""
    if isinstance(clip, UnfinishedClip):
        return clip._replace(box=np.broadcast_to(clip.box, (num_frames, *clip.box.shape[1:])))
    return clip.expand(-1, -1, num_frames, -1, -1)


def stack_segments(clips: Sequence[torch.Tensor]) -> torch.Tensor:
    """An item's S segment clips [V, C, T, H, W] -> [S, V, C, T, H, W]; one segment is not copied."""
    return clips[0].unsqueeze(0) if len(clips) == 1 else torch.stack(clips)


class ImageDataset(_Seeded, Dataset):
    """Images as still clips: the transformed image is repeated `still_frames` times along time
    (16 as the paper's evaluation; 2 fills one tubelet) with expand, so no copy is made until
    collate. Items have S = 1."""

    def __init__(
        self, entries: Sequence[tuple[str, int]], transform: Transform, still_frames: int = 16, seed: int | None = None
    ):
        if still_frames < 1:
            raise ValueError(f"still_frames must be >= 1, got {still_frames}")
        self.entries, self.transform, self.still_frames, self.seed = entries, transform, still_frames, seed

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index) -> dict | None:
        i, rng = self._rng(index)
        path, label = self.entries[i]
        frame = read_image(path)
        if frame is None:
            return None
        video = still_clip(self.transform(frame, rng=rng), self.still_frames).unsqueeze(0)  # [1, V, C, T, H, W]
        return {"video": video, "label": int(label), "index": i, "path": path}


def collate(items: Sequence[dict | None]) -> dict:
    """Stack items into {"video": [B, S, V, C, T, H, W], "label": LongTensor [B], "index": LongTensor [B],
    "path": list[str], "skipped": list[str], "fallback": list[str], "declared_over": list[str]}; None
    items (and items whose "video" is None) are dropped and named in "skipped"; "fallback" names the
    files of this batch that PyAV decoded because decord read them wrong, "declared_over" those whose
    container declares a frame more than it holds (read, as players read them). When every item was skipped,
    "video" is an empty 7-D
    tensor (B = 0). Items of a finish_on_device transform give "video" as UnfinishedClips instead."""
    n_bad = sum(x is None for x in items)
    skipped = _recent_skips[-n_bad:] if n_bad else []
    skipped = ["<unknown>"] * (n_bad - len(skipped)) + skipped  # None from a dataset outside this module
    _recent_skips.clear()
    fallback = list(dict.fromkeys(_recent_fallbacks))
    _recent_fallbacks.clear()
    declared_over = list(dict.fromkeys(_recent_declared_over))
    _recent_declared_over.clear()
    skipped += [str(x.get("path")) for x in items if x is not None and x.get("video") is None]
    good = [x for x in items if x is not None and x.get("video") is not None]
    if not good:
        video = torch.empty((0,) * 7)
    elif isinstance(good[0]["video"], UnfinishedClip):
        video = UnfinishedClips.collate([x["video"] for x in good])
    else:
        # default_collate stacks straight into shared memory inside a DataLoader worker (a plain
        # stack would be copied there a second time on the way to the main process)
        video = default_collate([x["video"] for x in good])
    return {
        "video": video,
        "label": torch.tensor([x["label"] for x in good], dtype=torch.long),
        "index": torch.tensor([x["index"] for x in good], dtype=torch.long),
        "path": [x["path"] for x in good],
        "skipped": skipped,
        "fallback": fallback,
        "declared_over": declared_over,
    }


class TooManySkipped(RuntimeError):
    """More than the allowed fraction of a dataset's files could not be decoded."""


class SkipCounter:
    """Counts unique skipped paths over a run; raises TooManySkipped as soon as the bad files exceed
    max_fraction of the dataset (the count only grows, so the final fraction can only be larger).
    Also counts the unique files decoded by the PyAV fallback (`fallback`, never an error)."""

    def __init__(self, dataset_size: int, max_fraction: float = 0.01, where: str = ""):
        if not 0 <= max_fraction <= 1:
            raise ValueError(f"max_fraction must be in [0, 1], got {max_fraction}")
        self.dataset_size, self.max_fraction, self.where = int(dataset_size), max_fraction, where
        self.paths: set[str] = set()
        self.fallback_paths: set[str] = set()
        self.declared_over_paths: set[str] = set()

    @property
    def count(self) -> int:
        return len(self.paths)

    def update(self, skipped: Iterable[str], fallback: Iterable[str] = (), declared_over: Iterable[str] = ()) -> int:
        """Add a batch's "skipped" (and "fallback", "declared_over") paths; returns the running count
        of skipped files."""
        self.paths.update(skipped)
        self.fallback_paths.update(fallback)
        self.declared_over_paths.update(declared_over)
        if self.count > self.max_fraction * self.dataset_size:
            some = ", ".join(sorted(self.paths)[:5])
            raise TooManySkipped(
                f"{self.where + ': ' if self.where else ''}"
                f"{self.count} of {self.dataset_size} files could not be decoded "
                f"({self.count / max(self.dataset_size, 1):.2%}), more than the allowed "
                f"{self.max_fraction:.2%}; for example {some}"
            )
        return self.count

    def metrics(self) -> dict:
        return {
            "skipped_videos": self.count,
            "skipped_fraction": self.count / max(self.dataset_size, 1),
            "fallback_videos": len(self.fallback_paths),
            "declared_over_videos": len(self.declared_over_paths),
        }


# ---------------------------------------------------------------------------------------------
# Mixtures


class MixtureDataset(Dataset):
    """Datasets concatenated (index i runs through them in order; an item's "index" is the global
    one). `weights` (one per dataset, optional) give each item the sampling weight
    w_d / len(d), normalised: with mixture_indices, dataset d is drawn with probability w_d / sum(w).
    Without weights, sample uniformly over all items as V-JEPA 1 does."""

    def __init__(self, datasets: Sequence[Dataset], weights: Sequence[float] | None = None):
        if not datasets:
            raise ValueError("MixtureDataset needs at least one dataset")
        if weights is not None and (len(weights) != len(datasets) or any(w < 0 for w in weights) or sum(weights) <= 0):
            raise ValueError(f"weights must be {len(datasets)} non-negative numbers with a positive sum, got {weights}")
        self.datasets, self.weights = list(datasets), None if weights is None else [float(w) for w in weights]
        self.sizes = [len(d) for d in datasets]
        if 0 in self.sizes:
            raise ValueError(f"dataset {self.sizes.index(0)} of the mixture is empty")
        self.offsets = np.cumsum([0] + self.sizes).tolist()

    def __len__(self) -> int:
        return self.offsets[-1]

    def set_epoch(self, epoch: int) -> None:
        for d in self.datasets:
            if hasattr(d, "set_epoch"):
                d.set_epoch(epoch)

    def locate(self, index: int) -> tuple[int, int]:
        """(dataset number, index inside it) of a global index."""
        d = bisect.bisect_right(self.offsets, index) - 1
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a mixture of {len(self)} items")
        return d, index - self.offsets[d]

    def __getitem__(self, index) -> dict | None:
        i, key = (index[0], index[1]) if isinstance(index, (tuple, list)) else (index, None)
        d, j = self.locate(int(i))
        item = self.datasets[d][(j, key) if key is not None else j]
        if item is not None:
            item = dict(item, index=int(i))
        return item


def mixture_indices(
    sizes: Sequence[int], weights: Sequence[float] | None, num_samples: int, seed: int, epoch: int = 0
) -> np.ndarray:
    """num_samples global indices into datasets of `sizes` concatenated: a dataset drawn with
    probability w_d / sum(w) (uniform over all items without weights), then an item uniformly
    inside it; with replacement, a function of (seed, epoch) only."""
    rng = np.random.default_rng([seed, epoch])
    sizes = np.asarray(sizes, dtype=np.int64)
    if weights is None:
        return rng.integers(0, int(sizes.sum()), num_samples)
    p = np.asarray(weights, dtype=np.float64)
    d = rng.choice(len(sizes), size=num_samples, p=p / p.sum())
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return offsets[d] + (rng.random(num_samples) * sizes[d]).astype(np.int64)


def worker_threads_init(_worker_id: int) -> None:
    """DataLoader worker_init_fn: one torch thread per worker (workers share the machine's cores)."""
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
