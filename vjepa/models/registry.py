"""Model sizes and the typed model config that builds the encoder and predictor."""

from __future__ import annotations


from vjepa.models.predictor import Predictor
from vjepa.models.vit import VisionTransformer
from vjepa.infra.configs import ModelConfig


def build_encoder(cfg: ModelConfig, **overrides) -> VisionTransformer:
    d, depth, heads, ratio = cfg.encoder_shape()
    kw = dict(
        img_size=cfg.img_size,
        patch_size=cfg.patch_size,
        num_frames=cfg.num_frames,
        tubelet_size=cfg.tubelet_size,
        in_chans=cfg.in_chans,
        embed_dim=d,
        depth=depth,
        num_heads=heads,
        mlp_ratio=ratio,
        uniform_power=cfg.uniform_power,
        activation_checkpointing=cfg.activation_checkpointing,
        pos_encoding=cfg.pos_encoding,
        rope_layout=cfg.rope_layout,
    )
    kw.update(overrides)
    return VisionTransformer(**kw)


def build_predictor(cfg: ModelConfig) -> Predictor:
    d, _, heads, _ = cfg.encoder_shape()
    return Predictor(
        img_size=cfg.img_size,
        patch_size=cfg.patch_size,
        num_frames=cfg.num_frames,
        tubelet_size=cfg.tubelet_size,
        embed_dim=d,
        predictor_embed_dim=cfg.pred_embed_dim,
        depth=cfg.pred_depth,
        num_heads=cfg.pred_num_heads or heads,
        uniform_power=cfg.uniform_power,
        num_mask_tokens=cfg.num_mask_tokens,
        activation_checkpointing=cfg.activation_checkpointing,
        pos_encoding=cfg.pos_encoding,
        rope_layout=cfg.rope_layout,
        sort_tokens=cfg.pred_sort_tokens,
        mask_token_per=cfg.mask_token_per,
    )


def count_trainable(module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
