"""The video Vision Transformer of V-JEPA: tubelet patch embedding, positions either as a fixed 3D
sin-cos table added once (V-JEPA 1) or as a 3D rotary embedding of q and k in every block (V-JEPA 2),
pre-norm blocks on scaled_dot_product_attention, a final norm and no [cls] token.

Parameter names follow the released checkpoints (after their `module.backbone.` prefix is
removed), so official weights load strictly. Token n of a clip sits at
n = t * (H' * W') + h * W' + w: time slowest, width fastest.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from vjepa.models.pos_embed import interpolate_pos_embed, sincos_3d
from vjepa.infra.configs import (
    ROPE_LAYOUTS,
    POS_ENCODINGS,
    rope_axis_dim,
)

LayerNorm = partial(nn.LayerNorm, eps=1e-6)


class PatchEmbed3D(nn.Module):
    """Tubelets of tubelet_size x patch x patch pixels -> one token each, by a strided Conv3d."""

    def __init__(self, patch_size: int = 16, tubelet_size: int = 2, in_chans: int = 3, embed_dim: int = 768):
        super().__init__()
        self.proj = nn.Conv3d(
            in_chans,
            embed_dim,
            kernel_size=(tubelet_size, patch_size, patch_size),
            stride=(tubelet_size, patch_size, patch_size),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, T, H, W] -> [B, N, D]
        return self.proj(x).flatten(2).transpose(1, 2)


# Packing: the sequence sets of several masks ([B, K_i, D] each) run through a block as one matrix of
# rows [sum B * K_i, D], so every token-wise layer (norms, qkv, proj, MLP) is one larger matrix
# product instead of one per mask; only attention is split, each set attending within itself. The
# outputs are the per-mask ones row for row (on the CPU bit for bit in the forward pass); weight
# gradients sum the same products in another order.
Segments = list[tuple[int, int]]  # (B_i, N_i) of each packed sequence set


def pack(xs: list[torch.Tensor]) -> tuple[torch.Tensor, Segments]:
    """[B_i, N_i, D] per set -> rows [sum B_i * N_i, D] and their segments."""
    return torch.cat([x.flatten(0, 1) for x in xs]), [tuple(x.shape[:2]) for x in xs]


def unpack(x: torch.Tensor, segments: Segments) -> list[torch.Tensor]:
    return [part.view(b, n, -1) for part, (b, n) in zip(x.split([b * n for b, n in segments]), segments)]


# ---------------------------------------------------------------------------------------------
# 3D rotary position embedding (V-JEPA 2). Each head's channels are laid out
# [time s | height s | width s | rest, not rotated], s = 2 * floor(floor(head_dim / 3) / 2); an axis
# rotates channel pairs (2k, 2k+1) by p * w with w_j = 10000^(-j / (s/2)), p the integer token index
# along that axis. `tiled` is the released layout: the s/2 frequencies are tiled twice over the s
# channels (channel i uses w_(i mod s/2), so the two members of a pair turn by different angles, a
# quirk the released weights were trained with); `interleaved` repeats each frequency for its pair
# (w_floor(i/2)), the textbook rotation.

Rope = tuple[torch.Tensor, torch.Tensor]  # (cos, sin) over the 3s rotated channels, per token


def index_positions(index: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    """Token indices [..., K] of a raster grid (time slowest) -> their integer (t, h, w) [..., K, 3]."""
    _, h, w = grid
    return torch.stack([index // (h * w), (index % (h * w)) // w, index % w], dim=-1)


def rope_tables(positions: torch.Tensor, head_dim: int, layout: str, dtype: torch.dtype) -> Rope:
    """cos and sin [..., K, 3s] for integer positions [..., K, 3]; shared by every block and head."""
    if layout not in ROPE_LAYOUTS:
        raise ValueError(f"rope_layout must be one of {ROPE_LAYOUTS}, got {layout!r}")
    s = rope_axis_dim(head_dim)
    # the frequencies computed in the order of the released code, so the angles are the same floats
    omega = torch.arange(s // 2, dtype=dtype, device=positions.device)
    omega /= s / 2.0
    omega = 1.0 / 10000**omega
    freq = positions.to(dtype).unsqueeze(-1) * omega  # [..., K, 3, s/2]
    freq = torch.cat([freq, freq], -1) if layout == "tiled" else freq.repeat_interleave(2, dim=-1)
    freq = freq.flatten(-2)  # [..., K, 3s]: t | h | w
    return freq.cos(), freq.sin()


def rope_rotate(x: torch.Tensor, rope: Rope) -> torch.Tensor:
    """Rotate q or k [B, heads, K, hd] by tables [K, 3s] or [B, K, 3s]; channels past 3s pass as they are."""
    cos, sin = rope
    if cos.ndim == 3:
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # one table for every head
    r = cos.size(-1)
    xr = x[..., :r]
    pairs = xr.unflatten(-1, (-1, 2))
    turned = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)  # (x0, x1) -> (-x1, x0)
    return torch.cat([xr * cos + turned * sin, x[..., r:]], dim=-1)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, segments: Segments | None = None, rope=None) -> torch.Tensor:
        """x [B, N, C]; or packed rows [sum B_i * N_i, C] of several sequence sets, segments the
        (B_i, N_i) of each: tokens attend only within their own sequence. rope: the (cos, sin) tables
        of the tokens (one per segment when packed), or None for no rotation."""
        if segments is None:
            return self.proj(self.attend(self.qkv(x), rope))
        parts = self.qkv(x).split([b * n for b, n in segments])
        ropes = rope if rope is not None else [None] * len(segments)
        out = [self.attend(part.view(b, n, -1), r).flatten(0, 1) for part, (b, n), r in zip(parts, segments, ropes)]
        return self.proj(torch.cat(out))

    def attend(self, qkv: torch.Tensor, rope: Rope | None = None) -> torch.Tensor:  # [B, N, 3C] -> [B, N, C]
        B, N, C3 = qkv.shape
        # the 3*C outputs are ordered (q | k | v), each split head-major
        qkv = qkv.reshape(B, N, 3, self.num_heads, C3 // (3 * self.num_heads)).permute(2, 0, 3, 1, 4)
        # unbind, not qkv[0], qkv[1], qkv[2]: the same views, but the backward pass stacks the three
        # gradients instead of summing three zero-padded copies (the same bits, 1.6% off the tiny-config step)
        q, k, v = qkv.unbind(0)  # [B, heads, N, hd] each
        if rope is not None:
            q, k = rope_rotate(q, rope), rope_rotate(k, rope)
        x = F.scaled_dot_product_attention(q, k, v)
        return x.transpose(1, 2).reshape(B, N, C3 // 3)


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()  # exact (erf) GELU, as the released models
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + Attn(LN(x)), then x + MLP(LN(x)). DropPath only for finetuning."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = LayerNorm(dim)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = LayerNorm(dim)
        self.mlp = MLP(dim, int(dim * mlp_ratio))
        if drop_path > 0:  # finetuning only: timm (and the torchvision it pulls in) loads just for it
            from timm.layers import DropPath

            self.drop_path = DropPath(drop_path)
        else:
            self.drop_path = nn.Identity()

    def forward(self, x: torch.Tensor, segments: Segments | None = None, rope=None) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), segments, rope))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def run_block(blk: Block, x: torch.Tensor, segments: Segments | None, checkpointing: bool, rope=None) -> torch.Tensor:
    """One block; with checkpointing asked for, while training with gradients, its activations are
    recomputed in the backward pass instead of kept."""
    if checkpointing and blk.training and torch.is_grad_enabled():
        return checkpoint(blk, x, segments, rope, use_reentrant=False)
    return blk(x, segments, rope)


def gather_tokens(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Pick tokens x[b, index[b, k]]: [B, N, D] x [B, K] -> [B, K, D]."""
    return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.size(-1)))


def init_weights(module: nn.Module) -> None:
    """The effective pretraining init of the official code: N(0, 0.02) (truncated at +-2 absolute)
    on every Linear and Conv, zero biases, LayerNorm (1, 0); no depth rescaling survives there."""
    if isinstance(module, (nn.Linear, nn.Conv2d, nn.Conv3d)):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class VisionTransformer(nn.Module):
    """Video ViT encoder. forward(clip) -> normed tokens [B, N, D]; forward(clip, masks) runs only the
    kept tokens of each mask and returns one [B, K_i, D] tensor per mask.

    pos_encoding 'sincos' adds the fixed table of the built grid (interpolated for other clip sizes);
    'rope3d' rotates q and k in every block by the tokens' integer (t, h, w), so any clip that the
    tubelet and patch divide runs as it is, and the encoder has no position parameter."""

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        num_frames: int = 16,
        tubelet_size: int = 2,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        uniform_power: bool = True,
        drop_path_rate: float = 0.0,
        activation_checkpointing: bool = False,
        pos_encoding: str = "sincos",
        rope_layout: str = "tiled",
    ):
        super().__init__()
        if img_size % patch_size or num_frames % tubelet_size:
            raise ValueError(
                f"clip {num_frames}x{img_size}px does not tile into {tubelet_size}x{patch_size}px tubelets"
            )
        check_pos_encoding(pos_encoding, rope_layout, embed_dim // num_heads)
        self.img_size, self.patch_size = img_size, patch_size
        self.num_frames, self.tubelet_size = num_frames, tubelet_size
        self.in_chans, self.embed_dim, self.num_heads = in_chans, embed_dim, num_heads
        self.activation_checkpointing = activation_checkpointing
        self.drop_path_rate = drop_path_rate
        self.pos_encoding, self.rope_layout = pos_encoding, rope_layout
        self.grid = (num_frames // tubelet_size, img_size // patch_size, img_size // patch_size)

        self.patch_embed = PatchEmbed3D(patch_size, tubelet_size, in_chans, embed_dim)
        if pos_encoding == "sincos":
            table = torch.from_numpy(sincos_3d(embed_dim, *self.grid, uniform_power=uniform_power)).float()
            self.pos_embed = nn.Parameter(table.unsqueeze(0), requires_grad=False)  # [1, N, D], fixed
        else:
            self.pos_embed = None
        dpr = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # stochastic depth grows with depth
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, qkv_bias, dpr[i]) for i in range(depth))
        self.norm = LayerNorm(embed_dim)
        self.apply(init_weights)

    @property
    def num_patches(self) -> int:
        t, h, w = self.grid
        return t * h * w

    def token_grid(self, x: torch.Tensor) -> tuple[int, int, int]:
        T, H, W = x.shape[-3:]
        if self.pos_encoding == "rope3d" and (T % self.tubelet_size or H % self.patch_size or W % self.patch_size):
            raise ValueError(
                f"clip {T}x{H}x{W} does not tile into {self.tubelet_size}x{self.patch_size}x{self.patch_size} tubelets"
            )
        return T // self.tubelet_size, H // self.patch_size, W // self.patch_size

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Clip [B, C, T, H, W] -> embedded tokens [B, N, D]: with sin-cos positions added (interpolated
        trilinearly for clips of another size); with RoPE the positions enter in the blocks instead."""
        if self.pos_embed is None:
            return self.patch_embed(x)
        pos = interpolate_pos_embed(self.pos_embed, self.grid, self.token_grid(x))
        return self.patch_embed(x) + pos

    def rope(self, positions: torch.Tensor, dtype: torch.dtype) -> Rope | None:
        """The rotation tables of tokens at integer positions [..., K, 3]; None for sin-cos models."""
        if self.pos_encoding != "rope3d":
            return None
        return rope_tables(positions, self.embed_dim // self.num_heads, self.rope_layout, dtype)

    def run_blocks(
        self, x: torch.Tensor, out_layers: list[int] | None = None, segments: Segments | None = None, rope=None
    ):
        """Blocks then the final norm. With out_layers (1-based block numbers) return the normed
        output of each of those blocks instead. x may be packed (see pack), with its segments;
        rope: the rotation tables of its tokens (one per segment when packed)."""
        outs = []
        for i, blk in enumerate(self.blocks, start=1):
            x = run_block(blk, x, segments, self.activation_checkpointing, rope)
            if out_layers is not None and i in out_layers:
                outs.append(self.norm(x))
        return outs if out_layers is not None else self.norm(x)

    def forward(self, x: torch.Tensor, masks: list[torch.Tensor] | None = None, out_layers: list[int] | None = None):
        if x.ndim == 4:  # images: a still clip repeating the image num_frames times
            x = still_clip(x, self.num_frames)
        if out_layers is not None:
            bad = [i for i in out_layers if not 1 <= i <= len(self.blocks)]
            if bad:
                raise ValueError(f"out_layers {bad} outside blocks 1..{len(self.blocks)}")
        grid = self.token_grid(x)
        x = self.tokens(x)
        if masks is None:
            everyone = torch.arange(x.size(1), device=x.device)
            return self.run_blocks(x, out_layers, rope=self.rope(index_positions(everyone, grid), x.dtype))
        # Each mask keeps only its context tokens, each token its own position; the official wrapper
        # runs one pass per mask, we run the masks' token sets packed through each block (the same
        # numbers, fewer products). DropPath drops whole samples, so with it each mask keeps its own pass.
        ropes = [self.rope(index_positions(m, grid), x.dtype) for m in masks]
        if self.drop_path_rate > 0:
            return [self.run_blocks(gather_tokens(x, m), out_layers, rope=r) for m, r in zip(masks, ropes)]
        x, segments = pack([gather_tokens(x, m) for m in masks])
        out = self.run_blocks(x, out_layers, segments, None if self.pos_embed is not None else ropes)
        if out_layers is None:
            return unpack(out, segments)
        return [list(layers) for layers in zip(*(unpack(o, segments) for o in out))]  # per mask, per layer


def check_pos_encoding(pos_encoding: str, rope_layout: str, head_dim: int) -> None:
    """Raise ValueError for an unknown position scheme or a head too narrow for three rotated axes."""
    if pos_encoding not in POS_ENCODINGS:
        raise ValueError(f"pos_encoding must be one of {POS_ENCODINGS}, got {pos_encoding!r}")
    if rope_layout not in ROPE_LAYOUTS:
        raise ValueError(f"rope_layout must be one of {ROPE_LAYOUTS}, got {rope_layout!r}")
    if pos_encoding == "rope3d" and rope_axis_dim(head_dim) == 0:
        raise ValueError(f"rope3d needs heads of at least 6 channels to rotate three axes, got {head_dim}")


def still_clip(images: torch.Tensor, num_frames: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, C, num_frames, H, W] by repeating each image along time."""
    return images.unsqueeze(2).expand(-1, -1, num_frames, -1, -1).contiguous()
