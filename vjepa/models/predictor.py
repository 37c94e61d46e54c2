"""The V-JEPA predictor: a narrow ViT that maps context tokens plus learned mask tokens (one per
mask config) at the target positions to predictions of the target encoder's features."""
from __future__ import annotations

import torch
import torch.nn as nn

from vjepa.models.pos_embed import sincos_3d
from vjepa.models.vit import Block, LayerNorm, gather_tokens, init_weights, pack, run_block, unpack


class Predictor(nn.Module):
    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        num_frames: int = 16,
        tubelet_size: int = 2,
        embed_dim: int = 1024,          # encoder width D
        predictor_embed_dim: int = 384,
        depth: int = 12,
        num_heads: int = 16,            # the paper keeps the encoder's head count
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        uniform_power: bool = True,
        num_mask_tokens: int = 2,       # one per mask config (short-range, long-range)
        activation_checkpointing: bool = False,
    ):
        super().__init__()
        grid = (num_frames // tubelet_size, img_size // patch_size, img_size // patch_size)
        self.grid = grid
        self.activation_checkpointing = activation_checkpointing
        self.predictor_embed = nn.Linear(embed_dim, predictor_embed_dim)
        self.mask_tokens = nn.ParameterList(
            nn.Parameter(torch.zeros(1, 1, predictor_embed_dim)) for _ in range(num_mask_tokens)
        )
        table = torch.from_numpy(sincos_3d(predictor_embed_dim, *grid, uniform_power=uniform_power)).float()
        self.predictor_pos_embed = nn.Parameter(table.unsqueeze(0), requires_grad=False)
        self.predictor_blocks = nn.ModuleList(
            Block(predictor_embed_dim, num_heads, mlp_ratio, qkv_bias) for _ in range(depth)
        )
        self.predictor_norm = LayerNorm(predictor_embed_dim)
        self.predictor_proj = nn.Linear(predictor_embed_dim, embed_dim)
        self.apply(init_weights)  # mask tokens stay zero

    def forward(self, context: torch.Tensor, context_index: torch.Tensor, target_index: torch.Tensor,
                mask_index: int = 0) -> torch.Tensor:
        """context [B, Nc, D] at token indices context_index [B, Nc]; returns predictions [B, Nt, D]
        for target_index [B, Nt], in that index order."""
        return self.predict([context], [context_index], [target_index], [mask_index])[0]

    def forward_masks(self, contexts: list[torch.Tensor], context_masks: list[torch.Tensor],
                      target_masks: list[torch.Tensor]) -> list[torch.Tensor]:
        """One prediction per mask config i, using mask token i."""
        return self.predict(contexts, context_masks, target_masks, list(range(len(contexts))))

    def predict(self, contexts, context_masks, target_masks, mask_indices) -> list[torch.Tensor]:
        """The sequences [context ; targets] of every mask, run packed through the blocks (see
        vit.pack: the numbers of one pass per mask, as the official code runs them)."""
        pos = self.predictor_pos_embed  # [1, N, d]
        seqs = []
        for z, c, t, i in zip(contexts, context_masks, target_masks, mask_indices):
            B, Nt = t.shape
            pos_b = pos.expand(B, -1, -1)
            x = self.predictor_embed(z) + gather_tokens(pos_b, c)
            queries = self.mask_tokens[i % len(self.mask_tokens)].expand(B, Nt, -1) + gather_tokens(pos_b, t)
            seqs.append(torch.cat([x, queries], dim=1))  # [context ; targets], each in ascending index order
        x, segments = pack(seqs)
        for blk in self.predictor_blocks:
            x = run_block(blk, x, segments, self.activation_checkpointing)
        # only the target tokens are read out: normalise just those (LayerNorm is per token, so the
        # numbers are those of normalising all and slicing)
        targets = [s[:, -t.size(1):] for s, t in zip(unpack(x, segments), target_masks)]
        out, segments = pack(targets)
        return unpack(self.predictor_proj(self.predictor_norm(out)), segments)
