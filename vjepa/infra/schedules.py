"""Hyper-parameter schedules of V-JEPA pretraining, as pure functions of the step.

`step` is 1-based: step s is the s-th optimizer update (the spec's table starts at step 1). Every
schedule is defined over T = int(scheduler_scale_factor * iterations) steps although training stops
at `iterations` (appendix A: "scale all hyper-parameter schedules 25% beyond the actual training
schedule"), so with the paper's 1.25 the LR ends near 7.5e-5 rather than 1e-6 and EMA near 0.9996.
Because each value depends on the step alone, resuming needs no scheduler state. Inside the schedule
the values equal the official schedulers' bit for bit; past its end (only reachable with a scale
factor below 1) they stay at their final values, where the official cosines would turn back.
"""

from __future__ import annotations

import math


def schedule_length(iterations: int, scale: float = 1.25) -> int:
    """T, the length every schedule is computed over: 112,500 for the paper's 90,000 iterations."""
    return int(scale * iterations)


def warmup_cosine_lr(step: int, *, lr: float, start_lr: float, final_lr: float, warmup: int, total: int) -> float:
    """Linear warmup start_lr -> lr over `warmup` steps, then cosine lr -> final_lr by step `total`."""
    if step < warmup:
        return start_lr + (step / max(1, warmup)) * (lr - start_lr)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))  # held at the end (official: wraps)
    return max(final_lr, final_lr + (lr - final_lr) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def linear_decay_lr(step: int, *, lr: float, final_lr: float, total: int) -> float:
    """V-JEPA 2's cooldown (LinearDecaySchedule): linear from lr toward final_lr over `total` steps,
    no warmup; the first update already takes one step of the decay. With the 1.25 stretch only 80%
    of it runs, so it ends at lr + 0.8 (final_lr - lr) (the released configs: near 1.06e-4)."""
    return lr + min(step / max(1, total), 1.0) * (final_lr - lr)


def cosine_weight_decay(step: int, *, start: float, final: float, total: int) -> float:
    """Cosine from `start` (0.04) to `final` (0.4) over `total` steps, clamped at `final`."""
    progress = min(1.0, step / total)
    wd = final + (start - final) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return max(final, wd) if final <= start else min(final, wd)


def linear_weight_decay(step: int, *, start: float, final: float, total: int) -> float:
    """Linear from `start` to `final` over `total` steps (the appendix's wording: "linearly increased")."""
    return start + min(step / total, 1.0) * (final - start)


def ema_momentum(step: int, *, start: float, final: float, total: int) -> float:
    """Linear from `start` (0.998) to `final` (1.0): the first update uses `start` exactly."""
    return start + (step - 1) * (final - start) / total


__all__ = [
    "schedule_length",
    "warmup_cosine_lr",
    "linear_decay_lr",
    "cosine_weight_decay",
    "linear_weight_decay",
    "ema_momentum",
]
