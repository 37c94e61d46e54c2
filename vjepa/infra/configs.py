"""The typed config tree: every dataclass a stage is configured with (model, masks, pretraining,
probes, finetuning, detection, data sources and views, the small suite), with the constants their
checks read. Kept apart from the code that runs them, so validating params (pipeline/config.py)
imports no model, data or training code: a stage's DVC deps are then the modules it runs, and
an edit to one of them re-runs only the stages that run it. Import a config from here."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from itertools import product

from vjepa.infra import schedules
from vjepa.infra.config import ConfigError, FieldError, check_range
from vjepa.infra.runtime import PRECISIONS


# -- from vjepa/models/vit.py -----------------------------------------------------------------------------


ROPE_LAYOUTS = ("tiled", "interleaved")


POS_ENCODINGS = ("sincos", "rope3d")


def rope_axis_dim(head_dim: int) -> int:
    """Channels s that each of the three axes rotates in a head of head_dim channels."""
    return 2 * ((head_dim // 3) // 2)


# -- from vjepa/models/predictor.py -----------------------------------------------------------------------


MASK_TOKEN_CHOICES = ("mask", "group")  # mask token i for mask config i (V-JEPA 1) | for fpc group i (V-JEPA 2)


# -- from vjepa/models/registry.py ------------------------------------------------------------------------


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
    pred_num_heads: int | None = None  # None: the encoder's head count (paper and official code)
    num_mask_tokens: int = 2
    activation_checkpointing: bool = False
    pos_encoding: str = "sincos"  # "sincos" (V-JEPA 1) | "rope3d" (V-JEPA 2), encoder and predictor alike
    rope_layout: str = "tiled"  # "tiled" (the released V-JEPA 2 weights) | "interleaved" (textbook pairs)
    pred_sort_tokens: bool = False  # V-JEPA 2 sorts [context ; targets] by token index in the predictor
    mask_token_per: str = "mask"  # mask token per "mask" config (V-JEPA 1) | per fpc "group" (V-JEPA 2)

    def validate(self) -> None:
        if self.size not in SIZES and None in (self.embed_dim, self.depth, self.num_heads):
            raise FieldError(
                "size", f"{self.size!r} is not one of {sorted(SIZES)}; give embed_dim, depth and num_heads"
            )
        check_range(
            self,
            "img_size",
            "patch_size",
            "num_frames",
            "tubelet_size",
            "in_chans",
            "embed_dim",
            "depth",
            "num_heads",
            "mlp_ratio",
            "pred_depth",
            "pred_embed_dim",
            "pred_num_heads",
            "num_mask_tokens",
            gt=0,
        )
        if self.img_size % self.patch_size:
            raise FieldError("patch_size", f"{self.patch_size} does not divide img_size {self.img_size}")
        if self.num_frames % self.tubelet_size:
            raise FieldError("tubelet_size", f"{self.tubelet_size} does not divide num_frames {self.num_frames}")
        width, _, heads, _ = self.encoder_shape()
        if width % heads:
            raise FieldError("num_heads", f"{heads} heads do not divide the encoder width {width}")
        pred_heads = self.pred_num_heads or heads
        if self.pred_embed_dim % pred_heads:
            raise FieldError(
                "pred_embed_dim", f"{self.pred_embed_dim} is not divisible by the predictor's {pred_heads} heads"
            )
        if self.pos_encoding not in POS_ENCODINGS:
            raise FieldError("pos_encoding", f"must be one of {POS_ENCODINGS}, got {self.pos_encoding!r}")
        if self.rope_layout not in ROPE_LAYOUTS:
            raise FieldError("rope_layout", f"must be one of {ROPE_LAYOUTS}, got {self.rope_layout!r}")
        if self.mask_token_per not in MASK_TOKEN_CHOICES:
            raise FieldError("mask_token_per", f"must be one of {MASK_TOKEN_CHOICES}, got {self.mask_token_per!r}")
        if self.pos_encoding == "rope3d":
            for key, head_dim in (("num_heads", width // heads), ("pred_num_heads", self.pred_embed_dim // pred_heads)):
                if rope_axis_dim(head_dim) == 0:
                    raise FieldError(key, f"rope3d needs heads of at least 6 channels, got {head_dim}")

    def encoder_shape(self) -> tuple[int, int, int, float]:
        d, depth, heads, ratio = SIZES.get(self.size, (None, None, None, 4.0))
        return (self.embed_dim or d, self.depth or depth, self.num_heads or heads, self.mlp_ratio or ratio)

    @property
    def grid(self) -> tuple[int, int, int]:
        return (
            self.num_frames // self.tubelet_size,
            self.img_size // self.patch_size,
            self.img_size // self.patch_size,
        )


# -- from vjepa/jepa/masks.py ----------------------------------------------------------------------------------


@dataclass
class MaskConfig:
    """One mask config; kind 'multiblock' (3D multi-block) or 'random_tube'."""

    num_blocks: int = 8
    spatial_scale: tuple[float, float] = (0.15, 0.15)
    temporal_scale: tuple[float, float] = (1.0, 1.0)
    aspect_ratio: tuple[float, float] = (0.75, 1.5)
    max_temporal_keep: float = 1.0
    max_keep: int | None = None
    kind: str = "multiblock"
    ratio: float = 0.9  # random_tube only: fraction of spatial positions masked

    def validate(self) -> None:
        if self.kind not in ("multiblock", "random_tube"):
            raise ValueError(f"kind must be 'multiblock' or 'random_tube', got {self.kind!r}")
        check_range(self, "num_blocks", "max_keep", ge=1)
        check_range(self, "max_temporal_keep", gt=0, le=1)
        for name in ("spatial_scale", "temporal_scale"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi <= 1:
                raise FieldError(name, f"must satisfy 0 < low <= high <= 1, got {[lo, hi]}")
        if not 0 < self.aspect_ratio[0] <= self.aspect_ratio[1]:
            raise FieldError("aspect_ratio", f"must be increasing and positive, got {list(self.aspect_ratio)}")
        if not 0 < self.ratio < 1:
            raise FieldError("ratio", f"must be in (0, 1), got {self.ratio}")


SHORT_RANGE = MaskConfig(num_blocks=8, spatial_scale=(0.15, 0.15))


LONG_RANGE = MaskConfig(num_blocks=2, spatial_scale=(0.7, 0.7))


PAPER_MASKS = (SHORT_RANGE, LONG_RANGE)


# -- from vjepa/train/pretrain.py -------------------------------------------------------------------------------


@dataclass
class OptimConfig:
    """AdamW and its schedules; defaults are the paper's ViT-L/16 run (appendix Table 5)."""

    iterations: int = 90_000
    lr: float = 6.25e-4
    start_lr: float = 2e-4
    final_lr: float = 1e-6
    lr_schedule: str = "warmup_cosine"  # or "linear_decay": V-JEPA 2's cooldown, lr -> final_lr, no warmup
    warmup_iterations: int | None = 12_000  # the appendix text and the official code
    warmup_iterations_fraction: float | None = None  # Table 5 says 0.15 (13,500 steps); set this instead
    start_weight_decay: float = 0.04
    final_weight_decay: float = 0.4
    weight_decay_schedule: str = "cosine"  # official; the appendix text says "linearly"
    start_momentum: float = 0.998
    final_momentum: float = 1.0
    scheduler_scale_factor: float = 1.25
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    clip_grad: float | None = None  # official: 10.0 ...
    clip_grad_from_step: int = 1  # ... from step 12,301 (its `epoch > warmup` rule)
    # AdamW as torch's fused kernel (one pass over each tensor): the official update to float rounding
    # (about 1e-6 relative per step), 0.4 of the per-parameter loop's time on the CPU. false: the
    # official order of operations (torch's loop on the CPU, its foreach kernels on a GPU; the same bits)
    fused: bool = True

    def validate(self) -> None:
        check_range(self, "iterations", ge=1)
        check_range(
            self,
            "lr",
            "start_lr",
            "final_lr",
            "start_weight_decay",
            "final_weight_decay",
            "eps",
            "warmup_iterations",
            "clip_grad_from_step",
            ge=0,
        )
        check_range(self, "warmup_iterations_fraction", "start_momentum", "final_momentum", "betas", ge=0, le=1)
        if (self.warmup_iterations is None) == (self.warmup_iterations_fraction is None):
            raise ValueError("set exactly one of warmup_iterations and warmup_iterations_fraction")
        if self.warmup > self.iterations:
            raise FieldError("warmup_iterations", f"{self.warmup} warmup steps exceed the {self.iterations} iterations")
        if self.lr_schedule not in ("warmup_cosine", "linear_decay"):
            raise FieldError("lr_schedule", f"must be 'warmup_cosine' or 'linear_decay', got {self.lr_schedule!r}")
        if self.lr_schedule == "linear_decay" and self.warmup:
            raise FieldError(
                "warmup_iterations", f"must be 0 with lr_schedule linear_decay (no warmup), got {self.warmup}"
            )
        if self.weight_decay_schedule not in ("cosine", "linear"):
            raise FieldError(
                "weight_decay_schedule", f"must be 'cosine' or 'linear', got {self.weight_decay_schedule!r}"
            )
        check_range(self, "scheduler_scale_factor", "clip_grad", gt=0)

    @property
    def warmup(self) -> int:
        if self.warmup_iterations is not None:
            return self.warmup_iterations
        return int(round(self.warmup_iterations_fraction * self.iterations))

    @property
    def schedule_length(self) -> int:
        return schedules.schedule_length(self.iterations, self.scheduler_scale_factor)

    def lr_at(self, step: int) -> float:
        if self.lr_schedule == "linear_decay":
            return schedules.linear_decay_lr(step, lr=self.lr, final_lr=self.final_lr, total=self.schedule_length)
        return schedules.warmup_cosine_lr(
            step,
            lr=self.lr,
            start_lr=self.start_lr,
            final_lr=self.final_lr,
            warmup=self.warmup,
            total=self.schedule_length,
        )

    def weight_decay_at(self, step: int) -> float:
        fn = schedules.cosine_weight_decay if self.weight_decay_schedule == "cosine" else schedules.linear_weight_decay
        return fn(step, start=self.start_weight_decay, final=self.final_weight_decay, total=self.schedule_length)

    def momentum_at(self, step: int) -> float:
        return schedules.ema_momentum(
            step, start=self.start_momentum, final=self.final_momentum, total=self.schedule_length
        )


@dataclass
class InitConfig:
    """Continued pretraining (domain adaptation): start from a checkpoint's encoder, predictor and
    target encoder (a released file or ours), with a fresh optimizer and schedules from step 1; or,
    with `optimizer`, V-JEPA 2's cooldown (`is_anneal`): its AdamW and grad-scaler state too."""

    checkpoint: str
    strict: bool = True  # False: keys of another shape (e.g. pos_embed at another
    # resolution) keep their fresh values, listed in a warning
    reinit_predictor: bool = False  # True: a freshly initialised predictor (encoders still loaded)
    optimizer: bool = False  # True: also the optimizer and scaler state (the schedules still start at step 1)

    def validate(self) -> None:
        if self.optimizer and self.reinit_predictor:
            raise FieldError("optimizer", "cannot take the optimizer state with a freshly initialised predictor")


@dataclass
class PretrainConfig:
    """Everything a pretraining run needs besides the data. Global batch = batch_size (per process)
    x processes x accumulation_steps; activation checkpointing is model.activation_checkpointing."""

    model: ModelConfig = field(default_factory=ModelConfig)
    masks: list[MaskConfig] = field(default_factory=lambda: [copy.copy(m) for m in PAPER_MASKS])
    optim: OptimConfig = field(default_factory=OptimConfig)
    batch_size: int = 24
    accumulation_steps: int = 1
    precision: str = "bf16"  # "fp32" | "bf16" (autocast; on GPU or CPU); called dtype before
    grad_scaler: bool = False  # official: a GradScaler even with bf16 (no effect but skipping inf steps)
    target: str = "ema"  # "ema" | "copy": target = the current context encoder, no EMA (appendix D)
    reg_coeff: float = 0.0  # official variance regulariser on the predictions (off in the paper)
    seed: int = 234  # official meta.seed
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    num_workers: int = 0
    max_skipped_fraction: float = 0.01  # undecodable videos allowed before the run stops (unique files)
    checkpoint_every: int = 300
    log_every: int = 1
    init: InitConfig | None = None  # continued pretraining from a checkpoint (a resume takes precedence)
    # V-JEPA 2's per-dataset frames per clip: the data's clip lengths, one group each in this order
    # (its own masks and, with model.mask_token_per 'group', its mask token); null: model.num_frames
    clip_lengths: list[int] | None = None
    # the mask token of a length (model.mask_token_per 'group'): "length", its place in clip_lengths |
    # "present", its place among the lengths present in the micro-batch (the released collator's numbering)
    group_token: str = "length"

    @property
    def groups(self) -> list[int]:
        """The clip lengths a batch is grouped by (V-JEPA 1: one, the model's frames)."""
        return list(self.clip_lengths) if self.clip_lengths else [self.model.num_frames]

    def group_grid(self, num_frames: int) -> tuple[int, int, int]:
        """The token grid of a clip of `num_frames` frames at the model's resolution."""
        return (num_frames // self.model.tubelet_size, *self.model.grid[1:])

    def validate(self) -> None:
        if self.clip_lengths is not None:
            lengths, m = list(self.clip_lengths), self.model
            if not lengths or any(t < 1 or t % m.tubelet_size for t in lengths):
                raise FieldError(
                    "clip_lengths",
                    f"frame counts must be multiples of model.tubelet_size {m.tubelet_size}; got {lengths}",
                )
            if len(set(lengths)) != len(lengths):
                raise FieldError("clip_lengths", f"must not repeat a length; got {lengths}")
            if m.pos_encoding == "sincos" and lengths != [m.num_frames]:
                raise FieldError(
                    "clip_lengths",
                    f"{lengths}: a sin-cos model takes clips of its model.num_frames ({m.num_frames}) only; "
                    "clips of several lengths need model.pos_encoding: rope3d",
                )
        if self.precision not in ("fp32", "bf16"):
            raise FieldError("precision", f"must be 'fp32' or 'bf16', got {self.precision!r}")
        if self.group_token not in ("length", "present"):
            raise FieldError("group_token", f"must be 'length' or 'present', got {self.group_token!r}")
        if self.target not in ("ema", "copy"):
            raise FieldError("target", f"must be 'ema' or 'copy', got {self.target!r}")
        check_range(self, "batch_size", "accumulation_steps", "checkpoint_every", "log_every", ge=1)
        check_range(self, "reg_coeff", ge=0)
        check_range(self, "max_skipped_fraction", ge=0, le=1)
        if not self.masks:
            raise FieldError("masks", "must hold at least one mask config")
        # an unused mask token gets no gradient, which DDP refuses
        used = len(self.masks) if self.model.mask_token_per == "mask" else len(self.groups)
        if self.model.num_mask_tokens > used:
            raise ValueError(
                f"model.num_mask_tokens ({self.model.num_mask_tokens}) exceeds the {used} mask token(s) "
                f"used (one per {self.model.mask_token_per}); set model.num_mask_tokens to {used}"
            )
        check_range(self, "num_workers", ge=0)


# -- from vjepa/models/probes.py --------------------------------------------------------------------------


# the probe kinds a probe run trains side by side: V-JEPA 1's attentive probe, V-JEPA 2's 4-block one
PROBE_KINDS = ("attentive", "attentive4", "linear")


# -- from vjepa/evals/probe.py ----------------------------------------------------------------------------------


@dataclass
class EncoderConfig:
    """The frozen encoder the probes read."""

    kind: str = "vjepa"  # "vjepa" (our or a released file) | "timm" (2D image model per frame)
    checkpoint: str | None = None  # vjepa: official-layout file; null = random init (the baseline)
    checkpoint_key: str = "target_encoder"  # the EMA target encoder, which the paper evaluates
    timm_model: str | None = None  # timm: model name, e.g. vit_large_patch14_dinov2
    timm_weights: str | None = None  # timm: a local weights file (nothing is downloaded)
    timm_img_size: int | None = None

    def validate(self) -> None:
        if self.kind not in ("vjepa", "timm"):
            raise FieldError("kind", f"must be 'vjepa' or 'timm', got {self.kind!r}")
        if self.kind == "timm" and not self.timm_model:
            raise ValueError("kind 'timm' needs timm_model")


@dataclass
class ProbeConfig:
    """Table 6 defaults; the official code's choices are one parameter away (docs/differences.md)."""

    num_classes: int
    kinds: list[str] = field(default_factory=lambda: ["attentive", "linear"])
    lrs: list[float] = field(default_factory=lambda: [1e-3])
    weight_decays: list[float] = field(default_factory=lambda: [0.01])
    epochs: int = 20
    batch_size: int = 256
    final_lr: float = 0.0
    wd_schedule: str = "constant"  # appendix: fixed; "cosine": official, from wd down to final_weight_decay
    final_weight_decay: float = 1e-6
    grad_clip: float | None = 1.0  # official clips at 1.0 (the appendix does not say)
    num_heads: int | None = 12  # appendix: 12; null = the encoder's heads (official: 16)
    depth: int = 1
    linear_norm: str = "batchnorm"  # linear probe: BatchNorm without affine on the mean token, or "none"
    num_segments: int = 1  # K400 8; SSv2 1 (appendix) or 2 (official); Table 11: 1 vs 8
    still_frames: int = 16  # images as still clips of 16 frames; 2 gives image-model token counts
    precision: str = "bf16"  # appendix bf16 autocast; "fp16": official (fp16 + GradScaler); "fp32"
    cache_features: bool = False  # encode the training set once; needs a deterministic transform
    encoder_chunk: int | None = None  # encode at most this many clips at a time (memory)
    num_workers: int = 0
    seed: int = 0
    device: str | None = None  # null: cuda when available, else cpu
    max_skipped_fraction: float = 0.01  # unreadable items allowed (training set, evaluation set) before the run stops

    def validate(self) -> None:
        bad = [k for k in self.kinds if k not in PROBE_KINDS]
        if bad or not self.kinds:
            raise FieldError("kinds", f"must be a non-empty list of {'/'.join(PROBE_KINDS)}, got {self.kinds}")
        if not self.lrs or not self.weight_decays:
            raise ValueError("lrs and weight_decays need at least one value each")
        if self.wd_schedule not in ("constant", "cosine"):
            raise FieldError("wd_schedule", f"must be 'constant' or 'cosine', got {self.wd_schedule!r}")
        if self.precision not in PRECISIONS:
            raise FieldError("precision", f"must be one of {sorted(PRECISIONS)}, got {self.precision!r}")
        check_range(self, "num_classes", ge=2)
        check_range(
            self, "epochs", "batch_size", "num_segments", "still_frames", "depth", "num_heads", "encoder_chunk", ge=1
        )
        check_range(self, "lrs", "weight_decays", "final_lr", "final_weight_decay", "num_workers", ge=0)
        check_range(self, "grad_clip", gt=0)
        check_range(self, "max_skipped_fraction", ge=0, le=1)

    def probe_names(self) -> list[str]:
        return [probe_name(k, lr, wd) for k, lr, wd in product(self.kinds, self.lrs, self.weight_decays)]


# segments x views of the official frozen-evaluation configs, with which the released probes were
# trained and scored: K400 16x8x3, SSv2 16x2x3, images one centre view (spec 6.2, 6.3)
RELEASED_PROTOCOL = {"k400": (8, 3), "ssv2": (2, 3), "in1k": (1, 1), "places205": (1, 1), "inat21": (1, 1)}


@dataclass
class EvaluateOnly:
    """A released attentive probe (or any probe file of the official layout) evaluated as it is on a
    task's validation set, with the official protocol of that task unless segments/views are set."""

    probe: str  # probe file, or a released name such as vitl16/k400
    encoder: str | None = None  # encoder file; null: the stage's encoder
    segments: int | None = None  # null: RELEASED_PROTOCOL of the task
    views: int | None = None  # 1 (centre crop) or 3 (official 3 crops)
    num_heads: int | None = None  # the probe's heads; null: the encoder's, as the official probes

    def validate(self) -> None:
        if self.segments is not None and self.segments < 1:
            raise ValueError(f"segments must be >= 1, got {self.segments}")
        if self.views not in (None, 1, 3):
            raise ValueError(f"views must be 1 or 3, got {self.views}")

    def protocol(self, task: str) -> tuple[int, int]:
        """(segments, views) for `task`: the ones set here, else the official ones."""
        if (self.segments is None or self.views is None) and task not in RELEASED_PROTOCOL:
            raise ConfigError(
                f"evaluate_only: task '{task}' has no official protocol (known: "
                f"{sorted(RELEASED_PROTOCOL)}); set segments and views"
            )
        segments, views = RELEASED_PROTOCOL.get(task, (None, None))
        return self.segments or segments, self.views or views


def probe_name(kind: str, lr: float, wd: float) -> str:
    return f"{kind}_lr{lr:g}_wd{wd:g}"


# -- from vjepa/data/transforms.py ------------------------------------------------------------------------


RAND_AUGMENT = "rand-m7-n4-mstd0.5-inc1"  # VideoMAE / official probe (Table 8, spec 6.2)


# -- from vjepa/train/finetune.py -------------------------------------------------------------------------------


FINETUNE_PRECISIONS = ("fp32", "bf16")  # of vjepa.infra.runtime.PRECISIONS: no GradScaler here for fp16


@dataclass
class FinetuneConfig:
    """Defaults: Table 8's K400 column (the SSv2 column's changes are in the paper profiles'
    finetune.tasks.ssv2). The official VideoMAE behaviours are one key away (docs/differences.md)."""

    num_classes: int
    model: ModelConfig = field(default_factory=ModelConfig)  # the pretrained encoder's shape
    checkpoint_key: str = "target_encoder"  # the EMA target encoder; "encoder" for a finetuned file of ours
    # data
    num_frames: int = 16  # K400 16, SSv2 32 (> model.num_frames: positions interpolated)
    frame_step: int = 4  # sampling_rate (unused by TSN sampling)
    img_size: int | None = None  # null: model.img_size (paper: 384)
    sampling: str = "window"  # training clips: "window" (K400) | "tsn" (VideoMAE SSv2)
    test_sampling: str = "spread"  # test views: "spread" (VideoMAE K400) | "tsn" (VideoMAE SSv2)
    test_num_segment: int = 5  # K400 5, SSv2 2
    test_num_crop: int = 3  # 1 (centre) or 3 (along the long side)
    num_sample: int = 2  # repeated augmentation: augmented copies of each decoded clip
    hflip: bool = True  # SSv2: false (left/right are classes)
    auto_augment: str | None = RAND_AUGMENT
    train_interpolation: str = "bicubic"
    color_jitter: float | None = 0.4  # VideoMAE/timm skip it under RandAugment: null
    reprob: float = 0.25  # random erasing, pixel mode, one box through the clip
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (0.75, 4 / 3)
    # model
    drop_path: float = 0.2
    head_drop_rate: float = 0.5
    init_scale: float = 0.001  # head weight and bias scaled at init (VideoMAE)
    encoder_norm: bool = True  # keep the encoder's final norm before pooling; false: VideoMAE
    head_norm: str = "layernorm"  # fc_norm: "layernorm" (VideoMAE) | "batchnorm" (no affine, MAE's
    # linear-probe head; for pooled features that barely vary across clips)
    # optimisation
    epochs: int = 35  # SSv2 20
    batch_size: int = 64  # videos per process and step; global = x processes x accumulation
    accumulation_steps: int = 1  # VideoMAE update_freq
    lr: float = 3e-4  # SSv2 1e-4
    warmup_lr: float = 1e-7
    min_lr: float = 1e-7
    scale_lr_by_batch: bool = False  # true: lr, warmup_lr, min_lr x global batch / 256 (VideoMAE)
    warmup_epochs: float = 5
    warmup_steps: int | None = None  # set: overrides warmup_epochs (VideoMAE's rule)
    layer_decay: float = 0.8
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-7  # Table 8; VideoMAE's code uses 1e-8
    clip_grad: float | None = None
    # mixup / cutmix / label smoothing
    mixup: float = 0.8
    cutmix: float = 1.0
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    mixup_mode: str = "batch"
    smoothing: float = 0.1
    # run
    precision: str = "bf16"  # "bf16" autocast | "fp32"
    seed: int = 0
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    num_workers: int = 0
    decode_threads: int = 1
    checkpoint_every: int = 500  # steps (a checkpoint is also written after each epoch)
    eval_every: int = 0  # epochs between multi-view evaluations; 0: only after the last
    max_skipped_fraction: float = 0.01

    def validate(self) -> None:
        size = self.img_size or self.model.img_size
        if size % self.model.patch_size or self.num_frames % self.model.tubelet_size:
            raise ValueError(
                f"clips of {self.num_frames} frames at {size}px do not tile into "
                f"{self.model.tubelet_size}x{self.model.patch_size}px tubelets"
            )
        if self.sampling not in ("window", "tsn") or self.test_sampling not in ("spread", "tsn", "window"):
            raise FieldError(
                "sampling",
                f"must be 'window' or 'tsn' and test_sampling 'spread', 'tsn' or 'window'; "
                f"got {self.sampling!r}, {self.test_sampling!r}",
            )
        if self.test_num_crop not in (1, 3):
            raise FieldError("test_num_crop", f"must be 1 or 3, got {self.test_num_crop}")
        if self.precision not in FINETUNE_PRECISIONS:
            raise FieldError("precision", f"must be one of {list(FINETUNE_PRECISIONS)}, got {self.precision!r}")
        if self.head_norm not in ("layernorm", "batchnorm"):
            raise FieldError("head_norm", f"must be 'layernorm' or 'batchnorm', got {self.head_norm!r}")
        if self.mixup_mode not in ("batch", "pair", "elem"):
            raise FieldError("mixup_mode", f"must be 'batch', 'pair' or 'elem', got {self.mixup_mode!r}")
        check_range(
            self,
            "num_classes",
            "epochs",
            "batch_size",
            "accumulation_steps",
            "num_sample",
            "test_num_segment",
            "checkpoint_every",
            "num_frames",
            "frame_step",
            "img_size",
            ge=1,
        )
        check_range(
            self,
            "lr",
            "warmup_lr",
            "min_lr",
            "warmup_epochs",
            "warmup_steps",
            "weight_decay",
            "eps",
            "mixup",
            "cutmix",
            "color_jitter",
            "init_scale",
            "eval_every",
            "num_workers",
            ge=0,
        )
        check_range(
            self,
            "drop_path",
            "head_drop_rate",
            "reprob",
            "mixup_prob",
            "mixup_switch_prob",
            "smoothing",
            "max_skipped_fraction",
            "betas",
            ge=0,
            le=1,
        )
        check_range(self, "clip_grad", gt=0)
        if self.mixup_active and (self.batch_size * self.num_sample) % 2:
            raise ValueError(
                f"mixup pairs each clip with the reversed batch, so batch_size x num_sample must be "
                f"even; got {self.batch_size} x {self.num_sample}"
            )
        if not 0 < self.layer_decay <= 1:
            raise FieldError("layer_decay", f"must be in (0, 1], got {self.layer_decay}")

    @property
    def mixup_active(self) -> bool:
        return self.mixup_prob > 0 and (self.mixup > 0 or self.cutmix > 0)

    @property
    def input_size(self) -> int:
        return self.img_size or self.model.img_size


# -- from vjepa/data/ava.py -------------------------------------------------------------------------------


# The 60 classes of ava_action_list_v2.2_for_activitynet_2019.pbtxt (same ids as the 2018 v2.1 list).
AVA_EVAL_CLASS_IDS = (
    1,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    11,
    12,
    13,
    14,
    15,
    17,
    20,
    22,
    24,
    26,
    27,
    28,
    29,
    30,
    34,
    36,
    37,
    38,
    41,
    43,
    45,
    46,
    47,
    48,
    49,
    51,
    52,
    54,
    56,
    57,
    58,
    59,
    60,
    61,
    62,
    63,
    64,
    65,
    66,
    67,
    68,
    69,
    70,
    72,
    73,
    74,
    76,
    77,
    78,
    79,
    80,
)


# -- from vjepa/evals/detect.py ---------------------------------------------------------------------------------


@dataclass
class DetectConfig:
    """Table 7 defaults (ViT-L layers)."""

    out_layers: list[int] = field(default_factory=lambda: [18, 20, 22, 24])  # ViT-H: [26, 28, 30, 32]
    num_classes: int = 80
    eval_classes: list[int] = field(default_factory=lambda: list(AVA_EVAL_CLASS_IDS))
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-4
    weight_decay: float = 0.05
    warmup_epochs: float = 2.0
    warmup_lr: float = 1e-6
    min_lr: float = 1e-6
    dropout: float = 0.5
    roi_resolution: int = 7
    top_k: int = 50  # the official command-line tool's detections per keyframe
    precision: str = "bf16"
    max_skipped_fraction: float = 0.01  # unreadable keyframes allowed (per epoch, and at test) before the run stops
    num_workers: int = 0
    seed: int = 0
    device: str | None = None

    def validate(self) -> None:
        check_range(self, "epochs", "batch_size", "roi_resolution", "top_k", "num_classes", ge=1)
        check_range(self, "lr", "weight_decay", "warmup_epochs", "warmup_lr", "min_lr", "num_workers", ge=0)
        check_range(self, "dropout", "max_skipped_fraction", ge=0, le=1)
        check_range(self, "out_layers", ge=1)
        if not self.out_layers:
            raise ValueError("out_layers needs at least one block number")
        if self.precision not in PRECISIONS:
            raise FieldError("precision", f"must be one of {sorted(PRECISIONS)}, got {self.precision!r}")
        bad = [c for c in self.eval_classes if not 1 <= c <= self.num_classes]
        if bad:
            raise ValueError(f"eval_classes {bad} outside 1..{self.num_classes}")


# -- from vjepa/data/video.py -----------------------------------------------------------------------------


BACKENDS = ("decord", "pyav")
DEFAULT_BACKEND = "pyav"  # the one default of the library and the pipeline: it refuses damaged packets decord conceals


# decord 0.6.0 cannot return frames of these widths (its copy fails with "The size must exactly match")
DECORD_BROKEN_WIDTHS = (2, 4, 6, 8, 12, 16, 24, 48, 72)


# -- from vjepa/data/moving_digits.py ---------------------------------------------------------------------


DIRECTIONS = {  # name -> (dy, dx) per unit speed; 8 = king moves, 4 = the axis moves
    8: [
        ("right", (0, 1)),
        ("down-right", (1, 1)),
        ("down", (1, 0)),
        ("down-left", (1, -1)),
        ("left", (0, -1)),
        ("up-left", (-1, -1)),
        ("up", (-1, 0)),
        ("up-right", (-1, 1)),
    ],
    4: [("right", (0, 1)), ("down", (1, 0)), ("left", (0, -1)), ("up", (-1, 0))],
}


# -- from vjepa/data/small_suite.py -----------------------------------------------------------------------


MOTION_TASKS = ("digit", "direction", "speed", "reversal", "direction_speed")


@dataclass
class SmallSuiteConfig:
    """Knobs of the small suite (params.yaml `data`); sizes are item counts per split."""

    seed: int = 0
    resolution: int = 32  # video frame size (square)
    fps: int = 8  # frame rate of the digit videos
    digit_size: int = 12  # px; the 8x8 digits are upsampled to this
    val_fraction: float = 0.25  # of the 1,797 digits, kept for val sets only (train/val digits disjoint)
    # motion of every digit video
    speeds: tuple[float, ...] = (0.5, 1.0, 2.0)  # px per frame; 0.5 moves inside no 2-frame tubelet
    directions: int = 8  # 8 (king moves) or 4
    boundary: str = "wrap"  # "wrap" (torus, start gives nothing away) or "bounce"
    reversal_prob: float = 0.5  # motion turns back at mid-clip
    jitter: int = 1  # per-frame position jitter, px
    noise: float = 0.0  # Gaussian pixel noise std on [0, 1]
    distractor_prob: float = 0.0  # a second, dimmer digit crossing the clip (occluding or occluded)
    # appearance task (K400-like), long videos
    k400_train: int = 400
    k400_val: int = 150
    k400_frames: int = 64
    k400_visible_fraction: float = 1.0  # the digit shows only in one window of this fraction of the video
    # motion task (SSv2-like)
    ssv2_train: int = 800
    ssv2_val: int = 300
    ssv2_frames: int = 32
    ssv2_label: str = "direction"  # one of MOTION_TASKS other than digit
    ssv2_webm: bool = True  # VP9 .webm like SSv2; False writes .mp4
    # images
    image_size: int = 32
    in1k_train: int = 600
    in1k_val: int = 200
    inat_train: int = 600
    inat_val: int = 300
    places_train: int = 240
    places_val: int = 90
    # AVA-like
    ava_train_videos: int = 6
    ava_val_videos: int = 4
    ava_keyframes: int = 6  # per video, at seconds 902, 903, ...
    ava_resolution: int = 32
    ava_digits: int = 2  # "persons" per video
    ava_exclusion_fraction: float = 0.1
    ava_distractor_proposals: int = 2  # low-score boxes per keyframe
    # real footage (HowTo100M-like)
    footage_size: int | None = 64  # short side of the re-encoded footage; None copies the files as shipped
    footage_chunk_frames: int | None = 64  # when re-encoding, cut into clips of this many frames; None: whole

    def validate(self) -> None:
        if self.directions not in DIRECTIONS:
            raise FieldError("directions", f"must be 4 or 8, got {self.directions}")
        if self.boundary not in ("wrap", "bounce"):
            raise FieldError("boundary", f"must be 'wrap' or 'bounce', got {self.boundary!r}")
        if self.ssv2_label not in MOTION_TASKS[1:]:
            raise ValueError(f"ssv2_label must be one of {MOTION_TASKS[1:]}, got {self.ssv2_label!r}")
        if not self.speeds or any(s <= 0 for s in self.speeds) or len(set(self.speeds)) != len(self.speeds):
            raise FieldError("speeds", f"must be distinct positive numbers, got {self.speeds}")
        if not 0 < self.val_fraction < 1 or not 0 < self.k400_visible_fraction <= 1:
            raise FieldError("val_fraction", "must be in (0, 1) and k400_visible_fraction in (0, 1]")
        check_range(self, "reversal_prob", "distractor_prob", "ava_exclusion_fraction", ge=0, le=1)
        if min(self.resolution, self.ava_resolution, self.image_size) < self.digit_size:
            raise ValueError("resolution, ava_resolution and image_size must be >= digit_size")
        if self.digit_size < 4 or min(self.k400_frames, self.ssv2_frames, self.fps) < 1:
            raise FieldError("digit_size", "must be >= 4; frame counts and fps >= 1")
        counts = (
            "k400_train",
            "k400_val",
            "ssv2_train",
            "ssv2_val",
            "in1k_train",
            "in1k_val",
            "inat_train",
            "inat_val",
            "places_train",
            "places_val",
            "ava_train_videos",
            "ava_val_videos",
            "ava_keyframes",
        )
        check_range(self, *counts, ge=1)
        if self.resolution in DECORD_BROKEN_WIDTHS or self.resolution % 2:
            raise ValueError(
                f"resolution {self.resolution} cannot be decoded by decord 0.6 or encoded as yuv420p; "
                f"use an even size not in {DECORD_BROKEN_WIDTHS}"
            )
        if self.noise < 0 or self.jitter < 0 or not 1 <= self.ava_digits <= 9:
            raise ValueError("noise and jitter must be >= 0 and ava_digits in 1..9")


# -- from vjepa/data/readers.py ---------------------------------------------------------------------------


# Where the clips of a Kinetics release sit under a split's root, by layout: the conventional class
# folders (names with spaces, "air drumming"), mmaction2's download (class folders with underscores)
# and CVDF's re-release (one flat folder per split).
KINETICS_PATH_FORMATS = {
    "class_folders": "{label}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4",
    "class_folders_underscored": "{label_underscored}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4",
    "flat": "{youtube_id}_{time_start:06d}_{time_end:06d}.mp4",
}


KINETICS_PATH_FORMAT = KINETICS_PATH_FORMATS["class_folders"]


def kinetics_path_format(layout: str) -> str:
    """The clip-path format of a layout name (a key of KINETICS_PATH_FORMATS) or of a format string
    of its own (fields label, label_underscored, youtube_id, time_start, time_end, split); a
    string that names an unknown layout or field is a ValueError saying what is allowed."""
    if layout in KINETICS_PATH_FORMATS:
        return KINETICS_PATH_FORMATS[layout]
    if "{" not in layout:
        raise ValueError(
            f"unknown Kinetics layout {layout!r}: use one of {', '.join(KINETICS_PATH_FORMATS)} "
            "or a format string such as '{youtube_id}_{time_start:06d}_{time_end:06d}.mp4'"
        )
    try:
        layout.format(label="a b", label_underscored="a_b", youtube_id="x", time_start=1, time_end=2, split="train")
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(
            f"format string {layout!r} does not format a row ({type(e).__name__}: {e}); its fields are "
            "label, label_underscored, youtube_id, time_start, time_end (integers), split"
        ) from None
    return layout


# -- from vjepa/data/sources.py ---------------------------------------------------------------------------


FORMATS = ("list", "kinetics", "ssv2", "image_folder", "inat")


IMAGE_FORMATS = ("image_folder", "inat")


@dataclass
class SplitSource:
    """One split. format: 'list' (space-separated `path label`), 'kinetics' (release CSV; clips under
    root as `path_format` says), 'ssv2' (split JSON + labels JSON; <root>/<id><extension>),
    'image_folder' (path is the root of class folders), 'inat' (iNat21 JSON; images under root)."""

    format: str
    path: str
    root: str | None = None
    labels: str | None = None  # ssv2: something-something-v2-labels.json
    extension: str = ".webm"  # ssv2 video files
    num_classes: int | None = None  # list: the label space 0..num_classes-1 (default: 0..max of training)
    # kinetics: where the clips sit under root, a layout of KINETICS_PATH_FORMATS ('class_folders', the
    # default: <label>/<ytid>_<t0:06d>_<t1:06d>.mp4; 'class_folders_underscored', mmaction2's; 'flat', CVDF's)
    # or a format string of its own
    path_format: str | None = None

    def validate(self) -> None:
        if self.format not in FORMATS:
            raise FieldError("format", f"must be one of {FORMATS}, got {self.format!r}")
        if self.format == "ssv2" and not self.labels:
            raise ValueError("format 'ssv2' needs `labels` (the labels JSON)")
        if self.num_classes is not None and (self.format != "list" or self.num_classes < 1):
            raise ValueError("`num_classes` is for the 'list' format (integer labels) and must be >= 1")
        if self.path_format is not None:
            if self.format != "kinetics":
                raise FieldError("path_format", f"is for the 'kinetics' format, not {self.format!r}")
            try:
                kinetics_path_format(self.path_format)
            except ValueError as e:
                raise FieldError("path_format", str(e)) from None

    @property
    def is_image(self) -> bool:
        return self.format in IMAGE_FORMATS


@dataclass
class TaskData:
    """A labelled task: a train and a val split in the same label space."""

    train: SplitSource
    val: SplitSource

    def validate(self) -> None:
        if self.train.is_image != self.val.is_image:
            raise ValueError("train and val must both be videos or both be images")
        if self.train.num_classes != self.val.num_classes:
            raise ValueError(
                f"train and val must give the same `num_classes`, got {self.train.num_classes} "
                f"and {self.val.num_classes}"
            )


# -- from vjepa/data/tasks.py -----------------------------------------------------------------------------


@dataclass
class TaskViews:
    """Clips (videos) or still clips (images) of a task: frames, stride, evaluation views, and the
    training augmentation (random resized crop + flip, Table 6; off allows caching features)."""

    num_frames: int = 16
    frame_step: int = 4
    eval_views: int = 3
    still_frames: int = 16
    augment: bool = True
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (0.75, 1.33)
    hflip: bool = True
    auto_augment: str | None = None  # IN1K: "original" (AutoAugment)
    reprob: float = 0.0
    allow_overlap: bool = False  # official frozen evals: overlapping clips in short videos

    def validate(self) -> None:
        check_range(self, "num_frames", "frame_step", "eval_views", "still_frames", ge=1)
        check_range(self, "scale", gt=0, le=1)
        check_range(self, "ratio", gt=0)
        check_range(self, "reprob", ge=0, le=1)


# -- from vjepa/data/index.py -----------------------------------------------------------------------------


@dataclass
class IndexConfig:
    """How `prepare` checks a task before indexing it. check_files: stat every listed file (one
    stat per entry: minutes for millions of files on a network file system, so off by default);
    sample_files: otherwise, stat this many of each split's or list's files, drawn at random with
    a fixed seed, so a wrong root fails at prepare in seconds; progress: a bar for the full check."""

    check_files: bool = False
    sample_files: int = 256
    progress: bool = True

    def validate(self) -> None:
        check_range(self, "sample_files", ge=0)


# -- from vjepa/data/detection.py -------------------------------------------------------------------------


@dataclass
class AvaFiles:
    """An AVA v2.2 folder's files (SlowFast frame layout, 30 fps, clips cut from second 900)."""

    frames: str
    train_groundtruth: str
    val_groundtruth: str
    labelmap: str  # the evaluation subset (60 classes for AVA v2.2)
    val_proposals: str  # person boxes with scores: mmaction pickle or SlowFast CSV
    train_exclusions: str | None = None
    val_exclusions: str | None = None


@dataclass
class AvaClipConfig:
    """AVA clips and boxes as SlowFast's frozen-detection recipe reads them (cv2 path)."""

    num_frames: int = 16
    frame_step: int = 4  # 16 frames at stride 4 around the keyframe (~2.1 s)
    train_scale: list[int] = field(default_factory=lambda: [256, 320])  # random short side, train
    crop_size: int = 224  # random square crop after scaling, train
    test_size: int = 256  # short side at test; the full frame, no crop
    hflip: bool = True  # train: frames and boxes flipped together with p 0.5
    proposal_score_threshold: float = 0.9  # SlowFast's default (its c2 R101 config: 0.8)

    def validate(self) -> None:
        check_range(self, "num_frames", "frame_step", "crop_size", "test_size", "train_scale", ge=1)
        check_range(self, "proposal_score_threshold", ge=0, le=1)
        if len(self.train_scale) != 2 or self.train_scale[0] > self.train_scale[1]:
            raise FieldError("train_scale", f"must be [low, high] with low <= high, got {self.train_scale}")
        if self.crop_size > self.train_scale[0]:
            raise FieldError("crop_size", f"{self.crop_size} exceeds the smallest training scale {self.train_scale[0]}")
