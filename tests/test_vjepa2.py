"""V-JEPA 2 in our models: 3D RoPE (released 'tiled' and 'interleaved' layouts), any clip size, the
predictor's own heads, sort and mask-token choice, ViT-g, released-layout and Hugging Face weights both
ways, and parity with Hugging Face's VJEPA2Model (always run) and with the vjepa2 code (run when
VJEPA2_REPO names a checkout of facebookresearch/vjepa2)."""

import math
import os
import sys
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from vjepa.infra.checkpoint import official_layout
from vjepa.infra.runtime import CheckpointError
from vjepa.models import ModelConfig, build_encoder, build_predictor, count_trainable, gather_tokens
from vjepa.models.convert import hf_config, hf_state, load_hf, load_released, probe_from_hf, save_hf, states_from_hf
from vjepa.models.probes import official_probe_state, probe_from_file, vjepa2_probe
from vjepa.models.vit import Attention, index_positions, rope_rotate, rope_tables

# encoder heads of 32 channels (10 per axis, 2 left unrotated); predictor heads of 12 (4 per axis, none left)
V2 = ModelConfig(
    size="custom",
    img_size=32,
    num_frames=4,
    patch_size=8,
    embed_dim=64,
    depth=2,
    num_heads=2,
    pred_depth=2,
    pred_embed_dim=48,
    pred_num_heads=4,
    num_mask_tokens=3,
    pos_encoding="rope3d",
    pred_sort_tokens=True,
    mask_token_per="group",
)
N = 2 * 4 * 4  # tokens of a 4-frame 32 px clip in 2x8x8 tubelets


def jitter(*modules: nn.Module, scale: float = 0.05) -> None:
    """Move every weight (mask tokens, norms and biases included) off its init, so no term is zero."""
    with torch.no_grad():
        for m in modules:
            for p in m.parameters():
                if p.requires_grad:
                    p.add_(torch.randn_like(p) * scale)


def v2_models(cfg: ModelConfig = V2):
    torch.manual_seed(0)
    enc, pred = build_encoder(cfg).eval(), build_predictor(cfg).eval()
    jitter(enc, pred)
    return enc, pred


def masks(batch: int, n: int = N, n_ctx: int = 20, n_tgt: int = 9, seed: int = 1):
    """Disjoint context and target indices per sample, each ascending (as the mask collator gives them)."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.stack([torch.randperm(n, generator=g) for _ in range(batch)])
    return perm[:, :n_ctx].sort(1).values, perm[:, n_ctx : n_ctx + n_tgt].sort(1).values


# ---------------------------------------------------------------------------------------------
# RoPE itself


def test_rope_tiled_layout_gives_channel_i_frequency_i_mod_half_and_interleaved_i_div_2():
    pos = torch.tensor([[1, 0, 0]])  # t = 1: only the time channels turn
    s = 10  # head of 32 channels
    omega = [1.0 / 10000 ** (j / 5) for j in range(5)]
    cos_t, sin_t = rope_tables(pos, 32, "tiled", torch.float64)
    cos_i, sin_i = rope_tables(pos, 32, "interleaved", torch.float64)
    assert cos_t.shape == (1, 3 * s)
    torch.testing.assert_close(
        sin_t[0, :s], torch.tensor([math.sin(omega[i % 5]) for i in range(s)], dtype=torch.float64)
    )
    torch.testing.assert_close(
        sin_i[0, :s], torch.tensor([math.sin(omega[i // 2]) for i in range(s)], dtype=torch.float64)
    )
    assert torch.equal(sin_t[0, s:], torch.zeros(2 * s, dtype=torch.float64))  # h = w = 0
    assert torch.equal(cos_t[0, s:], torch.ones(2 * s, dtype=torch.float64))


def test_interleaved_rope_scores_depend_only_on_the_offset_and_tiled_does_not():
    q, k = torch.randn(1, 1, 1, 32, dtype=torch.float64), torch.randn(1, 1, 1, 32, dtype=torch.float64)

    def score(layout, p, p2):
        a = rope_rotate(q, rope_tables(torch.tensor([p]), 32, layout, torch.float64))
        b = rope_rotate(k, rope_tables(torch.tensor([p2]), 32, layout, torch.float64))
        return (a * b).sum().item()

    # the same offset (1, 2, -1) at two places
    same = [score("interleaved", [0, 0, 3], [1, 2, 2]), score("interleaved", [4, 5, 6], [5, 7, 5])]
    assert same[0] == pytest.approx(same[1], rel=1e-12)
    tiled = [score("tiled", [0, 0, 3], [1, 2, 2]), score("tiled", [4, 5, 6], [5, 7, 5])]
    assert abs(tiled[0] - tiled[1]) > 1e-3  # the released layout is not a rotation of pairs
    # an interleaved rotation keeps the vector's length; the last 2 channels are never touched
    turned = rope_rotate(q, rope_tables(torch.tensor([[3, 1, 2]]), 32, "interleaved", torch.float64))
    assert turned.norm().item() == pytest.approx(q.norm().item(), rel=1e-12)
    assert torch.equal(turned[..., 30:], q[..., 30:])


def test_rope_encoder_has_no_position_parameter_and_runs_any_clip_the_tubelets_tile():
    enc, _ = v2_models()
    assert enc.pos_embed is None and "pos_embed" not in enc.state_dict()
    with torch.no_grad():
        out = enc(torch.randn(1, 3, 6, 48, 24))  # 3 x 6 x 3 tokens, not the built 2 x 4 x 4
    assert out.shape == (1, 54, 64)
    with pytest.raises(ValueError, match="does not tile"):
        enc(torch.randn(1, 3, 5, 32, 32))


def test_rope_positions_travel_with_their_tokens():
    """Permuting the kept tokens permutes the encoder's outputs: each token keeps its own (t, h, w)."""
    enc, _ = v2_models()
    x = torch.randn(2, 3, 4, 32, 32)
    keep, _ = masks(2)
    shuffled = keep[:, torch.randperm(keep.size(1))]
    with torch.no_grad():
        a, b = enc(x, [keep])[0], enc(x, [shuffled])[0]
        full = enc(x, [torch.arange(N).expand(2, -1)])[0]
    # sorting `shuffled` back to ascending order puts b's rows where a's are
    torch.testing.assert_close(gather_tokens(b, torch.argsort(shuffled, 1)), a, rtol=0, atol=1e-5)
    with torch.no_grad():
        assert torch.equal(full, enc(x))  # a mask keeping every token is the full pass, bit for bit


def test_predictor_sort_changes_nothing_but_rounding_and_mask_token_follows_the_group():
    enc, pred = v2_models()
    ctx, tgt = masks(2)
    z = torch.randn(2, ctx.size(1), 64)
    unsorted = build_predictor(ModelConfig(**{**V2.__dict__, "pred_sort_tokens": False})).eval()
    unsorted.load_state_dict(pred.state_dict())
    with torch.no_grad():
        a, b = pred(z, ctx, tgt, mask_index=1), unsorted(z, ctx, tgt, mask_index=1)
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
        by_group = pred.forward_masks([z, z], [ctx, ctx], [tgt, tgt], group=2)
        assert torch.equal(by_group[0], pred(z, ctx, tgt, mask_index=2))
        assert torch.equal(by_group[1], by_group[0])  # both mask configs use the group's token
        assert not torch.equal(by_group[0], pred(z, ctx, tgt, mask_index=0))


def test_rope_training_step_gives_the_same_gradients_with_activation_checkpointing():
    """The rotation tables travel through checkpointed blocks: recomputation gives the same gradients."""
    grads = []
    for ckpt in (False, True):
        enc, pred = v2_models(ModelConfig(**{**V2.__dict__, "activation_checkpointing": ckpt}))
        enc.train(), pred.train()
        ctx, tgt = masks(2)
        z = enc(torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(3)), [ctx, ctx[:, :12]])
        out = pred.forward_masks(z, [ctx, ctx[:, :12]], [tgt, tgt])
        sum(o.abs().mean() for o in out).backward()
        grads.append([p.grad for p in [*enc.parameters(), *pred.parameters()] if p.grad is not None])
    assert len(grads[0]) == len(grads[1]) > 0
    assert all(torch.equal(a, b) for a, b in zip(*grads))


def test_vitg_is_v_jepa_2s_22_heads_and_its_predictor_has_12():
    cfg = ModelConfig(
        size="giant_xformers",
        img_size=256,
        num_frames=64,
        pos_encoding="rope3d",
        pred_num_heads=12,
        num_mask_tokens=10,
        pred_sort_tokens=True,
        mask_token_per="group",
    )
    cfg.validate()
    with torch.device("meta"):
        enc, pred = build_encoder(cfg), build_predictor(cfg)
    assert enc.num_heads == 22 and enc.blocks[0].mlp.fc1.out_features == 6144
    # the recipe's counts from the released shapes: 1012.2M encoder, 22.4M predictor
    assert round(count_trainable(enc) / 1e5) == 10122 and round(count_trainable(pred) / 1e5) == 224
    assert pred.num_heads == 12 and len(pred.mask_tokens) == 10


def test_rope_config_refuses_heads_too_narrow_to_rotate():
    from vjepa.infra.config import FieldError

    with pytest.raises(FieldError, match="at least 6 channels"):
        ModelConfig(**{**V2.__dict__, "pred_num_heads": 12}).validate()  # 48 / 12 = 4 channels


# ---------------------------------------------------------------------------------------------
# weights: released layout and Hugging Face, both ways


def test_released_layout_loads_strictly_dropping_only_unused_sincos_tables():
    enc, pred = v2_models()
    ck = official_layout(enc, pred, enc)
    ck["encoder"]["module.backbone.pos_embed"] = torch.zeros(1, N, 64)  # what the hub loader says files carry
    enc2, pred2, tgt2 = build_encoder(V2), build_predictor(V2), build_encoder(V2)
    load_released(ck, enc2, pred2, tgt2)
    for a, b in [(enc, enc2), (pred, pred2), (enc, tgt2)]:
        assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    ck["predictor"]["module.backbone.extra"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="unexpected module.backbone.extra|unexpected extra"):
        load_released(ck, predictor=build_predictor(V2))


def test_hf_state_round_trips_and_v_jepa_1_is_refused():
    enc, pred = v2_models()
    e, p = states_from_hf(hf_state(enc, pred))
    assert e.keys() == enc.state_dict().keys() and p.keys() == pred.state_dict().keys()
    assert all(torch.equal(v, enc.state_dict()[k]) for k, v in e.items())
    assert all(torch.equal(v, pred.state_dict()[k]) for k, v in p.items())
    v1 = ModelConfig(size="tiny", img_size=32, num_frames=4, patch_size=8, depth=1, pred_depth=1)
    with pytest.raises(ValueError, match="sin-cos"):
        hf_config(build_encoder(v1), build_predictor(v1))
    with pytest.raises(ValueError, match="tiled"):
        inter = ModelConfig(**{**V2.__dict__, "rope_layout": "interleaved"})
        hf_config(build_encoder(inter), build_predictor(inter))


# ---------------------------------------------------------------------------------------------
# Hugging Face transformers' VJEPA2Model on the same random weights (fp32, CPU)


def hf():
    """Hugging Face transformers: in the test extra, so a missing install fails here instead of skipping."""
    import transformers

    return transformers


# HF computes q, k and v with three Linears where we run one fused qkv product (and its pooler's k and v
# likewise): the matrix kernels may group those sums differently, so equality is asked to 1e-6, not to
# the bit (on the reference CPU every difference measured 0); a wrong eps or layout is off by >= 1e-5
HF_ATOL = 1e-6


@pytest.fixture(scope="module")
def hf_pair(tmp_path_factory):
    enc, pred = v2_models()
    folder = save_hf(enc, pred, tmp_path_factory.mktemp("hf") / "vjepa2-tiny")
    model = hf().VJEPA2Model.from_pretrained(folder, attn_implementation="sdpa").eval()
    return enc, pred, model, folder


def test_hf_encoder_full_and_masked_equal_ours(hf_pair):
    enc, _, model, _ = hf_pair
    x = torch.randn(2, 3, 4, 32, 32)
    ctx, _ = masks(2)
    with torch.no_grad():
        theirs = model.encoder(pixel_values_videos=x.transpose(1, 2)).last_hidden_state
        torch.testing.assert_close(enc(x), theirs, rtol=0, atol=HF_ATOL)
        # HF's encoder runs every token; its layers take the kept tokens' indices as positions
        h = gather_tokens(model.encoder.embeddings(x.transpose(1, 2)), ctx)
        for layer in model.encoder.layer:
            h = layer(h, position_mask=ctx)[0]
        torch.testing.assert_close(enc(x, [ctx])[0], model.encoder.layernorm(h), rtol=0, atol=HF_ATOL)


def test_hf_predictor_equals_ours(hf_pair):
    enc, pred, model, _ = hf_pair
    x = torch.randn(2, 3, 4, 32, 32)
    ctx, tgt = masks(2)
    with torch.no_grad():
        full = enc(x)
        out = model(pixel_values_videos=x.transpose(1, 2), context_mask=[ctx], target_mask=[tgt])
        # HF's predictor always uses mask token 1 and reads the context from the full encoder output
        ours = pred(gather_tokens(full, ctx), ctx, tgt, mask_index=1)
    torch.testing.assert_close(ours, out.predictor_output.last_hidden_state, rtol=0, atol=HF_ATOL)


def test_hf_classification_head_is_our_4_block_probe(tmp_path):
    cfg = hf().VJEPA2Config(
        crop_size=32,
        frames_per_clip=4,
        patch_size=8,
        hidden_size=64,
        num_attention_heads=2,
        num_hidden_layers=1,
        pred_hidden_size=48,
        pred_num_attention_heads=4,
        pred_num_hidden_layers=1,
        num_labels=7,
    )
    torch.manual_seed(0)
    model = hf().VJEPA2ForVideoClassification(cfg).eval()
    jitter(model)
    probe = probe_from_hf(model.state_dict(), num_heads=2)
    tokens = torch.randn(3, 20, 64)
    with torch.no_grad():
        torch.testing.assert_close(probe(tokens), model.classifier(model.pooler(tokens)), rtol=0, atol=HF_ATOL)
    # a saved HF folder is a probe `evaluate_only` and the hub load as it is (config heads and eps)
    from vjepa.hub import load_probe

    model.save_pretrained(tmp_path / "hf-head")
    with torch.no_grad():
        assert torch.equal(load_probe(tmp_path / "hf-head", num_heads=2)(tokens), probe(tokens))
    with pytest.raises(CheckpointError, match="runs with 2 attention heads, not 16"):
        load_probe(tmp_path / "hf-head", num_heads=16)
    # and as a probe file of the released layout it comes back as the same probe
    from vjepa.infra.checkpoint import save_atomic

    save_atomic({"classifier": official_probe_state(probe)}, tmp_path / "probe.pt")
    again = probe_from_file(tmp_path / "probe.pt", num_heads=2)
    again.pooler.cross_attention_block.norm1.eps = 1e-6  # eps is not in the file; HF's is 1e-6
    for blk in again.pooler.blocks:
        blk.norm1.eps = blk.norm2.eps = 1e-6
    again.pooler.cross_attention_block.norm2.eps = 1e-6
    assert again.pooler.blocks_first
    with torch.no_grad():
        assert torch.equal(again(tokens), probe(tokens))


def test_released_checkpoint_round_trips_to_a_hf_folder(tmp_path):
    """vjepa2 layout (random weights) -> ours -> HF folder -> from_pretrained -> the same outputs."""
    src_enc, src_pred = v2_models()
    ck = official_layout(src_enc, src_pred, src_enc)
    enc, pred, tgt = build_encoder(V2).eval(), build_predictor(V2).eval(), build_encoder(V2).eval()
    load_released(ck, enc, pred, tgt)
    save_hf(tgt, pred, tmp_path / "hf")
    model = hf().VJEPA2Model.from_pretrained(tmp_path / "hf").eval()
    back_enc, back_pred, _ = load_hf(tmp_path / "hf")
    x = torch.randn(1, 3, 4, 32, 32)
    ctx, tgt_idx = masks(1)
    with torch.no_grad():
        out = model(pixel_values_videos=x.transpose(1, 2), context_mask=[ctx], target_mask=[tgt_idx])
        torch.testing.assert_close(out.last_hidden_state, src_enc(x), rtol=0, atol=HF_ATOL)
        torch.testing.assert_close(
            out.predictor_output.last_hidden_state,
            src_pred(gather_tokens(src_enc(x), ctx), ctx, tgt_idx, mask_index=1),
            rtol=0,
            atol=HF_ATOL,
        )
        # ours -> HF -> ours is exact
        assert torch.equal(back_enc(x), src_enc(x))
        z = gather_tokens(src_enc(x), ctx)
        assert torch.equal(back_pred(z, ctx, tgt_idx, mask_index=1), src_pred(z, ctx, tgt_idx, mask_index=1))
    _, p = states_from_hf(model.state_dict())
    assert all(torch.equal(v, src_pred.state_dict()[k]) for k, v in p.items())


# ---------------------------------------------------------------------------------------------
# the vjepa2 code itself (facebookresearch/vjepa2, MIT), from a checkout named by VJEPA2_REPO

VJEPA2_REPO = os.environ.get("VJEPA2_REPO")
needs_vjepa2 = pytest.mark.skipif(
    not VJEPA2_REPO,
    reason="set VJEPA2_REPO to a checkout of facebookresearch/vjepa2 (and pip install einops) to compare with its code",
)


@pytest.fixture(scope="module")
def vjepa2():
    pytest.importorskip("einops", reason="the vjepa2 code imports einops; pip install einops")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from official import import_vjepa2

    return import_vjepa2(VJEPA2_REPO)


def reference_models(ref, cfg: ModelConfig):
    d, depth, heads, ratio = cfg.encoder_shape()
    ln = partial(nn.LayerNorm, eps=1e-6)
    enc = ref.vit.VisionTransformer(
        img_size=cfg.img_size,
        patch_size=cfg.patch_size,
        num_frames=cfg.num_frames,
        tubelet_size=cfg.tubelet_size,
        embed_dim=d,
        depth=depth,
        num_heads=heads,
        mlp_ratio=ratio,
        qkv_bias=True,
        norm_layer=ln,
        use_rope=True,
    ).eval()
    pred = ref.predictor.vit_predictor(
        img_size=cfg.img_size,
        patch_size=cfg.patch_size,
        num_frames=cfg.num_frames,
        tubelet_size=cfg.tubelet_size,
        embed_dim=d,
        predictor_embed_dim=cfg.pred_embed_dim,
        depth=cfg.pred_depth,
        num_heads=cfg.pred_num_heads,
        use_mask_tokens=True,
        num_mask_tokens=cfg.num_mask_tokens,
        use_rope=True,
    ).eval()
    return enc, pred


@needs_vjepa2
def test_vjepa2_rope_attention_is_ours_bit_for_bit(vjepa2):
    ours = Attention(64, 2)
    jitter(ours)
    theirs = vjepa2.modules.RoPEAttention(64, num_heads=2, qkv_bias=True, grid_size=4).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(2, N, 64)
    ctx, _ = masks(2)
    with torch.no_grad():
        full = ours(x, rope=rope_tables(index_positions(torch.arange(N), (2, 4, 4)), 32, "tiled", x.dtype))
        assert torch.equal(full, theirs(x, T=2, H_patches=4, W_patches=4))
        kept = gather_tokens(x, ctx)
        masked = ours(kept, rope=rope_tables(index_positions(ctx, (2, 4, 4)), 32, "tiled", x.dtype))
        assert torch.equal(masked, theirs(kept, mask=ctx, T=2, H_patches=4, W_patches=4))


@needs_vjepa2
def test_vjepa2_encoder_predictor_and_probe_are_ours_bit_for_bit(vjepa2):
    enc, pred = v2_models()
    r_enc, r_pred = reference_models(vjepa2, V2)
    r_enc.load_state_dict(enc.state_dict(), strict=True)
    r_pred.load_state_dict(pred.state_dict(), strict=True)
    x = torch.randn(2, 3, 4, 32, 32)
    ctx, tgt = masks(2)
    with torch.no_grad():
        assert torch.equal(enc(x), r_enc(x))
        z, rz = enc(x, [ctx])[0], r_enc(x, masks=[ctx])
        assert torch.equal(z, rz)
        for i in range(3):
            assert torch.equal(pred(z, ctx, tgt, mask_index=i), r_pred(rz, [ctx], [tgt], mask_index=i))
    probe = vjepa2_probe(64, 5, num_heads=4)
    jitter(probe)
    r_probe = vjepa2.pooler.AttentiveClassifier(embed_dim=64, num_heads=4, depth=4, num_classes=5).eval()
    r_probe.load_state_dict(probe.state_dict(), strict=True)
    tokens = torch.randn(2, N, 64)
    with torch.no_grad():
        assert torch.equal(probe.eval()(tokens), r_probe(tokens))


# ---------------------------------------------------------------------------------------------
# hub: V-JEPA 2 encoders by name and from files


def test_vjepa2_released_names_resolve_to_their_files_and_vitg_reads_as_22_heads(tmp_path, monkeypatch):
    from vjepa import hub
    from vjepa.infra.checkpoint import encoder_config_from_state

    monkeypatch.setenv("VJEPA_CHECKPOINTS", str(tmp_path))
    with pytest.raises(
        CheckpointError,
        match=r"vjepa2/vitg-384\.pt; download it from "
        r"https://dl\.fbaipublicfiles\.com/vjepa2/vitg-384\.pt",
    ):
        hub.resolve("vjepa2-vitg-384")
    with torch.device("meta"):
        enc = build_encoder(hub.RELEASED["vjepa2-vitg"])
    state = enc.state_dict()
    state["pos_embed"] = torch.zeros(1, 8192, 1408, device="meta")  # the table the hub loader says files keep
    cfg = encoder_config_from_state(state, num_frames=64, img_size=256, pos_encoding="rope3d")
    assert cfg == hub.RELEASED["vjepa2-vitg"] and cfg.encoder_shape()[2] == 22
    with pytest.raises(CheckpointError, match="pass num_frames= and img_size="):
        encoder_config_from_state(enc.state_dict())


def test_load_encoder_builds_a_rope_encoder_from_a_released_layout_file(tmp_path):
    from vjepa.infra.checkpoint import save_atomic
    from vjepa.hub import load_encoder

    enc, pred = v2_models()
    save_atomic(official_layout(enc, pred, enc), tmp_path / "v2.pt")
    loaded = load_encoder(tmp_path / "v2.pt", num_frames=4, img_size=32, num_heads=2)
    assert loaded.pos_encoding == "rope3d"
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), enc(x))


def test_vjepa2_probe_file_with_its_classifiers_list_loads_as_the_4_block_probe(tmp_path):
    from vjepa.infra.checkpoint import save_atomic

    probes = [vjepa2_probe(64, 5, num_heads=4) for _ in range(2)]
    for p in probes:
        jitter(p)
    # the layout of V-JEPA 2's eval files: one state per trained head, DDP's `module.` prefix, no `proj`
    save_atomic({"classifiers": [official_probe_state(p) for p in probes], "epoch": 20}, tmp_path / "ssv2.pt")
    assert not any("xattn.proj" in k for k in official_probe_state(probes[0]))
    with pytest.raises(CheckpointError, match="holds 2 probes in 'classifiers'; say which with head="):
        probe_from_file(tmp_path / "ssv2.pt", num_heads=4)
    loaded = probe_from_file(tmp_path / "ssv2.pt", num_heads=4, head=1)
    tokens = torch.randn(2, N, 64)
    with torch.no_grad():
        assert loaded.pooler.blocks_first and len(loaded.pooler.blocks) == 3
        assert torch.equal(loaded(tokens), probes[1].eval()(tokens))


def test_the_4_block_probe_trains_beside_the_others_on_a_rope_encoder(tmp_path):
    from test_probe import Bands, fast_cfg
    from vjepa.evals.probe import run_probe

    enc, _ = v2_models()
    enc.requires_grad_(False)
    cfg = fast_cfg(kinds=["attentive4", "linear"], num_heads=4, lrs=[1e-2], epochs=3)
    metrics = run_probe(cfg, enc, Bands(48, seed=0), Bands(24, seed=1), tmp_path, "tiny rope")
    assert set(metrics["best_probe_by_kind"]) == {"attentive4", "linear"}
    assert metrics["probes"]["attentive4_lr0.01_wd0.01"]["top1"] >= 80.0  # 3 bands, chance is 33%
    probe = probe_from_file(tmp_path / "probes" / "attentive4_lr0.01_wd0.01.pth.tar", num_heads=4)
    assert probe.pooler.blocks_first and len(probe.pooler.blocks) == 3


# ---------------------------------------------------------------------------------------------
# the recipe as profiles (phase 1)


def test_vjepa2_profiles_carry_the_switches_and_a_constant_schedule_after_warmup():
    from pipeline import profiles
    from pipeline.config import from_mapping

    for name, size, img in [
        ("vjepa2-vitl", "large", 256),
        ("vjepa2-vitg", "giant_xformers", 256),
        ("vjepa2-vitg-384", "giant_xformers", 384),
    ]:
        params = from_mapping(profiles.resolve(name))
        cfg = params.pretrain_config(params.main_seed)
        m, o = cfg.model, cfg.optim
        assert (m.size, m.img_size, m.pos_encoding, m.rope_layout, m.pred_num_heads) == (
            size,
            img,
            "rope3d",
            "tiled",
            12,
        )
        assert m.pred_sort_tokens and m.mask_token_per == "group" and o.clip_grad is None
        assert o.lr_at(1) == pytest.approx(1e-4, rel=1e-2)  # warmup from 1e-4 ...
        assert o.lr_at(12_001) == o.lr_at(200_000) == o.lr_at(240_000) == pytest.approx(5.25e-4)  # ... then flat
        assert o.weight_decay_at(1) == o.weight_decay_at(240_000) == pytest.approx(0.04)
        assert o.momentum_at(1) == o.momentum_at(240_000) == pytest.approx(0.99925)


def test_pretraining_runs_with_the_v_jepa_2_switches_and_its_checkpoint_loads_as_released(tmp_path):
    from test_pretrain import MovingSquares, read_metrics, tiny_config
    from vjepa.train.pretrain import pretrain

    switches = dict(
        pos_encoding="rope3d", pred_num_heads=2, pred_sort_tokens=True, mask_token_per="group", num_mask_tokens=1
    )
    cfg = tiny_config(model=switches, batch_size=4, optim={"iterations": 4, "warmup_iterations": 1}, checkpoint_every=4)
    pretrain(cfg, MovingSquares(4), tmp_path)
    losses = [m["loss"] for m in read_metrics(tmp_path)]
    assert len(losses) == 4 and all(math.isfinite(x) and x > 0 for x in losses)
    enc, pred = build_encoder(cfg.model), build_predictor(cfg.model)
    ck = load_released(tmp_path / "latest.pth.tar", encoder=enc, predictor=pred)  # official layout, strictly
    assert enc.pos_encoding == "rope3d" and "pos_embed" not in ck["encoder"]
    assert pred.mask_tokens[0].abs().sum() > 0  # the group's token learnt (it starts at zero)


# ---------------------------------------------------------------------------------------------
# everywhere a V-JEPA 1 encoder goes: detection and finetuning on a RoPE encoder


def test_detection_trains_on_a_rope_encoders_feature_map(tmp_path):
    from test_detect import Squares

    from vjepa.evals.detect import feature_map, run_detection
    from vjepa.infra.config import from_dict
    from vjepa.infra.configs import DetectConfig

    enc, _ = v2_models()
    video = torch.randn(2, 3, 4, 32, 32)
    assert feature_map(enc, video, [1, 2]).shape == (2, 2 * 64, 2, 4, 4)  # 2 layers x 64 channels on the 2x4x4 grid
    train, val = Squares(32, seed=0), Squares(12, seed=1)
    cfg = from_dict(
        DetectConfig,
        {
            "out_layers": [1, 2],
            "epochs": 4,
            "batch_size": 8,
            "lr": 3e-3,
            "warmup_epochs": 1,
            "eval_classes": [1, 3, 80],
            "precision": "fp32",
            "device": "cpu",
        },
    )
    m = run_detection(cfg, enc, train, val, val.groundtruth(), tmp_path)
    assert m["train_loss"][-1] < m["train_loss"][0] and m["mAP"] >= 0.8  # colour is trivially separable


def test_finetuning_starts_from_a_rope_pretraining_checkpoint_and_takes_longer_clips_as_they_are(tmp_path):
    from test_finetune import Bands as FinetuneBands

    from vjepa.infra.checkpoint import export_official
    from vjepa.infra.config import from_dict
    from vjepa.infra.configs import FinetuneConfig
    from vjepa.train.finetune import build_model, finetune

    enc, pred = v2_models()
    export_official(tmp_path / "pre.pth.tar", enc, pred, enc)
    model_cfg = {k: getattr(V2, k) for k in ("size", "img_size", "num_frames", "patch_size", "embed_dim", "depth")}
    model_cfg.update(num_heads=2, pos_encoding="rope3d")

    def cfg(**kw):
        base = dict(num_classes=3, model=model_cfg, num_frames=4, epochs=3, batch_size=8, num_sample=1, lr=1e-2)
        base.update(warmup_epochs=0, mixup_prob=0.0, smoothing=0.0, head_drop_rate=0.0, drop_path=0.0)
        base.update(layer_decay=1.0, init_scale=1.0, precision="fp32", device="cpu", **kw)
        return from_dict(FinetuneConfig, base, "finetune")

    long = build_model(cfg(num_frames=8), tmp_path / "pre.pth.tar")  # RoPE: no position table to interpolate
    assert long.encoder.pos_encoding == "rope3d" and long.encoder.pos_embed is None
    assert torch.equal(long.encoder.patch_embed.proj.weight, enc.patch_embed.proj.weight)
    assert long(torch.randn(2, 3, 8, 32, 32)).shape == (2, 3)
    metrics = finetune(cfg(), tmp_path / "pre.pth.tar", FinetuneBands(48), FinetuneBands(12, seed=1), tmp_path / "ft")
    assert metrics["top1"] >= 80 and metrics["history"][-1]["train_loss"] < metrics["history"][0]["train_loss"]


def test_a_full_test_frame_that_does_not_tile_is_cut_to_whole_tubelets_for_either_position_encoding():
    from vjepa.evals.detect import feature_map

    enc, _ = v2_models()  # RoPE: a clip must tile
    with torch.no_grad():
        wide = torch.randn(1, 3, 5, 32, 42)  # 5 frames, 42 px wide: the full frame at test
        assert torch.equal(feature_map(enc, wide, [2]), feature_map(enc, wide[:, :, :4, :, :40], [2]))
        sincos = build_encoder(ModelConfig(**{**V2.__dict__, "pos_encoding": "sincos"})).eval()
        assert feature_map(sincos, wide, [2]).shape == (1, 64, 2, 4, 5)
