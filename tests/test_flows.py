"""Prefect on a pool of two machines that share no disk, as a user runs it: a real Prefect server
on 127.0.0.1, process workers, the deployments of prefect.yaml, the smoke profile.

Each "machine" is its own `git clone` in its own folder with its own worker (its own PREFECT_HOME,
VJEPA_CHECKOUT and PYTHONPATH); the machines share only the Prefect server, a local-folder DVC
remote and an MLflow server. The GPU workers take one flow run at a time (`--limit 1`, one stage
per machine) and the orchestrating flow runs (`reproduce`, `ablations`) go to a control pool, so
every generation of several stages lands on both machines and outputs must travel through the
remote. The `ablations` deployment, then `reproduce` of the whole smoke DAG, both fanned out to the
`stage` deployment: every metrics file must equal that of the plain single-checkout `dvc repro` of
the smoke profile that the session runs once (tests/conftest.py). Every process the tests start is
stopped (process groups, in a finally)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from conftest import BIN, checkout_copy, results

from pipeline import flows
from pipeline.profiles import use_profile


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(procs: list[subprocess.Popen]) -> None:
    """SIGINT twice (Prefect workers ask for it), then SIGKILL, to each process's whole group; all
    processes at once, so the waits overlap."""
    for sig, wait in ((signal.SIGINT, 10), (signal.SIGINT, 10), (signal.SIGKILL, 10)):
        alive = [p for p in procs if p.poll() is None]
        for p in alive:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + wait
        while any(p.poll() is None for p in alive) and time.time() < deadline:
            time.sleep(0.2)


def run(cmd, cwd, env, timeout=600) -> str:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def wait_healthy(url: str, proc: subprocess.Popen, what: str, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None:
            pytest.fail(f"{what} exited ({proc.returncode}) before becoming healthy")
        time.sleep(0.5)
    pytest.fail(f"{what} did not become healthy on 127.0.0.1 within {timeout} s")


def api_post(api: str, path: str, body: dict) -> list:
    req = urllib.request.Request(
        f"{api}/{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def flow_runs(api: str, names: list[str]) -> dict[str, dict]:
    """The latest flow run of each name."""
    runs = api_post(
        api, "flow_runs/filter", {"flow_runs": {"name": {"any_": names}}, "sort": "EXPECTED_START_TIME_DESC"}
    )
    latest = {}
    for r in runs:
        latest.setdefault(r["name"], r)
    return latest


def record_of(api: str, run: dict) -> dict:
    """The stage record a `stage` flow run left as its artifact (what the parent reads)."""
    arts = api_post(api, "artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run["id"]]}}})
    text = next(a["data"] for a in arts if flows.RECORD_FENCE in (a["data"] or ""))
    return json.loads(text.split(flows.RECORD_FENCE, 1)[1].rsplit("```", 1)[0])


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    """Prefect server, MLflow server, a DVC remote folder and two machines (clones), each with a
    GPU-pool worker; machine A also runs the control-pool worker."""
    tmp = tmp_path_factory.mktemp("pool")
    # the working tree without the default profile's lock and results, as the machines' git remote
    src = checkout_copy(tmp / "source", without=("metrics/", "reports/", "dvc.lock"))
    remote = tmp / "dvc-remote"
    remote.mkdir()
    port, mlflow_port = free_port(), free_port()
    api, mlflow_uri = f"http://127.0.0.1:{port}/api", f"http://127.0.0.1:{mlflow_port}"
    base = {
        **os.environ,
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "DVC_NO_ANALYTICS": "1",
        "MLFLOW_TRACKING_URI": mlflow_uri,
        "VJEPA_STAGE_RETRIES": "0",
    }
    base.pop("VJEPA_MLFLOW", None)
    machines = {}
    for name in ("a", "b"):
        clone = tmp / f"machine-{name}" / "checkout"
        clone.parent.mkdir()
        run(["git", "clone", "-q", src, clone], tmp, base)
        env = {
            **base,
            "PREFECT_HOME": str(clone.parent / "prefect"),
            "VJEPA_CHECKOUT": str(clone),
            "PYTHONPATH": str(clone),
        }
        use_profile("smoke", clone)  # what `python -m pipeline profile smoke` does
        run(["dvc", "remote", "add", "--local", "-d", "pool", remote], clone, env)
        machines[name] = (clone, env)
    procs = []

    def start(cmd, env, cwd):
        procs.append(
            subprocess.Popen(
                [str(c) for c in cmd],
                env=env,
                cwd=cwd,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
        return procs[-1]

    try:
        a, env_a = machines["a"]
        server = start(["prefect", "server", "start", "--host", "127.0.0.1", "--port", port], env_a, tmp)
        mlflow = start(
            [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                mlflow_port,
                "--workers",
                "1",
                "--backend-store-uri",
                f"sqlite:///{tmp}/mlflow.db",
                "--artifacts-destination",
                tmp / "mlflow-artifacts",
            ],
            {**base, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            tmp,
        )
        wait_healthy(f"{api}/health", server, "Prefect server")
        wait_healthy(f"{mlflow_uri}/health", mlflow, "MLflow server")
        for p in ("gpu-pool", "control-pool"):
            run(["prefect", "work-pool", "create", p, "--type", "process"], a, env_a)
        run(["prefect", "--no-prompt", "deploy", "--all"], a, env_a)
        for name in ("a", "b"):
            clone, env = machines[name]
            start(["prefect", "worker", "start", "--pool", "gpu-pool", "--limit", "1"], env, clone.parent)
        start(["prefect", "worker", "start", "--pool", "control-pool"], env_a, a.parent)
        yield {"api": api, "mlflow": mlflow_uri, "machines": machines, "remote": remote, "procs": procs}
    finally:
        stop(procs)
        assert all(p.poll() is not None for p in procs)


def deployment_run(pool, name: str, *params: str, timeout: int = 900) -> subprocess.CompletedProcess:
    a, env_a = pool["machines"]["a"]
    cmd = [
        "prefect",
        "deployment",
        "run",
        name,
        *[x for p in params for x in ("--param", p)],
        "--watch",
        "--watch-timeout",
        str(timeout),
    ]
    return subprocess.run(cmd, cwd=a, env=env_a, capture_output=True, text=True, timeout=timeout + 60)


def test_a_stage_run_on_a_fresh_worker_is_refused_naming_the_stages_to_run_first_in_its_state_and_logs(pool):
    # learn@0 on a machine that has neither the prepared data nor the pretrained checkpoint: refused
    # before DVC runs anything (DVC's own errors are named by the tiny-DAG test below)
    done = deployment_run(pool, "vjepa-stage/stage", "target=learn@0", timeout=300)
    assert done.returncode != 0
    run_ = flow_runs(pool["api"], ["learn@0"])["learn@0"]
    assert run_["state"]["type"] == "FAILED"
    message = run_["state"]["message"]
    assert "stage learn@0 reads the outputs of " in message and "prepare" in message, message
    logs = api_post(pool["api"], "logs/filter", {"logs": {"flow_run_id": {"any_": [run_["id"]]}}})
    assert any("stage learn@0 reads the outputs of " in log["message"] for log in logs), logs


SMOKE_STAGES = [
    "prepare",
    "masks",
    "pretrain@0",
    "pretrain@1",
    "probe@k400",
    "probe@ssv2",
    "probe@in1k",
    "probe@places205",
    "probe@inat21",
    "detect",
    "finetune@k400",
    "finetune@ssv2",
    "learn@0",
    "learn@1",
    "ablate@reference",
    "ablate@copy",
    "report",
]


def test_the_pool_runs_the_whole_smoke_dag_through_the_deployments_like_a_single_checkout_dvc_repro(pool, smoke_run):
    api = pool["api"]
    t0 = time.time()
    done = deployment_run(pool, "vjepa-ablations/ablations", "as_deployments=true")
    assert done.returncode == 0 and "Completed" in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]
    ablations_s = time.time() - t0
    done = deployment_run(pool, "vjepa-reproduce/reproduce", "as_deployments=true", timeout=1500)
    assert done.returncode == 0 and "Completed" in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]
    pool_s = time.time() - t0

    runs = flow_runs(api, SMOKE_STAGES)
    assert sorted(runs) == sorted(SMOKE_STAGES)  # every child flow run is named after its DVC stage
    assert all(r["state"]["type"] == "COMPLETED" and r["parent_task_run_id"] for r in runs.values())
    records = {s: record_of(api, runs[s]) for s in SMOKE_STAGES}
    checkouts = {name: str(clone) for name, (clone, _) in pool["machines"].items()}
    ran_on = {s: next(n for n, c in checkouts.items() if r["ran_in"].endswith(":" + c)) for s, r in records.items()}
    # one stage per machine at a time: a generation of several stages uses both machines, so
    # outputs had to travel through the remote to the stages that read them
    assert set(ran_on[s] for s in SMOKE_STAGES if s.startswith(("probe", "detect", "finetune", "learn"))) == {"a", "b"}
    upstream = flows.dag_upstream(pool["machines"]["a"][0])
    moved = [s for s in SMOKE_STAGES for u in upstream[s] if ran_on[u] != ran_on[s]]
    assert moved
    assert any(
        f.startswith("files/md5/")
        for f in (str(p.relative_to(pool["remote"])) for p in pool["remote"].rglob("*") if p.is_file())
    )

    # every metrics file of the pool's run equals the single-checkout `dvc repro` of the same DAG
    compared = {}
    for s, r in records.items():
        for path, content in r["files"].items():
            if path.startswith("metrics/") and path.endswith(".json"):  # the curves' CSVs are plots, not results
                ours, theirs = results(json.loads(content["text"])), results(smoke_run.metrics[path])
                assert ours == theirs, f"{path} (stage {s}, on machine {ran_on[s]}): pool and single checkout differ"
                compared[path] = len(ours)
    assert sorted(compared) == sorted(smoke_run.metrics) and sum(compared.values()) > 200
    learn = json.loads(records["learn@1"]["files"]["metrics/smoke/details/learn/seed1.json"]["text"])
    assert learn["seed"] == 1 and 0 <= learn["top1"]["ssv2"]["pretrained"]["attentive"] <= 100
    print(
        f"pool: ablations {ablations_s:.0f} s, then the whole DAG ({len(SMOKE_STAGES)} stages) "
        f"{pool_s - ablations_s:.0f} s; stages that read another machine's outputs: {len(moved)}"
    )

    # every machine logged to the one MLflow server: the ablation points are the ablation experiment's runs
    from mlflow.tracking import MlflowClient

    client = MlflowClient(pool["mlflow"])
    exp = client.get_experiment_by_name("vjepa-ablations-smoke")
    ablation_runs = client.search_runs([exp.experiment_id], order_by=["metrics.top1_attentive DESC"])
    points = [r.data.tags["ablation"] for r in ablation_runs]
    assert sorted(set(points)) == ["copy", "reference"]
    for r in ablation_runs:
        point = r.data.tags["ablation"]
        metrics = json.loads(records[f"ablate@{point}"]["files"][f"metrics/smoke/ablate/{point}.json"]["text"])
        assert r.data.metrics["top1_attentive"] == metrics["top1_by_kind"]["attentive"]
        assert r.data.params["masks_per_sample"] == "2" and r.data.params["target_kind"] == (
            "copy" if point == "copy" else "ema"
        )


def test_select_keeps_the_targets_and_every_stage_they_read_in_generation_order():
    gens = [
        ["masks", "prepare"],
        ["ablate@copy", "pretrain@0", "pretrain@1"],
        ["learn@0", "learn@1", "probe@k400"],
        ["report"],
    ]
    upstream = {
        "masks": [],
        "prepare": [],
        "ablate@copy": ["prepare"],
        "pretrain@0": ["prepare"],
        "pretrain@1": ["prepare"],
        "learn@0": ["prepare", "pretrain@0"],
        "learn@1": ["prepare", "pretrain@1"],
        "probe@k400": ["prepare", "pretrain@0"],
        "report": ["masks", "pretrain@0", "pretrain@1", "probe@k400"],
    }
    assert flows.select(gens, upstream, ["learn"]) == [
        ["prepare"],
        ["pretrain@0", "pretrain@1"],
        ["learn@0", "learn@1"],
    ]
    assert flows.select(gens, upstream, ["probe@k400", "ablate"]) == [
        ["prepare"],
        ["ablate@copy", "pretrain@0"],
        ["probe@k400"],
    ]
    assert flows.select(gens, upstream, None) == gens
    with pytest.raises(ValueError, match=r"no stage named \['probe@ssv3'\]"):
        flows.select(gens, upstream, ["probe@ssv3"])


TINY_DVC_YAML = """stages:
  a:
    cmd: python -c "open('a.txt', 'w').write('1')"
    outs:
      - a.txt
  b:
    foreach: [x, y]
    do:
      cmd: python make.py ${item}
      deps:
        - a.txt
        - make.py
      outs:
        - b-${item}.txt
      metrics:
        - m-${item}.json:
            cache: false
"""
MAKE_PY = """import json, sys
item = sys.argv[1]
if item in {failing}:
    sys.exit(f"boom: cannot make {{item}}")
open(f"b-{{item}}.txt", "w").write(open("a.txt").read() + item)
json.dump({{"length": len(open(f"b-{{item}}.txt").read())}}, open(f"m-{{item}}.json", "w"))
"""


def test_without_deployments_stages_run_as_concurrent_tasks_and_a_failure_names_its_stage(pool, tmp_path, monkeypatch):
    """`reproduce` in one checkout (tasks, no fan-out to deployments) on a tiny DAG, through the
    pool's Prefect server: the records carry the uncached metrics; a failing item is named with
    DVC's error while its sibling completes."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    repo = tmp_path / "tiny"
    repo.mkdir()
    (repo / "dvc.yaml").write_text(TINY_DVC_YAML)
    (repo / "make.py").write_text(MAKE_PY.format(failing="()"))
    for cmd in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(cmd, cwd=repo, check=True, capture_output=True)
    monkeypatch.setattr(flows, "repro_stage", flows.repro_stage.with_options(retries=0))
    with temporary_settings(updates={PREFECT_API_URL: pool["api"]}):
        records = flows.reproduce(root=str(repo))
        assert sorted(records) == ["a", "b@x", "b@y"]
        assert json.loads(records["b@y"]["files"]["m-y.json"]["text"]) == {"length": 2}
        assert records["b@x"]["lock"]["outs"][0]["path"] == "b-x.txt"
        (repo / "make.py").write_text(MAKE_PY.format(failing="('y',)"))
        with pytest.raises(RuntimeError) as failed:
            flows.reproduce(root=str(repo))
    message = str(failed.value)
    assert "- b@y: " in message and "dvc repro --single-item b@y" in message and "boom: cannot make y" in message
    assert "b@x" not in message and (repo / "b-x.txt").read_text() == "1x"


def _tiny_repo(path):
    path.mkdir()
    (path / "dvc.yaml").write_text(TINY_DVC_YAML)
    (path / "make.py").write_text(MAKE_PY.format(failing="()"))
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q", "--no-scm"], cwd=path, check=True, capture_output=True)
    return path


@pytest.mark.parametrize("rel", ["../escaped.txt", "/tmp/vjepa-escaped-abs.txt", "sub/../../escaped.txt"])
def test_a_received_record_naming_a_file_outside_the_checkout_is_refused_and_nothing_is_written(tmp_path, rel):
    from vjepa.infra.runtime import PathEscapeError

    repo = _tiny_repo(tmp_path / "tiny")
    record = {"stage": "a", "lock": {"cmd": "x"}, "files": {"ok.json": {"text": "{}"}, rel: {"text": "pwned"}}}
    with pytest.raises(PathEscapeError, match=r"stage record a: file '.*escaped.*'"):
        flows.apply_records(repo, [record])
    assert not (tmp_path / "escaped.txt").exists() and not os.path.exists("/tmp/vjepa-escaped-abs.txt")
    assert not (repo / "ok.json").exists() and not (repo / "dvc.lock").exists()
    flows.apply_records(repo, [{**record, "files": {"sub/ok.json": {"text": "{}"}}}])
    assert (repo / "sub" / "ok.json").read_text() == "{}"


def test_a_stage_whose_upstream_never_ran_here_is_refused_at_once_naming_the_stages_to_run_first(tmp_path):
    repo = _tiny_repo(tmp_path / "tiny")
    assert flows.unmet_upstream(repo, "b@x", remote=False) == ["a"]
    with pytest.raises(flows.UpstreamMissing, match=r"stage b@x reads the outputs of a, which have not run"):
        flows._refuse_unmet(repo, "b@x", remote=False)
    subprocess.run([sys.executable, "-m", "dvc", "repro", "-q", "a"], cwd=repo, check=True, capture_output=True)
    assert flows.unmet_upstream(repo, "b@x", remote=False) == []
    (repo / "a.txt").unlink()  # ran once, but its output is gone and there is no remote to pull it from
    assert flows.unmet_upstream(repo, "b@x", remote=False) == ["a"]
    assert flows.unmet_upstream(repo, "b@x", remote=True) == []


def test_deterministic_refusals_are_not_retried_but_a_killed_stage_is():
    from prefect.states import Failed

    def failed(exc):
        return Failed(data=exc)

    assert flows._retry_condition(None, None, failed(flows.UpstreamMissing("x"))) is False
    assert flows._retry_condition(None, None, failed(flows.RecordError("x"))) is False
    assert flows._retry_condition(None, None, failed(RuntimeError("dvc repro: killed"))) is True


def test_a_stage_command_refusing_its_params_is_not_retried_and_other_failures_are(tmp_path):
    repo = tmp_path / "tiny"
    repo.mkdir()
    (repo / "dvc.yaml").write_text(
        'stages:\n  bad:\n    cmd: python -c "import sys; sys.exit(2)"\n'
        '  dies:\n    cmd: python -c "import sys; sys.exit(1)"\n'
    )
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q", "--no-scm"], cwd=repo, check=True, capture_output=True)
    with pytest.raises(flows.StageRefused, match=r"(?s)stage bad: `dvc repro bad` failed .* exited with 2"):
        flows._dvc_or_raise("bad", "repro", "bad", cwd=repo)
    with pytest.raises(RuntimeError) as e:
        flows._dvc_or_raise("dies", "repro", "dies", cwd=repo)
    assert not isinstance(e.value, flows.StageRefused)


def test_a_runs_profile_applies_to_that_run_only_and_leaves_the_checkout_as_it_found_it(tmp_path):
    import shutil

    from pipeline.profiles import active_profile

    root = tmp_path / "checkout"
    shutil.copytree(flows.ROOT / "profiles", root / "profiles")
    shutil.copyfile(flows.ROOT / "params.yaml", root / "params.yaml")
    (root / "dvc.lock").write_text("schema: '2.0'\nstages: {default: 1}\n")
    before = (root / "params.yaml").read_bytes()
    with flows.profile_for_run("smoke", root):
        assert active_profile(root)[0] == "smoke" and not (root / "dvc.lock").exists()
        (root / "dvc.lock").write_text("schema: '2.0'\nstages: {smoke: 1}\n")  # what the run records
    assert (root / "params.yaml").read_bytes() == before
    assert (root / "dvc.lock").read_text() == "schema: '2.0'\nstages: {default: 1}\n"
    assert "{smoke: 1}" in (root / ".dvc/tmp/profile-locks/smoke.lock").read_text()
    with pytest.raises(RuntimeError, match="boom"), flows.profile_for_run("smoke", root):
        raise RuntimeError("boom")
    assert (root / "params.yaml").read_bytes() == before
