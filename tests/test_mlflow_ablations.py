"""MLflow as the comparison tool (issue 32): a store built from the smoke profile's ablation points
(the ablate and report stages run directly, one point failed and re-run) holds one run per point,
the experiment's description with its link to the ablation table view, and each point's paired
margin, interval and verdict against the reference point."""

import json

import pytest

from pipeline.config import from_mapping
from pipeline.profiles import resolve


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from pipeline.stages import ablate, prepare
    from pipeline.stages import report as report_stage

    root = tmp_path_factory.mktemp("ablations")
    mp = pytest.MonkeyPatch()
    mp.chdir(root)
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    mp.delenv("VJEPA_MLFLOW", raising=False)
    mp.delenv("DVC_STAGE", raising=False)
    params = from_mapping(resolve("smoke"))
    with _quiet():
        prepare.run(params)
        ablate.run(params, "reference")
        real = ablate.probe_task

        def killed(*a, **k):
            raise KeyboardInterrupt("killed mid-probe")

        mp.setattr(ablate, "probe_task", killed)
        with pytest.raises(KeyboardInterrupt):
            ablate.run(params, "copy")
        mp.setattr(ablate, "probe_task", real)
        ablate.run(params, "copy")  # the re-run after the kill resumes from the work folder
        report_stage.run(params)
    mp.undo()
    from mlflow.tracking import MlflowClient

    return params, root, MlflowClient(f"sqlite:///{root / 'mlflow.db'}")


class _quiet:
    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc):
        return self._w.__exit__(*exc)


def test_the_ablation_experiment_has_one_run_per_point_after_a_killed_and_rerun_stage(store):
    _, _, client = store
    exp = client.get_experiment_by_name("vjepa-ablations-smoke")
    runs = client.search_runs([exp.experiment_id], run_view_type=3)  # active and deleted alike
    assert sorted(r.info.run_name for r in runs) == ["ablate@copy", "ablate@reference"]
    assert {r.info.status for r in runs} == {"FINISHED"}


def test_the_experiment_description_explains_the_table_and_links_the_sorted_view(store):
    _, _, client = store
    exp = client.get_experiment_by_name("vjepa-ablations-smoke")
    text = exp.tags["mlflow.note.content"]
    assert "reference point `reference`" in text and "verdict_<probe>" in text
    assert f"(#/experiments/{exp.experiment_id}/runs?viewStateShareKey=ablation-table)" in text
    saved = json.loads(exp.tags["mlflow.sharedViewState.ablation-table"])  # MLflow's saved-view envelope
    assert saved["name"] == "Ablation table" and isinstance(saved["createdAt"], int)
    view = json.loads(saved["state"])
    assert view["orderByKey"] == "metrics.`top1_attentive`" and view["orderByAsc"] is False
    assert {
        "params.`masks_per_sample`",
        "metrics.`top1_attentive`",
        "metrics.`margin_attentive`",
        "tags.`verdict_attentive`",
    } <= set(view["selectedColumns"])
    main = client.get_experiment_by_name("vjepa-reproduction")
    assert "One run per stage execution" in main.tags["mlflow.note.content"]


def test_every_point_carries_its_margin_interval_and_verdict_against_the_reference(store):
    params, root, client = store
    exp = client.get_experiment_by_name("vjepa-ablations-smoke")
    runs = {r.data.tags["ablation"]: r.data for r in client.search_runs([exp.experiment_id])}
    saved = json.loads((root / "reports/smoke/verdicts/ablate/copy.json").read_text())
    copy = runs["copy"]
    for kind in ("attentive", "linear"):
        assert copy.metrics[f"margin_{kind}"] == pytest.approx(saved[kind]["margin"], abs=1e-3)
        assert (
            copy.metrics[f"margin_{kind}_low"] <= copy.metrics[f"margin_{kind}"] <= copy.metrics[f"margin_{kind}_high"]
        )
        assert copy.tags[f"verdict_{kind}"] == saved[kind]["verdict"]
        assert runs["reference"].tags[f"verdict_{kind}"] == "reference"
    details = json.loads((root / "metrics/smoke/details/ablate/copy.json").read_text())
    assert copy.metrics["top1_attentive"] == details["top1_by_kind"]["attentive"]
    # only the numbers the table shows: no per-step curves or per-clip details among the run's metrics
    assert "loss" not in copy.metrics and not any(k.startswith("clips") for k in copy.metrics)
    assert {k for k in copy.metrics if not k.startswith("mask")} == {  # mask<i>_*: each mask's statistics
        "top1_attentive",
        "top1_linear",
        "final_loss",
        "spatial_masking_ratio",
        "temporal_masking_ratio",
        "context_tokens",
        "target_tokens",
        *(f"margin_{k}{e}" for k in ("attentive", "linear") for e in ("", "_low", "_high")),
    }
