"""Pretraining schedules: the paper run's values (spec 4.4 table), the 1.25 stretch, warmup options."""

import pytest

from vjepa.infra.config import ConfigError, from_dict
from vjepa.infra.configs import OptimConfig
from vjepa.infra.schedules import (
    cosine_weight_decay,
    ema_momentum,
    linear_weight_decay,
    schedule_length,
    warmup_cosine_lr,
)

# step: (LR, WD, EMA momentum) as printed in spec 4.4 for the ViT-L/H run (90,000 steps, warmup 12,000)
PAPER_TABLE = {
    1: ("2.00e-04", "0.0400", "0.998000"),
    12_000: ("6.25e-04", "0.0500", "0.998213"),
    45_000: ("4.73e-04", "0.1644", "0.998800"),
    90_000: ("7.50e-05", "0.3656", "0.999600"),
}


@pytest.mark.parametrize("step", sorted(PAPER_TABLE))
def test_paper_run_schedule_values_match_the_spec_table(step):
    o = OptimConfig()  # defaults are the paper's run
    lr, wd, m = PAPER_TABLE[step]
    assert f"{o.lr_at(step):.2e}" == lr
    assert f"{o.weight_decay_at(step):.4f}" == wd
    assert f"{o.momentum_at(step):.6f}" == m


def test_schedules_run_over_one_and_a_quarter_times_the_training_length():
    o = OptimConfig()
    assert o.schedule_length == schedule_length(90_000, 1.25) == 112_500
    # training stops at 90,000 before the schedules end: LR ~7.5e-5 not 1e-6, EMA 0.9996 not 1.0
    assert o.lr_at(90_000) > 70 * o.final_lr
    assert o.lr_at(112_500) == pytest.approx(1e-6, abs=1e-15)
    assert o.weight_decay_at(112_500) == pytest.approx(0.4)
    assert o.momentum_at(112_501) == pytest.approx(1.0)
    # without the stretch the run would end on the schedules' final values
    plain = OptimConfig(scheduler_scale_factor=1.0)
    assert plain.lr_at(90_000) == pytest.approx(1e-6) and plain.weight_decay_at(90_000) == pytest.approx(0.4)


def test_warmup_is_linear_from_start_lr_and_cosine_after():
    kw = dict(lr=1.0, start_lr=0.2, final_lr=0.0, warmup=10, total=110)
    assert [warmup_cosine_lr(s, **kw) for s in (0, 5, 10)] == pytest.approx([0.2, 0.6, 1.0])
    assert warmup_cosine_lr(60, **kw) == pytest.approx(0.5)  # half-way down the cosine
    assert warmup_cosine_lr(500, **kw) == 0.0  # floored at final_lr


def test_weight_decay_and_momentum_rules():
    assert cosine_weight_decay(50, start=0.04, final=0.4, total=100) == pytest.approx(0.22)
    assert cosine_weight_decay(150, start=0.04, final=0.4, total=100) == pytest.approx(0.4)  # clamped
    assert linear_weight_decay(25, start=0.04, final=0.4, total=100) == pytest.approx(0.13)
    assert ema_momentum(1, start=0.998, final=1.0, total=100) == 0.998
    assert ema_momentum(51, start=0.998, final=1.0, total=100) == pytest.approx(0.999)
    assert OptimConfig(weight_decay_schedule="linear").weight_decay_at(12_000) == pytest.approx(
        0.04 + 0.36 * 12_000 / 112_500
    )


def test_warmup_can_be_a_fraction_of_the_run():
    o = from_dict(OptimConfig, {"warmup_iterations": None, "warmup_iterations_fraction": 0.15})
    assert o.warmup == 13_500  # appendix Table 5's fraction; its text (and the official code) say 12,000
    assert o.lr_at(13_499) < 6.25e-4 and o.lr_at(13_500) == pytest.approx(6.25e-4)


def test_optim_config_rejects_ambiguous_warmup_with_the_key_path():
    with pytest.raises(ConfigError, match="optim.*exactly one of warmup_iterations"):
        from_dict(OptimConfig, {"warmup_iterations_fraction": 0.1}, "optim")
    with pytest.raises(ConfigError, match="optim.lr: expected a number"):
        from_dict(OptimConfig, {"lr": "fast"}, "optim")
