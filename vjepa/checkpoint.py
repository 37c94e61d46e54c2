"""Checkpoints: atomic writes, safe loads (always weights_only=True), and the official V-JEPA
layout (`encoder`, `predictor`, `target_encoder`, ... with `module.backbone.` key prefixes) in
both directions, so released files load strictly into our models and ours into the official code.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn as nn

from vjepa.runtime import atomic_file

OFFICIAL_PREFIX = "module.backbone."


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unsafe, or does not fit the model."""


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


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with weights_only=True. A file whose pickle would build arbitrary objects
    (or run code) is refused with CheckpointError; nothing in it is executed."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"refusing to load {path}: it contains objects other than tensors and plain containers, "
            f"which could run code when unpickled (loaded with weights_only=True). Detail: {str(e).splitlines()[0]}"
        ) from None
    except (RuntimeError, EOFError) as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e}") from None


def strip_prefix(state: Mapping[str, torch.Tensor], prefixes=("module.", "backbone.")) -> dict:
    """Remove DDP's `module.` and the mask wrapper's `backbone.` from each key, in that order."""
    out = {}
    for k, v in state.items():
        for p in prefixes:
            if k.startswith(p):
                k = k[len(p):]
        out[k] = v
    return out


def add_prefix(state: Mapping[str, torch.Tensor], prefix: str = OFFICIAL_PREFIX) -> dict:
    return {prefix + k: v for k, v in state.items()}


def load_into(model: nn.Module, state: Mapping[str, torch.Tensor], where: str = "state dict") -> None:
    """Strict load with one readable error listing missing, unexpected and mis-shaped keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        def head(xs):
            return ", ".join(xs[:6]) + (f" ... (+{len(xs) - 6})" if len(xs) > 6 else "")
        parts = [f"missing {head(missing)}" if missing else "", f"unexpected {head(unexpected)}" if unexpected else "",
                 f"shape mismatch {head(shapes)}" if shapes else ""]
        raise CheckpointError(f"{where} does not fit {type(model).__name__}: " + "; ".join(p for p in parts if p))
    model.load_state_dict(state, strict=True)


def load_official_module(model: nn.Module, checkpoint: Mapping[str, Any], key: str, path: str = "checkpoint") -> None:
    """Load checkpoint[key] (e.g. 'target_encoder', 'encoder', 'predictor') strictly into model."""
    if key not in checkpoint:
        raise CheckpointError(f"{path} has no '{key}' entry; it has {sorted(checkpoint)}")
    load_into(model, strip_prefix(checkpoint[key]), where=f"{path}['{key}']")


def official_layout(encoder: nn.Module, predictor: nn.Module, target_encoder: nn.Module, *,
                    opt: dict | None = None, scaler: dict | None = None, epoch: int = 0, loss: float = 0.0,
                    batch_size: int = 0, world_size: int = 1, lr: float = 0.0, **extra) -> dict:
    """The dict the official pretraining code writes (spec section 5.1); `extra` adds our own
    entries (training state for exact resume), which the official loaders ignore."""
    def sd(m):
        return add_prefix({k: v.detach() for k, v in m.state_dict().items()})
    return {"encoder": sd(encoder), "predictor": sd(predictor), "target_encoder": sd(target_encoder),
            "opt": opt, "scaler": scaler, "epoch": epoch, "loss": float(loss), "batch_size": batch_size,
            "world_size": world_size, "lr": lr, **extra}


def export_official(path, encoder, predictor, target_encoder, **kw) -> Path:
    """Write an official-layout checkpoint atomically."""
    return save_atomic(official_layout(encoder, predictor, target_encoder, **kw), path)


def import_official(path, encoder: nn.Module | None = None, predictor: nn.Module | None = None,
                    target_encoder: nn.Module | None = None) -> dict:
    """Load a released (or our) V-JEPA file strictly into whichever models are given; returns the dict."""
    ck = load(path)
    for key, model in (("encoder", encoder), ("predictor", predictor), ("target_encoder", target_encoder)):
        if model is not None:
            load_official_module(model, ck, key, str(path))
    return ck
