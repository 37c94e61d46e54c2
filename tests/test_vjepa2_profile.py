"""V-JEPA 2's whole DAG, shrunk to CPU size, through `dvc repro` on data in the datasets' release
layouts (tests/release_tree.py): RoPE models, the constant schedule, sampling at 4 frames per second,
the cooldown stage from the first stage's checkpoint and optimizer state, the 4-block probes,
detection, finetuning, `learn`, two ablation points and the report, all reading the cooldown's
encoders. Its own file, so that the test runner can run it beside the paper-vitl16 DAG."""

import shutil

from conftest import checkout_copy
from test_paper_profiles import VJEPA2, VJEPA2_POINTS, run_end_to_end

from vjepa.infra.checkpoint import load


def test_the_vjepa2_profile_runs_end_to_end_with_its_cooldown(release_tree, tmp_path):
    repo = checkout_copy(tmp_path / "repo", without=("metrics/", "reports/", "dvc.lock"))
    metrics = run_end_to_end(repo, VJEPA2, release_tree)
    assert metrics["details/pretrain/seed0.json"]["steps"] == 2 and metrics["details/cooldown/seed0.json"]["steps"] == 2
    first = load(repo / "runs" / "pretrain" / "seed0" / "checkpoint.pth.tar")
    cooled = load(repo / "runs" / "cooldown" / "seed0" / "checkpoint.pth.tar")
    assert first["preprocessing"]["fps"] == 4 and first["preprocessing"]["frame_step"] is None
    assert cooled["preprocessing"]["num_frames"] == 8 and cooled["config"]["model"]["pos_encoding"] == "rope3d"
    # AdamW went on from the first stage: 2 steps there, then 2 more
    assert {float(s["step"]) for s in cooled["opt"]["state"].values()} == {4.0}
    for stage in ("probe/k400", "probe/in1k", "detect"):
        assert metrics[f"details/{stage}.json"]["encoder"].endswith("runs/cooldown/seed0/checkpoint.pth.tar"), stage
    assert metrics["details/finetune/ssv2.json"]["checkpoint"].endswith("runs/cooldown/seed0/checkpoint.pth.tar")
    runs = metrics["details/probe/k400.json"]["runs"]
    assert set(next(iter(runs.values()))["best_probe_by_kind"]) == {"attentive4"}
    assert sorted(k for k in metrics if k.startswith("ablate/")) == sorted(f"ablate/{p}.json" for p in VJEPA2_POINTS)
    report = (repo / "reports" / f"test-{VJEPA2}" / "README.md").read_text()
    assert "attentive4" in report and "Table 13" in report
    shutil.rmtree(repo)
