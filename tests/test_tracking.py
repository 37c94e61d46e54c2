"""MLflow tracking of stage runs: a local SQLite store by default, a tracking server over REST,
and a server that is down never failing a stage."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from pipeline import tracking


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_a_stage(tags=None):
    with tracking.stage_run("probe", params={"probe": {"lr": 1e-3, "heads": 12}, "task": "ssv2"},
                            tags={"ablation": "masks=2", **(tags or {})}) as t:
        for step in range(3):
            t.metrics({"loss": 1.0 / (step + 1)}, step=step)
        t.metrics({"top1": {"attentive": 0.75}})
        return t.run_id


def test_default_store_is_an_absolute_sqlite_file_at_the_dvc_root(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path.parent)  # e.g. a temporary experiment copy elsewhere
    assert tracking.tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.delenv("DVC_ROOT")
    exp = tmp_path / ".dvc" / "tmp" / "exps" / "tmpabc"
    exp.mkdir(parents=True)
    monkeypatch.chdir(exp)
    assert tracking.repo_root() == tmp_path.resolve()


def test_a_stage_run_is_readable_through_the_client(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("DVC_EXP_NAME", "exp-masks")
    run_id = log_a_stage()
    run = MlflowClient(uri).get_run(run_id)
    assert run.data.params["probe.lr"] == "0.001" and run.data.params["task"] == "ssv2"
    assert run.data.metrics["top1.attentive"] == 0.75
    assert [m.value for m in MlflowClient(uri).get_metric_history(run_id, "loss")] == [1.0, 0.5, 1 / 3]
    assert run.data.tags["stage"] == "probe" and run.data.tags["dvc_experiment"] == "exp-masks"
    assert run.data.tags["ablation"] == "masks=2" and run.info.status == "FINISHED"


def test_an_unreachable_server_warns_and_the_stage_goes_on(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    with pytest.warns(UserWarning, match="not reachable"):
        run_id = log_a_stage()
    assert run_id is None


def test_runs_are_readable_over_the_rest_api_of_a_local_server(tmp_path, monkeypatch):
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp_path}/server.db", "--default-artifact-root", str(tmp_path / "art")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                if urllib.request.urlopen(base + "/health", timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("MLflow server did not become healthy within 90 s")
        monkeypatch.setenv("MLFLOW_TRACKING_URI", base)
        run_id = log_a_stage()
        with urllib.request.urlopen(f"{base}/api/2.0/mlflow/runs/get?run_id={run_id}", timeout=10) as r:
            run = json.load(r)["run"]
        params = {p["key"]: p["value"] for p in run["data"]["params"]}
        metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
        tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
        assert params["probe.heads"] == "12" and metrics["top1.attentive"] == 0.75
        assert tags["stage"] == "probe" and run["info"]["status"] == "FINISHED"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
