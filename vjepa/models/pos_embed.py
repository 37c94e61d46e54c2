"""Fixed sin-cos position embeddings (1D building block, 3D grid with the uniform-power split)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def sincos_1d(dim: int, positions: np.ndarray) -> np.ndarray:
    """[sin(p * w_0..w_{d/2-1}), cos(p * w_0..w_{d/2-1})] with w_i = 10000^(-i / (d/2)); shape [len(p), dim]."""
    if dim % 2:
        raise ValueError(f"sin-cos embedding needs an even dimension, got {dim}")
    omega = 1.0 / 10000 ** (np.arange(dim // 2, dtype=np.float64) / (dim / 2.0))
    angles = np.outer(positions.reshape(-1).astype(np.float64), omega)  # [P, dim/2]
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)  # sines first, then cosines


def sincos_3d(dim: int, grid_t: int, grid_h: int, grid_w: int, uniform_power: bool = True) -> np.ndarray:
    """Position table [T'*H'*W', dim] for tokens ordered (t, h, w), float64.

    uniform_power=True (every released model): each axis gets 2*ceil(dim/6) dims, and the
    concatenation [t | h | w] is truncated to `dim` columns. Otherwise t gets dim/2, h and w dim/4.
    """
    if uniform_power:
        d_t = d_h = d_w = 2 * math.ceil(dim / 6)
    else:
        d_t, d_h, d_w = dim // 2, dim // 4, dim // 4
    t, h, w = np.meshgrid(np.arange(grid_t), np.arange(grid_h), np.arange(grid_w), indexing="ij")
    table = np.concatenate([sincos_1d(d_t, t), sincos_1d(d_h, h), sincos_1d(d_w, w)], axis=1)
    return table[:, :dim]


def interpolate_pos_embed(
    pos_embed: torch.Tensor, grid: tuple[int, int, int], new_grid: tuple[int, int, int]
) -> torch.Tensor:
    """Resize a [1, T'*H'*W', D] table to another token grid with trilinear interpolation.

    Scale factors (not sizes) are passed to F.interpolate, as the official code does, so the
    sampling positions, and hence the numbers, are the same.
    """
    if tuple(grid) == tuple(new_grid):
        return pos_embed
    (t, h, w), (nt, nh, nw) = grid, new_grid
    d = pos_embed.shape[-1]
    table = pos_embed.reshape(1, t, h, w, d).permute(0, 4, 1, 2, 3)  # [1, D, T', H', W']
    table = F.interpolate(table, scale_factor=(nt / t, nh / h, nw / w), mode="trilinear")
    if tuple(table.shape[2:]) != (nt, nh, nw):
        raise ValueError(f"cannot interpolate positions from grid {grid} to {new_grid}")
    return table.permute(0, 2, 3, 4, 1).reshape(1, nt * nh * nw, d)
