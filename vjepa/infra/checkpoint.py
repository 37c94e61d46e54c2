"""Checkpoints: atomic writes, safe loads (always weights_only=True), and the official V-JEPA
layout (`encoder`, `predictor`, `target_encoder`, ... with `module.backbone.` key prefixes) in
both directions, so released files load strictly into our models and ours into the official code.
"""

from __future__ import annotations

import math
import os
import pickle
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
import torch.nn as nn

from vjepa.infra.runtime import CheckpointError, atomic_file  # noqa: F401  (CheckpointError: re-exported)

OFFICIAL_PREFIX = "module.backbone."


def save_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """torch.save to a temp file in the same folder, fsync, then rename: a crash never leaves a
    half-written file under `path`."""
    path = Path(path)
    with atomic_file(path, "wb") as f:
        try:
            torch.save(obj, f)
        except RuntimeError as e:  # torch wraps the file object's OSError; name the file and the cause
            cause = e.__cause__ or e.__context__
            if isinstance(cause, OSError):
                raise cause from e
            raise
    return path


# the first bytes of the two formats torch.save writes: a zip archive, or a bare pickle (protocol 2+)
_MAGIC = (b"PK\x03\x04", b"\x80")


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with weights_only=True. A file whose pickle would build arbitrary objects
    (or run code) is refused with CheckpointError; nothing in it is executed. So is a file that is
    not a torch checkpoint at all (an HTML error page, a text file), one that is not a dict, and
    one whose tensors claim more data than the file holds (see `check_allocation`)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    with open(path, "rb") as f:
        head = f.read(64)
    if not head.startswith(_MAGIC):
        text = head.decode("utf-8", "replace").strip().lower()
        kind = (
            "an HTML page (a failed download or an error page saved under this name?)"
            if text.startswith(("<!doctype html", "<html", "<?xml", "<"))
            else "an empty file"
            if not head
            else f"a file that starts {head[:16]!r}"
        )
        raise CheckpointError(
            f"{path}: not a PyTorch checkpoint (neither a torch.save zip archive nor a pickle); it is {kind}"
        )
    try:
        ck = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        detail = str(e).splitlines()[0]
        if "weights only" not in str(e).lower():  # torch's wording for a refused global
            raise CheckpointError(
                f"{path}: not a readable checkpoint (corrupt or truncated pickle: {detail})"
            ) from None
        raise CheckpointError(
            f"refusing to load {path}: it contains objects other than tensors and plain containers, "
            f"which could run code when unpickled (loaded with weights_only=True). Detail: {detail}"
        ) from None
    except Exception as e:  # torch's readers raise RuntimeError, EOFError, KeyError, ValueError, ... on bad bytes
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(ck, dict):
        raise CheckpointError(
            f"{path}: holds a {type(ck).__name__}, not a dict of entries (a checkpoint is "
            "{'encoder': state dict, ...} or a state dict)"
        )
    check_allocation(ck, path)
    return ck


def _tensors(obj: Any, where: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    if isinstance(obj, torch.Tensor):
        yield where, obj
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from _tensors(v, f"{where}[{k!r}]")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{where}[{i}]")


def check_allocation(ck: Any, path: str | os.PathLike) -> None:
    """The one bound on what a checkpoint may make us allocate: every tensor's data must be in the
    file (no stride-0 expansion or view past its storage claiming more elements than were stored),
    and the tensors of each entry (a state dict, from which one model is built) together at most the
    file's size (entries may share data: a target encoder saved as the encoder). Models are built
    from these shapes, so a 6 KB file cannot ask for 19 GB. Raises CheckpointError naming the tensor."""
    size = Path(path).stat().st_size
    for entry, value in ck.items() if isinstance(ck, Mapping) else [("", ck)]:
        total = 0
        for where, t in _tensors(value, f"[{entry!r}]"):
            claimed = t.numel() * t.element_size()
            held = t.untyped_storage().nbytes() - t.storage_offset() * t.element_size()
            if t.numel() and claimed > held:
                raise CheckpointError(
                    f"{path}: tensor {where} claims shape {tuple(t.shape)} ({claimed:,} bytes) but "
                    f"the file stores {max(held, 0):,} bytes of it (a stride-0 expansion or a view "
                    "past its data); refusing to build a model of that size"
                )
            total += claimed
        if total > size:
            raise CheckpointError(
                f"{path}: the tensors of entry {entry!r} claim {total:,} bytes in all, more than the "
                f"file's {size:,} bytes (tensors sharing data under many names); refusing to build a "
                "model of that size"
            )


def check_state_dict(state: Any, where: str) -> None:
    """A state dict is a mapping of names to tensors; anything else is named as CheckpointError."""
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{where}: holds a {type(state).__name__}, not a state dict (names -> tensors)")
    bad = [str(k) for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(
            f"{where}: entries that are not named tensors: {', '.join(bad[:6])}"
            + (f" ... (+{len(bad) - 6})" if len(bad) > 6 else "")
        )


def strip_prefix(state: Mapping[str, torch.Tensor], prefixes=("module.", "backbone.")) -> dict:
    """Remove DDP's `module.` and the mask wrapper's `backbone.` from each key, in that order."""
    out = {}
    for k, v in state.items():
        for p in prefixes:
            if k.startswith(p):
                k = k[len(p) :]
        out[k] = v
    return out


def add_prefix(state: Mapping[str, torch.Tensor], prefix: str = OFFICIAL_PREFIX) -> dict:
    return {prefix + k: v for k, v in state.items()}


def load_into(model: nn.Module, state: Mapping[str, torch.Tensor], where: str = "state dict") -> None:
    """Strict load with one readable error listing missing, unexpected and mis-shaped keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or shapes:

        def head(xs):
            return ", ".join(xs[:6]) + (f" ... (+{len(xs) - 6})" if len(xs) > 6 else "")

        parts = [
            f"missing {head(missing)}" if missing else "",
            f"unexpected {head(unexpected)}" if unexpected else "",
            f"shape mismatch {head(shapes)}" if shapes else "",
        ]
        raise CheckpointError(f"{where} does not fit {type(model).__name__}: " + "; ".join(p for p in parts if p))
    model.load_state_dict(state, strict=True)


# the fixed sin-cos tables that V-JEPA 2's hub loader says its files still carry; a 3D-RoPE model has no
# such parameter, so these are the only keys ever dropped, and only when loading into a RoPE model
UNUSED_WITH_ROPE = frozenset({"pos_embed", "predictor_pos_embed"})


def load_official_module(model: nn.Module, checkpoint: Mapping[str, Any], key: str, path: str = "checkpoint") -> None:
    """Load checkpoint[key] (e.g. 'target_encoder', 'encoder', 'predictor') strictly into model; of a
    V-JEPA 2 file into a RoPE model, only the unused sin-cos tables (UNUSED_WITH_ROPE) are left out."""
    if key not in checkpoint:
        raise CheckpointError(f"{path} has no '{key}' entry; it has {sorted(map(str, checkpoint))}")
    check_state_dict(checkpoint[key], f"{path}['{key}']")
    state = strip_prefix(checkpoint[key])
    if getattr(model, "pos_encoding", "sincos") == "rope3d":
        state = {k: v for k, v in state.items() if k not in UNUSED_WITH_ROPE}
    load_into(model, state, where=f"{path}['{key}']")


def official_layout(
    encoder: nn.Module,
    predictor: nn.Module,
    target_encoder: nn.Module,
    *,
    opt: dict | None = None,
    scaler: dict | None = None,
    epoch: int = 0,
    loss: float = 0.0,
    batch_size: int = 0,
    world_size: int = 1,
    lr: float = 0.0,
    **extra,
) -> dict:
    """The dict the official pretraining code writes (spec section 5.1); `extra` adds our own
    entries (training state for exact resume), which the official loaders ignore."""

    def sd(m):
        return add_prefix({k: v.detach() for k, v in m.state_dict().items()})

    return {
        "encoder": sd(encoder),
        "predictor": sd(predictor),
        "target_encoder": sd(target_encoder),
        "opt": opt,
        "scaler": scaler,
        "epoch": epoch,
        "loss": float(loss),
        "batch_size": batch_size,
        "world_size": world_size,
        "lr": lr,
        **extra,
    }


def export_official(path, encoder, predictor, target_encoder, **kw) -> Path:
    """Write an official-layout checkpoint atomically."""
    return save_atomic(official_layout(encoder, predictor, target_encoder, **kw), path)


def import_official(
    path, encoder: nn.Module | None = None, predictor: nn.Module | None = None, target_encoder: nn.Module | None = None
) -> dict:
    """Load a released (or our) V-JEPA file strictly into whichever models are given; returns the dict."""
    ck = load(path)
    for key, model in (("encoder", encoder), ("predictor", predictor), ("target_encoder", target_encoder)):
        if model is not None:
            load_official_module(model, ck, key, str(path))
    return ck


def encoder_config_from_state(
    state: Mapping[str, torch.Tensor],
    *,
    num_frames: int | None = None,
    img_size: int | None = None,
    num_heads: int | None = None,
    where: str = "checkpoint",
    pos_encoding: str | None = None,
):
    """The ModelConfig of the encoder whose state dict (prefixes stripped) this is, read from its
    shapes: width, channels, tubelet and patch from `patch_embed.proj.weight` [D, C, t, p, p], depth
    from the blocks, MLP ratio from `fc1`, and the token grid from `pos_embed` [1, N, D] with the
    clip's frame count (default 16, every released model) or its image size. Heads are not in the
    shapes: they come from `num_heads`, else from the size table row of that width and depth.
    A RoPE encoder (pos_encoding 'rope3d', or no `pos_embed` in the state) has no grid in its weights:
    num_frames and img_size must be given, and a ViT-g width and depth mean V-JEPA 2's 22 heads."""
    from vjepa.infra.configs import ModelConfig
    from vjepa.infra.configs import SIZES

    check_state_dict(state, where)
    pos_encoding = pos_encoding or ("sincos" if "pos_embed" in state else "rope3d")
    if pos_encoding == "rope3d":
        return _rope_encoder_config(state, num_frames, img_size, num_heads, where)

    w = state.get("patch_embed.proj.weight")
    if w is None or w.ndim != 5:
        raise CheckpointError(
            f"{where}: no 3D patch embedding 'patch_embed.proj.weight' [D, C, t, p, p]; not a V-JEPA video encoder"
        )
    D, C, t, p, p2 = w.shape
    if min(w.shape) < 1:
        raise CheckpointError(f"{where}: 'patch_embed.proj.weight' has a zero-size dimension {tuple(w.shape)}")
    if p != p2:
        raise CheckpointError(f"{where}: non-square patches {p}x{p2} are not supported")
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    if depth == 0:
        raise CheckpointError(f"{where}: no transformer blocks ('blocks.<i>.*') in the encoder state")
    for k, ndim in (("blocks.0.mlp.fc1.weight", 2), ("pos_embed", 3)):
        if k not in state:
            raise CheckpointError(
                f"{where}: no '{k}'"
                + (
                    "; a V-JEPA 1 encoder stores its fixed positions"
                    if k == "pos_embed"
                    else " (the first block's MLP)"
                )
            )
        if state[k].ndim != ndim or min(state[k].shape) < 1:
            raise CheckpointError(
                f"{where}: '{k}' has shape {tuple(state[k].shape)}, expected {ndim} non-zero dimensions"
            )
    mlp_ratio = state["blocks.0.mlp.fc1.weight"].shape[0] / D
    N = state["pos_embed"].shape[1]
    if img_size is not None:
        hw = (img_size // p) ** 2
        if img_size % p or N % hw:
            raise CheckpointError(f"{where}: {N} positions do not tile into {img_size}px frames of {p}px patches")
        frames = N // hw * t
        if num_frames is not None and num_frames != frames:
            raise CheckpointError(f"{where}: {N} positions at {img_size}px make {frames} frames, not {num_frames}")
    else:
        frames = 16 if num_frames is None else num_frames
        side = math.isqrt(N // max(frames // t, 1)) if frames % t == 0 else 0
        if frames % t or (frames // t) * side * side != N:
            raise CheckpointError(
                f"{where}: {N} positions do not make square frames at {frames} frames of tubelet {t}; "
                f"pass num_frames= (or img_size=) to say the clip the encoder was trained on"
            )
        img_size = side * p
    row = next(
        (name for name, (d, n, _, r) in SIZES.items() if d == D and n == depth and abs(r - mlp_ratio) < 1e-6), None
    )
    if num_heads is None:
        if row is None:
            raise CheckpointError(
                f"{where}: width {D} and depth {depth} match no standard size, and the number of "
                "attention heads is not in the weights' shapes; pass num_heads="
            )
        num_heads = SIZES[row][2]
    if D % num_heads:
        raise CheckpointError(f"{where}: {num_heads} heads do not divide width {D}")
    if row is not None and num_heads == SIZES[row][2]:
        return ModelConfig(size=row, img_size=img_size, patch_size=p, num_frames=frames, tubelet_size=t, in_chans=C)
    return ModelConfig(
        size="custom",
        img_size=img_size,
        patch_size=p,
        num_frames=frames,
        tubelet_size=t,
        in_chans=C,
        embed_dim=D,
        depth=depth,
        num_heads=num_heads,
        mlp_ratio=None if mlp_ratio == 4.0 else mlp_ratio,
    )


def _rope_encoder_config(
    state: Mapping[str, torch.Tensor], num_frames: int | None, img_size: int | None, num_heads: int | None, where: str
):
    """encoder_config_from_state for a 3D-RoPE (V-JEPA 2) encoder, whose weights hold no token grid."""
    from vjepa.infra.configs import ModelConfig
    from vjepa.infra.configs import SIZES

    if num_frames is None or img_size is None:
        raise CheckpointError(
            f"{where}: a RoPE encoder's clip size is not in its weights; pass num_frames= and "
            "img_size= (the released V-JEPA 2 encoders: 64 frames at 256 or 384 px)"
        )
    w = state.get("patch_embed.proj.weight")
    if w is None or w.ndim != 5:
        raise CheckpointError(f"{where}: no 3D patch embedding 'patch_embed.proj.weight' [D, C, t, p, p]")
    D, C, t, p, _ = w.shape
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    if depth == 0:
        raise CheckpointError(f"{where}: no transformer blocks ('blocks.<i>.*') in the encoder state")
    mlp_ratio = state["blocks.0.mlp.fc1.weight"].shape[0] / D
    rows = [name for name, (d, n, _, r) in SIZES.items() if d == D and n == depth and abs(r - mlp_ratio) < 1e-6]
    # V-JEPA 2 names its 22-head ViT-g 'giant_xformers'; V-JEPA 1's 16-head 'giant' has the same shapes
    row = next((r for r in rows if r.endswith("_xformers")), rows[0] if rows else None)
    if num_heads is None:
        if row is None:
            raise CheckpointError(
                f"{where}: width {D} and depth {depth} match no standard size, and the number of "
                "attention heads is not in the weights' shapes; pass num_heads="
            )
        num_heads = SIZES[row][2]
    common = dict(
        img_size=img_size,
        patch_size=p,
        num_frames=num_frames,
        tubelet_size=t,
        in_chans=C,
        pos_encoding="rope3d",
        pred_num_heads=12,
        num_mask_tokens=10,
        pred_sort_tokens=True,
        mask_token_per="group",
    )
    if row is not None and num_heads == SIZES[row][2]:
        return ModelConfig(size=row, **common)
    return ModelConfig(
        size="custom",
        embed_dim=D,
        depth=depth,
        num_heads=num_heads,
        mlp_ratio=None if mlp_ratio == 4.0 else mlp_ratio,
        **common,
    )
