"""Checkpoints: official layout in and out, strict loading, atomic writes, refusal of unsafe pickles."""

import pickle

import pytest
import torch

from vjepa.infra.checkpoint import (
    export_official,
    import_official,
    load,
    load_official_module,
    official_layout,
    save_atomic,
    strip_prefix,
)
from vjepa.infra.runtime import CheckpointError
from vjepa.models import ModelConfig, build_encoder, build_predictor


def official_state(cfg: ModelConfig, fill=None) -> dict:
    """A released-file lookalike: every key and shape of spec section 5 with `module.backbone.` prefixes.
    Values: distinct per key and per position (cheap enough for ViT-H), or random with fill='randn'."""
    D, depth, heads, _ = cfg.encoder_shape()
    t, h, w = cfg.grid
    N, P, c = t * h * w, cfg.pred_embed_dim, cfg.in_chans
    counter = iter(range(10**6))

    def r(*shape):
        if fill == "randn":
            return torch.randn(*shape)
        n = 1
        for s in shape:
            n *= s
        return (torch.arange(n, dtype=torch.float32) / n + next(counter)).view(*shape)

    # key order as in the official state dicts
    enc = {
        "pos_embed": r(1, N, D),
        "patch_embed.proj.weight": r(D, c, cfg.tubelet_size, cfg.patch_size, cfg.patch_size),
        "patch_embed.proj.bias": r(D),
    }
    pred = {
        "predictor_pos_embed": r(1, N, P),
        "predictor_embed.weight": r(P, D),
        "predictor_embed.bias": r(P),
        "mask_tokens.0": r(1, 1, P),
        "mask_tokens.1": r(1, 1, P),
    }

    def block(prefix, d, out):
        out[f"{prefix}.norm1.weight"], out[f"{prefix}.norm1.bias"] = r(d), r(d)
        out[f"{prefix}.attn.qkv.weight"], out[f"{prefix}.attn.qkv.bias"] = r(3 * d, d), r(3 * d)
        out[f"{prefix}.attn.proj.weight"], out[f"{prefix}.attn.proj.bias"] = r(d, d), r(d)
        out[f"{prefix}.norm2.weight"], out[f"{prefix}.norm2.bias"] = r(d), r(d)
        out[f"{prefix}.mlp.fc1.weight"], out[f"{prefix}.mlp.fc1.bias"] = r(4 * d, d), r(4 * d)
        out[f"{prefix}.mlp.fc2.weight"], out[f"{prefix}.mlp.fc2.bias"] = r(d, 4 * d), r(d)

    for i in range(depth):
        block(f"blocks.{i}", D, enc)
    for i in range(cfg.pred_depth):
        block(f"predictor_blocks.{i}", P, pred)
    enc.update({"norm.weight": r(D), "norm.bias": r(D)})
    pred.update(
        {
            "predictor_norm.weight": r(P),
            "predictor_norm.bias": r(P),
            "predictor_proj.weight": r(D, P),
            "predictor_proj.bias": r(D),
        }
    )
    pre = "module.backbone."
    return {
        "encoder": {pre + k: v for k, v in enc.items()},
        "predictor": {pre + k: v for k, v in pred.items()},
        "opt": None,
        "scaler": None,
        "epoch": 300,
        "loss": 0.1,
        "batch_size": 24,
        "world_size": 128,
        "lr": 6.25e-4,
    }


def empty_models(cfg):
    with torch.device("meta"):
        enc, pred = build_encoder(cfg), build_predictor(cfg)
    return enc.to_empty(device="cpu"), pred.to_empty(device="cpu")


@pytest.mark.parametrize("size,n_enc", [("large", 293), ("huge", 389)])
def test_official_state_dict_loads_strictly_and_exports_unchanged(size, n_enc):
    cfg = ModelConfig(size=size)
    ck = official_state(cfg)
    ck["target_encoder"] = ck["encoder"]  # same keys and shapes; values shared to save memory at ViT-H size
    assert len(ck["encoder"]) == n_enc and len(ck["predictor"]) == 153
    enc, pred = empty_models(cfg)
    load_official_module(enc, ck, "target_encoder")
    load_official_module(pred, ck, "predictor")
    out = official_layout(enc, pred, enc, epoch=300, loss=0.1, batch_size=24, world_size=128, lr=6.25e-4)
    for key in ("encoder", "predictor", "target_encoder"):
        assert list(out[key]) == list(ck[key])  # same keys in the same order
        assert all(torch.equal(out[key][k], v) for k, v in ck[key].items())
    assert {k: out[k] for k in ("epoch", "loss", "batch_size", "world_size", "lr")} == {
        k: ck[k] for k in ("epoch", "loss", "batch_size", "world_size", "lr")
    }


def test_official_file_round_trips_through_disk(tmp_path):
    cfg = ModelConfig(size="tiny", img_size=32, num_frames=4, depth=2, pred_depth=2)
    ck = official_state(cfg, fill="randn")
    ck["target_encoder"] = {k: v + 1 for k, v in ck["encoder"].items()}
    src = tmp_path / "vit.pth.tar"
    torch.save(ck, src)
    enc, tgt, pred = build_encoder(cfg), build_encoder(cfg), build_predictor(cfg)
    import_official(src, encoder=enc, predictor=pred, target_encoder=tgt)
    assert torch.equal(tgt.norm.bias, ck["target_encoder"]["module.backbone.norm.bias"])
    assert not torch.equal(enc.norm.bias, tgt.norm.bias)
    back = load(export_official(tmp_path / "out.pth.tar", enc, pred, tgt, epoch=3, lr=1e-3))
    for key in ("encoder", "predictor", "target_encoder"):
        assert list(back[key]) == list(ck[key])
        assert all(torch.equal(back[key][k], v) for k, v in ck[key].items())
    assert back["epoch"] == 3


def test_a_mismatched_checkpoint_fails_with_the_keys_named(tmp_path):
    ck = official_state(ModelConfig(size="large", depth=12))
    ck["target_encoder"] = dict(ck["encoder"])
    ck["target_encoder"].pop("module.backbone.norm.bias")
    ck["target_encoder"]["module.backbone.extra"] = torch.zeros(1)
    enc = build_encoder(ModelConfig(size="huge", depth=2))
    with pytest.raises(CheckpointError, match=r"missing norm\.bias; unexpected blocks\.10.*shape mismatch pos_embed"):
        load_official_module(enc, ck, "target_encoder", "vitl16.pth.tar")
    with pytest.raises(CheckpointError, match="has no 'classifier' entry"):
        load_official_module(enc, ck, "classifier")


class RunsCode:
    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_that_runs_code_when_unpickled_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = RunsCode()
    evil.marker = marker
    path = tmp_path / "evil.pth.tar"
    with open(path, "wb") as f:
        torch.save({"encoder": evil}, f)
    with pytest.raises(CheckpointError, match="refusing to load"):
        load(path)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="not found"):
        load(tmp_path / "missing.pth.tar")


def test_atomic_save_leaves_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "ck.pth.tar"
    save_atomic({"step": 1}, path)

    class Unpicklable:
        def __reduce__(self):
            raise pickle.PicklingError("boom")

    with pytest.raises(pickle.PicklingError):
        save_atomic({"step": 2, "bad": Unpicklable()}, path)
    assert load(path) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pth.tar"]


def test_strip_prefix_removes_module_then_backbone():
    assert list(strip_prefix({"module.backbone.a": 1, "backbone.b": 2, "c": 3})) == ["a", "b", "c"]


def _tiny_file(tmp_path, name="tiny.pth.tar", **changes):
    cfg = ModelConfig(size="tiny", img_size=16, patch_size=4, num_frames=4, depth=1, embed_dim=8, num_heads=2)
    enc = official_state(cfg)["encoder"]
    for k, v in changes.items():
        enc["module.backbone." + k.replace("__", ".")] = v
    enc = {k: v for k, v in enc.items() if v is not None}
    path = tmp_path / name
    torch.save({"target_encoder": enc}, path)
    return path


def test_a_checkpoint_of_stride_0_tensors_is_refused_before_any_model_is_allocated(tmp_path):
    from vjepa.hub import load_encoder

    W = 40_000  # as the fault-finding file: a 19 GB encoder claimed by a few KB
    huge = {
        "pos_embed": torch.zeros(1).expand(1, 4, W),
        "patch_embed.proj.weight": torch.zeros(1).expand(W, 3, 2, 4, 4),
        "patch_embed.proj.bias": torch.zeros(1).expand(W),
        "blocks.0.mlp.fc1.weight": torch.zeros(1).expand(4 * W, W),
    }
    torch.save({"target_encoder": {f"module.backbone.{k}": v for k, v in huge.items()}}, tmp_path / "bomb.pth.tar")
    assert (tmp_path / "bomb.pth.tar").stat().st_size < 10_000
    with pytest.raises(
        CheckpointError,
        match=r"bomb\.pth\.tar: tensor \['target_encoder'\]\['module\.backbone\.pos_embed'\] "
        r"claims shape \(1, 4, 40000\) \(640,000 bytes\) but the file stores 4 bytes",
    ):
        load_encoder(tmp_path / "bomb.pth.tar", num_heads=1)


def test_tensors_sharing_one_storage_under_many_names_cannot_claim_more_than_the_file(tmp_path):
    shared = torch.zeros(100_000)
    torch.save({"encoder": {f"blocks.{i}.w": shared for i in range(50)}}, tmp_path / "shared.pth.tar")
    with pytest.raises(
        CheckpointError,
        match=r"the tensors of entry 'encoder' claim 20,000,000 bytes in all, more "
        r"than the file's",
    ):
        load(tmp_path / "shared.pth.tar")
    # two entries sharing data (a target encoder saved as the encoder) are each within the file
    torch.save({"encoder": {"w": shared}, "target_encoder": {"w": shared}}, tmp_path / "tied.pth.tar")
    assert load(tmp_path / "tied.pth.tar")["encoder"]["w"].shape == (100_000,)


@pytest.mark.parametrize(
    "content,what",
    [
        (b"<!DOCTYPE html><html><body>403 Forbidden</body></html>", "it is an HTML page"),
        (b"encoder weights go here\n", "it is a file that starts b'encoder weights "),
        (b"", "it is an empty file"),
        (b"PK\x03\x04 truncated zip", "not a readable checkpoint"),
    ],
)
def test_a_file_that_is_not_a_checkpoint_is_named_as_such_not_as_unsafe_code(tmp_path, content, what):
    path = tmp_path / "vitl16.pth.tar"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as e:
        load(path)
    assert str(e.value).startswith(f"{path}: ") and what in str(e.value)
    assert "could run code" not in str(e.value) and "weights_only=False" not in str(e.value)


@pytest.mark.parametrize(
    "make,what",
    [
        (lambda p: torch.save(torch.zeros(3), p), r"holds a Tensor, not a dict of entries"),
        (
            lambda p: torch.save({"target_encoder": torch.zeros(3)}, p),
            r"\['target_encoder'\]: holds a Tensor, not a state dict",
        ),
        (
            lambda p: torch.save({"target_encoder": {"pos_embed": 3}}, p),
            r"entries that are not named tensors: pos_embed",
        ),
    ],
)
def test_a_malformed_checkpoint_structure_is_named_by_file_and_entry(tmp_path, make, what):
    from vjepa.hub import load_encoder

    path = tmp_path / "bad.pth.tar"
    make(path)
    with pytest.raises(CheckpointError, match=rf"bad\.pth\.tar.*{what}"):
        load_encoder(path, num_frames=4)


@pytest.mark.parametrize(
    "change,what",
    [
        ({"blocks__0__mlp__fc1__weight": None}, r"no 'blocks\.0\.mlp\.fc1\.weight' \(the first block's MLP\)"),
        (
            {"patch_embed__proj__weight": torch.zeros(8, 3, 2, 0, 0)},
            r"'patch_embed\.proj\.weight' has a zero-size dimension",
        ),
        ({"pos_embed": torch.zeros(16)}, r"'pos_embed' has shape \(16,\), expected 3 non-zero dimensions"),
    ],
)
def test_a_malformed_encoder_state_is_a_checkpoint_error_naming_the_key(tmp_path, change, what):
    from vjepa.hub import load_encoder

    path = _tiny_file(tmp_path, **change)
    with pytest.raises(CheckpointError, match=rf"tiny\.pth\.tar\['target_encoder'\]: {what}"):
        load_encoder(path, num_frames=4, num_heads=2)
