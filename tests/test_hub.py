"""One-line loading: load_encoder and torch.hub.load(<checkout>, ..., source="local") on files in the
official layout give the encoder built and loaded by hand; sizes and resolutions come from the
weights' shapes; a probe file loads as a classifier returning class probabilities."""

import importlib.util
from pathlib import Path

import pytest
import torch
import yaml
from test_checkpoint import official_state

import vjepa
from vjepa import hub
from vjepa.infra.checkpoint import encoder_config_from_state, import_official, strip_prefix
from vjepa.infra.runtime import CheckpointError
from vjepa.models import ModelConfig, build_encoder
from vjepa.models.probes import AttentiveClassifier, LinearProbe, official_probe_state
from vjepa.evals.frozen import average_views, encode

ROOT = Path(__file__).resolve().parent.parent
SMALL = ModelConfig(
    size="tiny",
    img_size=32,
    patch_size=8,
    num_frames=4,
    embed_dim=48,
    depth=2,
    num_heads=3,
    pred_depth=1,
    pred_embed_dim=24,
)


def write_official(path, cfg, seed=0):
    """An official-layout file (random values; target encoder distinct from the context encoder)."""
    torch.manual_seed(seed)
    ck = official_state(cfg, fill="randn")
    ck["target_encoder"] = {k: v + 1.0 for k, v in ck["encoder"].items()}
    torch.save(ck, path)
    return ck


def by_hand(path, cfg, key="target_encoder"):
    enc = build_encoder(cfg)
    import_official(path, **{key: enc})
    return enc.eval()


def test_load_encoder_equals_the_encoder_built_and_loaded_by_hand(tmp_path):
    path = tmp_path / "small.pth.tar"
    write_official(path, SMALL)
    clip = torch.randn(2, 3, 4, 32, 32)
    ref = by_hand(path, SMALL)
    enc = vjepa.load_encoder(path, num_frames=4, num_heads=3)
    assert not enc.training and enc.grid == (2, 4, 4) and enc.embed_dim == 48 and len(enc.blocks) == 2
    with torch.no_grad():
        assert torch.equal(enc(clip), ref(clip))
        context = vjepa.load_encoder(path, key="encoder", num_frames=4, num_heads=3)
        assert torch.equal(context(clip), by_hand(path, SMALL, "encoder")(clip))
        assert not torch.equal(context(clip), ref(clip))
    half = vjepa.load_encoder(path, num_frames=4, num_heads=3, dtype=torch.bfloat16)
    assert half.pos_embed.dtype == torch.bfloat16
    # the resolution instead of the frame count gives the same model
    assert torch.equal(vjepa.load_encoder(path, img_size=32, num_heads=3).pos_embed, ref.pos_embed)


def test_torch_hub_load_from_the_checkout_equals_the_hand_loaded_encoder(tmp_path):
    path = tmp_path / "tiny.pth.tar"
    write_official(path, hub.TINY)
    enc = torch.hub.load(str(ROOT), "vjepa_tiny", checkpoint=str(path), source="local")
    clip = torch.randn(1, 3, 8, 24, 24)
    with torch.no_grad():
        assert torch.equal(enc(clip), by_hand(path, hub.TINY)(clip))
    conf = importlib.util.module_from_spec(importlib.util.spec_from_file_location("hubconf", ROOT / "hubconf.py"))
    conf.__spec__.loader.exec_module(conf)
    assert {"vjepa_vitl16", "vjepa_vith16", "vjepa_vith16_384", "vjepa_tiny", "vjepa_classifier"} <= set(dir(conf))
    # an entry refuses a file of another model, naming both
    with pytest.raises(CheckpointError, match="width 64, depth 4.*not the expected width 1024, depth 24"):
        torch.hub.load(str(ROOT), "vjepa_vitl16", checkpoint=str(path), source="local")


@pytest.mark.parametrize(
    "name,size,img,tokens",
    [("vitl16", "large", 224, 1568), ("vith16", "huge", 224, 1568), ("vith16-384", "huge", 384, 4608)],
)
def test_released_sizes_are_read_from_the_shapes_of_their_files(name, size, img, tokens):
    # shapes only (the values do not matter here): meta tensors cost no memory at ViT-H size
    with torch.device("meta"):
        state = strip_prefix(official_state(hub.RELEASED[name], fill="randn")["encoder"])
    cfg = encoder_config_from_state(state)
    assert cfg == ModelConfig(size=size, img_size=img) == hub.RELEASED[name]
    assert state["pos_embed"].shape[1] == tokens


def test_shapes_that_do_not_say_the_clip_or_heads_fail_with_what_to_pass(tmp_path):
    state = strip_prefix(official_state(hub.TINY, fill="randn")["encoder"])
    with pytest.raises(CheckpointError, match="144 positions do not make square frames at 16 frames.*num_frames="):
        encoder_config_from_state(state, num_heads=4)
    with pytest.raises(CheckpointError, match="width 64 and depth 4 match no standard size.*num_heads="):
        encoder_config_from_state(state, num_frames=8)
    assert encoder_config_from_state(state, num_frames=8, num_heads=4).encoder_shape() == (64, 4, 4, 4.0)


def test_a_released_name_is_looked_up_locally_and_never_downloaded_unasked(tmp_path, monkeypatch):
    monkeypatch.setenv("VJEPA_CHECKPOINTS", str(tmp_path))
    with pytest.raises(
        CheckpointError,
        match=r"vitl16.*not at .*vitl16/vitl16\.pth\.tar; download it from "
        r"https://dl\.fbaipublicfiles\.com/jepa/vitl16/vitl16\.pth\.tar",
    ):
        vjepa.load_encoder("vitl16")
    with pytest.raises(CheckpointError, match="vith16-384/ssv2-probe.pth.tar"):
        hub.resolve("vith16-384/ssv2")
    with pytest.raises(CheckpointError, match="not a released name"):
        vjepa.load_encoder("vitb16")


def test_the_tiny_entry_is_the_default_profile_model():
    model = yaml.safe_load((ROOT / "profiles" / "default.yaml").read_text())["model"]
    assert ModelConfig(**model) == hub.TINY


@pytest.mark.parametrize("kind", ["attentive", "linear"])
def test_a_probe_file_loads_as_a_classifier_returning_the_hand_computed_probabilities(tmp_path, kind):
    path = tmp_path / "small.pth.tar"
    write_official(path, SMALL)
    torch.manual_seed(1)
    probe = AttentiveClassifier(48, 5, num_heads=3) if kind == "attentive" else LinearProbe(48, 5)
    if kind == "linear":  # running statistics that are not the defaults
        probe.norm.running_mean.normal_()
        probe.norm.running_var.uniform_(0.5, 2)
    probe.eval()
    torch.save({"classifier": official_probe_state(probe), "epoch": 20}, tmp_path / "probe.pth.tar")
    clf = vjepa.load_classifier(tmp_path / "probe.pth.tar", path, num_frames=4, num_heads=3)
    clip = torch.randn(2, 3, 4, 32, 32)
    enc = by_hand(path, SMALL)
    with torch.no_grad():
        want = probe(enc(clip)).softmax(-1)
        got = clf(clip)
        assert torch.allclose(got, want, atol=1e-6) and torch.allclose(got.sum(-1), torch.ones(2))
        # the data contract: 2 segments x 3 views, segments concatenated, view softmaxes averaged
        video = torch.randn(2, 2, 3, 3, 4, 32, 32)
        views = encode(enc, video)
        want = average_views(torch.stack([probe(v) for v in views]))
        assert torch.allclose(clf(video), want, atol=1e-6)
