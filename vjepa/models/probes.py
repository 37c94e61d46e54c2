"""Probes on frozen tokens: the attentive probe (appendix B.1), V-JEPA 2's 4-block attentive probe and a
linear probe on mean-pooled tokens.

The attentive probe's parameter names are those of the released probe files (`classifier` entry,
keys `module.pooler.query_tokens`, `module.pooler.cross_attention_block.*`, `module.linear.*`), so
they load strictly and predict as the official code does. Two details matter for that:
- the cross-attention has an output projection `proj` that is created (its keys are in the files)
  but never applied; applying it breaks the released probes;
- the probe's LayerNorms use PyTorch's default eps 1e-5, not the encoder's 1e-6.
V-JEPA 2's probe (`blocks_first`) keeps those names but runs its self-attention blocks over the frozen
tokens before the cross-attention (V-JEPA 1's run after it, on the query) and has no `proj` at all;
Hugging Face's port of it uses eps 1e-6 (`norm_eps`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from vjepa.infra.checkpoint import load, load_into
from vjepa.infra.runtime import CheckpointError
from vjepa.models.vit import MLP, Block


class CrossAttention(nn.Module):
    """Queries [B, n, D] attend to tokens [B, N, D]. `proj` (V-JEPA 1 only) exists for key compatibility only."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, unused_proj: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"probe width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        if unused_proj:
            self.proj = nn.Linear(dim, dim)  # never applied (see the module docstring)

    def forward(self, q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        B, n, D = q.shape
        N, h = x.shape[1], self.num_heads
        q = self.q(q).reshape(B, n, h, D // h).transpose(1, 2)  # [B, h, n, hd]
        k, v = self.kv(x).reshape(B, N, 2, h, D // h).permute(2, 0, 3, 1, 4)  # each [B, h, N, hd]
        return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, n, D)


class CrossAttentionBlock(nn.Module):
    """q + xattn(q, LN(x)), then q + MLP(LN(q)). The query itself is not normalised."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        unused_proj: bool = True,
        norm_eps: float = 1e-5,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)  # eps 1e-5, as the released probes
        self.xattn = CrossAttention(dim, num_heads, qkv_bias, unused_proj)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = MLP(dim, int(dim * mlp_ratio))

    def forward(self, q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        q = q + self.xattn(q, self.norm1(x))
        return q + self.mlp(self.norm2(q))


class AttentivePooler(nn.Module):
    """Learnable query token(s) pooling a token sequence by cross-attention: [B, N, D] -> [B, n, D].
    depth > 1 adds depth - 1 self-attention blocks: after the cross-attention, over the queries
    (V-JEPA 1), or with blocks_first before it, over the tokens (V-JEPA 2, whose depth is 4)."""

    def __init__(
        self,
        embed_dim: int,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        depth: int = 1,
        num_queries: int = 1,
        qkv_bias: bool = True,
        init_std: float = 0.02,
        blocks_first: bool = False,
        norm_eps: float = 1e-5,
    ):
        super().__init__()
        self.blocks_first = blocks_first
        self.query_tokens = nn.Parameter(torch.zeros(1, num_queries, embed_dim))
        self.cross_attention_block = CrossAttentionBlock(
            embed_dim, num_heads, mlp_ratio, qkv_bias, unused_proj=not blocks_first, norm_eps=norm_eps
        )
        self.blocks = None
        if depth > 1:
            self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, qkv_bias) for _ in range(depth - 1))
            for blk in self.blocks:
                blk.norm1.eps = blk.norm2.eps = norm_eps  # the probe's norms use the PyTorch default eps
        self._init(init_std)

    @torch.no_grad()
    def _init(self, std: float) -> None:
        nn.init.trunc_normal_(self.query_tokens, std=std)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        # residual-branch outputs shrink by sqrt(2 * layer), layers counted in the official constructor's order
        xattn = self.cross_attention_block
        if self.blocks_first:  # blocks 1..d-1, then the cross-attention's MLP as layer d-1 again
            for layer, blk in enumerate(self.blocks or [], start=1):
                blk.attn.proj.weight.div_(math.sqrt(2.0 * layer))
                blk.mlp.fc2.weight.div_(math.sqrt(2.0 * layer))
            xattn.mlp.fc2.weight.div_(math.sqrt(2.0 * max(len(self.blocks or []), 1)))
            return
        xattn.xattn.proj.weight.div_(math.sqrt(2.0))
        xattn.mlp.fc2.weight.div_(math.sqrt(2.0))
        for layer, blk in enumerate(self.blocks or [], start=2):
            blk.attn.proj.weight.div_(math.sqrt(2.0 * layer))
            blk.mlp.fc2.weight.div_(math.sqrt(2.0 * layer))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.blocks_first:
            for blk in self.blocks or []:
                x = blk(x)
        q = self.cross_attention_block(self.query_tokens.expand(len(x), -1, -1), x)
        if not self.blocks_first:
            for blk in self.blocks or []:
                q = blk(q)
        return q


class AttentiveClassifier(nn.Module):
    """Attentive probe: AttentivePooler (one query) then a linear classifier. [B, N, D] -> logits [B, K]."""

    def __init__(
        self,
        embed_dim: int,
        num_classes: int,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        depth: int = 1,
        qkv_bias: bool = True,
        init_std: float = 0.02,
        blocks_first: bool = False,
        norm_eps: float = 1e-5,
    ):
        super().__init__()
        self.pooler = AttentivePooler(
            embed_dim, num_heads, mlp_ratio, depth, 1, qkv_bias, init_std, blocks_first, norm_eps
        )
        self.linear = nn.Linear(embed_dim, num_classes)
        nn.init.trunc_normal_(self.linear.weight, std=init_std)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.pooler(x).squeeze(1))


def vjepa2_probe(embed_dim: int, num_classes: int, num_heads: int = 16, norm_eps: float = 1e-5) -> AttentiveClassifier:
    """V-JEPA 2's attentive probe: 3 self-attention blocks over the tokens, then the one-query
    cross-attention and a linear layer (16 heads in its eval configs; Hugging Face: eps 1e-6)."""
    return AttentiveClassifier(embed_dim, num_classes, num_heads, depth=4, blocks_first=True, norm_eps=norm_eps)


class LinearProbe(nn.Module):
    """Linear probe on the mean of the tokens. [B, N, D] -> logits [B, K].

    norm='batchnorm' standardises the pooled feature with a BatchNorm without affine parameters
    (as MAE's linear probe does), so one learning rate suits encoders whose feature scales differ;
    norm='none' feeds the raw mean."""

    def __init__(self, embed_dim: int, num_classes: int, norm: str = "batchnorm", init_std: float = 0.02):
        super().__init__()
        if norm not in ("batchnorm", "none"):
            raise ValueError(f"linear probe norm must be 'batchnorm' or 'none', got {norm!r}")
        self.norm = nn.BatchNorm1d(embed_dim, affine=False, eps=1e-6) if norm == "batchnorm" else nn.Identity()
        self.linear = nn.Linear(embed_dim, num_classes)
        nn.init.trunc_normal_(self.linear.weight, std=init_std)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.norm(x.mean(dim=1)))


def probe_kind(probe: nn.Module) -> str:
    """Which of PROBE_KINDS a probe module is."""
    if isinstance(probe, AttentiveClassifier):
        return "attentive4" if probe.pooler.blocks_first else "attentive"
    return "linear"


def official_probe_state(classifier: nn.Module) -> dict:
    """The `classifier` entry of an official probe file: our state dict with DDP's `module.` prefix."""
    return {"module." + k: v.detach() for k, v in classifier.state_dict().items()}


def classifier_state(
    ck: Mapping[str, Any], where: str = "probe checkpoint", head: int | None = None
) -> tuple[dict, str]:
    """The probe's state dict (`module.` stripped) of a probe file and where it sits: V-JEPA 1's
    `classifier` entry, or one of V-JEPA 2's `classifiers` list (one per trained head: `head` picks
    it, and may be left out only when the list has one)."""
    if "classifier" in ck:
        state, at = ck["classifier"], f"{where}['classifier']"
    elif "classifiers" in ck:
        heads = ck["classifiers"]
        if head is None and len(heads) != 1:
            raise CheckpointError(
                f"{where} holds {len(heads)} probes in 'classifiers'; say which with head= "
                "(Hugging Face's converter takes head 0)"
            )
        head = 0 if head is None else head
        if not 0 <= head < len(heads):
            raise CheckpointError(f"{where}: head {head} is not one of its {len(heads)} 'classifiers'")
        state, at = heads[head], f"{where}['classifiers'][{head}]"
    else:
        raise CheckpointError(f"{where} has no 'classifier' entry; it has {sorted(ck)}")
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in state.items()}, at


def load_official_probe(classifier: nn.Module, source: str | Path | Mapping[str, Any], head: int | None = None) -> dict:
    """Load a released probe file (or its already-loaded dict) strictly into `classifier`.
    Takes the `classifier` entry (V-JEPA 2: `classifiers[head]`) and strips `module.`; returns the
    whole checkpoint dict."""
    ck = load(source) if isinstance(source, (str, Path)) else source
    where = str(source) if isinstance(source, (str, Path)) else "probe checkpoint"
    state, at = classifier_state(ck, where, head)
    load_into(classifier, state, where=at)
    return ck


def probe_from_file(source: str | Path | Mapping[str, Any], num_heads: int, head: int | None = None) -> nn.Module:
    """A probe file of the official layout (a released attentive probe of V-JEPA 1 or 2, or one of
    ours, attentive or linear) as a model, its shape read from the weights: width and classes from
    the linear layer, depth from the pooler's blocks, the V-JEPA 2 block order from the missing
    cross-attention `proj`, BatchNorm from its statistics. Heads are not in the shapes: the official
    probes use the encoder's (16 for ViT-L/H; V-JEPA 2's eval configs 16 for every size)."""
    ck = load(source) if isinstance(source, (str, Path)) else source
    where = str(source) if isinstance(source, (str, Path)) else "probe checkpoint"
    keys, at = classifier_state(ck, where, head)
    if "linear.weight" not in keys:
        raise CheckpointError(f"{at} has no 'linear.weight': not a probe file")
    num_classes, dim = keys["linear.weight"].shape
    if "pooler.query_tokens" in keys:
        depth = 1 + len({k.split(".")[2] for k in keys if k.startswith("pooler.blocks.")})
        # V-JEPA 2's probe has no cross-attention `proj`; its blocks run before the cross-attention
        blocks_first = "pooler.cross_attention_block.xattn.proj.weight" not in keys
        probe = AttentiveClassifier(dim, num_classes, num_heads, depth=depth, blocks_first=blocks_first)
    else:
        probe = LinearProbe(dim, num_classes, "batchnorm" if "norm.running_mean" in keys else "none")
    load_into(probe, keys, where=at)
    return probe.eval()
