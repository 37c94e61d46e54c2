"""What every frozen evaluation shares (the probes, detection, the hub's classifier, finetuning's
multi-view test): the frozen encoder, how a video's segments and views are encoded, how views are
averaged, and the heads' optimizer groups."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from vjepa.infra.checkpoint import load, load_official_module
from vjepa.infra.config import ConfigError
from vjepa.infra.configs import EncoderConfig
from vjepa.models import ModelConfig, build_encoder, still_clip


def build_frozen_encoder(cfg: EncoderConfig, model: ModelConfig | None = None) -> nn.Module:
    """The encoder in eval mode with gradients off. V-JEPA files load strictly (weights_only)."""
    if cfg.kind == "timm":
        from vjepa.models.image_adapter import build_image_encoder  # here: timm is imported only when used

        enc = build_image_encoder(cfg.timm_model, cfg.timm_weights, cfg.timm_img_size)
    else:
        if model is None:
            raise ConfigError("a V-JEPA encoder needs the model config (params section 'model')")
        enc = build_encoder(model)
        if cfg.checkpoint is not None:
            load_official_module(enc, load(cfg.checkpoint), cfg.checkpoint_key, cfg.checkpoint)
    return enc.eval().requires_grad_(False)


def encode(encoder: nn.Module, video: torch.Tensor, still_frames: int = 16, chunk: int | None = None) -> torch.Tensor:
    """[B, S, V, C, T, H, W] -> [V, B, S*N, D]: every clip encoded on its own, the S segments' tokens
    concatenated along the token axis (segment-major), one sequence per spatial view."""
    B, S, V = video.shape[:3]
    clips = video.flatten(0, 2)  # [B*S*V, C, T, H, W], order (b, s, v)
    if clips.shape[2] == 1 and still_frames > 1:  # an image: repeat it into a still clip
        clips = still_clip(clips[:, :, 0], still_frames)
    parts = clips.split(chunk) if chunk else [clips]
    tokens = torch.cat([encoder(p) for p in parts])  # [B*S*V, N, D]
    N, D = tokens.shape[1:]
    return tokens.view(B, S, V, N, D).permute(2, 0, 1, 3, 4).reshape(V, B, S * N, D)


def average_views(logits: torch.Tensor) -> torch.Tensor:
    """Per-view logits [V, B, K] -> class probabilities [B, K]: the mean of the views' softmaxes."""
    return logits.float().softmax(dim=-1).mean(dim=0)


def view_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy averaged over views: logits [V, B, K]."""
    return torch.stack([F.cross_entropy(lv.float(), labels) for lv in logits]).mean()


def param_groups(module: nn.Module) -> list[dict]:
    """Official split: biases and 1-D parameters without weight decay, everything else (the 3-D query included) with."""
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        (no_decay if name.endswith("bias") or p.ndim == 1 else decay).append(p)
    return [{"params": decay, "decay": True}, {"params": no_decay, "decay": False, "weight_decay": 0.0}]
