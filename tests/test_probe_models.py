"""Probe modules and the frame-wise image-model adapter: official key layout, strict loading of a
released-format probe, its forward computed by hand (no output projection), linear probe, adapter."""

import math

import pytest
import timm
import torch
import torch.nn.functional as F

from vjepa.infra.checkpoint import save_atomic
from vjepa.infra.runtime import CheckpointError
from vjepa.models.image_adapter import FrameWiseEncoder, build_image_encoder
from vjepa.models.probes import AttentiveClassifier, LinearProbe, load_official_probe, official_probe_state

OFFICIAL_KEYS = [
    "pooler.query_tokens",
    *[
        f"pooler.cross_attention_block.{m}.{p}"
        for m in ("norm1", "xattn.q", "xattn.kv", "xattn.proj", "norm2", "mlp.fc1", "mlp.fc2")
        for p in ("weight", "bias")
    ],
    "linear.weight",
    "linear.bias",
]


def released_probe(D=48, C=5, seed=0) -> dict:
    """A released-probe lookalike: the `classifier` entry with DDP `module.` prefixes, random values."""
    g = torch.Generator().manual_seed(seed)
    shapes = {"pooler.query_tokens": (1, 1, D), "linear.weight": (C, D), "linear.bias": (C,)}
    for m, (o, i) in {
        "norm1": (D, None),
        "norm2": (D, None),
        "xattn.q": (D, D),
        "xattn.kv": (2 * D, D),
        "xattn.proj": (D, D),
        "mlp.fc1": (4 * D, D),
        "mlp.fc2": (D, 4 * D),
    }.items():
        shapes[f"pooler.cross_attention_block.{m}.weight"] = (o,) if i is None else (o, i)
        shapes[f"pooler.cross_attention_block.{m}.bias"] = (o,)
    return {
        "classifier": {"module." + k: torch.randn(*s, generator=g) * 0.3 for k, s in shapes.items()},
        "epoch": 20,
        "batch_size": 4,
        "world_size": 64,
        "lr": 1e-3,
    }


def hand_forward(sd: dict, x: torch.Tensor, heads: int, use_proj: bool = False) -> torch.Tensor:
    """The official AttentiveClassifier forward written out with explicit softmax attention."""
    p = {k[len("module.pooler.cross_attention_block.") :]: v for k, v in sd.items() if "cross_attention_block" in k}
    B, N, D = x.shape
    hd = D // heads
    q = sd["module.pooler.query_tokens"].expand(B, 1, D)
    xn = F.layer_norm(x, (D,), p["norm1.weight"], p["norm1.bias"], eps=1e-5)
    qh = (q @ p["xattn.q.weight"].T + p["xattn.q.bias"]).view(B, 1, heads, hd).transpose(1, 2)
    kv = (xn @ p["xattn.kv.weight"].T + p["xattn.kv.bias"]).view(B, N, 2, heads, hd)
    k, v = kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2)
    att = ((qh @ k.transpose(-1, -2)) / math.sqrt(hd)).softmax(-1)
    y = (att @ v).transpose(1, 2).reshape(B, 1, D)
    if use_proj:
        y = y @ p["xattn.proj.weight"].T + p["xattn.proj.bias"]
    q = q + y
    h = F.layer_norm(q, (D,), p["norm2.weight"], p["norm2.bias"], eps=1e-5)
    q = q + F.gelu(h @ p["mlp.fc1.weight"].T + p["mlp.fc1.bias"]) @ p["mlp.fc2.weight"].T + p["mlp.fc2.bias"]
    return q[:, 0] @ sd["module.linear.weight"].T + sd["module.linear.bias"]


def test_attentive_probe_has_the_released_keys_and_vit_l_parameter_count():
    with torch.device("meta"):
        probe = AttentiveClassifier(1024, 400, num_heads=16)
    assert sorted(probe.state_dict()) == sorted(OFFICIAL_KEYS)
    assert sum(p.numel() for p in probe.parameters()) == 13_007_248  # official ViT-L K400 probe
    x = torch.randn(2, 37, 48)
    assert AttentiveClassifier(48, 7, num_heads=12)(x).shape == (2, 7)


def test_released_probe_loads_strictly_and_predicts_the_official_forward_without_proj():
    ck = released_probe(D=48, C=5)
    probe = AttentiveClassifier(48, 5, num_heads=4).eval()
    assert load_official_probe(probe, ck)["epoch"] == 20
    x = torch.randn(3, 19, 48)
    with torch.no_grad():
        ours = probe(x)
    expect = hand_forward(ck["classifier"], x, heads=4)
    torch.testing.assert_close(ours, expect, rtol=1e-5, atol=1e-5)
    with_proj = hand_forward(ck["classifier"], x, heads=4, use_proj=True)
    assert (with_proj - expect).abs().max() > 0.1  # applying proj would change the predictions


def test_probe_loading_names_missing_and_unexpected_keys():
    ck = released_probe()
    del ck["classifier"]["module.pooler.cross_attention_block.xattn.proj.weight"]
    ck["classifier"]["module.pooler.blocks.0.norm1.weight"] = torch.ones(48)
    with pytest.raises(CheckpointError, match=r"missing .*xattn\.proj\.weight.*unexpected .*blocks\.0\.norm1"):
        load_official_probe(AttentiveClassifier(48, 5, num_heads=4), ck)
    with pytest.raises(CheckpointError, match="no 'classifier' entry"):
        load_official_probe(AttentiveClassifier(48, 5, num_heads=4), {"encoder": {}})


def test_probe_round_trips_through_an_official_layout_file(tmp_path):
    probe = AttentiveClassifier(48, 5, num_heads=12, depth=2).eval()
    save_atomic({"classifier": official_probe_state(probe), "epoch": 1}, tmp_path / "k400-probe.pth.tar")
    other = AttentiveClassifier(48, 5, num_heads=12, depth=2).eval()
    load_official_probe(other, tmp_path / "k400-probe.pth.tar")
    x = torch.randn(2, 11, 48)
    with torch.no_grad():
        assert torch.equal(probe(x), other(x))
    assert all(k.startswith("module.") for k in official_probe_state(probe))
    assert other.pooler.blocks[0].norm1.eps == 1e-5 and other.pooler.cross_attention_block.norm1.eps == 1e-5


def test_probe_init_follows_the_official_recipe():
    torch.manual_seed(0)
    probe = AttentiveClassifier(768, 10, num_heads=12)
    blk = probe.pooler.cross_attention_block
    assert blk.xattn.q.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert blk.mlp.fc2.weight.std().item() == pytest.approx(0.02 / math.sqrt(2), rel=0.05)  # rescaled by sqrt(2*1)
    assert probe.pooler.query_tokens.std().item() == pytest.approx(0.02, rel=0.2)
    assert torch.count_nonzero(blk.xattn.kv.bias) == 0


def test_heads_must_divide_the_width():
    with pytest.raises(ValueError, match="1024 is not divisible by 12 heads"):
        AttentiveClassifier(1024, 400, num_heads=12)


def test_linear_probe_standardises_the_mean_token_with_batch_statistics():
    torch.manual_seed(0)
    x = torch.randn(6, 10, 8) * 5 + 3
    probe = LinearProbe(8, 3).train()
    pooled = x.mean(1)
    z = (pooled - pooled.mean(0)) / torch.sqrt(pooled.var(0, unbiased=False) + 1e-6)
    torch.testing.assert_close(probe(x), z @ probe.linear.weight.T + probe.linear.bias)
    raw = LinearProbe(8, 3, norm="none")
    torch.testing.assert_close(raw(x), pooled @ raw.linear.weight.T + raw.linear.bias)
    assert list(probe.state_dict()) == [
        "norm.running_mean",
        "norm.running_var",
        "norm.num_batches_tracked",
        "linear.weight",
        "linear.bias",
    ]


def tiny_vit():
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=32, patch_size=8)


def test_frame_wise_adapter_concatenates_each_frames_patch_tokens_in_time_order():
    torch.manual_seed(0)
    model = tiny_vit().eval()
    enc = FrameWiseEncoder(model)
    clip = torch.randn(2, 3, 3, 32, 32)  # [B, C, T, H, W]
    with torch.no_grad():
        tokens = enc(clip)
        per_frame = [model.forward_features(clip[:, :, t])[:, 1:] for t in range(3)]  # drop the cls token
    assert tokens.shape == (2, 3 * 16, 192)
    torch.testing.assert_close(tokens, torch.cat(per_frame, dim=1), rtol=1e-5, atol=1e-5)
    assert (enc.embed_dim, enc.num_heads, enc.patch_size) == (192, 3, 8)
    with torch.no_grad():
        torch.testing.assert_close(enc(clip[:, :, 0]), per_frame[0], rtol=1e-5, atol=1e-5)  # an image = 1 frame


def test_image_model_weights_come_from_a_local_file(tmp_path):
    torch.manual_seed(1)
    src = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=10, img_size=32, patch_size=8)
    save_atomic({"model": src.state_dict()}, tmp_path / "w.pth")  # with a classifier head, dropped on load
    enc = build_image_encoder("vit_tiny_patch16_224", tmp_path / "w.pth", img_size=32, patch_size=8).eval()
    assert torch.equal(enc.model.cls_token, src.cls_token)
    assert torch.equal(enc.model.blocks[1].mlp.fc2.weight, src.blocks[1].mlp.fc2.weight)
    save_atomic({"blocks.0.norm1.weight": torch.ones(192)}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="missing"):
        build_image_encoder("vit_tiny_patch16_224", tmp_path / "bad.pth", img_size=32, patch_size=8)
