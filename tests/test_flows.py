"""Prefect: a real server on 127.0.0.1, a process worker and the `stage` deployment from
prefect.yaml, run to completion on the smallest stage (mask statistics) of a copy of the checkout.
Every process the test starts is stopped."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def checkout_copy(dst: Path) -> Path:
    """The repository's files (tracked and new, not ignored) in a fresh git repo at dst."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    for f in files:
        if (ROOT / f).is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dst / f)
    subprocess.run(["git", "init", "-q"], cwd=dst, check=True)
    return dst


def stop(proc: subprocess.Popen) -> None:
    """SIGINT twice (Prefect workers ask for it), then SIGKILL, to the whole process group."""
    for sig, wait in ((signal.SIGINT, 10), (signal.SIGINT, 10), (signal.SIGKILL, 10)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue


def test_stage_deployment_runs_to_completion_on_a_process_worker(tmp_path):
    repo = checkout_copy(tmp_path / "checkout")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_API_URL": api,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "VJEPA_CHECKOUT": str(repo),
           "VJEPA_MLFLOW": "0", "PREFECT_WORKER_QUERY_SECONDS": "1", "PATH": f"{BIN}:{os.environ['PATH']}",
           "PREFECT_LOGGING_LEVEL": "WARNING"}
    procs = []
    try:
        server = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                                  env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)
        procs.append(server)
        deadline = time.time() + 120
        while True:
            try:
                if json.load(urllib.request.urlopen(f"{api}/health", timeout=2)) is True:
                    break
            except OSError:
                pass
            if time.time() > deadline or server.poll() is not None:
                pytest.fail("Prefect server did not become healthy on 127.0.0.1")
            time.sleep(0.5)

        def prefect(*args, timeout=180):
            done = subprocess.run([str(BIN / "prefect"), *args], env=env, cwd=repo, capture_output=True, text=True,
                                  timeout=timeout)
            assert done.returncode == 0, f"prefect {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
            return done.stdout

        prefect("work-pool", "create", "gpu-pool", "--type", "process")
        prefect("--no-prompt", "deploy", "--name", "stage")
        worker = subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", "gpu-pool"], env=env, cwd=tmp_path,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        procs.append(worker)
        out = prefect("deployment", "run", "vjepa-stage/stage", "--param", "target=masks", "--watch",
                      "--watch-timeout", "400", timeout=450)
        assert "Completed" in out
        metrics = json.loads((repo / "metrics" / "default" / "masks.json").read_text())
        assert metrics["profile"] == "default" and metrics["mask0"]["num_tokens"] > 0
        assert (repo / "dvc.lock").exists() and "masks" in (repo / "dvc.lock").read_text()
    finally:
        for p in reversed(procs):
            stop(p)
    assert all(p.poll() is not None for p in procs)
