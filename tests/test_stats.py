"""The paired verdict on synthetic per-clip outcomes: a real difference comes out with its interval,
equal encoders come out "not distinguishable" (and are called different about 5% of the time, no
more), and three identical small margins do not make a significant one."""

import numpy as np
import pandas as pd
import pytest

from vjepa.evals.stats import clip_outcomes, paired_bootstrap, paired_outcomes


def outcomes(rng, accuracy, seeds=3, clips=300):
    return (rng.random((seeds, clips)) < accuracy).astype(int)


def test_a_real_difference_is_reported_with_an_interval_around_it():
    rng = np.random.default_rng(1)
    b = outcomes(rng, 0.5)
    a = b.copy()
    flip = (b == 0) & (rng.random(b.shape) < 0.4)  # A gets ~40% of B's misses right: +20 points
    a[flip] = 1
    r = paired_bootstrap(a, b)
    assert r.verdict == "better"
    assert r.difference == pytest.approx(100 * (a.mean() - b.mean()))
    assert 0 < r.low < r.difference < r.high
    assert r.low < 20 < r.high and r.high - r.low < 12  # covers the +20 built in; ~60 discordant clips a seed
    assert r.seeds == 3 and r.clips == 300 and all(w == 0 for _, w in r.discordant)
    swapped = paired_bootstrap(b, a)
    assert swapped.verdict == "worse" and swapped.high == pytest.approx(-r.low)


def test_equal_encoders_are_not_distinguishable():
    rng = np.random.default_rng(2)
    a = outcomes(rng, 0.4)
    same = paired_bootstrap(a, a)
    assert same.verdict == "not distinguishable" and same.low == same.high == 0
    calls = [
        paired_bootstrap(outcomes(rng, 0.4, clips=100), outcomes(rng, 0.4, clips=100), resamples=1000, seed=i).verdict
        for i in range(100)
    ]
    assert calls.count("not distinguishable") >= 88  # a 95% interval: ~5 of 100 wrongly called


def test_three_identical_margins_do_not_make_a_significant_one():
    rng = np.random.default_rng(3)
    b = outcomes(rng, 0.3)
    a = b.copy()
    for s in range(3):  # per seed: A right on 6 clips B misses, wrong on 5 B gets: the same +1 clip margin
        wins = rng.choice(np.flatnonzero(b[s] == 0), 6, replace=False)
        losses = rng.choice(np.flatnonzero(b[s] == 1), 5, replace=False)
        a[s, wins], a[s, losses] = 1, 0
    net = a.sum(1) - b.sum(1)
    assert net.tolist() == [1, 1, 1]  # margins of +1/3 point each: zero seed-to-seed spread
    r = paired_bootstrap(a, b)
    assert r.verdict == "not distinguishable" and r.low < 0 < r.high
    assert r.discordant == [(6, 5)] * 3


def test_outcomes_pair_by_clip_index_and_keep_only_the_clips_every_run_read(tmp_path):
    rows = []
    for probe, preds in (("attentive_a", [0, 1, 1]), ("linear_b", [1, 1, 0])):
        rows += [{"probe": probe, "index": i, "label": 1, "predicted": p} for i, p in zip([2, 0, 1], preds)]
    pd.DataFrame(rows).to_csv(tmp_path / "predictions.csv", index=False)
    o = clip_outcomes(tmp_path, {"best_probe_by_kind": {"attentive": "attentive_a", "linear": "linear_b"}})
    assert o["index"] == [0, 1, 2] and o["correct"] == {"attentive": "110", "linear": "101"}
    other = {"index": [0, 2], "correct": {"attentive": "01"}}  # clip 1 failed to decode in this run
    a, b = paired_outcomes([o], [other], "attentive")
    assert a.tolist() == [[1, 0]] and b.tolist() == [[0, 1]]
    with pytest.raises(ValueError, match="same shape"):
        paired_bootstrap([1, 0], [1, 0, 1])
