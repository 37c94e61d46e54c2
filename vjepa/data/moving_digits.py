"""Moving handwritten digits: real 8x8 digits (scikit-learn's 1,797, read from the installed
package's digits.csv.gz) upsampled and set in motion on a dark canvas.

A clip is the union of layers; each layer is one digit sprite following a trajectory:
position(t) = start + velocity * t' (t' runs back after a mid-clip reversal), floored to whole
pixels (so 0.5 px/frame moves one pixel every second frame: no motion inside a 2-frame tubelet),
plus optional per-frame jitter, on a torus ("wrap": uniform start, nothing gives the direction
away) or reflected at the borders ("bounce": the digit stays whole, so it has a box). Later layers
occlude earlier ones (alpha = ink intensity).
"""

from __future__ import annotations

import gzip
import importlib.util
import os
from dataclasses import dataclass

import numpy as np

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's handwritten digits from the package file: (float [1797, 8, 8] in [0, 1], labels [1797])."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("scikit-learn is not installed; it ships the handwritten digits (digits.csv.gz)")
    path = os.path.join(spec.submodule_search_locations[0], "datasets", "data", "digits.csv.gz")
    with gzip.open(path, "rt") as f:
        data = np.loadtxt(f, delimiter=",")
    return (data[:, :-1] / 16.0).reshape(-1, 8, 8).astype(np.float32), data[:, -1].astype(np.int64)


def split_digits(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint (train, val) digit indices, stratified by class, a function of the seed."""
    rng = np.random.default_rng([seed, 1])
    train, val = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(len(idx) * val_fraction))
        val.extend(idx[:k])
        train.extend(idx[k:])
    return np.sort(np.array(train)), np.sort(np.array(val))


def sprite(digit: np.ndarray, size: int) -> np.ndarray:
    """An 8x8 digit upsampled to size x size (bilinear), float in [0, 1]."""
    from PIL import Image

    im = Image.fromarray((digit * 255).astype(np.uint8)).resize((size, size), Image.BILINEAR)
    return np.asarray(im, dtype=np.float32) / 255.0


@dataclass
class Layer:
    """One digit in a clip: its sprite, integer top-left positions [T, 2] (y, x), ink level, and the
    frames where it is visible."""

    sprite: np.ndarray
    positions: np.ndarray
    intensity: float = 1.0
    visible: np.ndarray | None = None  # bool [T]


def trajectory(
    num_frames: int,
    start: tuple[float, float],
    velocity: tuple[float, float],
    canvas: int,
    size: int,
    boundary: str = "wrap",
    reverse_at: int | None = None,
    jitter: int = 0,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Integer top-left positions [T, 2]: floor(start + velocity * t'), t' folding back after
    `reverse_at`, plus uniform jitter in [-jitter, jitter]; wrapped modulo the canvas or reflected
    into [0, canvas - size]."""
    t = np.arange(num_frames, dtype=np.float64)
    if reverse_at is not None:
        t = np.where(t < reverse_at, t, 2 * reverse_at - t)
    pos = np.floor(np.asarray(start, np.float64)[None] + t[:, None] * np.asarray(velocity, np.float64)[None])
    pos = pos.astype(np.int64)
    if jitter:
        pos = pos + rng.integers(-jitter, jitter + 1, size=pos.shape)
    if boundary == "wrap":
        return pos % canvas
    if boundary == "bounce":
        span = canvas - size
        if span <= 0:
            return np.zeros_like(pos)
        p = pos % (2 * span)
        return np.where(p > span, 2 * span - p, p)
    raise ValueError(f"boundary must be 'wrap' or 'bounce', got {boundary!r}")


def heading(
    t: int,
    start: tuple[float, float],
    velocity: tuple[float, float],
    canvas: int,
    size: int,
    boundary: str = "wrap",
    reverse_at: int | None = None,
) -> tuple[int, int]:
    """Sign (dy, dx) of a digit's motion at frame t: the velocity, negated after a reversal and, when
    bouncing, on each axis currently travelling back from a border."""
    back = reverse_at is not None and t >= reverse_at
    v = np.sign(np.asarray(velocity, np.float64)) * (-1 if back else 1)
    if boundary == "bounce" and canvas > size:
        tt = (2 * reverse_at - t) if back else t
        p = np.asarray(start, np.float64) + tt * np.asarray(velocity, np.float64)
        v = v * np.where(p % (2 * (canvas - size)) < canvas - size, 1, -1)
    return int(v[0]), int(v[1])


def render(
    layers: list[Layer], num_frames: int, canvas: int, noise: float = 0.0, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Composite the layers (later on top) into uint8 [T, canvas, canvas, 3] grey frames, with
    optional Gaussian pixel noise of std `noise` on the [0, 1] scale."""
    out = np.zeros((num_frames, canvas, canvas), np.float32)
    for layer in layers:
        base = np.zeros((canvas, canvas), np.float32)
        s = layer.sprite[:canvas, :canvas]
        base[: s.shape[0], : s.shape[1]] = s
        for t in range(num_frames):
            if layer.visible is not None and not layer.visible[t]:
                continue
            alpha = np.roll(base, shift=tuple(layer.positions[t]), axis=(0, 1))
            out[t] = alpha * layer.intensity + (1 - alpha) * out[t]
    if noise > 0:
        out = out + rng.normal(0.0, noise, size=out.shape).astype(np.float32)
    frames = np.clip(np.rint(out * 255), 0, 255).astype(np.uint8)
    return np.repeat(frames[..., None], 3, axis=-1)


def ink_box(sprite_img: np.ndarray, threshold: float = 0.1) -> tuple[int, int, int, int]:
    """(y0, x0, y1, x1) of the sprite's ink, end-exclusive, relative to its top-left corner."""
    ys, xs = np.nonzero(sprite_img > threshold)
    if len(ys) == 0:
        return 0, 0, sprite_img.shape[0], sprite_img.shape[1]
    return int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1
