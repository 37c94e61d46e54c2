"""Frozen evaluation: segment concatenation, view averaging, still clips, schedules, one encoder pass
for many probes, feature caching, resume, and end-to-end runs on tiny synthetic data."""

import json
import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from vjepa.infra.checkpoint import export_official, load
from vjepa.infra.runtime import CheckpointError
from vjepa.infra.config import ConfigError, from_dict
from vjepa.models import ModelConfig, build_encoder, build_predictor
from vjepa.infra.runtime import without_timings
from vjepa.models.probes import AttentiveClassifier, load_official_probe
from vjepa.evals.frozen import average_views, build_frozen_encoder, encode, param_groups, view_loss
from vjepa.evals.probe import ProbeSet, run_probe
from vjepa.infra.configs import EncoderConfig, ProbeConfig

TINY = ModelConfig(
    size="tiny",
    img_size=32,
    num_frames=4,
    patch_size=8,
    embed_dim=48,
    depth=2,
    num_heads=3,
    pred_depth=1,
    pred_embed_dim=24,
    pred_num_heads=3,
)


class Bands(Dataset):
    """Class k = a bright horizontal band in the k-th third of the frame (flip-invariant), plus noise.
    Items follow the data contract: video [S, V, C, T, H, W]; views are small horizontal shifts."""

    def __init__(self, n, segments=1, views=1, frames=4, seed=0, noise=0.3, broken=()):
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.randint(0, 3, (n,), generator=g)
        self.noise = torch.randn(n, segments, 1, 3, frames, 32, 32, generator=g) * noise
        self.views, self.broken, self.reads = views, set(broken), 0

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        self.reads += 1
        if i in self.broken:
            return None
        k = int(self.labels[i])
        x = self.noise[i].clone()
        x[..., 10 * k + 1 : 10 * k + 10, :] += 1.5
        x = torch.cat([x.roll(v, dims=-1) for v in range(self.views)], dim=1)
        return {"video": x, "label": k, "index": i, "path": f"clip_{i:03d}.mp4"}


def fast_cfg(**kw):
    base = dict(num_classes=3, epochs=3, batch_size=16, lrs=[1e-3, 1e-2], precision="fp32", device="cpu", num_heads=12)
    base.update(kw)
    return from_dict(ProbeConfig, base)


def tiny_encoder():
    torch.manual_seed(0)
    return build_encoder(TINY).eval().requires_grad_(False)


def test_segments_are_concatenated_along_tokens_and_views_kept_apart():
    class Ident(torch.nn.Module):  # one token per clip, carrying the clip's value
        def forward(self, x):
            return x.mean(dim=(1, 2, 3, 4))[:, None, None].expand(-1, 2, 5)

    B, S, V = 2, 3, 4
    value = torch.tensor(
        [[[100 * b + 10 * s + v for v in range(V)] for s in range(S)] for b in range(B)], dtype=torch.float
    )
    video = value[..., None, None, None, None].expand(B, S, V, 3, 2, 4, 4)
    tokens = encode(Ident(), video)
    assert tokens.shape == (V, B, S * 2, 5)
    for v in range(V):
        for b in range(B):
            expect = torch.tensor([100 * b + 10 * s + v for s in range(S) for _ in range(2)], dtype=torch.float)
            assert torch.equal(tokens[v, b, :, 0], expect)  # segment-major token order


def test_encoding_segments_equals_encoding_each_clip_and_concatenating():
    enc = tiny_encoder()
    video = torch.randn(2, 3, 2, 3, 4, 32, 32)
    with torch.no_grad():
        tokens = encode(enc, video, chunk=5)
        ref = torch.cat([enc(video[1, s, 1][None]) for s in range(3)], dim=1)[0]
    assert tokens.shape == (2, 2, 3 * 32, 48)
    torch.testing.assert_close(tokens[1, 1], ref, rtol=1e-5, atol=1e-5)


def test_views_average_softmax_probabilities_not_logits():
    logits = torch.tensor([[[0.0, 3.0]], [[1.0, 0.0]], [[1.0, 0.0]]])  # [V=3, B=1, K=2]
    probs = average_views(logits)
    s1, s2 = 1 / (1 + math.exp(-3)), 1 / (1 + math.exp(1))  # softmax of view 1 and views 2,3 for class 1
    torch.testing.assert_close(probs, torch.tensor([[1 - (s1 + 2 * s2) / 3, (s1 + 2 * s2) / 3]]))
    assert probs.argmax().item() == 0 and logits.mean(0).argmax().item() == 1  # the two fusions disagree here
    labels = torch.tensor([1])
    expect = (F.cross_entropy(logits[0], labels) + 2 * F.cross_entropy(logits[1], labels)) / 3
    torch.testing.assert_close(view_loss(logits, labels), expect)


def test_images_become_still_clips_of_still_frames():
    enc = tiny_encoder()
    image = torch.randn(2, 1, 1, 3, 1, 32, 32)  # [B, S=1, V=1, C, T=1, H, W]
    with torch.no_grad():
        from_image = encode(enc, image, still_frames=4)
        from_still = encode(enc, image.expand(-1, -1, -1, -1, 4, -1, -1))
        two = encode(enc, image, still_frames=2)
    assert torch.equal(from_image, from_still)
    assert from_image.shape == (1, 2, 2 * 16, 48) and two.shape == (1, 2, 16, 48)  # 2 frames: one tubelet


def test_learning_rate_is_a_cosine_to_zero_without_warmup_and_weight_decay_stays_fixed():
    probes = ProbeSet(fast_cfg(lrs=[1e-3], kinds=["attentive"]), 48, 3, torch.device("cpu"))
    decay, no_decay = probes.opts["attentive_lr0.001_wd0.01"].param_groups
    for step, lr in [(0, 1e-3), (50, 5e-4), (75, 1e-3 * 0.5 * (1 + math.cos(math.pi * 0.75))), (100, 0.0)]:
        probes.set_schedule(step, 100)
        assert decay["lr"] == pytest.approx(lr, abs=1e-12) and no_decay["lr"] == decay["lr"]
        assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    assert any(p.ndim == 3 for p in decay["params"])  # the query token is decayed, as officially
    official = ProbeSet(fast_cfg(lrs=[1e-3], kinds=["attentive"], wd_schedule="cosine"), 48, 3, torch.device("cpu"))
    official.set_schedule(50, 100)
    assert official.opts["attentive_lr0.001_wd0.01"].param_groups[0]["weight_decay"] == pytest.approx((0.01 + 1e-6) / 2)
    official.set_schedule(100, 100)
    assert official.opts["attentive_lr0.001_wd0.01"].param_groups[0]["weight_decay"] == pytest.approx(1e-6)


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="probe.precision: must be one of"):
        from_dict(ProbeConfig, {"num_classes": 3, "precision": "fp8"}, "probe")
    with pytest.raises(ConfigError, match="num_heads: 12 heads do not divide the encoder width 1024"):
        ProbeSet(fast_cfg(), 1024, 16, torch.device("cpu"))
    assert sorted(ProbeSet(fast_cfg(num_heads=None), 1024, 16, torch.device("cpu")).probes) == [
        "attentive_lr0.001_wd0.01",
        "attentive_lr0.01_wd0.01",
        "linear_lr0.001_wd0.01",
        "linear_lr0.01_wd0.01",
    ]


def test_probes_learn_end_to_end_and_write_metrics_predictions_and_official_probe_files(tmp_path):
    enc = tiny_encoder()
    train, val = Bands(64, segments=2, seed=0), Bands(24, segments=2, views=3, seed=1)
    metrics = run_probe(fast_cfg(num_segments=2, epochs=3), enc, train, val, tmp_path, "tiny random")
    assert "seconds" in metrics  # for the stage's metrics file; its output folder holds no timing
    assert json.loads((tmp_path / "metrics.json").read_text()) == without_timings(metrics)
    assert set(metrics["probes"]) == {
        "attentive_lr0.001_wd0.01",
        "attentive_lr0.01_wd0.01",
        "linear_lr0.001_wd0.01",
        "linear_lr0.01_wd0.01",
    }
    assert (metrics["segments"], metrics["views"], metrics["num_train"], metrics["num_val"]) == (2, 3, 64, 24)
    best = metrics["probes"][metrics["best_probe"]]
    assert best["top1"] >= 90.0  # 3 bands, chance is 33%
    assert len(best["top1_per_view"]) == 3 and best["top1_single_view"] == best["top1_per_view"][1]
    assert set(metrics["best_probe_by_kind"]) == {"attentive", "linear"}
    pred = pd.read_csv(tmp_path / "predictions.csv")
    assert len(pred) == 4 * 24 and list(pred.columns) == [
        "probe",
        "index",
        "path",
        "label",
        "predicted",
        "top5",
        "top5_prob",
    ]
    mine = pred[pred.probe == metrics["best_probe"]]
    assert 100.0 * (mine.label == mine.predicted).mean() == pytest.approx(best["top1"])
    probe = AttentiveClassifier(48, 3, num_heads=12)
    ck = load_official_probe(probe, tmp_path / "probes" / "attentive_lr0.01_wd0.01.pth.tar")
    assert ck["epoch"] == 3 and ck["lr"] == 0.01


def test_encoder_runs_once_per_batch_however_many_probes_learn(tmp_path):
    enc = tiny_encoder()
    calls = []
    enc.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    cfg = fast_cfg(epochs=2, batch_size=10, weight_decays=[0.01, 0.1])  # 8 probes
    run_probe(cfg, enc, Bands(20), Bands(20), tmp_path)
    assert len(calls) == 2 * 2 + 2 and sum(calls) == 2 * 20 + 20


def test_feature_cache_gives_the_same_probes_as_encoding_every_epoch(tmp_path):
    enc = tiny_encoder()
    data, val = Bands(32), Bands(12, seed=3)
    a = run_probe(fast_cfg(epochs=2, lrs=[1e-2]), enc, data, val, tmp_path / "a")
    reads = data.reads
    b = run_probe(fast_cfg(epochs=2, lrs=[1e-2], cache_features=True), enc, data, val, tmp_path / "b")
    assert data.reads - reads == 32 + 2  # one pass over the set, plus the determinism check
    for name in a["probes"]:
        assert b["probes"][name]["top1"] == a["probes"][name]["top1"]
        assert b["probes"][name]["train_loss"] == pytest.approx(a["probes"][name]["train_loss"], rel=1e-4)

    class Augmented(Bands):  # a random transform: every read differs
        def __getitem__(self, i):
            item = super().__getitem__(i)
            return {**item, "video": item["video"] + 0.01 * torch.randn_like(item["video"])}

    with pytest.raises(ConfigError, match="cache_features: training item 0 differs between two reads"):
        run_probe(fast_cfg(epochs=1, cache_features=True), enc, Augmented(8), val, tmp_path / "c")


def test_a_crashed_run_resumes_from_its_last_epoch_and_matches_an_uninterrupted_one(tmp_path):
    enc = tiny_encoder()
    cfg = fast_cfg(epochs=3, kinds=["attentive"], lrs=[1e-2])

    class Crash(Bands):
        def __getitem__(self, i):
            if self.reads >= 2 * 32 + 5:  # fails during the third epoch
                raise RuntimeError("disk gone")
            return super().__getitem__(i)

    full = run_probe(cfg, enc, Bands(32), Bands(10, seed=2), tmp_path / "full")
    with pytest.raises(RuntimeError, match="disk gone"):
        run_probe(cfg, enc, Crash(32), Bands(10, seed=2), tmp_path / "resumed")
    assert load(tmp_path / "resumed" / "probe_state.pt")["epoch"] == 2
    resumed = run_probe(cfg, enc, Bands(32), Bands(10, seed=2), tmp_path / "resumed")
    name = "attentive_lr0.01_wd0.01"
    assert resumed["probes"][name]["train_loss"] == full["probes"][name]["train_loss"]
    a = load(tmp_path / "full" / "probes" / f"{name}.pth.tar")["classifier"]
    b = load(tmp_path / "resumed" / "probes" / f"{name}.pth.tar")["classifier"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(CheckpointError, match=r"probe_state\.pt: the run's config changed \(epochs: 3 -> 4\)"):
        run_probe(fast_cfg(epochs=4, kinds=["attentive"], lrs=[1e-2]), enc, Bands(32), Bands(10), tmp_path / "resumed")


def test_undecodable_items_are_skipped_and_counted_and_bad_shapes_are_named(tmp_path):
    enc = tiny_encoder()
    m = run_probe(
        fast_cfg(epochs=1, kinds=["linear"], max_skipped_fraction=0.1),
        enc,
        Bands(20, broken={3, 7}),
        Bands(10, broken={0}),
        tmp_path,
    )
    assert (m["num_val"], m["skipped_train"], m["skipped_val"]) == (9, 2, 1)
    with pytest.raises(ConfigError, match="num_segments is 1 but the training items have 2"):
        run_probe(fast_cfg(epochs=1), enc, Bands(8, segments=2), Bands(4), tmp_path / "x")


def test_precision_options_run_and_fp16_uses_a_grad_scaler(tmp_path):
    enc = tiny_encoder()
    m = run_probe(fast_cfg(epochs=1, precision="fp16", lrs=[1e-3]), enc, Bands(16), Bands(8), tmp_path)
    assert all(math.isfinite(p["train_loss"]) for p in m["probes"].values())
    assert load(tmp_path / "probes" / "linear_lr0.001_wd0.01.pth.tar")["scaler"]["scale"] > 0
    m = run_probe(fast_cfg(epochs=1, precision="bf16", lrs=[1e-3]), enc, Bands(16), Bands(8), tmp_path / "bf16")
    assert all(math.isfinite(p["train_loss"]) for p in m["probes"].values())


def test_frozen_encoder_is_the_target_encoder_of_an_official_layout_file(tmp_path):
    torch.manual_seed(0)
    ctx, tgt, pred = build_encoder(TINY), build_encoder(TINY), build_predictor(TINY)
    export_official(tmp_path / "jepa-latest.pth.tar", ctx, pred, tgt, epoch=3)
    enc = build_frozen_encoder(EncoderConfig(checkpoint=str(tmp_path / "jepa-latest.pth.tar")), TINY)
    assert torch.equal(enc.blocks[1].attn.qkv.weight, tgt.blocks[1].attn.qkv.weight)
    assert not torch.equal(enc.blocks[1].attn.qkv.weight, ctx.blocks[1].attn.qkv.weight)
    assert not any(p.requires_grad for p in enc.parameters()) and not enc.training


def test_an_image_model_runs_through_the_same_probes(tmp_path):
    torch.manual_seed(0)
    enc = build_frozen_encoder(
        from_dict(EncoderConfig, {"kind": "timm", "timm_model": "vit_tiny_patch16_224", "timm_img_size": 32})
    )
    m = run_probe(
        fast_cfg(epochs=1, lrs=[1e-2], still_frames=2), enc, Bands(24, frames=2), Bands(9, frames=2), tmp_path
    )
    assert set(m["probes"]) == {"attentive_lr0.01_wd0.01", "linear_lr0.01_wd0.01"}
    assert enc(torch.randn(1, 3, 2, 32, 32)).shape == (1, 2 * 4, 192)


def test_probe_steps_with_foreach_adamw_are_bit_identical_to_the_per_parameter_loop():
    import contextlib

    cfg = fast_cfg(num_heads=3)
    enc, data = tiny_encoder(), Bands(8)
    tokens = encode(enc, torch.stack([data[i]["video"] for i in range(8)]))
    labels = torch.tensor([data[i]["label"] for i in range(8)])
    fast, loop = (ProbeSet(cfg, 48, 3, torch.device("cpu")) for _ in range(2))
    assert all(o.defaults["foreach"] is False for o in loop.opts.values())  # the CPU's loop; a GPU runs foreach
    for name, probe in fast.probes.items():
        hp = fast.hparams[name]
        fast.opts[name] = torch.optim.AdamW(
            param_groups(probe), lr=hp["lr"], weight_decay=hp["weight_decay"], foreach=True
        )
    for step in (1, 2, 3):
        for s in (fast, loop):
            s.set_schedule(step, 3)
        assert fast.train_step(tokens, labels, contextlib.nullcontext) == loop.train_step(
            tokens, labels, contextlib.nullcontext
        )
    for name in fast.probes:
        a, b = fast.probes[name].state_dict(), loop.probes[name].state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name


class Missing(Bands):
    """Bands whose broken items are files that could not be read, named as the video datasets name them."""

    def __getitem__(self, i):
        item = super().__getitem__(i)
        return (
            {"video": None, "label": int(self.labels[i]), "index": i, "path": f"clip_{i:03d}.mp4"}
            if item is None
            else item
        )


@pytest.mark.parametrize("cache", [False, True])
def test_a_probe_whose_training_items_mostly_fail_stops_with_the_count_and_files_and_publishes_nothing(tmp_path, cache):
    from vjepa.data import TooManySkipped

    enc = tiny_encoder()
    cfg = fast_cfg(epochs=1, kinds=["linear"], cache_features=cache, max_skipped_fraction=0.25)
    with pytest.raises(
        TooManySkipped,
        match=r"probe training set.*: (9|1[0-6]) of 16 files could not be decoded .*"
        r"more than the allowed 25\.00%; for example clip_000\.mp4, clip_001\.mp4",
    ):
        run_probe(cfg, enc, Missing(16, broken=set(range(16))), Bands(4), tmp_path)
    assert not (tmp_path / "metrics.json").exists() and not (tmp_path / "probes").exists()


def test_a_probe_whose_evaluation_items_mostly_fail_stops_before_publishing(tmp_path):
    from vjepa.data import TooManySkipped

    enc = tiny_encoder()
    with pytest.raises(
        TooManySkipped,
        match=r"probe evaluation set: 3 of 10 files could not be decoded \(30\.00%\), "
        r"more than the allowed 10\.00%; for example clip_000\.mp4, clip_001",
    ):
        run_probe(
            fast_cfg(epochs=1, kinds=["linear"], max_skipped_fraction=0.1),
            enc,
            Bands(16),
            Missing(10, broken={0, 1, 2}),
            tmp_path,
        )
    assert not (tmp_path / "metrics.json").exists()


class NanEncoder(torch.nn.Module):
    """An encoder whose weights went NaN (the fault-finding case: `probe.encoder.checkpoint` of one)."""

    def __init__(self):
        super().__init__()
        self.inner = tiny_encoder()
        with torch.no_grad():
            self.inner.norm.weight.fill_(float("nan"))
        self.embed_dim, self.num_heads = self.inner.embed_dim, self.inner.num_heads

    def forward(self, x):
        return self.inner(x)


def test_a_probe_on_an_encoder_with_nan_weights_stops_naming_the_step_and_publishes_nothing(tmp_path):
    from vjepa.infra.runtime import NonFiniteLossError

    with pytest.raises(NonFiniteLossError, match=r"non-finite features from the frozen encoder at step 1 \(epoch 1\)"):
        run_probe(fast_cfg(epochs=1, kinds=["linear"]), NanEncoder(), Bands(16), Bands(4), tmp_path)
    assert not (tmp_path / "metrics.json").exists() and not (tmp_path / "probes").exists()


def test_a_non_finite_probe_loss_stops_before_the_probe_weights_change():
    from vjepa.infra.runtime import NonFiniteLossError

    probes = ProbeSet(fast_cfg(kinds=["linear"], lrs=[1e-2]), 48, 3, torch.device("cpu"))
    ((name, probe),) = probes.probes.items()
    tokens = torch.randn(1, 4, 16, 48)
    with torch.no_grad():
        next(p for p in probe.parameters() if p.ndim == 2).fill_(float("inf"))
    with pytest.raises(NonFiniteLossError, match=rf"non-finite loss of probe {name} at step 7"):
        probes.train_step(tokens, torch.tensor([0, 1, 2, 0]), lambda: torch.autocast("cpu", enabled=False), "step 7")
    assert all(p.grad is None for p in probe.parameters())
