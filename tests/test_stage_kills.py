"""Stage plumbing that survives a kill at any moment, each moment simulated on the work folder
(a real kill of a training run is too slow for the suite)."""

import errno
import json
import os
from pathlib import Path

import pytest
import torch

from pipeline import plumbing, tracking
from vjepa.infra import runtime
from vjepa.infra.checkpoint import save_atomic
from vjepa.infra.runtime import JsonlLog, WriteError, write_json


def test_a_temporary_checkpoint_left_by_a_kill_during_a_save_is_never_published(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    work = plumbing.work_dir("pretrain-seed0", {"lr": 1})
    save_atomic({"w": torch.ones(3)}, work / "checkpoint.pth.tar")
    (work / ".latest.pth.tar.k2j4.tmp").write_bytes(b"half a checkpoint")  # what save_atomic's temp file looks like
    (work / "probe").mkdir()
    (work / "probe" / "metrics.json.tmp").write_text("{")
    out = plumbing.publish(work, Path("runs/pretrain/seed0"))
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == ["checkpoint.pth.tar", "settings.json"]


def test_a_kill_between_finishing_and_publishing_resumes_as_finished(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    calls = []

    def compute():
        calls.append(1)
        return {"steps": 300, "final_loss": 0.0881}

    work = plumbing.work_dir("pretrain-seed0", {"lr": 1})
    assert plumbing.once(work, compute) == {"steps": 300, "final_loss": 0.0881}
    # killed here: the result is recorded, nothing published; the stage runs again
    work = plumbing.work_dir("pretrain-seed0", {"lr": 1})
    assert plumbing.once(work, compute) == {"steps": 300, "final_loss": 0.0881} and calls == [1]
    out = plumbing.publish(work, Path("runs/pretrain/seed0"))
    assert not (out / plumbing.RESULT).exists()


def test_a_partial_last_line_of_the_metrics_log_is_dropped_with_a_warning_and_the_run_resumes(tmp_path):
    log = tmp_path / "metrics.jsonl"
    log.write_text('{"step": 1, "loss": 0.5}\n{"step": 2, "loss": 0.4}\n{"step": 3, "lo')  # a full disk mid-line
    with pytest.warns(UserWarning, match=f"{log}: dropped a partial last line"):
        resumed = JsonlLog(log, resume_step=2)
    resumed.write({"step": 3, "loss": 0.3})
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [1, 2, 3]
    log.write_text('{"step": 1}\n{"st\n{"step": 3}\n')
    with pytest.raises(ValueError, match=f"{log}:2: not a JSON line"):
        JsonlLog(log, resume_step=3)


def test_a_stage_rerun_after_a_kill_resumes_its_run_instead_of_opening_a_second(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "killed-stage")
    monkeypatch.setenv("DVC_STAGE", "probe@k400")
    monkeypatch.delenv("VJEPA_MLFLOW", raising=False)
    client = MlflowClient(uri)
    exp = client.create_experiment("killed-stage")
    # what a kill leaves: the stage's run still RUNNING (MLflow never heard it end), and an older
    # interrupted run of the same stage with other settings
    other = client.create_run(exp, tags={"stage_key": "probe@k400", "profile": "p"}).info.run_id
    client.log_param(other, "a", "2")
    client.set_terminated(other, "KILLED")
    killed = client.create_run(exp, tags={"stage_key": "probe@k400", "profile": "p"}).info.run_id
    client.log_param(killed, "a", "1")
    with tracking.stage_run("probe", {"a": 1}, {"profile": "p"}) as t:  # the stage's next run
        again = t.run_id
    assert again == killed and client.get_run(killed).info.status == "FINISHED"
    assert client.get_run(other).info.lifecycle_stage == "deleted"
    assert [r.info.run_id for r in client.search_runs([exp])] == [killed]  # one run of the stage
    with tracking.stage_run("probe", {"a": 1}, {"profile": "p"}) as t:  # a later, finished-then-rerun: a new run
        assert t.run_id != killed


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_a_failed_write_names_the_full_path_and_the_cause(tmp_path, monkeypatch, code):
    if code == errno.ENOSPC:  # a full disk: the temporary file is /dev/full
        monkeypatch.setattr(
            runtime.tempfile,
            "mkstemp",
            lambda dir, prefix, suffix: (os.open("/dev/full", os.O_WRONLY), str(tmp_path / "x.tmp")),
        )
    else:  # a read-only folder

        def refuse(dir, prefix, suffix):
            raise OSError(code, os.strerror(code))

        monkeypatch.setattr(runtime.tempfile, "mkstemp", refuse)
    name = errno.errorcode[code]
    with pytest.raises(WriteError, match=f"cannot write {tmp_path / 'ckpt.pth.tar'}: {name}"):
        save_atomic({"w": torch.zeros(4096)}, tmp_path / "ckpt.pth.tar")
    with pytest.raises(WriteError, match=f"cannot write {tmp_path / 'm.json'}: {name}"):
        write_json(tmp_path / "m.json", {"a": 1})
    assert not (tmp_path / "ckpt.pth.tar").exists() and not (tmp_path / "m.json").exists()
