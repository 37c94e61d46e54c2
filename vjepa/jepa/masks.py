"""3D multi-block masks (the paper's short-range and long-range masks), random-tube masks, the mask
statistics of the ablation tables, and a picture of sampled masks (the appendix's Figure 6).

A mask is a pair of int64 index tensors over the token grid (t, h, w) flattened time-slowest:
context [B, K_ctx] (tokens the context encoder keeps) and target [B, K_tgt] (tokens to predict),
each in ascending order. Blocks span the full clip in time by default; the context is the
complement of the union of the blocks. Within a batch every sample has the same block size and
the same index counts (longer lists are cut to the batch minimum, keeping the lowest indices).

Randomness is a function of (seed, step, rank), so masks need no saved state to resume exactly:
the block size is drawn from a generator seeded with the step alone (as the official collator's
counter does, so both give the same sizes), the block positions from one seeded with all three.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from vjepa.infra.runtime import mix_seed
from vjepa.infra.configs import (
    MaskConfig,
)


class MaskGenerator:
    """Samples the (context, target) indices of one mask config for a batch."""

    def __init__(self, cfg: MaskConfig, grid: tuple[int, int, int], seed: int = 0, rank: int = 0, index: int = 0):
        cfg.validate()
        self.cfg, self.grid = cfg, tuple(grid)
        self.seed, self.rank, self.index = seed, rank, index

    def block_size(self, step: int) -> tuple[int, int, int]:
        """(t, h, w) of every block in the batch at this step."""
        T, H, W = self.grid
        c = self.cfg
        g = torch.Generator().manual_seed(step)
        r_t, r_s, r_a = (torch.rand(1, generator=g).item() for _ in range(3))
        t = max(1, int(T * (c.temporal_scale[0] + r_t * (c.temporal_scale[1] - c.temporal_scale[0]))))
        keep = int(H * W * (c.spatial_scale[0] + r_s * (c.spatial_scale[1] - c.spatial_scale[0])))
        ar = c.aspect_ratio[0] + r_a * (c.aspect_ratio[1] - c.aspect_ratio[0])  # h / w
        h = min(int(round(math.sqrt(keep * ar))), H)
        w = min(int(round(math.sqrt(keep / ar))), W)
        return t, h, w

    def sample_keep_grid(self, size: tuple[int, int, int], gen: torch.Generator) -> torch.Tensor:
        """One sample's [T', H', W'] grid: 1 = context, 0 = target (union of the blocks)."""
        T, H, W = self.grid
        t, h, w = size
        t_keep = max(1, int(T * self.cfg.max_temporal_keep))
        while True:
            keep = torch.ones(self.grid, dtype=torch.int32)
            for _ in range(self.cfg.num_blocks):
                top = torch.randint(0, H - h + 1, (1,), generator=gen).item()
                left = torch.randint(0, W - w + 1, (1,), generator=gen).item()
                start = torch.randint(0, T - t + 1, (1,), generator=gen).item()
                keep[start : start + t, top : top + h, left : left + w] = 0
            if t_keep < T:
                keep[t_keep:] = 0
            if keep.any():  # an empty context would leave nothing to predict from: resample
                return keep

    def sample_grids(self, batch_size: int, step: int) -> list[torch.Tensor]:
        """The batch's keep grids [T', H', W'] (1 = context) before the cut to equal lengths."""
        gen = torch.Generator().manual_seed(mix_seed(self.seed, self.rank, step, self.index))
        if self.cfg.kind == "random_tube":
            return [self._tube(gen) for _ in range(batch_size)]
        size = self.block_size(step)
        return [self.sample_keep_grid(size, gen) for _ in range(batch_size)]

    def __call__(self, batch_size: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.to_indices(self.sample_grids(batch_size, step))

    def to_indices(self, grids: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Keep grids -> (context [B, K_ctx], target [B, K_tgt]), cut to the batch minimum; no grids
        (a micro-batch whose every clip failed to decode) -> two empty [0, 0] tensors."""
        if not grids:
            return torch.empty((0, 0), dtype=torch.int64), torch.empty((0, 0), dtype=torch.int64)
        flat = [g.flatten() for g in grids]
        context = [torch.nonzero(f).squeeze(1) for f in flat]
        target = [torch.nonzero(f == 0).squeeze(1) for f in flat]
        k_ctx = min(len(c) for c in context)
        if self.cfg.max_keep is not None:
            k_ctx = min(k_ctx, self.cfg.max_keep)
        k_tgt = min(len(t) for t in target)
        return (torch.stack([c[:k_ctx] for c in context]), torch.stack([t[:k_tgt] for t in target]))

    def _tube(self, gen: torch.Generator) -> torch.Tensor:
        T, H, W = self.grid
        n_keep = int(H * W * (1 - self.cfg.ratio))
        keep = torch.zeros(H * W, dtype=torch.int32)
        keep[torch.randperm(H * W, generator=gen)[:n_keep]] = 1
        return keep.view(1, H, W).expand(T, H, W).contiguous()


class MaskCollator:
    """All mask configs of a run: call with (batch_size, step) -> (context masks, target masks),
    one [B, K] tensor per config."""

    def __init__(self, cfgs, grid: tuple[int, int, int], seed: int = 0, rank: int = 0, group: int = 0):
        # group g of V-JEPA 2's clip lengths draws its own masks: generator indices g*M .. g*M + M - 1
        self.generators = [MaskGenerator(c, grid, seed, rank, group * len(cfgs) + i) for i, c in enumerate(cfgs)]

    def __call__(self, batch_size: int, step: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        pairs = [g(batch_size, step) for g in self.generators]
        return [c for c, _ in pairs], [t for _, t in pairs]


def mask_statistics(
    cfg: MaskConfig, grid: tuple[int, int, int], batch_size: int = 24, num_batches: int = 200, seed: int = 0
) -> dict[str, float]:
    """Average spatial and temporal masking ratio of the sampled unions (before the batch cut)
    and the context / target token counts the encoder and predictor actually see (after it)."""
    T, H, W = grid
    gen = MaskGenerator(cfg, grid, seed=seed)
    spatial, temporal, n_ctx, n_tgt = [], [], [], []
    for step in range(num_batches):
        grids = gen.sample_grids(batch_size, step)
        for keep in grids:
            masked = keep == 0
            spatial.append(masked.any(0).float().mean().item())  # area covered in some frame
            temporal.append(masked.any(2).any(1).float().mean().item())  # frames touched
        ctx, tgt = gen.to_indices(grids)
        n_ctx.append(ctx.shape[1])
        n_tgt.append(tgt.shape[1])
    n = T * H * W
    return {
        "spatial_masking_ratio": float(np.mean(spatial)),
        "temporal_masking_ratio": float(np.mean(temporal)),
        "context_tokens_mean": float(np.mean(n_ctx)),
        "context_tokens_min": int(np.min(n_ctx)),
        "context_tokens_max": int(np.max(n_ctx)),
        "target_tokens_mean": float(np.mean(n_tgt)),
        "target_tokens_min": int(np.min(n_tgt)),
        "target_tokens_max": int(np.max(n_tgt)),
        "dropped_fraction": float(1 - (np.mean(n_ctx) + np.mean(n_tgt)) / n),
        "num_tokens": n,
    }


def plot_masks(cfgs, grid: tuple[int, int, int], path, samples: int = 4, seed: int = 0, titles=None) -> None:
    """PNG of sampled masks, one row per config, as in the appendix's Figure 6: the first frame's
    H' x W' grid, the union of the blocks (target) dark, the context light."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(cfgs), samples, figsize=(2 * samples, 2.2 * len(cfgs)), squeeze=False)
    for r, cfg in enumerate(cfgs):
        grids = MaskGenerator(cfg, grid, seed=seed, index=r).sample_grids(samples, step=0)
        for s, keep in enumerate(grids):
            ax = axes[r][s]
            ax.imshow(keep[0].numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        label = titles[r] if titles else f"{cfg.num_blocks} blocks, scale {cfg.spatial_scale[0]:g}"
        axes[r][0].set_ylabel(label, fontsize=8)
    fig.suptitle("sampled masks (dark = predicted, light = context)", fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
