"""The DAG end to end on the smoke profile, in a copy of the checkout: every stage runs and writes
its metrics, the report is built from them, a second `dvc repro` does nothing, and a changed probe
parameter re-runs only the probe that reads it and the report. Plus the stage plumbing."""

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, dvc

from pipeline import plumbing
from pipeline.profiles import available, use_profile


def test_work_dir_resumes_with_the_same_settings_and_starts_over_otherwise(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    w = plumbing.work_dir("pretrain-seed0", {"lr": 1})
    (w / "latest.pth.tar").write_text("step 5")
    assert (plumbing.work_dir("pretrain-seed0", {"lr": 1}) / "latest.pth.tar").read_text() == "step 5"
    assert not (plumbing.work_dir("pretrain-seed0", {"lr": 2}) / "latest.pth.tar").exists()
    out = plumbing.publish(w, Path("runs/pretrain/seed0"))
    assert (out / "settings.json").exists() and not w.exists()


def test_the_default_profile_file_is_params_yaml():
    assert (ROOT / "profiles" / "default.yaml").read_text() == (ROOT / "params.yaml").read_text()
    assert {"default", "smoke", "paper-vitl16", "paper-vith16", "paper-vith16-384"} <= set(available(ROOT))


@pytest.fixture(scope="module")
def smoke_repo(smoke_run):
    return smoke_run.repo, smoke_run.log


def test_the_whole_dag_runs_and_writes_every_stage_metrics_and_the_report(smoke_repo):
    repo, log = smoke_repo
    m = repo / "metrics" / "smoke" / "details"  # everything a stage reports; the metrics files beside hold the headline
    expected = [
        "prepare",
        "masks",
        "pretrain/seed0",
        "pretrain/seed1",
        "probe/k400",
        "probe/ssv2",
        "probe/in1k",
        "probe/places205",
        "probe/inat21",
        "detect",
        "finetune/k400",
        "finetune/ssv2",
        "learn/seed0",
        "learn/seed1",
        "ablate/reference",
        "ablate/copy",
    ]
    for name in expected:
        data = json.loads((m / f"{name}.json").read_text())
        assert data["profile"] == "smoke", name
    assert json.loads((m / "pretrain/seed1.json").read_text())["steps"] == 4
    k400 = json.loads((m / "probe/k400.json").read_text())
    assert set(k400["coverage"]) == {"segments1", "segments2"} and set(k400["top1_by_kind"]) == {"attentive", "linear"}
    learn = json.loads((m / "learn/seed0.json").read_text())
    assert set(learn["top1"]["ssv2"]) == {"pretrained", "random"}
    outcomes = learn["clips"]["ssv2"]["pretrained"]  # per-clip outcomes, for the report's paired verdicts
    assert len(outcomes["correct"]["attentive"]) == len(outcomes["index"]) == 8  # prepare.ssv2_val
    assert json.loads((m / "ablate/copy.json").read_text())["target"] == "copy"
    assert json.loads((m.parent / "ablate/copy.json").read_text()).keys() == {
        "top1_by_kind",
        "final_loss",
        "final_target_std",
    }
    curve = (repo / "metrics/smoke/curves/pretrain/seed1.csv").read_text().splitlines()
    assert curve[0] == "step,loss,target_std,lr" and len(curve) == 1 + 4  # one row per step, what `dvc plots` draws
    report = (repo / "reports" / "smoke" / "README.md").read_text()
    for title in ("Does it learn?", "Frozen evaluation", "Table 11", "Table 12", "Appendix D", "Finetuning"):
        assert title in report
    assert "paired bootstrap over validation clips and seeds" in report and "*Figure 2: Masking ablations" in report
    assert (repo / "reports" / "smoke" / "figures" / "pretraining_curves.png").stat().st_size > 1000
    assert not any((repo / "runs" / ".work").iterdir())  # every finished stage left its work folder


def test_switching_back_to_the_default_profile_leaves_git_status_clean(smoke_repo):
    repo, _ = smoke_repo
    use_profile("default", repo)
    status = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True, check=True)
    assert status.stdout == ""  # params.yaml, dvc.lock, metrics/default, reports/default as committed
    use_profile("smoke", repo)  # and the smoke profile's lock comes back with it


def test_a_second_repro_does_nothing_and_a_probe_param_reruns_only_its_probe(smoke_repo):
    repo, _ = smoke_repo
    assert "Data and pipelines are up to date" in dvc(repo, "repro")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["probe"]["tasks"]["in1k"]["still_frames"] = 4
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = dvc(repo, "status", "--json")
    assert sorted(json.loads(status)) == ["probe@in1k", "report"]  # the report's hyper-parameter tables read it
    log = dvc(repo, "repro")
    ran = sorted(line.split("'")[1] for line in log.splitlines() if line.startswith("Running stage"))
    assert ran == ["probe@in1k", "report"]
