"""The V-JEPA predictor: a narrow ViT that maps context tokens plus learned mask tokens at the target
positions to predictions of the target encoder's features.

V-JEPA 1: sin-cos positions added to context and mask tokens, one mask token per mask config.
V-JEPA 2: 3D RoPE in every block (positions from the predictor's own square grid, as released), its
own head count, the [context ; targets] sequence sorted by token index before the blocks and unsorted
after, and the mask token chosen by the frames-per-clip group rather than by the mask config."""

from __future__ import annotations

import torch
import torch.nn as nn

from vjepa.models.pos_embed import sincos_3d
from vjepa.models.vit import (
    Block,
    LayerNorm,
    check_pos_encoding,
    gather_tokens,
    index_positions,
    init_weights,
    pack,
    rope_tables,
    run_block,
    unpack,
)
from vjepa.infra.configs import MASK_TOKEN_CHOICES


class Predictor(nn.Module):
    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        num_frames: int = 16,
        tubelet_size: int = 2,
        embed_dim: int = 1024,  # encoder width D
        predictor_embed_dim: int = 384,
        depth: int = 12,
        num_heads: int = 16,  # V-JEPA 1 keeps the encoder's head count; V-JEPA 2 uses 12
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        uniform_power: bool = True,
        num_mask_tokens: int = 2,  # V-JEPA 1: one per mask config; V-JEPA 2: masks x fpc groups (10 released)
        activation_checkpointing: bool = False,
        pos_encoding: str = "sincos",
        rope_layout: str = "tiled",
        sort_tokens: bool = False,
        mask_token_per: str = "mask",
    ):
        super().__init__()
        check_pos_encoding(pos_encoding, rope_layout, predictor_embed_dim // num_heads)
        if mask_token_per not in MASK_TOKEN_CHOICES:
            raise ValueError(f"mask_token_per must be one of {MASK_TOKEN_CHOICES}, got {mask_token_per!r}")
        grid = (num_frames // tubelet_size, img_size // patch_size, img_size // patch_size)
        self.grid = grid
        self.num_heads = num_heads
        self.activation_checkpointing = activation_checkpointing
        self.pos_encoding, self.rope_layout = pos_encoding, rope_layout
        self.sort_tokens, self.mask_token_per = sort_tokens, mask_token_per
        self.predictor_embed = nn.Linear(embed_dim, predictor_embed_dim)
        self.mask_tokens = nn.ParameterList(
            nn.Parameter(torch.zeros(1, 1, predictor_embed_dim)) for _ in range(num_mask_tokens)
        )
        if pos_encoding == "sincos":
            table = torch.from_numpy(sincos_3d(predictor_embed_dim, *grid, uniform_power=uniform_power)).float()
            self.predictor_pos_embed = nn.Parameter(table.unsqueeze(0), requires_grad=False)
        else:
            self.predictor_pos_embed = None
        self.predictor_blocks = nn.ModuleList(
            Block(predictor_embed_dim, num_heads, mlp_ratio, qkv_bias) for _ in range(depth)
        )
        self.predictor_norm = LayerNorm(predictor_embed_dim)
        self.predictor_proj = nn.Linear(predictor_embed_dim, embed_dim)
        self.apply(init_weights)  # mask tokens stay zero

    def forward(
        self, context: torch.Tensor, context_index: torch.Tensor, target_index: torch.Tensor, mask_index: int = 0
    ) -> torch.Tensor:
        """context [B, Nc, D] at token indices context_index [B, Nc]; returns predictions [B, Nt, D]
        for target_index [B, Nt], in that index order, using mask token `mask_index`."""
        return self.predict([context], [context_index], [target_index], [mask_index])[0]

    def forward_masks(
        self,
        contexts: list[torch.Tensor],
        context_masks: list[torch.Tensor],
        target_masks: list[torch.Tensor],
        group: int = 0,
    ) -> list[torch.Tensor]:
        """One prediction per mask config i: with mask token i (per 'mask'), or with the token of
        frames-per-clip group `group` for every mask (per 'group')."""
        tokens = list(range(len(contexts))) if self.mask_token_per == "mask" else [group] * len(contexts)
        return self.predict(contexts, context_masks, target_masks, tokens)

    def predict(self, contexts, context_masks, target_masks, mask_indices) -> list[torch.Tensor]:
        """The sequences [context ; targets] of every mask, run packed through the blocks (see
        vit.pack: the numbers of one pass per mask, as the official code runs them)."""
        seqs, ropes, reads, n_ctx = [], [], [], []
        for z, c, t, i in zip(contexts, context_masks, target_masks, mask_indices):
            B, Nt = t.shape
            x = self.predictor_embed(z)
            queries = self.mask_tokens[i % len(self.mask_tokens)].expand(B, Nt, -1)
            if self.predictor_pos_embed is not None:
                pos_b = self.predictor_pos_embed.expand(B, -1, -1)
                x = x + gather_tokens(pos_b, c)
                queries = queries + gather_tokens(pos_b, t)
            seq = torch.cat([x, queries], dim=1)  # [context ; targets]
            index = torch.cat([c, t], dim=1)
            read = torch.arange(c.size(1), index.size(1), device=index.device).expand(B, -1)
            if self.sort_tokens:  # ascending token index, as the released predictor runs its sequence
                order = torch.argsort(index, dim=1)
                seq, index = gather_tokens(seq, order), torch.gather(index, 1, order)
                read = torch.argsort(order, dim=1)  # unsorts the whole sequence
            seqs.append(seq)
            reads.append(read)
            n_ctx.append(c.size(1))
            if self.pos_encoding == "rope3d":
                ropes.append(
                    rope_tables(
                        index_positions(index, self.grid), seq.size(-1) // self.num_heads, self.rope_layout, seq.dtype
                    )
                )
        x, segments = pack(seqs)
        for blk in self.predictor_blocks:
            x = run_block(blk, x, segments, self.activation_checkpointing, ropes or None)
        if self.sort_tokens:
            # as the released code: norm every token, unsort, project the targets' slice of that
            # (a strided view: a contiguous copy would have the matrix kernel round differently)
            return [
                self.predictor_proj(gather_tokens(self.predictor_norm(s), r)[:, n:])
                for s, r, n in zip(unpack(x, segments), reads, n_ctx)
            ]
        # only the target tokens are read out: normalise just those (LayerNorm is per token, so the
        # numbers are those of normalising all, unsorting and slicing)
        targets = [gather_tokens(s, r) for s, r in zip(unpack(x, segments), reads)]
        out, segments = pack(targets)
        return unpack(self.predictor_proj(self.predictor_norm(out)), segments)
