"""Using a pretrained model in one line: `load_encoder` returns a ready encoder from a released
V-JEPA file or one of ours (its size and resolution read from the weights' shapes),
`load_processor` the preprocessing that turns a video file or a decoded clip into that encoder's
input with the checkpoint's own settings, and `load_classifier` a released attentive probe on its
encoder, returning class probabilities.
The torch.hub entry points of the repository's hubconf.py are the functions at the bottom.

Released files are looked up by name (`vitl16`, `vith16`, `vith16-384`; probes `vitl16/k400`, ...;
V-JEPA 2's `vjepa2-vitl`, `vjepa2-vith`, `vjepa2-vitg`, `vjepa2-vitg-384`) in `checkpoint_dir()`; nothing is
downloaded unless `download=True` is passed. Every file is read
with weights_only=True and loaded strictly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from vjepa.infra.checkpoint import check_state_dict, encoder_config_from_state, load, load_official_module, strip_prefix
from vjepa.infra.runtime import CheckpointError
from vjepa.models.registry import build_encoder
from vjepa.infra.configs import DEFAULT_BACKEND, ModelConfig

URL = "https://dl.fbaipublicfiles.com/jepa"
# the released encoders: name -> the model each file holds (16 frames, tubelets of 2, patches of 16)
RELEASED = {
    "vitl16": ModelConfig(size="large"),
    "vith16": ModelConfig(size="huge"),
    "vith16-384": ModelConfig(size="huge", img_size=384),
}
# V-JEPA 2's released encoders (facebookresearch/vjepa2): name -> file under URL_V2; built as its hub
# builds them, for 64 frames (RoPE runs any clip size), with the predictor switches of the release
URL_V2 = "https://dl.fbaipublicfiles.com/vjepa2"
V2_SWITCHES = dict(
    num_frames=64,
    pos_encoding="rope3d",
    pred_num_heads=12,
    num_mask_tokens=10,
    pred_sort_tokens=True,
    mask_token_per="group",
)
RELEASED_V2_FILES = {
    "vjepa2-vitl": "vitl.pt",
    "vjepa2-vith": "vith.pt",
    "vjepa2-vitg": "vitg.pt",
    "vjepa2-vitg-384": "vitg-384.pt",
}
RELEASED.update(
    {
        "vjepa2-vitl": ModelConfig(size="large", img_size=256, **V2_SWITCHES),
        "vjepa2-vith": ModelConfig(size="huge", img_size=256, **V2_SWITCHES),
        "vjepa2-vitg": ModelConfig(size="giant_xformers", img_size=256, **V2_SWITCHES),
        "vjepa2-vitg-384": ModelConfig(size="giant_xformers", img_size=384, **V2_SWITCHES),
    }
)
# the released attentive probes of each encoder: task -> file stem (probe names: "vitl16/k400", ...)
RELEASED_PROBES = {
    "k400": "k400-probe",
    "ssv2": "ssv2-probe",
    "in1k": "in1k-probe",
    "places205": "places-probe",
    "inat21": "inat-probe",
}
# the default (CPU) profile's `model` section; tests/test_hub.py checks that the two agree
TINY = ModelConfig(
    size="tiny",
    img_size=24,
    patch_size=4,
    num_frames=8,
    tubelet_size=2,
    embed_dim=64,
    depth=4,
    num_heads=4,
    pred_depth=2,
    pred_embed_dim=32,
)


def checkpoint_dir() -> Path:
    """Where released files are looked for: $VJEPA_CHECKPOINTS, else <torch hub dir>/checkpoints/vjepa."""
    env = os.environ.get("VJEPA_CHECKPOINTS")
    return Path(env) if env else Path(torch.hub.get_dir()) / "checkpoints" / "vjepa"


def _released_file(name: str) -> tuple[Path, str] | None:
    """(local path, download URL) of a released encoder ('vitl16') or probe ('vitl16/k400'), else None."""
    model, _, task = name.partition("/")
    if model in RELEASED_V2_FILES and not task:
        return checkpoint_dir() / "vjepa2" / RELEASED_V2_FILES[model], f"{URL_V2}/{RELEASED_V2_FILES[model]}"
    if model not in RELEASED or model in RELEASED_V2_FILES or (task and task not in RELEASED_PROBES):
        return None
    fname = f"{RELEASED_PROBES[task] if task else model}.pth.tar"
    return checkpoint_dir() / model / fname, f"{URL}/{model}/{fname}"


def resolve(path_or_name: str | os.PathLike, download: bool = False) -> Path:
    """A file path as it is; a released name as its file under checkpoint_dir(), fetched from the
    official URL only with download=True."""
    path = Path(path_or_name)
    if path.is_file():
        return path
    released = _released_file(str(path_or_name))
    if released is None:
        raise CheckpointError(
            f"checkpoint not found: {path} (and not a released name: one of {sorted(RELEASED)}, "
            f"or '<model>/<task>' for a probe, task one of {sorted(RELEASED_PROBES)})"
        )
    local, url = released
    if not local.is_file():
        if not download:
            raise CheckpointError(
                f"released file '{path_or_name}' is not at {local}; download it from {url} "
                "(or pass download=True), or set VJEPA_CHECKPOINTS to the folder holding it"
            )
        local.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(local))
    return local


def _model_hint(ck: dict) -> ModelConfig | None:
    """The model config our own pretraining files store next to the weights, if any."""
    model = ck.get("config", {}).get("model") if isinstance(ck.get("config"), dict) else None
    if not isinstance(model, dict):
        return None
    from vjepa.infra.config import from_dict

    return from_dict(ModelConfig, model, "checkpoint config.model")


def encoder_config(
    ck: dict,
    key: str = "target_encoder",
    where: str = "checkpoint",
    num_frames: int | None = None,
    img_size: int | None = None,
    num_heads: int | None = None,
    pos_encoding: str | None = None,
) -> ModelConfig:
    """The encoder's ModelConfig read from a loaded checkpoint's shapes; frames and heads default to
    the config our own files store (else 16 frames, heads from the size table)."""
    if key not in ck:
        raise CheckpointError(f"{where} has no '{key}' entry; it has {sorted(map(str, ck))}")
    check_state_dict(ck[key], f"{where}['{key}']")
    hint = _model_hint(ck)
    if hint is not None:
        pos_encoding = pos_encoding or hint.pos_encoding
        if pos_encoding == "rope3d":  # no grid in a RoPE model's weights: the stored config says it
            img_size = img_size or hint.img_size
        num_frames = num_frames or (hint.num_frames if img_size is None or pos_encoding == "rope3d" else None)
        num_heads = num_heads or hint.encoder_shape()[2]
    return encoder_config_from_state(
        strip_prefix(ck[key]),
        num_frames=num_frames,
        img_size=img_size,
        num_heads=num_heads,
        where=f"{where}['{key}']",
        pos_encoding=pos_encoding,
    )


def _same_encoder(a: ModelConfig, b: ModelConfig) -> bool:
    fields = ("img_size", "patch_size", "num_frames", "tubelet_size", "in_chans", "pos_encoding")
    return a.encoder_shape() == b.encoder_shape() and all(getattr(a, f) == getattr(b, f) for f in fields)


def _describe(m: ModelConfig) -> str:
    d, depth, heads, _ = m.encoder_shape()
    return (
        f"width {d}, depth {depth}, {heads} heads, {m.num_frames} frames x {m.img_size}px, "
        f"tubelets {m.tubelet_size}x{m.patch_size}x{m.patch_size}"
    )


def load_encoder(
    path_or_name: str | os.PathLike,
    *,
    key: str = "target_encoder",
    num_frames: int | None = None,
    img_size: int | None = None,
    num_heads: int | None = None,
    expect: ModelConfig | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    download: bool = False,
) -> nn.Module:
    """A ready V-JEPA encoder (eval mode) from a checkpoint file or a released name: the EMA target
    encoder by default (`key='encoder'` for the context encoder), built at the size and resolution
    the weights' shapes say and loaded strictly. `expect` (a released name's model by default)
    makes a file of another model an error instead of a surprise."""
    path = resolve(path_or_name, download)
    ck = load(path)
    if expect is None and str(path_or_name) in RELEASED:
        expect = RELEASED[str(path_or_name)]
    try:
        if expect is not None and _model_hint(ck) is None:
            # an official-layout file stores no frames or heads: read it as the expected model's (a RoPE
            # model's weights hold no grid either: its image size too)
            rope = expect.pos_encoding == "rope3d"
            cfg = encoder_config(
                ck,
                key,
                str(path),
                num_frames or expect.num_frames,
                img_size or (expect.img_size if rope else None),
                num_heads or expect.encoder_shape()[2],
                expect.pos_encoding,
            )
        else:
            # the file as it describes itself (ours store their model config), so that a mismatch
            # names the actual file's heads and frames, not the expected model's
            cfg = encoder_config(ck, key, str(path), num_frames, img_size, num_heads)
    except CheckpointError as e:
        if expect is None or key not in ck or not isinstance(ck[key], dict):
            raise
        state = strip_prefix(ck[key])
        found = (
            f"width {state['patch_embed.proj.weight'].shape[0]}, depth "
            f"{len({k.split('.')[1] for k in state if k.startswith('blocks.')})}"
            if "patch_embed.proj.weight" in state
            else "no patch embedding"
        )
        raise CheckpointError(
            f"{path}['{key}'] holds an encoder of {found}, not the expected {_describe(expect)} ({e})"
        ) from None
    if expect is not None and not _same_encoder(cfg, expect):
        raise CheckpointError(
            f"{path}['{key}'] holds an encoder of {_describe(cfg)}, not the expected {_describe(expect)}"
        )
    with torch.device("meta"):  # no random init of weights about to be replaced
        encoder = build_encoder(cfg)
    encoder = encoder.to_empty(device="cpu")
    load_official_module(encoder, ck, key, str(path))  # strict; a RoPE model drops only unused sin-cos tables
    return encoder.to(device=device, dtype=dtype).eval()


# the official models' clip sampling (appendix Table 5-6: 16 frames, temporal stride 4)
OFFICIAL_FRAME_STEP = 4


@dataclass(frozen=True)
class VideoProcessor:
    """Turns a video file, or a decoded clip (uint8 [T, H, W, 3], numpy or torch), into the model's
    input [1, 3, T, S, S]: `num_frames` frames `frame_step` apart (or, with `fps`, V-JEPA 2's
    ceil(video fps) // fps apart) from the middle of the video, the
    short side resized to S * 256/224 and centre-cropped to S (the frozen evaluation's single view),
    normalised with the checkpoint's mean and std."""

    img_size: int
    num_frames: int
    frame_step: int | None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    video_backend: str = DEFAULT_BACKEND
    fps: float | None = None

    def read(self, path: str | os.PathLike):
        """The clip this processor takes from a video file (uint8 [T, H, W, 3])."""
        from vjepa.data import ClipSampling, read_clips

        if self.frame_step is None and self.fps is None:
            raise ValueError(
                "this processor has no frame step (its checkpoint does not record one): pass "
                "frame_step= to load_processor, or give a decoded clip"
            )
        frames, _ = read_clips(
            str(path),
            ClipSampling(num_frames=self.num_frames, frame_step=self.frame_step or 1, fps=self.fps, random=False),
            backend=self.video_backend,
        )
        return frames

    def __call__(self, video) -> torch.Tensor:
        from vjepa.data.transforms import EvalClipTransform

        frames = self.read(video) if isinstance(video, (str, os.PathLike)) else video
        shape = tuple(frames.shape)
        if len(shape) != 4 or shape[-1] != 3 or shape[0] != self.num_frames:
            raise ValueError(
                f"expected a clip of {self.num_frames} RGB frames [T, H, W, 3] (the model's), got shape {shape}"
            )
        return EvalClipTransform(self.img_size, mean=tuple(self.mean), std=tuple(self.std))(frames)


def load_processor(
    path_or_name: str | os.PathLike,
    *,
    frame_step: int | None = None,
    num_frames: int | None = None,
    img_size: int | None = None,
    download: bool = False,
    **overrides,
) -> VideoProcessor:
    """The VideoProcessor of a checkpoint: its own `preprocessing` entry (every pretraining checkpoint
    of ours since it carries one), else the model's size and frames from its config or shapes with
    the official frame step (released and official-layout files) and ImageNet normalisation.
    `frame_step=`, `num_frames=`, `img_size=` and other fields override (an official-layout file
    does not say its frames: 16 unless num_frames= says otherwise, as for load_encoder); a file of
    ours that predates the entry needs frame_step=."""
    from vjepa.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    path = resolve(path_or_name, download)
    ck = load(path)
    saved = ck.get("preprocessing")
    if saved:
        fields = dict(saved)
    else:
        # heads do not change the input: any count that divides the width reads the shapes
        model = (
            RELEASED.get(str(path_or_name))
            or _model_hint(ck)
            or encoder_config(ck, where=str(path), num_frames=num_frames, img_size=img_size, num_heads=1)
        )
        ours = isinstance(ck.get("config"), dict)  # one of ours from before `preprocessing`: no frame step recorded
        fields = {
            "img_size": model.img_size,
            "num_frames": model.num_frames,
            "frame_step": None if ours else OFFICIAL_FRAME_STEP,
            "mean": IMAGENET_MEAN,
            "std": IMAGENET_STD,
        }
    given = {"frame_step": frame_step, "num_frames": num_frames, "img_size": img_size, **overrides}
    fields.update({k: v for k, v in given.items() if v is not None})
    if frame_step is not None and "fps" not in overrides:  # a frame step asked for replaces a recorded fps
        fields.pop("fps", None)
    if fields.get("frame_step") is None and not saved and isinstance(ck.get("config"), dict):
        raise CheckpointError(
            f"{path} records no frame step (written before checkpoints carried their "
            "preprocessing); pass frame_step= (the `pretrain.data.frame_step` it was trained with)"
        )
    fields["mean"], fields["std"] = tuple(fields["mean"]), tuple(fields["std"])
    return VideoProcessor(**fields)


class Classifier(nn.Module):
    """A frozen encoder and a probe: a clip [B, C, T, H, W], or a batch in the data contract
    [B, S, V, C, T, H, W] (segments' tokens concatenated, views' softmaxes averaged, as the
    evaluation does), to class probabilities [B, K]."""

    def __init__(self, encoder: nn.Module, probe: nn.Module, still_frames: int = 16):
        super().__init__()
        self.encoder, self.probe, self.still_frames = encoder.eval(), probe.eval(), still_frames

    @torch.no_grad()
    def forward(self, video: torch.Tensor) -> torch.Tensor:
        from vjepa.evals.frozen import average_views, encode

        if video.ndim == 5:
            video = video[:, None, None]
        if video.ndim != 7:
            raise ValueError(
                f"expected a clip [B, C, T, H, W] or [B, S, V, C, T, H, W], got shape {tuple(video.shape)}"
            )
        tokens = encode(self.encoder, video, self.still_frames)  # [V, B, S*N, D]
        return average_views(torch.stack([self.probe(tv) for tv in tokens]))


def load_probe(path_or_name: str | os.PathLike, num_heads: int, download: bool = False) -> nn.Module:
    """A probe file (a released attentive probe of V-JEPA 1 or 2, or one of ours; or a Hugging Face
    VJEPA2ForVideoClassification folder or .safetensors, its head) as a model in eval mode."""
    from vjepa.models.probes import probe_from_file

    path = Path(path_or_name)
    if path.is_dir() or path.suffix == ".safetensors":
        from vjepa.models.convert import probe_from_hf_files

        return probe_from_hf_files(path, num_heads)
    return probe_from_file(resolve(path_or_name, download), num_heads)


def load_classifier(
    probe: str | os.PathLike,
    encoder: str | os.PathLike | nn.Module | None = None,
    *,
    probe_heads: int | None = None,
    still_frames: int = 16,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    download: bool = False,
    **encoder_kw,
) -> Classifier:
    """A released probe ('vitl16/k400' or a file) on its encoder (a file, a name or a module; for a
    released probe name, its own encoder by default) as a classifier returning class probabilities.
    The probe's heads default to the encoder's, as the official evaluation builds them;
    `encoder_kw` go to load_encoder (num_frames=, num_heads=, key=)."""
    if encoder is None:
        model = str(probe).partition("/")[0]
        if model not in RELEASED:
            raise ValueError("load_classifier needs the encoder for a probe file that is not a released name")
        encoder = model
    if not isinstance(encoder, nn.Module):
        encoder = load_encoder(encoder, download=download, **encoder_kw)
    head = load_probe(probe, probe_heads or encoder.num_heads, download)
    if head.linear.in_features != encoder.embed_dim:
        raise CheckpointError(
            f"{probe}: the probe reads {head.linear.in_features}-wide tokens, the encoder writes {encoder.embed_dim}"
        )
    return Classifier(encoder, head, still_frames).to(device=device, dtype=dtype)


# ----------------------------------------------------------------------------------------------
# torch.hub entry points (hubconf.py re-exports these)


def _entry(name: str, model: ModelConfig, checkpoint, pretrained: bool, **kw) -> nn.Module:
    if checkpoint is None and not pretrained:
        return build_encoder(model).to(device=kw.get("device", "cpu"), dtype=kw.get("dtype")).eval()
    if checkpoint is None and name not in RELEASED:
        raise ValueError(
            f"there is no released {name} model: pass checkpoint= (a file of ours, e.g. "
            "runs/pretrain/seed0/checkpoint.pth.tar)"
        )
    return load_encoder(checkpoint or name, expect=model, **kw)


def vjepa_vitl16(checkpoint=None, pretrained: bool = True, **kw) -> nn.Module:
    """V-JEPA ViT-L/16 at 224 px, 16 frames: the released `vitl16` file, or `checkpoint` of that shape."""
    return _entry("vitl16", RELEASED["vitl16"], checkpoint, pretrained, **kw)


def vjepa_vith16(checkpoint=None, pretrained: bool = True, **kw) -> nn.Module:
    """V-JEPA ViT-H/16 at 224 px, 16 frames: the released `vith16` file, or `checkpoint` of that shape."""
    return _entry("vith16", RELEASED["vith16"], checkpoint, pretrained, **kw)


def vjepa_vith16_384(checkpoint=None, pretrained: bool = True, **kw) -> nn.Module:
    """V-JEPA ViT-H/16 at 384 px, 16 frames: the released `vith16-384` file, or `checkpoint` of that shape."""
    return _entry("vith16-384", RELEASED["vith16-384"], checkpoint, pretrained, **kw)


def vjepa2_vitl(checkpoint=None, pretrained: bool = True, **kw) -> nn.Module:
    """V-JEPA 2 ViT-L/16 (RoPE) at 256 px: the released `vitl.pt` (its EMA target encoder by default)."""
    return _entry("vjepa2-vitl", RELEASED["vjepa2-vitl"], checkpoint, pretrained, **kw)


def vjepa2_vith(checkpoint=None, pretrained: bool = True, **kw) -> nn.Module:
    """V-JEPA 2 ViT-H/16 (RoPE) at 256 px: the released `vith.pt`."""
    return _entry("vjepa2-vith", RELEASED["vjepa2-vith"], checkpoint, pretrained, **kw)


def vjepa2_vitg(checkpoint=None, pretrained: bool = True, **kw) -> nn.Module:
    """V-JEPA 2 ViT-g/16 (22 heads, RoPE) at 256 px: the released `vitg.pt`."""
    return _entry("vjepa2-vitg", RELEASED["vjepa2-vitg"], checkpoint, pretrained, **kw)


def vjepa2_vitg_384(checkpoint=None, pretrained: bool = True, **kw) -> nn.Module:
    """V-JEPA 2 ViT-g/16 (22 heads, RoPE) at 384 px: the released `vitg-384.pt`."""
    return _entry("vjepa2-vitg-384", RELEASED["vjepa2-vitg-384"], checkpoint, pretrained, **kw)


def vjepa_encoder(checkpoint, **kw) -> nn.Module:
    """Any V-JEPA checkpoint of ours (or an official-layout file), built at the size, resolution,
    frames and heads the file records (see load_encoder); load_processor(checkpoint) feeds it."""
    return load_encoder(checkpoint, **kw)


def vjepa_processor(checkpoint, **kw) -> VideoProcessor:
    """The preprocessing a checkpoint was trained with, as a callable (see load_processor)."""
    return load_processor(checkpoint, **kw)


def vjepa_tiny(checkpoint=None, pretrained: bool = True, **kw) -> nn.Module:
    """The default CPU profile's model (width 64, depth 4, 8 frames x 24 px): a checkpoint of ours."""
    return _entry("tiny", TINY, checkpoint, pretrained, **kw)


def vjepa_classifier(probe, encoder=None, **kw) -> Classifier:
    """A probe on its encoder, returning class probabilities (see load_classifier)."""
    return load_classifier(probe, encoder, **kw)
