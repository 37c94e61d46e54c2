"""The report's verdicts read the per-clip outcomes the learn and ablate stages write: a paired
interval where they exist, a clear "unavailable" (no invented verdict) where an older metrics file
lacks them."""
import numpy as np

from pipeline import report
from pipeline.report import ablation_reference, section_ablations, section_learn


def learn_metrics(seed, pre, rnd, with_clips=True):
    m = {"seed": seed, "top1": {"ssv2": {"pretrained": {"attentive": 100 * np.mean(pre), "linear": 50.0},
                                         "random": {"attentive": 100 * np.mean(rnd), "linear": 50.0}}},
         "margin": {"ssv2": {"attentive": 100 * (np.mean(pre) - np.mean(rnd)), "linear": 0.0}}}
    if with_clips:
        def enc(c):
            return {"index": list(range(len(c))), "correct": {"attentive": "".join(map(str, c)),
                                                              "linear": "01" * (len(c) // 2)}}
        m["clips"] = {"ssv2": {"pretrained": enc(pre), "random": enc(rnd)}}
    return m


def test_learn_verdicts_come_from_paired_clips_and_say_which_test():
    rng = np.random.default_rng(0)
    learn = {}
    for s in range(3):
        rnd = (rng.random(200) < 0.3).astype(int)
        pre = np.where(rng.random(200) < 0.5, 1, rnd)   # right on about half of random's misses
        learn[f"seed{s}"] = learn_metrics(s, pre, rnd)
    text = section_learn(learn, "test", {"ssv2": "motion"}, {"ssv2": "SSv2 stand-in: motion direction"})
    att = next(line for line in text.splitlines() if "attentive probe:" in line)
    lin = next(line for line in text.splitlines() if "linear probe:" in line)
    assert att.startswith("- SSv2 stand-in: motion direction (motion), attentive probe: pretraining beats random")
    assert "95% interval [+" in att and "paired bootstrap over validation clips and seeds" in att
    assert "200 clips x 3 seeds" in att
    assert "not distinguishable: +0.0 points, 95% interval [+0.0, +0.0]" in lin


def test_metrics_without_per_clip_outcomes_give_no_verdict_but_say_how_to_get_one():
    clips = np.array([1, 0, 1, 1])
    learn = {"seed0": learn_metrics(0, clips, clips, with_clips=False), "seed1": learn_metrics(1, clips, clips)}
    text = section_learn(learn, "test")
    assert (f"Paired verdicts unavailable: {report.METRICS}/learn/seed0.json holds no per-clip outcomes" in text
            and "`dvc repro learn`" in text)
    assert "beats" not in text and "not distinguishable:" not in text


def test_ablation_points_are_compared_with_the_point_that_changes_nothing():
    from types import SimpleNamespace as NS
    P = NS(ablations=NS(points={"low": NS(pretrain={"masks": []}), "base": NS(pretrain={})}))
    assert ablation_reference(P) == "base"
    stats = [{"spatial_masking_ratio": 0.9, "temporal_masking_ratio": 1.0, "context_tokens_mean": 10,
              "target_tokens_mean": 90}]
    def point(name, correct):
        return {"point": name, "label": name, "tables": ["13"], "task": "ssv2", "num_masks": 1,
                "masks": [{"num_blocks": 1}], "mask_statistics": stats, "target": "ema",
                "top1_by_kind": {"attentive": 100 * np.mean(correct), "linear": 50.0},
                "clips": {"index": list(range(len(correct))),
                          "correct": {"attentive": "".join(map(str, correct)), "linear": "10" * (len(correct) // 2)}}}
    base = np.ones(100, dtype=int)
    low = base.copy()
    low[:40] = 0
    text = section_ablations({"base": point("base", base), "low": point("low", low)}, "test", "base")
    assert "- low, attentive probe: loses to `base`: -40.0 points" in text
    assert "paired bootstrap over validation clips (one seed)" in text
    assert "- low, linear probe: not distinguishable from `base`" in text
