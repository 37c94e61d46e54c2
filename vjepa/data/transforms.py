"""Clip transforms. Call convention: transform(frames uint8 ndarray [T, H, W, 3], rng=None) ->
FloatTensor [V, C, T, H, W] (V spatial views), normalised with the ImageNet mean and std.

Every random choice is made once per clip, so all frames get the same crop, flip, augmentation ops
and erasing box. `rng` (a numpy Generator) makes a clip's augmentation a function of the caller's
seed; without it the draws come from numpy's global RNG (seeded per DataLoader worker by torch).

timm supplies RandAugment, AutoAugment and RandomErasing, which assume single images: RandAugment
and AutoAugment draw their ops from Python's and numpy's global RNGs per call, so ClipRandAugment
re-seeds those identically before each frame (and restores them after); RandomErasing treats the
first axis of a 4-D tensor as a batch (one box per frame), so ClipRandomErasing hands it the clip
as one [C*T, H, W] image: one box through every frame, fresh noise per frame.
"""

from __future__ import annotations

import math
import random
from contextlib import contextmanager
from typing import NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from vjepa.infra.configs import RAND_AUGMENT

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _rng(rng: np.random.Generator | None) -> np.random.Generator:
    return rng if rng is not None else np.random.default_rng(np.random.randint(0, 2**31 - 1))


@contextmanager
def _global_rngs():
    """Save Python's, numpy's and torch's global RNG states and restore them afterwards."""
    state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        yield
    finally:
        random.setstate(state[0])
        np.random.set_state(state[1])
        torch.set_rng_state(state[2])


def _seed_globals(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.default_generator.manual_seed(seed)  # CPU only: torch.manual_seed would also queue CUDA seeding


def _as_tensor(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(frames, np.ndarray):  # torch wants writable memory (PIL's is not)
        return torch.from_numpy(np.require(frames, requirements=["C", "W"]))
    return frames


def to_clip_tensor(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> contiguous float [C, T, H, W] in [0, 1], on the frames' device (one
    pass: the transpose happens in the conversion)."""
    return _as_tensor(frames).permute(3, 0, 1, 2).to(torch.float32, memory_format=torch.contiguous_format).div_(255.0)


def normalize(
    clip: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD, flip: bool = False, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-channel (x - mean) / std of a [C, T, H, W] clip in [0, 1], written to a contiguous tensor
    whatever the input's layout (the same two IEEE operations per element, so the same bits): the
    eval views are crops of a larger clip, and a batch stacked from strided clips costs several
    times the stack of contiguous ones. flip: of the clip mirrored along its width, normalised in
    the flipped copy itself when that is contiguous and no `out` is given. out: where to write, e.g. the clip
    itself when
    it is a contiguous tensor of the caller's own."""
    m = torch.tensor(mean, dtype=clip.dtype, device=clip.device).view(-1, 1, 1, 1)
    s = torch.tensor(std, dtype=clip.dtype, device=clip.device).view(-1, 1, 1, 1)
    if flip:
        clip = clip.flip(-1)  # a copy of this call's own, laid out as the input
        if out is None and clip.is_contiguous():
            out = clip
    if out is None:
        out = torch.empty(clip.shape, dtype=clip.dtype, device=clip.device)
    return torch.sub(clip, m, out=out).div_(s)


def resize(clip: torch.Tensor, size: tuple[int, int], antialias: bool = False) -> torch.Tensor:
    """Bilinear resize of a [C, T, H, W] clip to (h, w), align_corners=False (official), contiguous
    (a clip already that size comes back as it is). Every [H, W] plane goes to interpolate as a
    one-channel image of its own ([C*T, 1, H, W]), so each comes out bit for bit as it would alone:
    whatever the other frames, the clip's layout or torch's thread count. Frames as the batch with
    channels innermost ([T, C, H, W] channels-last) round differently with one thread than with two,
    and the official [C, T] layout vectorises across frames, so a frame's bits can depend on the others."""
    if tuple(clip.shape[-2:]) == tuple(size):
        return clip
    c, t, h, w = clip.shape
    out = F.interpolate(
        clip.reshape(c * t, 1, h, w), size=size, mode="bilinear", align_corners=False, antialias=antialias
    )
    return out.view(c, t, *size)


def random_resized_box(
    h: int, w: int, scale: tuple[float, float], ratio: tuple[float, float], rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a random crop: area fraction ~ U(scale), aspect w/h log-uniform
    in ratio, 10 tries, then the centre crop at the nearest allowed aspect (as torchvision)."""
    area = h * w
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        ar = math.exp(rng.uniform(*log_r))
        cw, ch = int(round(math.sqrt(target * ar))), int(round(math.sqrt(target / ar)))
        if 0 < cw <= w and 0 < ch <= h:
            return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw
    in_ratio = w / h
    if in_ratio < ratio[0]:
        cw, ch = w, int(round(w / ratio[0]))
    elif in_ratio > ratio[1]:
        ch, cw = h, int(round(h * ratio[1]))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


class ClipRandAugment:
    """timm RandAugment (default rand-m7-n4-mstd0.5-inc1, bicubic) with the same ops, magnitudes and
    signs on every frame of a clip: uint8 [T, H, W, 3] -> uint8 [T, H, W, 3]."""

    def __init__(self, config: str = RAND_AUGMENT, img_size: int = 224, interpolation: str = "bicubic"):
        from timm.data.auto_augment import auto_augment_transform, rand_augment_transform
        from timm.data.transforms import str_to_pil_interp

        hparams = {"translate_const": int(img_size * 0.45), "interpolation": str_to_pil_interp(interpolation)}
        self.config = config
        self.op = (
            rand_augment_transform(config, hparams)
            if config.startswith("rand")
            else auto_augment_transform(config, hparams)
        )

    def __call__(self, frames: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        from PIL import Image

        seed = int(_rng(rng).integers(0, 2**31 - 1))
        out = np.empty_like(frames)
        with _global_rngs():
            for t in range(len(frames)):
                _seed_globals(seed)  # same draws for every frame
                out[t] = np.asarray(self.op(Image.fromarray(frames[t])))
        return out


def ClipAutoAugment(policy: str = "original", img_size: int = 224, interpolation: str = "bicubic") -> ClipRandAugment:
    """timm AutoAugment (IN1K probe: 'original') with the same sub-policy on every frame."""
    return ClipRandAugment(policy, img_size, interpolation)


class ClipRandomErasing:
    """timm RandomErasing on a normalised [C, T, H, W] clip with one box through all frames
    (VideoMAE's cube erasing); mode 'pixel' fills it with fresh N(0, 1) noise per frame."""

    def __init__(self, probability: float = 0.25, mode: str = "pixel", max_count: int = 1):
        from timm.data.random_erasing import RandomErasing

        self.erase = RandomErasing(probability=probability, mode=mode, max_count=max_count, device="cpu")

    def __call__(self, clip: torch.Tensor, rng: np.random.Generator | None = None) -> torch.Tensor:
        c, t, h, w = clip.shape
        flat = clip.contiguous().view(c * t, h, w)  # one "image" of C*T channels: one box for the clip
        with _global_rngs():
            _seed_globals(int(_rng(rng).integers(0, 2**31 - 1)))
            self.erase(flat)
        return flat.view(c, t, h, w)


class ClipColorJitter:
    """torchvision ColorJitter with one draw of factors per clip, on a [C, T, H, W] clip in [0, 1]."""

    def __init__(self, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4, hue: float = 0.0):
        from torchvision.transforms import v2

        self.jitter = v2.ColorJitter(brightness, contrast, saturation, hue)

    def __call__(self, clip: torch.Tensor, rng: np.random.Generator | None = None) -> torch.Tensor:
        with _global_rngs():
            _seed_globals(int(_rng(rng).integers(0, 2**31 - 1)))
            return self.jitter(clip.transpose(0, 1)).transpose(0, 1)  # frames as a batch: shared factors


class UnfinishedClip(NamedTuple):
    """A clip as a loader worker leaves it with finish_on_device: its random box cut from the
    decoded frames (uint8 [T, h, w, 3], a view) and the flip draw; the transform's `finish` does
    the rest where the clips are consumed."""

    box: np.ndarray
    flip: bool
    transform: "TrainClipTransform"  # whose finish completes it


class TrainClipTransform:
    """Random resized crop (one box per clip) -> optional horizontal flip -> ImageNet normalisation,
    with optional clip-consistent RandAugment/AutoAugment before the crop (official order), colour
    jitter and random erasing after normalisation. Returns [1, C, T, size, size], or with
    finish_on_device an UnfinishedClip (same draws), which `collate` gathers into UnfinishedClips
    for the training process to finish on its GPU (plain transform only)."""

    def __init__(
        self,
        img_size: int,
        scale=(0.3, 1.0),
        ratio=(0.75, 1.33),
        hflip: bool = True,
        auto_augment: str | None = None,
        reprob: float = 0.0,
        color_jitter: float | None = None,
        interpolation: str = "bicubic",
        antialias: bool = False,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        finish_on_device: bool = False,
    ):
        self.size, self.scale, self.ratio, self.hflip = img_size, tuple(scale), tuple(ratio), hflip
        self.augment = ClipRandAugment(auto_augment, img_size, interpolation) if auto_augment else None
        self.jitter = ClipColorJitter(color_jitter, color_jitter, color_jitter) if color_jitter else None
        self.erase = ClipRandomErasing(reprob) if reprob > 0 else None
        self.antialias, self.mean, self.std = antialias, mean, std
        if finish_on_device and not self.plain:
            raise ValueError(
                "finish_on_device needs the plain transform (crop, flip, normalise): RandAugment, "
                "colour jitter and random erasing run on the decoded frames in the worker"
            )
        self.finish_on_device = finish_on_device

    @property
    def finishing(self) -> tuple:
        """What `finish` does with a box: (size, antialias, mean, std)."""
        return self.size, self.antialias, tuple(self.mean), tuple(self.std)

    @property
    def plain(self) -> bool:
        return self.augment is None and self.jitter is None and self.erase is None

    def crop(self, frames: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
        """The CPU half of the plain transform (no RandAugment, jitter or erasing): the clip's random
        box cut from the uint8 frames (a view, no copy) and the flip draw, in the draw order of __call__."""
        top, left, h, w = random_resized_box(frames.shape[1], frames.shape[2], self.scale, self.ratio, rng)
        return frames[:, top : top + h, left : left + w], bool(self.hflip and rng.random() < 0.5)

    def finish(self, crop: np.ndarray | torch.Tensor, flip: bool, device: torch.device | str = "cpu") -> torch.Tensor:
        """The rest on `device` (e.g. a GPU, so the loader's workers only decode and crop): the uint8
        crop [T, h, w, 3] to float, resized, flipped, normalised -> [1, C, T, size, size]. On the CPU
        the same operations in the same order as __call__ (bit-identical, pinned by a test)."""
        clip = to_clip_tensor(_as_tensor(crop).to(device, non_blocking=True))
        clip = resize(clip, (self.size, self.size), self.antialias)
        # the clip is this call's own: normalised in place (or its mirrored copy is)
        return normalize(clip, self.mean, self.std, flip=flip, out=None if flip else clip).unsqueeze(0)

    def __call__(self, frames: np.ndarray, rng: np.random.Generator | None = None) -> torch.Tensor | UnfinishedClip:
        rng = _rng(rng)
        if self.finish_on_device:
            return UnfinishedClip(*self.crop(frames, rng), self)
        if self.plain:
            return self.finish(*self.crop(frames, rng))  # crop before converting: cheaper
        if self.augment is not None:
            frames = self.augment(frames, rng)
        top, left, h, w = random_resized_box(frames.shape[1], frames.shape[2], self.scale, self.ratio, rng)
        clip = to_clip_tensor(frames[:, top : top + h, left : left + w])  # crop before converting: cheaper
        clip = resize(clip, (self.size, self.size), self.antialias)
        if self.hflip and rng.random() < 0.5:
            clip = clip.flip(-1)
        if self.jitter is not None:
            clip = self.jitter(clip, rng)
        clip = normalize(clip, self.mean, self.std)
        if self.erase is not None:
            clip = self.erase(clip, rng)
        return clip.unsqueeze(0)


class EvalClipTransform:
    """Deterministic views. num_views=1: short side to int(size * resize_ratio), centre crop.
    num_views=3 (official EvalVideoTransform): short side to `size`, three crops along the long
    side at offsets 0, s, 2s with s = (L - size) // 2. Returns [V, C, T, size, size]."""

    def __init__(
        self,
        img_size: int,
        num_views: int = 1,
        resize_ratio: float = 256 / 224,
        antialias: bool = False,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    ):
        if num_views not in (1, 3):
            raise ValueError(f"num_views must be 1 or 3, got {num_views}")
        self.size, self.num_views, self.resize_ratio = img_size, num_views, resize_ratio
        self.antialias, self.mean, self.std = antialias, mean, std

    def __call__(self, frames: np.ndarray, rng: np.random.Generator | None = None) -> torch.Tensor:
        clip = to_clip_tensor(frames)
        h, w = clip.shape[-2:]
        short = self.size if self.num_views == 3 else int(self.size * self.resize_ratio)
        nh, nw = (short, max(short, round(w * short / h))) if h <= w else (max(short, round(h * short / w)), short)
        clip = normalize(resize(clip, (nh, nw), self.antialias), self.mean, self.std)
        s = self.size
        if self.num_views == 1:
            top, left = (nh - s) // 2, (nw - s) // 2
            return clip[..., top : top + s, left : left + s].unsqueeze(0)
        views = []
        for k in range(3):
            if nw >= nh:
                top, left = (nh - s) // 2, k * ((nw - s) // 2)
            else:
                top, left = k * ((nh - s) // 2), (nw - s) // 2
            views.append(clip[..., top : top + s, left : left + s])
        return torch.stack(views)


class UnfinishedClips:
    """A batch of UnfinishedClip as `collate` makes it: every box (they differ in size) in one flat
    uint8 buffer, in shared memory inside a DataLoader worker, so that the batch crosses to the GPU
    as one pinned copy (DataLoader(pin_memory=True) calls pin_memory). `finish(device)` converts,
    resizes, flips and normalises there: float [B, C, T, size, size], on the CPU the numbers of the
    worker transform bit for bit (pinned by a test)."""

    def __init__(
        self,
        data: torch.Tensor,
        shapes: Sequence[tuple[int, int, int]],
        flips: Sequence[bool],
        transform: TrainClipTransform,
    ):
        self.data, self.shapes, self.flips, self.transform = data, [tuple(s) for s in shapes], list(flips), transform

    @classmethod
    def collate(cls, clips: Sequence[UnfinishedClip]) -> UnfinishedClips:
        transform = clips[0].transform
        if any(c.transform.finishing != transform.finishing for c in clips):
            raise ValueError(
                "a batch mixes clips to be finished differently: "
                f"{sorted({c.transform.finishing for c in clips})} (size, antialias, mean, std)"
            )
        shapes = [c.box.shape[:3] for c in clips]
        data = torch.empty(sum(int(np.prod(s)) * 3 for s in shapes), dtype=torch.uint8)
        if torch.utils.data.get_worker_info() is not None:
            data.share_memory_()  # sent to the main process without another copy
        flat, at = data.numpy(), 0
        for c in clips:
            flat[at : at + c.box.size].reshape(c.box.shape)[...] = c.box
            at += c.box.size
        return cls(data, shapes, [c.flip for c in clips], transform)

    def __len__(self) -> int:
        return len(self.shapes)

    @property
    def num_frames(self) -> int:
        return self.shapes[0][0] if self.shapes else 0

    def pin_memory(self) -> UnfinishedClips:
        return UnfinishedClips(self.data.pin_memory(), self.shapes, self.flips, self.transform)

    def finish(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """float [B, C, T, size, size] on `device`."""
        data, at, out = self.data.to(device, non_blocking=True), 0, []
        for (t, h, w), flip in zip(self.shapes, self.flips):
            out.append(self.transform.finish(data[at : at + t * h * w * 3].view(t, h, w, 3), flip, device))
            at += t * h * w * 3
        return torch.cat(out)


def pretrain_transform(
    img_size: int, scale=(0.3, 1.0), ratio=(0.75, 1.33), hflip: bool = True, finish_on_device: bool = False
) -> TrainClipTransform:
    """Pretraining (appendix Table 5): random resized crop at scale (0.3, 1), aspect (0.75, 1.33)
    (official: 1.35), horizontal flip, ImageNet normalisation; no other augmentation.
    finish_on_device: the worker only cuts the box (see UnfinishedClips)."""
    return TrainClipTransform(img_size, scale, ratio, hflip, finish_on_device=finish_on_device)


def probe_train_transform(
    img_size: int,
    scale=(0.08, 1.0),
    ratio=(0.75, 1.33),
    hflip: bool = True,
    auto_augment: str | None = None,
    reprob: float = 0.0,
) -> TrainClipTransform:
    """Probe training (appendix Table 6): random resized crop at scale (0.08, 1), flip. Options:
    auto_augment=RAND_AUGMENT with reprob=0.25 and hflip=False is the official video probe;
    auto_augment='original' is the IN1K AutoAugment."""
    return TrainClipTransform(img_size, scale, ratio, hflip, auto_augment=auto_augment, reprob=reprob)


def finetune_train_transform(
    img_size: int,
    hflip: bool = True,
    auto_augment: str | None = RAND_AUGMENT,
    color_jitter: float | None = 0.4,
    reprob: float = 0.25,
    interpolation: str = "bicubic",
    scale=(0.08, 1.0),
    ratio=(3 / 4, 4 / 3),
) -> TrainClipTransform:
    """Finetuning (appendix Table 8, VideoMAE): clip-consistent RandAugment rand-m7-n4-mstd0.5-inc1
    (bicubic), random resized crop at scale (0.08, 1), flip (off for SSv2), colour jitter 0.4 (the
    appendix lists it; VideoMAE and timm skip jitter when RandAugment is on: color_jitter=None),
    normalisation, random erasing 0.25 in pixel mode with one box through the clip."""
    return TrainClipTransform(
        img_size,
        scale,
        ratio,
        hflip,
        auto_augment=auto_augment,
        reprob=reprob,
        color_jitter=color_jitter,
        interpolation=interpolation,
    )


class RepeatedAugment:
    """Repeated augmentation (VideoMAE num_sample): `transform` applied num_sample times to the same
    decoded frames, each with its own draws, stacked as views [num_sample * V, C, T, H, W]."""

    def __init__(self, transform, num_sample: int = 2):
        if num_sample < 1:
            raise ValueError(f"num_sample must be >= 1, got {num_sample}")
        self.transform, self.num_sample = transform, num_sample

    def __call__(self, frames: np.ndarray, rng: np.random.Generator | None = None) -> torch.Tensor:
        rng = _rng(rng)
        return torch.cat([self.transform(frames, rng=rng) for _ in range(self.num_sample)])


def eval_transform(img_size: int, num_views: int = 1, resize_ratio: float = 256 / 224) -> EvalClipTransform:
    """Evaluation: short-side resize and centre crop (1 view) or 3 crops along the long side."""
    return EvalClipTransform(img_size, num_views, resize_ratio)
