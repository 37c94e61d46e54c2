"""The report's verdicts read the per-clip outcomes the learn and ablate stages write: a paired
interval where they exist, a clear "unavailable" (no invented verdict) where an older metrics file
lacks them."""

import json
import os

import numpy as np
import pytest

from pipeline import report
from pipeline.report import section_ablations, section_learn
from pipeline.tracking import ablation_reference


def learn_metrics(seed, pre, rnd, with_clips=True):
    m = {
        "seed": seed,
        "top1": {
            "ssv2": {
                "pretrained": {"attentive": 100 * np.mean(pre), "linear": 50.0},
                "random": {"attentive": 100 * np.mean(rnd), "linear": 50.0},
            }
        },
        "margin": {"ssv2": {"attentive": 100 * (np.mean(pre) - np.mean(rnd)), "linear": 0.0}},
    }
    if with_clips:

        def enc(c):
            return {
                "index": list(range(len(c))),
                "correct": {"attentive": "".join(map(str, c)), "linear": "01" * (len(c) // 2)},
            }

        m["clips"] = {"ssv2": {"pretrained": enc(pre), "random": enc(rnd)}}
    return m


def test_learn_verdicts_come_from_paired_clips_and_say_which_test():
    rng = np.random.default_rng(0)
    learn = {}
    for s in range(3):
        rnd = (rng.random(200) < 0.3).astype(int)
        pre = np.where(rng.random(200) < 0.5, 1, rnd)  # right on about half of random's misses
        learn[f"seed{s}"] = learn_metrics(s, pre, rnd)
    text = section_learn(learn, "test", {"ssv2": "motion"}, {"ssv2": "SSv2 stand-in: motion direction"})
    att = next(
        line
        for line in text.splitlines()
        if line.startswith("| SSv2 stand-in: motion direction (motion) | attentive | +")
    )
    lin = next(
        line for line in text.splitlines() if line.startswith("| SSv2 stand-in: motion direction (motion) | linear | +")
    )
    assert att.split(" | ")[3].startswith("[+") and att.split(" | ")[4] == "better"
    assert "Test: paired bootstrap over validation clips and seeds" in text and "200 validation clips x 3 seeds" in text
    assert lin.split(" | ")[2:5] == ["+0.0", "[+0.0, +0.0]", "not distinguishable"]


def test_metrics_without_per_clip_outcomes_give_no_verdict_but_say_how_to_get_one():
    clips = np.array([1, 0, 1, 1])
    learn = {"seed0": learn_metrics(0, clips, clips, with_clips=False), "seed1": learn_metrics(1, clips, clips)}
    text = section_learn(learn, "test")
    assert (
        f"Paired verdicts unavailable: {report.METRICS}/details/learn/seed0.json holds no per-clip outcomes" in text
        and "`dvc repro learn`" in text
    )
    assert "beats" not in text and "not distinguishable:" not in text


def test_ablation_points_are_compared_with_the_point_that_changes_nothing():
    from types import SimpleNamespace as NS

    P = NS(ablations=NS(points={"low": NS(pretrain={"masks": []}), "base": NS(pretrain={})}))
    assert ablation_reference(P) == "base"
    stats = [
        {
            "spatial_masking_ratio": 0.9,
            "temporal_masking_ratio": 1.0,
            "context_tokens_mean": 10,
            "target_tokens_mean": 90,
        }
    ]

    def point(name, correct):
        return {
            "point": name,
            "label": name,
            "tables": ["13"],
            "task": "ssv2",
            "num_masks": 1,
            "masks": [{"num_blocks": 1}],
            "mask_statistics": stats,
            "target": "ema",
            "top1_by_kind": {"attentive": 100 * np.mean(correct), "linear": 50.0},
            "clips": {
                "index": list(range(len(correct))),
                "correct": {"attentive": "".join(map(str, correct)), "linear": "10" * (len(correct) // 2)},
            },
        }

    base = np.ones(100, dtype=int)
    low = base.copy()
    low[:40] = 0
    text = section_ablations({"base": point("base", base), "low": point("low", low)}, "test", "base")
    assert "| low | attentive | -40.0 | [" in text and "| worse |" in text
    assert "paired bootstrap over validation clips (one seed)" in text
    assert (
        next(line for line in text.splitlines() if line.startswith("| low | linear |")).split(" | ")[4]
        == "not distinguishable"
    )


# ----------------------------------------------------------------------------------------------
# The committed default profile's report (issue 32): built from metrics/default alone


@pytest.fixture(scope="module")
def default_report(tmp_path_factory):
    """reports/default rebuilt from the committed metrics/default in a scratch folder."""
    import shutil
    from pathlib import Path

    from pipeline.config import load as load_params

    root = Path(__file__).resolve().parents[1]
    work = tmp_path_factory.mktemp("report")
    shutil.copytree(root / "metrics" / "default", work / "metrics" / "default")
    P = load_params(str(root / "params.yaml"))
    old = Path.cwd()
    os.chdir(work)
    try:
        path = report.build_report(P)
        return P, path.read_text(), work
    finally:
        os.chdir(old)


def _rows(text, start):
    return [line for line in text.splitlines() if line.startswith(start)]


def test_the_reference_point_is_not_called_paper(default_report):
    P, text, _ = default_report
    assert ablation_reference(P) == "reference" and "paper" not in P.ablations.points
    assert "against the reference point `reference`" in text and "`paper`" not in text


def test_the_papers_ablation_numbers_sit_in_our_tables_in_percent_with_their_setup(default_report):
    _, text, _ = default_report
    t13 = text.split("### Table 13")[1].split("###")[0]
    assert "| paper: 112 px x1, 16 of 16 frames | 1 | 1 | 0.25 | 1.00 | – | – | ema | – | 23.0 | – |" in t13
    assert "| ours: reference (8x0.15 + 2x0.7) |" in t13
    t15 = text.split("### Table 15")[1].split("###")[0]
    assert "| paper: 2 mask(s) of 2 x 160 px | 2 | 2/2 |" in t15 and "| 55.0 |" in t15
    assert "paper: ViT-B/16 pretrained on K400, K400 linear probe" in text
    assert "Table 13 100% depth/25% area: 0.23" not in text  # no run-on paragraph of fractions


def test_verdicts_are_a_table_with_the_margin_interval_and_verdict(default_report):
    _, text, work = default_report
    copy = _rows(text, "| copy target (no EMA), reference masks | attentive |")
    assert copy == ["| copy target (no EMA), reference masks | attentive | -28.0 | [-34.7, -21.3] | worse | 23/107 |"]
    assert not [line for line in text.splitlines() if line.startswith("- ") and "probe:" in line]
    saved = json.loads((work / "reports/default/verdicts/ablate/target-copy.json").read_text())
    assert saved["attentive"]["verdict"] == "worse" and saved["attentive"]["margin"] == pytest.approx(-28.0, abs=0.01)
    assert saved["against"] == "reference"


def test_stand_in_tasks_are_named_where_their_numbers_are_shown(default_report):
    _, text, _ = default_report
    assert _rows(text, "| Places205 | ours: Places205 stand-in: footage scene | 1 | 92.2 | 60.3 |")
    assert _rows(text, "| Places205 stand-in: footage scene (ours, default, 1 clip) | 86.7 | 92.2 |")
    assert _rows(text, "| K400 stand-in: digit class, moving digits | 5 x 1 | 21.3 | 62.0 | 8 | 46.7 |")  # finetuning
    assert "## Frozen detection (AVA format, default profile: AVA stand-in: moving-digit actions)" in text


def test_each_table_states_clips_seeds_and_probe(default_report):
    _, text, _ = default_report
    learn = text.split("## Does it learn?")[1].split("##")[0]
    frozen = text.split("## Frozen evaluation")[1].split("##")[0]
    assert "*Clips: 1 clip per video; seeds: 3; probe: attentive and linear" in learn
    assert "| K400 | ours: K400 stand-in: digit class, moving digits | 8 | 46.7 |" in frozen  # 8 clips, stated
    accuracy = [
        s
        for s in text.split("\n## ")
        if s.startswith(("Does it learn", "Frozen evaluation", "Tables 9", "Table 11", "Masking"))
    ]
    assert len(accuracy) == 5
    evaluated = [s for s in text.split("\n## ") if s.startswith(("Finetuning", "Frozen detection"))]
    assert len(evaluated) == 2  # the default profile finetunes and detects: both sections are there
    accuracy += evaluated
    for section in accuracy:
        assert "Clips:" in section and "seeds:" in section and "probe:" in section, section[:80]


def test_mixup_switched_off_by_the_profile_is_named_at_table_8(default_report):
    P, text, _ = default_report
    t8 = text.split("### Table 8")[1].split("##")[0]
    assert "| mixup_prob | 1.0 | 0.0 |" in t8
    assert "Switched off in the default profile, used by the paper: mixup and cutmix (mixup_prob 0.0" in t8


def test_the_masking_figure_draws_no_seed_spread_error_bars(default_report):
    _, text, _ = default_report
    assert "seed-to-seed s.d." not in text and "error bars: the seed spread" not in text


def test_samples_seen_and_seed_counts_read_in_their_own_units():
    from pipeline.report import _n, _samples

    assert [_samples(n) for n in (16, 41_472, 2_304_000, 270_000_000)] == ["16", "41.5k", "2.3M", "270.0M"]
    assert (_n(1, "seed"), _n(3, "seed")) == ("1 seed", "3 seeds")
