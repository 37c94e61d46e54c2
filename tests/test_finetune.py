"""Finetuning (Table 8): layer-decay groups, mixup/cutmix on clips, multi-view aggregation, the
schedule, checkpoint loading, and end-to-end runs with exact resume on tiny synthetic data."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import Dataset

from vjepa.infra.checkpoint import export_official, import_official, load
from vjepa.infra.runtime import CheckpointError
from vjepa.infra.config import ConfigError, from_dict
from vjepa.infra.distributed import DistEnv
from vjepa.infra.runtime import TIMINGS
from vjepa.train.finetune import (
    ClipMixup,
    build_model,
    build_state,
    evaluate,
    finetune,
    layer_decay_groups,
    lr_values,
    multiview_metrics,
    topk_accuracy,
)
from vjepa.infra.configs import FinetuneConfig
from vjepa.models import ModelConfig, build_encoder, build_predictor


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These models are tiny: a second intra-op thread costs more in synchronisation than it saves
    (and much more on a shared, loaded machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


TINY = dict(size="tiny", img_size=32, num_frames=4, patch_size=8, embed_dim=48, depth=3, num_heads=3)


def cfg_of(**kw) -> FinetuneConfig:
    base = dict(
        num_classes=3,
        model=TINY,
        num_frames=4,
        epochs=2,
        batch_size=4,
        num_sample=2,
        lr=1e-3,
        warmup_epochs=1,
        precision="fp32",
        device="cpu",
    )
    base.update(kw)
    return from_dict(FinetuneConfig, base, "finetune")


class Bands(Dataset):
    """Class k = a bright horizontal band in the k-th third of the frame, plus noise; items follow the
    data contract [S, V, C, T, H, W]. With `jitter`, each read adds noise from numpy's global RNG
    (an augmentation whose draws must be reproducible on resume)."""

    def __init__(self, n, segments=1, views=1, frames=4, seed=0, jitter=0.0):
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.randint(0, 3, (n,), generator=g)
        self.noise = torch.randn(n, segments, views, 3, frames, 32, 32, generator=g) * 0.3
        self.jitter = jitter

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        k = int(self.labels[i])
        x = self.noise[i].clone()
        x[..., 10 * k + 1 : 10 * k + 10, :] += 1.5
        if self.jitter:
            x += torch.from_numpy(np.random.normal(0, self.jitter, x.shape)).float()
        return {"video": x, "label": k, "index": i, "path": f"clip_{i:03d}.mp4"}


# ----------------------------------------------------------------------------------------------
# layer decay


def test_layer_decay_scales_embeddings_blocks_and_head_by_decay_to_their_depth():
    model = build_model(cfg_of())
    model.encoder.pos_embed.requires_grad_(True)  # a learnt table must land in the no-decay embedding group
    groups = layer_decay_groups(model, weight_decay=0.05, layer_decay=0.8)
    scale = {id(p): (g["lr_scale"], g["weight_decay"]) for g in groups for p in g["params"]}
    L = 3
    for name, p in model.named_parameters():
        lr_scale, wd = scale[id(p)]
        if name.startswith(("encoder.patch_embed", "encoder.pos_embed")):
            layer = 0
        elif name.startswith("encoder.blocks."):
            layer = int(name.split(".")[2]) + 1
        else:
            assert name.startswith(("encoder.norm", "fc_norm", "head")), name
            layer = L + 1
        assert lr_scale == pytest.approx(0.8 ** (L + 1 - layer)), name
        no_decay = p.ndim <= 1 or name.endswith(".bias") or name == "encoder.pos_embed"
        assert wd == (0.0 if no_decay else 0.05), name
    assert sorted({round(g["lr_scale"], 6) for g in groups}) == [0.4096, 0.512, 0.64, 0.8, 1.0]
    assert scale[id(model.encoder.patch_embed.proj.weight)] == (pytest.approx(0.4096), 0.05)
    assert scale[id(model.head.weight)] == (1.0, 0.05) and scale[id(model.fc_norm.weight)] == (1.0, 0.0)


def test_each_group_gets_the_scheduled_lr_times_its_scale_warmup_then_cosine():
    cfg = cfg_of(epochs=10, warmup_epochs=2, lr=1e-3, warmup_lr=1e-6, min_lr=1e-5)
    state = build_state(cfg, None, DistEnv(), steps_per_epoch=5)  # 50 steps, 10 of warmup
    opt, sched = state.optimizer, state.scheduler
    expected = {
        0: 1e-6,
        5: 1e-6 + 5 * (1e-3 - 1e-6) / 10,
        10: 1e-3,
        30: 1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + np.cos(np.pi * 20 / 40)),
        49: 1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + np.cos(np.pi * 39 / 40)),
    }
    for t, lr in expected.items():
        sched.step_update(t)
        for g in opt.param_groups:
            assert g["lr"] == pytest.approx(lr * g["lr_scale"], rel=1e-9)
    assert min(g["lr_scale"] for g in opt.param_groups) == pytest.approx(0.8**4)
    assert opt.defaults["eps"] == 1e-7 and opt.defaults["betas"] == (0.9, 0.999)


def test_lr_scaling_by_batch_is_an_explicit_option():
    assert lr_values(cfg_of(batch_size=64, lr=3e-4)) == {"lr": 3e-4, "warmup_lr": 1e-7, "min_lr": 1e-7}
    scaled = lr_values(cfg_of(batch_size=64, lr=3e-4, scale_lr_by_batch=True), world_size=2)
    assert scaled["lr"] == pytest.approx(3e-4 * 128 / 256) and scaled["min_lr"] == pytest.approx(1e-7 * 0.5)


# ----------------------------------------------------------------------------------------------
# mixup and cutmix on clips


def _clips(B=6, C=3, T=4, H=16, W=20):
    # every (clip, channel, frame) has its own value, so any pixel records where it came from
    b, c, t = torch.meshgrid(torch.arange(B), torch.arange(C), torch.arange(T), indexing="ij")
    return (1000 * b + 10 * t + c).float()[..., None, None].expand(B, C, T, H, W).contiguous()


def _smooth(labels, K, eps=0.1):
    return torch.full((len(labels), K), eps / K).scatter_(1, labels[:, None], 1 - eps + eps / K)


def test_cutmix_pastes_one_box_through_all_frames_and_mixes_smoothed_targets_by_its_area():
    cfg = cfg_of(num_classes=5, mixup=0.0, cutmix=1.0)
    mix = ClipMixup(cfg)
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    areas = set()
    for seed in range(10):
        np.random.seed(seed)  # timm draws lam and the box from numpy
        x = _clips()
        out, targets = mix(x, labels)
        partner = x.flip(0)
        pasted = out == partner  # [B, C, T, H, W]
        assert torch.all(pasted | (out == x))
        box = pasted[0, 0, 0]
        for b in range(len(x)):  # the same box in every clip, channel and frame
            assert torch.equal(pasted[b], box.expand_as(pasted[b]))
        rows, cols = box.any(1).nonzero().flatten(), box.any(0).nonzero().flatten()
        if len(rows):
            assert box[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()  # a rectangle
        lam = 1 - box.float().mean().item()  # timm corrects lam to the pasted area
        expect = lam * _smooth(labels, 5) + (1 - lam) * _smooth(labels.flip(0), 5)
        assert torch.allclose(targets, expect, atol=1e-6)
        assert torch.allclose(targets.sum(1), torch.ones(6))
        areas.add(round(lam, 3))
    assert len(areas) >= 8


def test_mixup_blends_whole_clips_with_the_reversed_batch_and_the_same_weight_in_the_targets():
    mix = ClipMixup(cfg_of(num_classes=4, mixup=0.8, cutmix=0.0))
    labels = torch.tensor([0, 1, 2, 3])
    np.random.seed(3)
    x = _clips(B=4)
    out, targets = mix(x, labels)
    lam = ((out - x.flip(0)) / (x - x.flip(0)))[0, 0, 0, 0, 0].item()
    assert 0 < lam < 1
    assert torch.allclose(out, lam * x + (1 - lam) * x.flip(0), atol=1e-3)
    assert torch.allclose(targets, lam * _smooth(labels, 4) + (1 - lam) * _smooth(labels.flip(0), 4), atol=1e-6)


def test_mixup_refuses_an_odd_number_of_clips():
    with pytest.raises(ValueError, match="even"):
        ClipMixup(cfg_of())(_clips(B=3), torch.tensor([0, 1, 2]))
    with pytest.raises(ConfigError, match="finetune: .*batch_size x num_sample must be even"):
        cfg_of(batch_size=3, num_sample=1)
    assert cfg_of(batch_size=3, num_sample=1, mixup_prob=0.0).batch_size == 3


# ----------------------------------------------------------------------------------------------
# multi-view testing


class LogitsInClip(torch.nn.Module):
    """Returns each clip's per-channel mean as its logits, so a dataset dictates every view's scores."""

    def forward(self, clips):
        return clips.mean(dim=(2, 3, 4))


class Views(Dataset):
    """Video i holds S x V views; view (s, v) is a clip whose channel k is filled with logits[i, s, v, k]."""

    def __init__(self, logits, labels):
        self.logits, self.labels = logits, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        S, V, K = self.logits.shape[1:]
        video = self.logits[i][:, :, :, None, None, None].expand(S, V, K, 2, 4, 4).clone()
        return {"video": video, "label": int(self.labels[i]), "index": i, "path": f"v{i}.mp4"}


def _evaluate(dataset, batch_size=2):
    cfg = cfg_of(batch_size=batch_size, num_sample=1, mixup_prob=0.0)
    return evaluate(LogitsInClip(), dataset, cfg, torch.device("cpu"), lambda: torch.autocast("cpu", enabled=False))


def test_views_are_averaged_as_softmax_probabilities_not_logits():
    # one confident view for class 1 against two moderate views for class 0
    logits = torch.tensor([[[[0.0, 100.0, 0.0], [3.0, 0.0, 0.0], [3.0, 0.0, 0.0]]]])  # [n=1, S=1, V=3, K=3]
    assert logits.mean(dim=(1, 2)).argmax(-1).item() == 1  # averaging logits says 1
    metrics, predictions = multiview_metrics(_evaluate(Views(logits, [0])))
    assert metrics["top1"] == 100.0 and metrics["top1_per_view"] == [0.0, 100.0, 100.0]
    assert predictions.iloc[0]["predicted"] == 0
    p0 = torch.tensor([3.0, 0.0, 0.0]).softmax(0)[0].item()
    assert float(predictions.iloc[0]["top5_prob"].split()[0]) == pytest.approx(2 * p0 / 3, abs=1e-5)


def test_evaluation_takes_every_segment_and_crop_of_a_video_as_one_view():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 2, 3, 3, generator=g) * 3  # [n, S=2, V=3, K=3]
    labels = torch.tensor([0, 1, 2, 0, 1])
    result = _evaluate(Views(logits, labels))
    views = logits.flatten(1, 2)  # [n, S*V, K], order (s, v)
    assert (result["segments"], result["crops"]) == (2, 3)
    assert torch.allclose(result["probs"], views.softmax(-1).mean(1), atol=1e-6)
    assert torch.equal(result["view_pred"], views.argmax(-1).T)
    assert result["index"].tolist() == [0, 1, 2, 3, 4] and torch.equal(result["label"], labels)
    metrics, _ = multiview_metrics(result)
    assert metrics["top1"] == pytest.approx(
        100 * (views.softmax(-1).mean(1).argmax(-1) == labels).float().mean().item()
    )
    assert metrics["views"] == 6 and len(metrics["top1_per_view"]) == 6


def test_topk_counts_a_label_among_the_k_best_classes():
    probs = torch.tensor(
        [
            [0.1, 0.2, 0.3, 0.05, 0.15, 0.12, 0.08],  # label 3 is ranked last: miss top-5
            [0.3, 0.2, 0.1, 0.15, 0.05, 0.12, 0.08],  # label 5 is 4th: hit top-5
            [0.5, 0.1, 0.1, 0.1, 0.1, 0.05, 0.05],
        ]
    )  # label 0: hit top-1
    assert topk_accuracy(probs, torch.tensor([3, 5, 0])) == {
        "top1": pytest.approx(100 / 3),
        "top5": pytest.approx(200 / 3),
    }


# ----------------------------------------------------------------------------------------------
# model and checkpoints


def test_head_is_mean_pool_fc_norm_dropout_linear_with_a_small_init():
    torch.manual_seed(0)
    model = build_model(cfg_of(head_drop_rate=0.5)).eval()
    assert model.head.weight.abs().max() <= 0.002 + 1e-9 and model.head.bias.abs().max() == 0
    x = torch.randn(2, 3, 4, 32, 32)
    tokens = model.encoder(x)
    expect = model.head(model.fc_norm(tokens.mean(1)))
    assert torch.allclose(model(x), expect, atol=1e-6)
    assert model.head_drop.p == 0.5 and model.encoder.blocks[-1].drop_path.drop_prob == pytest.approx(0.2)
    assert isinstance(build_model(cfg_of(encoder_norm=False)).encoder.norm, torch.nn.Identity)
    bn = build_model(cfg_of(head_norm="batchnorm")).eval()  # standardises each pooled channel over the batch
    pooled = bn.encoder(x).mean(1)
    expect = bn.head((pooled - bn.fc_norm.running_mean) / torch.sqrt(bn.fc_norm.running_var + bn.fc_norm.eps))
    assert torch.allclose(bn(x), expect, atol=1e-6) and not list(bn.fc_norm.parameters())


def test_the_pretrained_target_encoder_loads_strictly_and_longer_clips_interpolate_positions(tmp_path):
    mc = ModelConfig(**TINY)
    enc, pred, target = build_encoder(mc), build_predictor(mc), build_encoder(mc)
    with torch.no_grad():
        target.patch_embed.proj.weight.fill_(0.5)
    export_official(tmp_path / "pre.pth.tar", enc, pred, target)
    model = build_model(cfg_of(num_frames=8), tmp_path / "pre.pth.tar")
    assert torch.equal(model.encoder.patch_embed.proj.weight, target.patch_embed.proj.weight)
    assert model(torch.randn(2, 3, 8, 32, 32)).shape == (2, 3)  # 8 frames on a 4-frame encoder
    with pytest.raises(CheckpointError, match="has no 'teacher' entry"):
        build_model(cfg_of(checkpoint_key="teacher"), tmp_path / "pre.pth.tar")


def test_config_errors_name_the_key_and_table8_ssv2_column_builds():
    with pytest.raises(ConfigError, match="finetune.lr"):
        cfg_of(lr="fast")
    with pytest.raises(ConfigError, match="sampling: must be"):
        cfg_of(sampling="random")
    with pytest.raises(ConfigError, match="head_norm: must be"):
        cfg_of(head_norm="groupnorm")
    with pytest.raises(ConfigError, match="do not tile"):
        cfg_of(num_frames=5)
    from pipeline.profiles import resolve  # Table 8's SSv2 column lives in the paper profiles

    column = {k: v for k, v in resolve("paper-vitl16")["finetune"]["tasks"]["ssv2"].items() if k != "data"}
    ssv2 = cfg_of(**{**column, "num_frames": 8})
    assert (ssv2.test_num_segment, ssv2.test_num_crop, ssv2.sampling, ssv2.hflip) == (2, 3, "tsn", False)
    assert (ssv2.epochs, ssv2.lr, column["num_frames"]) == (20, 1e-4, 32)


# ----------------------------------------------------------------------------------------------
# end to end


def test_finetuning_learns_and_writes_metrics_predictions_and_a_loadable_model(tmp_path):
    cfg = cfg_of(
        epochs=3,
        batch_size=8,
        num_sample=1,
        lr=1e-2,
        warmup_epochs=0,
        mixup_prob=0.0,
        smoothing=0.0,
        head_drop_rate=0.0,
        drop_path=0.0,
        layer_decay=1.0,
        init_scale=1.0,
        eval_every=1,
    )
    metrics = finetune(cfg, None, Bands(48), Bands(12, segments=2, views=3, seed=1), tmp_path)
    assert metrics["top1"] >= 90 and metrics["top5"] == 100.0  # chance is 33%
    assert (metrics["segments"], metrics["crops"], metrics["views"]) == (2, 3, 6) and metrics["steps"] == 18
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3] and all("val_top1" in h for h in metrics["history"])
    assert metrics["history"][-1]["val_top1"] == metrics["top1"]
    assert metrics["history"][-1]["train_loss"] < metrics["history"][0]["train_loss"]
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["top1"] == metrics["top1"] and saved["history"] == metrics["history"]
    assert {"seconds", "train_clips_per_s"} <= set(metrics) and not TIMINGS & set(saved)  # timings: metrics file only
    pred = pd.read_csv(tmp_path / "predictions.csv")
    assert len(pred) == 12 and 100 * (pred["predicted"] == pred["label"]).mean() == pytest.approx(metrics["top1"])
    encoder = build_encoder(ModelConfig(**TINY))
    ck = import_official(tmp_path / "finetuned.pth.tar", encoder=encoder)
    assert set(ck["head"]) == {"fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"}


class Stop(Exception):
    pass


def test_a_killed_run_resumes_to_the_same_weights_and_metrics(tmp_path):
    # mixup, drop path, dropout and a random augmentation all on: every draw must repeat on resume;
    # the batch-norm head's running statistics must come back too
    cfg = cfg_of(epochs=2, batch_size=4, num_sample=2, checkpoint_every=2, eval_every=1, head_norm="batchnorm")
    train, val = Bands(16, views=2, jitter=0.5), Bands(6, segments=2, views=1, seed=1)
    whole = finetune(cfg, None, train, val, tmp_path / "whole")

    def kill_at_step_5(metrics, step):
        if step == 5:
            raise Stop

    with pytest.raises(Stop):
        finetune(cfg, None, train, val, tmp_path / "killed", log_fn=kill_at_step_5)
    assert load(tmp_path / "killed" / "latest.pth.tar")["step"] == 4
    seen = []
    resumed = finetune(cfg, None, train, val, tmp_path / "killed", log_fn=lambda m, s: seen.append(s))
    assert seen[0] == 5 and not (tmp_path / "whole" / "latest.pth.tar.tmp").exists()
    a = load(tmp_path / "whole" / "latest.pth.tar")
    b = load(tmp_path / "killed" / "latest.pth.tar")
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert (resumed["top1"], resumed["top5"]) == (whole["top1"], whole["top5"])
    assert resumed["history"] == whole["history"]
    with pytest.raises(CheckpointError, match="lr: 0.001 -> 0.002"):
        finetune(
            cfg_of(epochs=2, batch_size=4, num_sample=2, lr=2e-3, head_norm="batchnorm"),
            None,
            train,
            val,
            tmp_path / "killed",
        )


class BrokenViews(Views):
    def __getitem__(self, i):
        return {"video": None, "label": 0, "index": i, "path": f"v{i}.mp4"} if i < 3 else super().__getitem__(i)


def test_finetuning_evaluation_where_most_videos_fail_stops_with_the_count_and_files():
    from vjepa.data import TooManySkipped

    logits = torch.randn(4, 1, 1, 3)
    with pytest.raises(
        TooManySkipped,
        match=r"finetuning evaluation set: 3 of 4 files could not be decoded \(75\.00%\), "
        r"more than the allowed 1\.00%; for example v0\.mp4, v1\.mp4, v2\.mp4",
    ):
        _evaluate(BrokenViews(logits, [0, 1, 2, 0]))
