"""Image models on video (appendix B.1): encode every frame with a 2D image ViT and concatenate the
frame tokens, so DINOv2- or OpenCLIP-style baselines run through the same probes as our encoder.

The adapter has the encoder's interface for the probe code: forward([B, C, T, H, W]) -> [B, T*N, D]
(frame-major, patch tokens only), with `embed_dim`, `num_heads` and `patch_size` attributes.
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
import torch.nn as nn

from vjepa.infra.checkpoint import load, load_into
from vjepa.infra.runtime import CheckpointError


class FrameWiseEncoder(nn.Module):
    """Wrap a timm ViT: fold time into the batch, keep each frame's normed patch tokens, unfold."""

    def __init__(self, model: nn.Module):
        super().__init__()
        if not hasattr(model, "forward_features") or not hasattr(model, "num_prefix_tokens"):
            raise TypeError(
                f"{type(model).__name__} is not a timm VisionTransformer-style model "
                "(needs forward_features and num_prefix_tokens)"
            )
        self.model = model
        self.embed_dim = model.embed_dim
        self.num_heads = model.blocks[0].attn.num_heads
        self.patch_size = model.patch_embed.patch_size[0]
        self.tubelet_size = 1  # one token grid per frame

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:  # a batch of images is a one-frame clip
            x = x.unsqueeze(2)
        B, C, T, H, W = x.shape
        frames = x.transpose(1, 2).reshape(B * T, C, H, W)
        tokens = self.model.forward_features(frames)[:, self.model.num_prefix_tokens :]  # drop cls/registers
        return tokens.reshape(B, T * tokens.shape[1], tokens.shape[2])


def build_image_encoder(
    name: str, weights: str | Path | None = None, img_size: int | None = None, **kwargs
) -> FrameWiseEncoder:
    """timm model `name` created without downloading (pretrained=False) and with no classifier head;
    weights, when given, come from a local file (a state dict, or one under 'state_dict'/'model'),
    loaded strictly after dropping a `module.` prefix and any `head.` keys."""
    if img_size is not None:
        kwargs["img_size"] = img_size
    model = timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
    if weights is not None:
        ck = load(weights)
        for key in ("state_dict", "model"):
            if isinstance(ck.get(key), dict):
                ck = ck[key]
                break
        state = {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in ck.items()}
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
        if not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise CheckpointError(f"{weights}: expected a state dict of tensors for timm model {name!r}")
        load_into(model, state, where=str(weights))
    return FrameWiseEncoder(model)
