"""Model sizes and the typed model config that builds the encoder and predictor."""
from __future__ import annotations

from dataclasses import dataclass

from vjepa.config import FieldError, check_range

from vjepa.models.predictor import MASK_TOKEN_CHOICES, Predictor
from vjepa.models.vit import POS_ENCODINGS, ROPE_LAYOUTS, VisionTransformer, rope_axis_dim

# name: (width D, depth, heads, mlp_ratio), as the official factory functions define them. "giant" is
# V-JEPA 1's ViT-g (16 heads of 88); "giant_xformers" is V-JEPA 2's ViT-g (22 heads of 64), the name
# its code gives it.
SIZES: dict[str, tuple[int, int, int, float]] = {
    "tiny": (192, 12, 3, 4.0),
    "small": (384, 12, 6, 4.0),
    "base": (768, 12, 12, 4.0),
    "large": (1024, 24, 16, 4.0),
    "huge": (1280, 32, 16, 4.0),
    "giant": (1408, 40, 16, 48 / 11),
    "giant_xformers": (1408, 40, 22, 48 / 11),
}


@dataclass
class ModelConfig:
    """Encoder + predictor shape. `size` picks a row of SIZES; explicit embed_dim/depth/num_heads
    override it (the CPU profile's small models use that)."""

    size: str = "large"
    img_size: int = 224
    patch_size: int = 16
    num_frames: int = 16
    tubelet_size: int = 2
    in_chans: int = 3
    embed_dim: int | None = None
    depth: int | None = None
    num_heads: int | None = None
    mlp_ratio: float | None = None
    uniform_power: bool = True
    pred_depth: int = 12
    pred_embed_dim: int = 384
    pred_num_heads: int | None = None   # None: the encoder's head count (paper and official code)
    num_mask_tokens: int = 2
    activation_checkpointing: bool = False
    pos_encoding: str = "sincos"        # "sincos" (V-JEPA 1) | "rope3d" (V-JEPA 2), encoder and predictor alike
    rope_layout: str = "tiled"          # "tiled" (the released V-JEPA 2 weights) | "interleaved" (textbook pairs)
    pred_sort_tokens: bool = False      # V-JEPA 2 sorts [context ; targets] by token index in the predictor
    mask_token_per: str = "mask"        # mask token per "mask" config (V-JEPA 1) | per fpc "group" (V-JEPA 2)

    def validate(self) -> None:
        if self.size not in SIZES and None in (self.embed_dim, self.depth, self.num_heads):
            raise FieldError("size", f"{self.size!r} is not one of {sorted(SIZES)}; give embed_dim, depth and num_heads")
        check_range(self, "img_size", "patch_size", "num_frames", "tubelet_size", "in_chans", "embed_dim", "depth",
                    "num_heads", "mlp_ratio", "pred_depth", "pred_embed_dim", "pred_num_heads", "num_mask_tokens", gt=0)
        if self.img_size % self.patch_size:
            raise FieldError("patch_size", f"{self.patch_size} does not divide img_size {self.img_size}")
        if self.num_frames % self.tubelet_size:
            raise FieldError("tubelet_size", f"{self.tubelet_size} does not divide num_frames {self.num_frames}")
        width, _, heads, _ = self.encoder_shape()
        if width % heads:
            raise FieldError("num_heads", f"{heads} heads do not divide the encoder width {width}")
        pred_heads = self.pred_num_heads or heads
        if self.pred_embed_dim % pred_heads:
            raise FieldError("pred_embed_dim", f"{self.pred_embed_dim} is not divisible by the predictor's "
                                               f"{pred_heads} heads")
        if self.pos_encoding not in POS_ENCODINGS:
            raise FieldError("pos_encoding", f"must be one of {POS_ENCODINGS}, got {self.pos_encoding!r}")
        if self.rope_layout not in ROPE_LAYOUTS:
            raise FieldError("rope_layout", f"must be one of {ROPE_LAYOUTS}, got {self.rope_layout!r}")
        if self.mask_token_per not in MASK_TOKEN_CHOICES:
            raise FieldError("mask_token_per", f"must be one of {MASK_TOKEN_CHOICES}, got {self.mask_token_per!r}")
        if self.pos_encoding == "rope3d":
            for field, head_dim in (("num_heads", width // heads), ("pred_num_heads", self.pred_embed_dim // pred_heads)):
                if rope_axis_dim(head_dim) == 0:
                    raise FieldError(field, f"rope3d needs heads of at least 6 channels, got {head_dim}")

    def encoder_shape(self) -> tuple[int, int, int, float]:
        d, depth, heads, ratio = SIZES.get(self.size, (None, None, None, 4.0))
        return (self.embed_dim or d, self.depth or depth, self.num_heads or heads, self.mlp_ratio or ratio)

    @property
    def grid(self) -> tuple[int, int, int]:
        return (self.num_frames // self.tubelet_size, self.img_size // self.patch_size, self.img_size // self.patch_size)


def build_encoder(cfg: ModelConfig, **overrides) -> VisionTransformer:
    d, depth, heads, ratio = cfg.encoder_shape()
    kw = dict(img_size=cfg.img_size, patch_size=cfg.patch_size, num_frames=cfg.num_frames,
              tubelet_size=cfg.tubelet_size, in_chans=cfg.in_chans, embed_dim=d, depth=depth,
              num_heads=heads, mlp_ratio=ratio, uniform_power=cfg.uniform_power,
              activation_checkpointing=cfg.activation_checkpointing, pos_encoding=cfg.pos_encoding,
              rope_layout=cfg.rope_layout)
    kw.update(overrides)
    return VisionTransformer(**kw)


def build_predictor(cfg: ModelConfig) -> Predictor:
    d, _, heads, _ = cfg.encoder_shape()
    return Predictor(img_size=cfg.img_size, patch_size=cfg.patch_size, num_frames=cfg.num_frames,
                     tubelet_size=cfg.tubelet_size, embed_dim=d, predictor_embed_dim=cfg.pred_embed_dim,
                     depth=cfg.pred_depth, num_heads=cfg.pred_num_heads or heads,
                     uniform_power=cfg.uniform_power, num_mask_tokens=cfg.num_mask_tokens,
                     activation_checkpointing=cfg.activation_checkpointing, pos_encoding=cfg.pos_encoding,
                     rope_layout=cfg.rope_layout, sort_tokens=cfg.pred_sort_tokens,
                     mask_token_per=cfg.mask_token_per)


def count_trainable(module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
