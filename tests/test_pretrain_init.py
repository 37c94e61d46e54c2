"""Continued pretraining (`pretrain.train.init`): the run starts from exactly a checkpoint's encoder,
predictor and target encoder (official layout), with a fresh optimizer and schedules; the predictor
can be re-initialised; shapes that do not fit fail strictly or are listed when strict is off."""

import copy

import pytest
import torch
from test_checkpoint import official_state
from test_pretrain import TINY, MovingSquares, read_metrics

from vjepa.infra.checkpoint import load, strip_prefix
from vjepa.infra.runtime import CheckpointError
from vjepa.infra.config import from_dict
from vjepa.infra.distributed import DistEnv, ShardedBatchSampler
from vjepa.models import ModelConfig
from vjepa.train.pretrain import MicroBatches, build_state, pretrain
from vjepa.infra.configs import PretrainConfig
from vjepa.jepa.step import jepa_loss


def tiny_config(init=None, optim=None) -> PretrainConfig:
    d = copy.deepcopy(TINY)
    d["optim"].update(optim or {})
    if init is not None:
        d["init"] = init
    return from_dict(PretrainConfig, d, "pretrain")


def released_like(path, model: dict, seed=5):
    """An official-layout file for `model` with random weights; the target encoder differs from the encoder."""
    torch.manual_seed(seed)
    ck = official_state(ModelConfig(**model), fill="randn")
    ck["target_encoder"] = {k: v * 0.5 + 0.1 for k, v in ck["encoder"].items()}
    torch.save(ck, path)
    return {k: strip_prefix(v) for k, v in ck.items() if k in ("encoder", "predictor", "target_encoder")}


def same(model, state) -> bool:
    own = model.state_dict()
    return own.keys() == state.keys() and all(torch.equal(own[k], v) for k, v in state.items())


def test_the_models_start_from_exactly_the_checkpoint_with_a_fresh_optimizer(tmp_path):
    cfg = tiny_config()
    want = released_like(tmp_path / "vit.pth.tar", tiny_config().model.__dict__)
    state = build_state(tiny_config(init={"checkpoint": str(tmp_path / "vit.pth.tar")}), DistEnv())
    assert same(state.encoder, want["encoder"]) and same(state.predictor, want["predictor"])
    assert same(state.target_encoder, want["target_encoder"])
    assert state.optimizer.state_dict()["state"] == {}
    # re-initialising the predictor gives the one a fresh run of the same seed builds
    fresh = build_state(cfg, DistEnv())
    re = build_state(
        tiny_config(init={"checkpoint": str(tmp_path / "vit.pth.tar"), "reinit_predictor": True}), DistEnv()
    )
    assert same(re.encoder, want["encoder"]) and same(re.predictor, fresh.predictor.state_dict())
    assert not same(fresh.encoder, want["encoder"])


def test_the_first_step_is_computed_from_the_loaded_weights_and_the_schedules_start_over(tmp_path):
    want = released_like(tmp_path / "vit.pth.tar", tiny_config().model.__dict__)
    # learning rate 0 and EMA momentum 1: the step computes a loss but moves no weight
    frozen = {
        "iterations": 1,
        "lr": 0.0,
        "start_lr": 0.0,
        "final_lr": 0.0,
        "warmup_iterations": 1,
        "start_momentum": 1.0,
        "final_momentum": 1.0,
    }
    cfg = tiny_config(init={"checkpoint": str(tmp_path / "vit.pth.tar")}, optim=frozen)
    data = MovingSquares(8)
    summary = pretrain(cfg, data, tmp_path / "run")
    step1 = read_metrics(tmp_path / "run")[0]
    ck = load(summary["checkpoint"])
    for key in ("encoder", "predictor", "target_encoder"):
        assert strip_prefix(ck[key]).keys() == want[key].keys()
        assert all(torch.equal(strip_prefix(ck[key])[k], v) for k, v in want[key].items())
    assert ck["step"] == 1 and {float(v["step"]) for v in ck["opt"]["state"].values()} == {1.0}  # a fresh AdamW
    # the logged loss of step 1, recomputed by hand with models loaded from the file
    hand = build_state(cfg, DistEnv())
    key = next(iter(ShardedBatchSampler(len(data), cfg.batch_size, 1, DistEnv(), cfg.seed, 1)))
    mb = MicroBatches(data, cfg)[key]
    with torch.no_grad():
        out = jepa_loss(hand.context_path, hand.target_encoder, mb["groups"])
    assert step1["step"] == 1 and step1["loss"] == pytest.approx(float(out.loss), rel=1e-6)


def test_shapes_that_do_not_fit_fail_strictly_and_are_listed_when_strict_is_off(tmp_path):
    model = {**tiny_config().model.__dict__, "img_size": 48}  # another resolution: pos_embed differs
    want = released_like(tmp_path / "vit48.pth.tar", model)
    with pytest.raises(CheckpointError, match=r"vit48\.pth\.tar\['encoder'\].*shape mismatch pos_embed"):
        build_state(tiny_config(init={"checkpoint": str(tmp_path / "vit48.pth.tar")}), DistEnv())
    with pytest.warns(
        UserWarning, match=r"gives no value of the model's shape for \['(predictor_)?pos_embed'\]"
    ) as seen:
        state = build_state(
            tiny_config(init={"checkpoint": str(tmp_path / "vit48.pth.tar"), "strict": False}), DistEnv()
        )
    assert [str(w.message).split("['")[1].split("']")[0] for w in seen] == ["encoder", "predictor", "target_encoder"]
    enc = state.encoder.state_dict()
    assert all(torch.equal(enc[k], v) for k, v in want["encoder"].items() if k != "pos_embed")
    assert enc["pos_embed"].shape == (1, 2 * 4 * 4, 48)


def test_a_cooldown_takes_the_first_stages_optimizer_state_and_decays_linearly_on_longer_clips(tmp_path):
    """V-JEPA 2's second phase: a RoPE model pretrained on 4-frame clips goes on with 8-frame clips
    from the first stage's checkpoint, its AdamW moments included, the step back at 1 and the learning
    rate decaying linearly from lr toward final_lr over the stretched schedule."""
    from test_pretrain import tiny_config as pretrain_config

    switches = dict(
        pos_encoding="rope3d", pred_num_heads=2, pred_sort_tokens=True, mask_token_per="group", num_mask_tokens=1
    )
    first = pretrain_config(model=switches, batch_size=4, optim={"iterations": 3, "warmup_iterations": 1})
    first.checkpoint_every = 3
    pretrain(first, MovingSquares(8), tmp_path / "phase1")
    ck = load(tmp_path / "phase1" / "latest.pth.tar")
    assert ck["step"] == 3 and ck["opt"]["state"]

    init = {"checkpoint": str(tmp_path / "phase1" / "latest.pth.tar"), "optimizer": True}
    optim = {"iterations": 2, "lr_schedule": "linear_decay", "warmup_iterations": 0, "lr": 4e-4, "final_lr": 0.0}
    d = copy.deepcopy(TINY)
    d["model"].update(switches, num_frames=8)
    d["optim"].update(optim)
    cooldown = from_dict(PretrainConfig, {**d, "batch_size": 4, "init": init, "checkpoint_every": 2}, "pretrain")
    state = build_state(cooldown, DistEnv())
    loaded = state.optimizer.state_dict()
    for i, s in ck["opt"]["state"].items():  # the moments and step counts, tensor for tensor
        assert loaded["state"][i].keys() == s.keys() and all(
            torch.equal(loaded["state"][i][k], v) for k, v in s.items()
        )
    assert same(state.encoder, strip_prefix(ck["encoder"])) and same(state.predictor, strip_prefix(ck["predictor"]))

    pretrain(cooldown, MovingSquares(8, frames=8), tmp_path / "phase2")
    rows = read_metrics(tmp_path / "phase2")
    total = int(1.25 * 2)  # the stretched schedule (T = int(1.25 x iterations))
    assert [r["lr"] for r in rows] == pytest.approx([4e-4 * (1 - min(s / total, 1)) for s in (1, 2)])
    assert load(tmp_path / "phase2" / "latest.pth.tar")["step"] == 2


def test_a_cooldown_config_refuses_a_warmup_and_a_checkpoint_without_optimizer_state(tmp_path):
    with pytest.raises(Exception, match="warmup_iterations: must be 0 with lr_schedule linear_decay"):
        tiny_config(optim={"lr_schedule": "linear_decay", "warmup_iterations": 5})
    released_like(tmp_path / "vit.pth.tar", tiny_config().model.__dict__)  # an official file: "opt" is empty
    init = {"checkpoint": str(tmp_path / "vit.pth.tar"), "optimizer": True}
    with pytest.raises(CheckpointError, match="holds no optimizer state"):
        build_state(tiny_config(init=init), DistEnv())
