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
    with tracking.stage_run(
        "probe",
        params={"probe": {"lr": 1e-3, "heads": 12}, "task": "ssv2"},
        tags={"ablation": "masks=2", **(tags or {})},
    ) as t:
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
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{tmp_path}/server.db",
            "--default-artifact-root",
            str(tmp_path / "art"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
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


def test_ablation_runs_form_the_ablation_table_ordered_by_the_headline_accuracy(tmp_path, monkeypatch):
    """Three grid points of the smoke profile, logged as the ablate stage logs them (real mask
    statistics on the smoke grid, given probe accuracies), come back from search_runs ordered by
    metrics.top1_attentive, in an experiment of their own, with the axes as scalar params."""
    from mlflow.tracking import MlflowClient

    from pipeline.config import from_mapping
    from pipeline.profiles import resolve
    from vjepa.jepa.masks import mask_statistics

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    params = resolve("smoke")
    params["ablations"]["points"]["ratio-low"] = {
        "tables": ["13"],
        "label": "1 block x 0.25",
        "pretrain": {"masks": [{"num_blocks": 1, "spatial_scale": [0.25, 0.25]}]},
    }
    P = from_mapping(params)
    top1 = {"reference": (41.5, 20.0), "copy": (12.5, 10.0), "ratio-low": (25.0, 17.5)}
    logged = {}
    for point, (attentive, linear) in top1.items():
        spec, cfg = P.ablations.points[point], P.pretrain_config(0, point)
        stats = [mask_statistics(m, cfg.model.grid, batch_size=4, num_batches=3) for m in cfg.masks]
        logged[point] = stats
        with tracking.stage_run(
            "ablate", {"point": point}, {"ablation": point}, experiment=tracking.ablation_experiment("smoke")
        ) as t:
            tracking.log_ablation(
                t,
                point,
                spec,
                cfg,
                stats,
                {"top1_by_kind": {"attentive": attentive, "linear": linear}, "final_loss": 0.5},
            )
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("vjepa-ablations-smoke")
    assert client.get_experiment_by_name("vjepa-reproduction") is None  # nothing landed in the main experiment
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"  # training runs, not GenAI traces
    runs = client.search_runs([exp.experiment_id], order_by=["metrics.top1_attentive DESC"])
    assert [r.data.tags["ablation"] for r in runs] == ["reference", "ratio-low", "copy"]
    by_point = {r.data.tags["ablation"]: r for r in runs}
    default, low, copy = by_point["reference"].data, by_point["ratio-low"].data, by_point["copy"].data
    assert default.params["masks_per_sample"] == "2" and default.params["blocks_per_mask"] == "8+2"
    assert default.params["spatial_scale"] == "0.15+0.7" and default.params["temporal_extent"] == "1"
    assert low.params["masks_per_sample"] == "1" and low.params["blocks_per_mask"] == "1"
    assert low.params["spatial_scale"] == "0.25" and low.params["target_kind"] == "ema"
    assert copy.params["target_kind"] == "copy"
    assert (default.metrics["top1_attentive"], default.metrics["top1_linear"]) == (41.5, 20.0)
    s = logged["ratio-low"][0]
    assert low.metrics["spatial_masking_ratio"] == pytest.approx(s["spatial_masking_ratio"])
    assert low.metrics["temporal_masking_ratio"] == pytest.approx(s["temporal_masking_ratio"]) == 1.0
    assert (
        low.metrics["context_tokens"] == s["context_tokens_mean"]
        and low.metrics["target_tokens"] == s["target_tokens_mean"]
    )
    d = logged["reference"]
    assert default.metrics["spatial_masking_ratio"] == pytest.approx(
        (d[0]["spatial_masking_ratio"] + d[1]["spatial_masking_ratio"]) / 2
    )
    assert default.metrics["mask1_spatial_masking_ratio"] == pytest.approx(d[1]["spatial_masking_ratio"])
    assert (
        0 < d[0]["spatial_masking_ratio"] < d[1]["spatial_masking_ratio"] < 1
    )  # 8 small blocks cover less than 2 large
    assert "1 mask(s) per sample: 1 block(s) at spatial scale 0.25" in low.tags["mlflow.note.content"]
    assert "target copy (the context encoder itself, no EMA)" in copy.tags["mlflow.note.content"]
    assert "reference point" in default.tags["mlflow.note.content"]


def test_headline_names_are_the_same_for_probes_ablations_and_detection():
    assert tracking.headline({"top1_by_kind": {"attentive": 50.0, "linear": 20.0}, "top1": 50.0}) == {
        "top1_attentive": 50.0,
        "top1_linear": 20.0,
    }
    assert tracking.headline({"mAP": 0.25, "per_class": {"1": 0.5}}) == {"map": 0.25}
