"""Models: the video ViT encoder, the predictor and the size registry."""

from vjepa.models.predictor import Predictor
from vjepa.models.registry import build_encoder, build_predictor, count_trainable
from vjepa.infra.configs import ModelConfig
from vjepa.infra.configs import SIZES
from vjepa.models.vit import VisionTransformer, gather_tokens, still_clip

__all__ = [
    "Predictor",
    "SIZES",
    "ModelConfig",
    "build_encoder",
    "build_predictor",
    "count_trainable",
    "VisionTransformer",
    "gather_tokens",
    "still_clip",
]
