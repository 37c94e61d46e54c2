"""V-JEPA 2 weights in and out: the released checkpoints of facebookresearch/vjepa2 and the state
dict of Hugging Face transformers' `VJEPA2Model`, both ways, checked key by key and shape by shape.

- Released layout: `{"encoder", "predictor", "target_encoder"}`, each a state dict whose keys carry
  `module.backbone.` and are otherwise ours (vit.py and predictor.py use the released names).
- Hugging Face layout: `encoder.embeddings.patch_embeddings.proj`, `encoder.layer.{i}` with q, k and v
  as three Linears, `encoder.layernorm`, and `predictor.embeddings.{predictor_embeddings, mask_tokens}`
  (mask tokens stacked [K, 1, 1, d]), `predictor.layer.{i}`, `predictor.layernorm`, `predictor.proj`.
  A folder with `config.json` and `model.safetensors` in it loads with `VJEPA2Model.from_pretrained`.
The Hugging Face model has RoPE with the released (tiled) layout only and a square grid, so a sin-cos
(V-JEPA 1) or `interleaved` model cannot be written for it; that raises ValueError saying which switch.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn as nn

from vjepa.infra.checkpoint import load, load_into, load_official_module
from vjepa.infra.runtime import CheckpointError
from vjepa.models.predictor import Predictor
from vjepa.models.registry import build_encoder, build_predictor
from vjepa.infra.configs import ModelConfig
from vjepa.models.vit import VisionTransformer

# ours -> Hugging Face, per block (qkv is split separately)
_BLOCK = {"norm1": "norm1", "attn.proj": "attention.proj", "norm2": "norm2", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}
_ENC = {"patch_embed.proj": "encoder.embeddings.patch_embeddings.proj", "norm": "encoder.layernorm"}
_PRED = {
    "predictor_embed": "predictor.embeddings.predictor_embeddings",
    "predictor_norm": "predictor.layernorm",
    "predictor_proj": "predictor.proj",
}
HF_CONFIG = "config.json"
HF_WEIGHTS = "model.safetensors"


# ---------------------------------------------------------------------------------------------
# released (facebookresearch/vjepa2) checkpoints


def load_released(
    source: str | Path | Mapping[str, Any],
    encoder: nn.Module | None = None,
    predictor: nn.Module | None = None,
    target_encoder: nn.Module | None = None,
) -> dict:
    """Load a released V-JEPA 2 file (read with weights_only) or its loaded dict strictly into the
    models given (see load_official_module: of a RoPE model, only unused sin-cos tables are left out);
    returns the dict."""
    ck = load(source) if isinstance(source, (str, Path)) else source
    where = str(source) if isinstance(source, (str, Path)) else "V-JEPA 2 checkpoint"
    for key, model in (("encoder", encoder), ("predictor", predictor), ("target_encoder", target_encoder)):
        if model is not None:
            load_official_module(model, ck, key, where)
    return ck


# ---------------------------------------------------------------------------------------------
# Hugging Face VJEPA2Model


def _check_hf_expressible(encoder: VisionTransformer, predictor: Predictor) -> None:
    for name, m in (("encoder", encoder), ("predictor", predictor)):
        if m.pos_encoding != "rope3d":
            raise ValueError(
                f"the {name} uses pos_encoding={m.pos_encoding!r}; Hugging Face's VJEPA2Model has "
                "3D RoPE only, so a V-JEPA 1 (sin-cos) model cannot be written for it"
            )
        if m.rope_layout != "tiled":
            raise ValueError(
                f"the {name} uses rope_layout={m.rope_layout!r}; Hugging Face's VJEPA2Model rotates "
                "with the released 'tiled' layout only"
            )
    if encoder.grid != predictor.grid:
        raise ValueError(
            f"encoder grid {encoder.grid} and predictor grid {predictor.grid} differ; Hugging Face "
            "keeps one crop_size and frames_per_clip for both"
        )
    if encoder.blocks[0].attn.qkv.bias is None:
        raise ValueError("the encoder has no qkv bias; write it with qkv_bias=True")


def hf_config(encoder: VisionTransformer, predictor: Predictor) -> dict:
    """The VJEPA2Config (as the dict of its config.json) that describes these two models."""
    _check_hf_expressible(encoder, predictor)
    pred_dim = predictor.predictor_embed.out_features
    return {
        "model_type": "vjepa2",
        "architectures": ["VJEPA2Model"],
        "patch_size": encoder.patch_size,
        "crop_size": encoder.img_size,
        "frames_per_clip": encoder.num_frames,
        "tubelet_size": encoder.tubelet_size,
        "hidden_size": encoder.embed_dim,
        "in_chans": encoder.in_chans,
        "num_attention_heads": encoder.num_heads,
        "num_hidden_layers": len(encoder.blocks),
        "mlp_ratio": encoder.blocks[0].mlp.fc1.out_features / encoder.embed_dim,
        "layer_norm_eps": 1e-6,
        "qkv_bias": True,
        "hidden_act": "gelu",
        "drop_path_rate": 0.0,
        "pred_hidden_size": pred_dim,
        "pred_num_attention_heads": predictor.num_heads,
        "pred_num_hidden_layers": len(predictor.predictor_blocks),
        "pred_num_mask_tokens": len(predictor.mask_tokens),
        "pred_mlp_ratio": predictor.predictor_blocks[0].mlp.fc1.out_features / pred_dim,
        "torch_dtype": "float32",
    }


def model_config_from_hf(config: Mapping[str, Any]) -> ModelConfig:
    """Our ModelConfig (V-JEPA 2 switches on) of a VJEPA2Config dict; the MLP ratios must be the
    encoder's size-table one and 4.0 for the predictor."""
    ratio = float(config.get("mlp_ratio", 4.0))
    if float(config.get("pred_mlp_ratio", 4.0)) != 4.0:
        raise ValueError(f"pred_mlp_ratio {config['pred_mlp_ratio']} is not supported (the predictor's is 4.0)")
    if config.get("hidden_act", "gelu") != "gelu" or not config.get("qkv_bias", True):
        raise ValueError("only hidden_act 'gelu' with qkv_bias is supported")
    return ModelConfig(
        size="custom",
        img_size=config.get("crop_size", 256),
        patch_size=config.get("patch_size", 16),
        num_frames=config.get("frames_per_clip", 64),
        tubelet_size=config.get("tubelet_size", 2),
        in_chans=config.get("in_chans", 3),
        embed_dim=config.get("hidden_size", 1024),
        depth=config.get("num_hidden_layers", 24),
        num_heads=config.get("num_attention_heads", 16),
        mlp_ratio=ratio,
        pred_depth=config.get("pred_num_hidden_layers", 12),
        pred_embed_dim=config.get("pred_hidden_size", 384),
        pred_num_heads=config.get("pred_num_attention_heads", 12),
        num_mask_tokens=config.get("pred_num_mask_tokens", 10),
        pos_encoding="rope3d",
        rope_layout="tiled",
        pred_sort_tokens=True,
        mask_token_per="group",
    )


def _blocks_to_hf(state: Mapping[str, torch.Tensor], ours: str, theirs: str, out: dict) -> None:
    n = len({k.split(".")[1] for k in state if k.startswith(ours + ".")})
    for i in range(n):
        src, dst = f"{ours}.{i}.", f"{theirs}.{i}."
        for part in ("weight", "bias"):
            q, k, v = state[f"{src}attn.qkv.{part}"].chunk(3, dim=0)  # rows ordered (q | k | v)
            out.update(
                {f"{dst}attention.query.{part}": q, f"{dst}attention.key.{part}": k, f"{dst}attention.value.{part}": v}
            )
            for a, b in _BLOCK.items():
                out[f"{dst}{b}.{part}"] = state[f"{src}{a}.{part}"]


def hf_state(encoder: VisionTransformer, predictor: Predictor) -> dict:
    """The VJEPA2Model state dict of our encoder and predictor (contiguous copies, ready for safetensors)."""
    _check_hf_expressible(encoder, predictor)
    enc, pred = encoder.state_dict(), predictor.state_dict()
    out: dict[str, torch.Tensor] = {}
    for a, b in _ENC.items():
        for part in ("weight", "bias"):
            out[f"{b}.{part}"] = enc[f"{a}.{part}"]
    _blocks_to_hf(enc, "blocks", "encoder.layer", out)
    for a, b in _PRED.items():
        for part in ("weight", "bias"):
            out[f"{b}.{part}"] = pred[f"{a}.{part}"]
    out["predictor.embeddings.mask_tokens"] = torch.stack(
        [pred[f"mask_tokens.{i}"] for i in range(len(predictor.mask_tokens))]
    )
    _blocks_to_hf(pred, "predictor_blocks", "predictor.layer", out)
    return {k: v.detach().clone().contiguous() for k, v in out.items()}


def _blocks_from_hf(state: Mapping[str, torch.Tensor], theirs: str, ours: str, out: dict, used: set) -> None:
    pattern = re.compile(re.escape(theirs) + r"\.(\d+)\.")
    n = len({m.group(1) for k in state if (m := pattern.match(k))})
    for i in range(n):
        src, dst = f"{theirs}.{i}.", f"{ours}.{i}."
        for part in ("weight", "bias"):
            names = [f"{src}attention.{x}.{part}" for x in ("query", "key", "value")]
            out[f"{dst}attn.qkv.{part}"] = torch.cat([_take(state, k, used) for k in names])
            for a, b in _BLOCK.items():
                out[f"{dst}{a}.{part}"] = _take(state, f"{src}{b}.{part}", used)


def _take(state: Mapping[str, torch.Tensor], key: str, used: set) -> torch.Tensor:
    if key not in state:
        raise CheckpointError(f"Hugging Face VJEPA2 state has no {key!r}")
    used.add(key)
    return state[key]


def states_from_hf(state: Mapping[str, torch.Tensor]) -> tuple[dict, dict]:
    """(encoder state, predictor state) of ours from a VJEPA2Model state dict (a `vjepa2.` prefix, as in
    VJEPA2ForVideoClassification, is stripped); every key must be used, or CheckpointError lists the rest."""
    state = {
        k[len("vjepa2.") :] if k.startswith("vjepa2.") else k: v
        for k, v in state.items()
        if not k.startswith(("pooler.", "classifier."))
    }
    used: set[str] = set()
    enc: dict[str, torch.Tensor] = {}
    pred: dict[str, torch.Tensor] = {}
    for a, b in _ENC.items():
        for part in ("weight", "bias"):
            enc[f"{a}.{part}"] = _take(state, f"{b}.{part}", used)
    _blocks_from_hf(state, "encoder.layer", "blocks", enc, used)
    for a, b in _PRED.items():
        for part in ("weight", "bias"):
            pred[f"{a}.{part}"] = _take(state, f"{b}.{part}", used)
    for i, tok in enumerate(_take(state, "predictor.embeddings.mask_tokens", used)):
        pred[f"mask_tokens.{i}"] = tok
    _blocks_from_hf(state, "predictor.layer", "predictor_blocks", pred, used)
    left = sorted(set(state) - used)
    if left:
        raise CheckpointError(
            f"Hugging Face VJEPA2 state has keys with no place in ours: {left[:6]}"
            + (f" ... (+{len(left) - 6})" if len(left) > 6 else "")
        )
    return enc, pred


def save_hf(encoder: VisionTransformer, predictor: Predictor, folder: str | Path) -> Path:
    """Write `config.json` and `model.safetensors` that `VJEPA2Model.from_pretrained(folder)` loads."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = hf_config(encoder, predictor)
    save_file(hf_state(encoder, predictor), str(folder / HF_WEIGHTS), metadata={"format": "pt"})
    (folder / HF_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    return folder


def load_hf(folder: str | Path) -> tuple[VisionTransformer, Predictor, ModelConfig]:
    """Our encoder and predictor (eval mode) from a Hugging Face VJEPA2 folder (config.json and
    model.safetensors), loaded strictly; also returns their ModelConfig."""
    from safetensors.torch import load_file

    folder = Path(folder)
    for name in (HF_CONFIG, HF_WEIGHTS):
        if not (folder / name).is_file():
            raise CheckpointError(f"{folder} has no {name}: not a Hugging Face VJEPA2 folder")
    config = json.loads((folder / HF_CONFIG).read_text())
    if config.get("model_type") != "vjepa2":
        raise CheckpointError(f"{folder / HF_CONFIG}: model_type {config.get('model_type')!r}, not 'vjepa2'")
    cfg = model_config_from_hf(config)
    enc_state, pred_state = states_from_hf(load_file(str(folder / HF_WEIGHTS)))
    encoder, predictor = build_encoder(cfg), build_predictor(cfg)
    load_into(encoder, enc_state, where=f"{folder / HF_WEIGHTS} (encoder)")
    load_into(predictor, pred_state, where=f"{folder / HF_WEIGHTS} (predictor)")
    return encoder.eval(), predictor.eval(), cfg


# ---------------------------------------------------------------------------------------------
# Hugging Face VJEPA2ForVideoClassification heads -> our V-JEPA 2 probe

_HF_POOL_BLOCK = {
    "layer_norm1": "norm1",
    "self_attn.out_proj": "attn.proj",
    "layer_norm2": "norm2",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
_HF_XATTN = {
    "layer_norm1": "norm1",
    "cross_attn.q_proj": "xattn.q",
    "layer_norm2": "norm2",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}


def probe_state_from_hf(state: Mapping[str, torch.Tensor]) -> dict:
    """Our probe state (keys of vjepa2_probe) from the `pooler.*` and `classifier.*` entries of a
    VJEPA2ForVideoClassification state dict; every such key must be used."""
    state = {k: v for k, v in state.items() if k.startswith(("pooler.", "classifier."))}
    used: set[str] = set()
    out = {"pooler.query_tokens": _take(state, "pooler.query_tokens", used)}
    n = len({k.split(".")[2] for k in state if k.startswith("pooler.self_attention_layers.")})
    for part in ("weight", "bias"):
        for i in range(n):
            src, dst = f"pooler.self_attention_layers.{i}.", f"pooler.blocks.{i}."
            out[f"{dst}attn.qkv.{part}"] = torch.cat(
                [_take(state, f"{src}self_attn.{x}_proj.{part}", used) for x in ("q", "k", "v")]
            )
            for a, b in _HF_POOL_BLOCK.items():
                out[f"{dst}{b}.{part}"] = _take(state, f"{src}{a}.{part}", used)
        src, dst = "pooler.cross_attention_layer.", "pooler.cross_attention_block."
        out[f"{dst}xattn.kv.{part}"] = torch.cat(
            [_take(state, f"{src}cross_attn.{x}_proj.{part}", used) for x in ("k", "v")]
        )
        for a, b in _HF_XATTN.items():
            out[f"{dst}{b}.{part}"] = _take(state, f"{src}{a}.{part}", used)
        out[f"linear.{part}"] = _take(state, f"classifier.{part}", used)
    left = sorted(set(state) - used)
    if left:
        raise CheckpointError(f"Hugging Face classification head has keys with no place in ours: {left[:6]}")
    return out


def probe_from_hf(state: Mapping[str, torch.Tensor], num_heads: int, norm_eps: float = 1e-6) -> nn.Module:
    """Our V-JEPA 2 probe (eval mode) holding a Hugging Face classification head, loaded strictly.
    Hugging Face runs the head with the encoder's heads and its layer_norm_eps (1e-6): pass those."""
    from vjepa.models.probes import vjepa2_probe

    ours = probe_state_from_hf(state)
    num_classes, dim = ours["linear.weight"].shape
    depth = 1 + len({k.split(".")[2] for k in ours if k.startswith("pooler.blocks.")})
    if depth != 4:
        raise CheckpointError(f"Hugging Face head has {depth - 1} self-attention layers; V-JEPA 2's probe has 3")
    probe = vjepa2_probe(dim, num_classes, num_heads, norm_eps=norm_eps)
    load_into(probe, ours, where="Hugging Face classification head")
    return probe.eval()


def probe_from_hf_files(path: str | Path, num_heads: int | None = None) -> nn.Module:
    """The classification head of a Hugging Face VJEPA2ForVideoClassification folder (or its
    model.safetensors) as our V-JEPA 2 probe, run as HF runs it: with the config's heads and
    layer_norm_eps (a bare .safetensors file: num_heads must be given, eps 1e-6)."""
    from safetensors.torch import load_file

    path = Path(path)
    weights = path / HF_WEIGHTS if path.is_dir() else path
    if not weights.is_file():
        raise CheckpointError(f"{path}: no {HF_WEIGHTS} (not a Hugging Face VJEPA2 classification folder)")
    config_file = weights.parent / HF_CONFIG
    config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    heads = config.get("num_attention_heads")
    if heads is not None and num_heads is not None and heads != num_heads:
        raise CheckpointError(f"{config_file}: the head runs with {heads} attention heads, not {num_heads}")
    if heads is None and num_heads is None:
        raise CheckpointError(f"{weights}: no config.json beside it to say the heads; pass num_heads")
    return probe_from_hf(load_file(str(weights)), heads or num_heads, config.get("layer_norm_eps", 1e-6))
