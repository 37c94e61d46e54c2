"""A stage's work folder is keyed by the content of what it reads, one process works in it at a
time, and a stage started by `dvc repro` stops when that dvc process dies."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, dvc, run_dvc

from pipeline import plumbing


def test_a_changed_upstream_output_starts_the_work_over_and_names_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    ckpt, ann = Path("runs/pretrain/seed0/checkpoint.pth.tar"), tmp_path / "train.csv"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"weights A")
    ann.write_text("label,youtube_id\n")
    w = plumbing.work_dir("probe-k400", {"lr": 1}, [ckpt], [ann])
    (w / "latest.pth.tar").write_text("epoch 3")
    assert (plumbing.work_dir("probe-k400", {"lr": 1}, [ckpt], [ann]) / "latest.pth.tar").exists()
    assert "resuming the interrupted run" in capsys.readouterr().out
    ckpt.write_bytes(b"weights B")  # the same path, other content: a re-trained encoder
    w = plumbing.work_dir("probe-k400", {"lr": 1}, [ckpt], [ann])
    assert not (w / "latest.pth.tar").exists()
    assert f"starting over: inputs.{ckpt} changed" in capsys.readouterr().out
    (w / "latest.pth.tar").write_text("epoch 1")
    ann.write_text("label,youtube_id\nabseiling,x\n")  # an edited annotation file
    assert not (plumbing.work_dir("probe-k400", {"lr": 1}, [ckpt], [ann]) / "latest.pth.tar").exists()
    assert f"starting over: inputs.{ann} changed" in capsys.readouterr().out
    plumbing.work_dir("probe-k400", {"lr": 2}, [ckpt], [ann])
    assert "starting over: settings.lr changed" in capsys.readouterr().out


def test_a_folder_input_is_keyed_by_every_file_in_it(tmp_path):
    data = tmp_path / "prepared"
    (data / "k400").mkdir(parents=True)
    (data / "k400" / "a.mp4").write_bytes(b"1")
    before = plumbing.input_stamps([data])
    (data / "k400" / "a.mp4").write_bytes(b"2")
    assert plumbing.input_stamps([data]) != before
    assert plumbing.input_stamps([tmp_path / "absent"]) == {str(tmp_path / "absent"): None}


_HOLD = textwrap.dedent("""
    import os, sys, time
    os.chdir(sys.argv[1])
    from pipeline import plumbing
    plumbing.work_dir("probe-k400", {"lr": 1})
    print("holding", flush=True)
    time.sleep(60)
""")


def test_a_second_process_is_refused_the_work_folder_naming_the_holder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(plumbing.StageBusy, match=f"runs/.work/probe-k400 is in use by pid {holder.pid} on "):
            plumbing.work_dir("probe-k400", {"lr": 1})
        done = subprocess.run(
            [sys.executable, "-m", "pipeline", "probe", "k400", "--params", str(ROOT / "params.yaml")],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env={**os.environ, "VJEPA_MLFLOW": "0", "PYTHONPATH": str(ROOT)},
        )
        assert done.returncode == 2 and f"is in use by pid {holder.pid}" in done.stderr
    finally:
        holder.kill()
        holder.wait()
    plumbing.work_dir("probe-k400", {"lr": 1})  # free again once the holder is gone


_FAKE_DVC = textwrap.dedent("""
    import os, subprocess, sys, time
    # what dvc does: the stage's command under `$SHELL -c`, with DVC_STAGE set
    child = subprocess.Popen(["bash", "--noprofile", "--norc", "-c",
                              f"{sys.executable} -c '{sys.argv[2]}' {sys.argv[1]}; echo shell-done"],
                             env={**os.environ, "DVC_STAGE": "probe@k400"})
    print(child.pid, flush=True)
    time.sleep(60)
""")


def test_a_stage_whose_dvc_parent_dies_stops_instead_of_running_on(tmp_path):
    stage = _HOLD.replace('"holding"', '"holding", os.getpid()')
    fake = subprocess.Popen(
        [sys.executable, "-c", _FAKE_DVC, str(tmp_path), stage],
        stdout=subprocess.PIPE,
        text=True,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    fake.stdout.readline()
    line = fake.stdout.readline().split()
    assert line[0] == "holding"
    stage_pid = int(line[1])
    fake.send_signal(signal.SIGKILL)  # what a SIGKILL (or an unhandled SIGTERM) to dvc leaves: its stage orphaned
    fake.wait()
    deadline = time.time() + 20
    while (
        time.time() < deadline
        and Path(f"/proc/{stage_pid}").exists()
        and Path(f"/proc/{stage_pid}/stat").read_text().split(")")[1].split()[0] != "Z"
    ):
        time.sleep(0.2)
    alive = (
        Path(f"/proc/{stage_pid}").exists()
        and Path(f"/proc/{stage_pid}/stat").read_text().split(")")[1].split()[0] != "Z"
    )
    if alive:
        os.kill(stage_pid, signal.SIGKILL)
    assert not alive, "the orphaned stage ran on after its dvc process died"


@pytest.fixture
def smoke_copy(smoke_run, tmp_path):
    """A copy of the smoke run's checkout (outputs, cache and lock included), for tests that change it."""
    repo = tmp_path / "repo"
    shutil.copytree(smoke_run.repo, repo, symlinks=True)
    return repo


def test_dvc_repro_after_a_kill_and_an_upstream_change_starts_over_instead_of_resuming(smoke_copy):
    repo = smoke_copy
    # what kills left: probe@k400's work folder (after its last epoch) and pretrain@1's (after its last step)
    shutil.copytree(repo / "runs/probe/k400", repo / "runs/.work/probe-k400")
    shutil.copytree(repo / "runs/pretrain/seed1", repo / "runs/.work/pretrain-seed1")
    (repo / "runs/.work/pretrain-seed1/checkpoint.pth.tar").rename(repo / "runs/.work/pretrain-seed1/latest.pth.tar")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["pretrain"]["train"]["optim"]["lr"] *= 2  # another encoder for the probe, on the same data
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    log = dvc(repo, "repro", "probe@k400")
    assert "[probe-k400] starting over: inputs.runs/pretrain/seed0/checkpoint.pth.tar changed" in log
    assert "[probe-k400] resuming" not in log
    assert (
        json.loads((repo / "metrics/smoke/details/probe/k400.json").read_text())["runs"]["segments1"]["num_train"] > 0
    )
    params["pretrain"]["train"]["optim"]["lr"] /= 2
    params["prepare"]["seed"] += 1  # other data, the same pretraining settings
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    log = dvc(repo, "repro", "pretrain@1")
    # the prepared folder and the pretraining list in it (stamped by content) both changed
    assert "[pretrain-seed1] starting over: inputs.data/prepared, inputs.data/prepared/pretrain/k710.csv changed" in log
    assert "[pretrain-seed1] resuming" not in log


def test_an_edit_to_a_module_changes_only_the_stages_that_run_it(smoke_copy):
    repo = smoke_copy
    ablations = yaml.safe_load((repo / "params.yaml").read_text())["ablations"]["points"]
    with open(repo / "vjepa" / "evals" / "detect.py", "a") as f:
        f.write("\n# a comment\n")
    assert sorted(json.loads(dvc(repo, "status", "--json"))) == ["detect"]  # not the days of pretraining
    with open(repo / "vjepa" / "jepa" / "step.py", "a") as f:
        f.write("\n# a comment\n")
    changed = sorted(json.loads(dvc(repo, "status", "--json")))
    # the stages that run the JEPA step; what reads their outputs re-runs if those outputs change
    assert changed == sorted(["detect", "pretrain@0", "pretrain@1", *(f"ablate@{p}" for p in ablations)])
    with open(repo / "vjepa" / "train" / "batches.py", "a") as f:
        f.write("\n# a comment\n")
    changed = sorted(json.loads(dvc(repo, "status", "--json")))  # the batches both training loops read
    assert changed == sorted(
        ["detect", "pretrain@0", "pretrain@1", "finetune@k400", "finetune@ssv2", *(f"ablate@{p}" for p in ablations)]
    )


def test_a_probe_on_a_root_without_videos_stops_and_never_publishes_a_probe_trained_on_nothing(smoke_copy):
    repo = smoke_copy
    videos = repo / "data/prepared/k400/videos"

    def probe_k400():
        return run_dvc(repo, "repro", "-f", "-s", "probe@k400")

    videos.rename(repo / "data/prepared/k400/videos.away")  # a root where none of the listed clips is
    failed = probe_k400()  # the small suite's lists are read with their files checked: refused before any training
    assert failed.returncode != 0
    assert "data/prepared/k400/annotations/train.csv:2: clip not found: data/prepared/k400/videos/" in failed.stderr
    assert not list((repo / "runs/.work/probe-k400").rglob("probe_state.pt"))
    (repo / "data/prepared/k400/videos.away").rename(videos)
    # every clip there but none decodable (what a wrong root gives on a real-data profile, whose probes do
    # not stat the files): the first epoch trains on nothing and the stage stops there
    saved = repo / "k400-videos.saved"
    shutil.copytree(videos, saved)
    for clip in videos.rglob("*.mp4"):
        clip.write_bytes(b"")
    failed = probe_k400()
    # the frozen-feature pass stops at its first batch, naming the count and the files
    assert (
        failed.returncode != 0
        and "error: probe k400: probe training set: 8 of 40 files could not be decoded" in failed.stderr
        and "Traceback" not in failed.stderr
    )
    assert not list((repo / "runs/.work/probe-k400").rglob("probe_state.pt"))  # no state saved from that epoch
    shutil.rmtree(videos)
    saved.rename(videos)  # the videos back: a clean run, not a resume
    log = dvc(repo, "repro", "-f", "-s", "probe@k400")
    assert "[probe-k400] resuming" not in log
    run = json.loads((repo / "metrics/smoke/details/probe/k400.json").read_text())["runs"]["segments1"]
    assert run["num_train"] == 40 and run["skipped_train"] == 0  # prepare.k400_train of the smoke profile


def test_a_cooldown_stage_goes_on_from_each_seeds_pretraining_with_its_optimizer_state(smoke_copy):
    """V-JEPA 2's second stage through `dvc repro` on the smoke profile: cooldown@<seed> starts from
    the published pretraining checkpoint with its AdamW state (the moments' step counts go on from
    there), decays the learning rate linearly, and the evaluations then read its encoders."""
    from vjepa.infra.checkpoint import load

    repo = smoke_copy
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["cooldown"] = {
        "seeds": params["seeds"],
        "evaluate": "cooldown",
        "train": {"optim": {"iterations": 2, "lr_schedule": "linear_decay", "warmup_iterations": 0, "final_lr": 0.0}},
    }
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    changed = sorted(json.loads(dvc(repo, "status", "--json")))
    assert {f"cooldown@{s}" for s in params["seeds"]} <= set(changed)  # new stages
    assert {"probe@k400", "detect", "learn@0"} <= set(changed)  # they read the cooldown's encoders now
    assert not any(s.startswith("pretrain@") for s in changed)  # the first stage stays as it ran

    dvc(repo, "repro", "cooldown@0")
    first = load(repo / "runs/pretrain/seed0/checkpoint.pth.tar")
    cooled = load(repo / "runs/cooldown/seed0/checkpoint.pth.tar")
    assert cooled["step"] == 2 and cooled["config"]["init"]["optimizer"] is True
    steps = {int(s["step"]) for s in first["opt"]["state"].values()}
    assert {int(s["step"]) for s in cooled["opt"]["state"].values()} == {n + 2 for n in steps}  # AdamW went on
    rows = [json.loads(line) for line in (repo / "runs/cooldown/seed0/metrics.jsonl").read_text().splitlines()]
    lr = params["pretrain"]["train"]["optim"]["lr"]
    total = int(params["pretrain"]["train"]["optim"].get("scheduler_scale_factor", 1.25) * 2)
    assert [r["lr"] for r in rows] == pytest.approx([lr * (1 - s / total) for s in (1, 2)])
