"""MLflow tracking for the stages: one run per stage execution, never fatal.

The default store is `sqlite:///<repo root>/mlflow.db`, an absolute path: DVC experiments that run
in temporary copies (DVC sets DVC_ROOT to the parent repository) still log to the same database.
MLFLOW_TRACKING_URI overrides it. If the tracking store cannot be reached, the stage warns once and
carries on; its metrics still land in the DVC metrics files.
"""

from __future__ import annotations

import os
import subprocess
import urllib.request
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

EXPERIMENT = "vjepa-reproduction"
EXPERIMENT_KIND = "mlflow.experimentKind"  # MLflow 3's experiment type tag: model training, not GenAI traces
ABLATIONS = "vjepa-ablations"
DESCRIPTION_TAG = "mlflow.note.content"  # what the MLflow UI shows as a run's description


def repo_root() -> Path:
    """The parent repository's root: DVC_ROOT inside `dvc repro`/`dvc exp run` (temporary copies
    included), else the git top level of the working directory, else the working directory."""
    if os.environ.get("DVC_ROOT"):
        return Path(os.environ["DVC_ROOT"]).resolve()
    cwd = Path.cwd().resolve()
    parts = cwd.parts
    if ".dvc" in parts:  # a temporary experiment copy under <root>/.dvc/tmp/exps/...
        return Path(*parts[: parts.index(".dvc")])
    for p in (cwd, *cwd.parents):
        if (p / ".git").exists() or (p / "dvc.yaml").exists():
            return p
    return cwd


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{repo_root() / 'mlflow.db'}"


def git_commit(root: Path | None = None) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root or repo_root(), capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists become their repr (MLflow params are strings)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


def _server_reachable(uri: str, timeout: float = 3.0) -> bool:
    if not uri.startswith(("http://", "https://")):
        return True
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


class Tracker:
    """A thin, fault-tolerant wrapper around one MLflow run. Every call is a no-op after the first
    failure (with one warning), so an unreachable tracking server never fails a stage."""

    def __init__(self, run=None):
        self._run = run
        self._mlflow = None
        if run is not None:
            import mlflow

            self._mlflow = mlflow

    @property
    def active(self) -> bool:
        return self._run is not None

    @property
    def run_id(self) -> str | None:
        return self._run.info.run_id if self._run is not None else None

    def _call(self, name: str, *args, **kwargs) -> None:
        if self._run is None:
            return
        try:
            getattr(self._mlflow, name)(*args, **kwargs)
        except Exception as e:  # tracking must never take a stage down
            warnings.warn(
                f"MLflow {name} failed ({e.__class__.__name__}: {e}); tracking disabled for this stage, "
                "metrics still go to the DVC metrics files",
                stacklevel=2,
            )
            self._run = None

    def params(self, params: dict) -> None:
        flat = {k: (str(v) if isinstance(v, (list, tuple, dict)) else v) for k, v in flatten(params).items()}
        items = list(flat.items())
        for i in range(0, len(items), 100):  # MLflow caps a batch at 100 params
            self._call("log_params", dict(items[i : i + 100]))

    def metrics(self, metrics: dict, step: int | None = None) -> None:
        numeric = {
            k: float(v) for k, v in flatten(metrics).items() if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        if numeric:
            self._call("log_metrics", numeric, step=step)

    def tags(self, tags: dict) -> None:
        self._call("set_tags", {k: str(v) for k, v in tags.items() if v is not None})

    def description(self, text: str) -> None:
        self._call("set_tag", DESCRIPTION_TAG, text)

    def artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if Path(path).exists():
            self._call("log_artifact", str(path), artifact_path)


STAGE_KEY = "stage_key"  # the tag that names a stage execution's run (`ablate@ratio-low`), to find it again
DESCRIPTIONS = {
    EXPERIMENT: "One run per stage execution of the V-JEPA reproduction (`dvc repro`): prepare, masks, pretrain@seed, "
    "probe@task, detect, finetune@task, learn@seed, report. Each run is named after its DVC stage and "
    "tagged `profile`, `stage_key`, `git_commit`. Headline metrics share names across stages: "
    "`top1_attentive`, `top1_linear` (probes, ablations), `map` (AVA detection). The ablation grid has "
    f"experiments of its own: `{ABLATIONS}-<profile>`.",
}


def _flat_params(params: dict) -> dict[str, str]:
    """Params as MLflow stores them: flattened, every value a string."""
    return {k: str(v) for k, v in flatten(params).items()}


def _previous_run(client, experiment_id: str, key: str, profile, params: dict) -> str | None:
    """The run a re-run of stage `key` continues: the latest run of that stage (tag stage_key, same
    profile) that never finished (killed, failed) with the same params, resumed so that a stage
    re-run after a kill leaves one run; other unfinished runs of the stage are deleted (replaced)."""
    query = f"tags.{STAGE_KEY} = '{key}'" + (f" and tags.profile = '{profile}'" if profile is not None else "")
    stale = [
        r
        for r in client.search_runs([experiment_id], query, order_by=["attributes.start_time DESC"])
        if r.info.status != "FINISHED"
    ]
    keep = next((r for r in stale if r.data.params == _flat_params(params)), None)
    for r in stale:
        if r is not keep:
            client.delete_run(r.info.run_id)
    if keep is not None and keep.info.status == "RUNNING":  # killed: MLflow never heard it end
        client.set_terminated(keep.info.run_id, status="KILLED")
    return keep.info.run_id if keep is not None else None


@contextmanager
def stage_run(
    stage: str,
    params: dict | None = None,
    tags: dict | None = None,
    enabled: bool = True,
    experiment: str | None = None,
    key: str | None = None,
) -> Iterator[Tracker]:
    """Open one MLflow run for a stage execution, tagged with the stage, git commit, DVC experiment
    and profile, in `experiment` (default: MLFLOW_EXPERIMENT_NAME or vjepa-reproduction); yields a
    Tracker (inactive if MLflow is unreachable, enabled is False (e.g. on ranks other than 0) or
    VJEPA_MLFLOW=0). The run is named `key` (DVC_STAGE under DVC, else `key` or `stage`); a stage
    re-run after a kill resumes its interrupted run (same params) instead of opening a second one."""
    if not enabled or os.environ.get("VJEPA_MLFLOW", "1") == "0":
        yield Tracker()
        return
    name = os.environ.get("DVC_STAGE") or key or stage
    profile = (tags or {}).get("profile")
    uri = tracking_uri()
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    run = None
    if not _server_reachable(uri):
        warnings.warn(
            f"MLflow tracking server {uri} is not reachable; stage '{stage}' runs without tracking "
            "(its metrics still go to the DVC metrics files)",
            stacklevel=3,
        )
    else:
        try:
            import mlflow

            mlflow.set_tracking_uri(uri)
            from mlflow.tracking import MlflowClient

            exp = mlflow.set_experiment(experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME", EXPERIMENT))
            if EXPERIMENT_KIND not in exp.tags:  # what these runs are, as MLflow 3's UI records an experiment's type
                mlflow.set_experiment_tag(EXPERIMENT_KIND, "custom_model_development")
            if exp.name in DESCRIPTIONS and exp.tags.get(DESCRIPTION_TAG) != DESCRIPTIONS[exp.name]:
                mlflow.set_experiment_tag(DESCRIPTION_TAG, DESCRIPTIONS[exp.name])
            previous = _previous_run(MlflowClient(uri), exp.experiment_id, name, profile, params or {})
            run = mlflow.start_run(run_id=previous) if previous else mlflow.start_run(run_name=name)
        except Exception as e:
            warnings.warn(
                f"MLflow could not start a run at {uri} ({e.__class__.__name__}: {e}); "
                f"stage '{stage}' runs without tracking",
                stacklevel=3,
            )
            run = None
    tracker = Tracker(run)
    base_tags = {
        "stage": stage,
        STAGE_KEY: name,
        "dvc_stage": os.environ.get("DVC_STAGE"),
        "git_commit": git_commit(),
        "dvc_experiment": os.environ.get("DVC_EXP_NAME"),
    }
    tracker.tags({**base_tags, **(tags or {})})
    if params:
        tracker.params(params)
    status = "FINISHED"
    try:
        yield tracker
    except BaseException:
        status = "FAILED"
        raise
    finally:
        if tracker.active:
            try:
                tracker._mlflow.end_run(status=status)
            except Exception as e:
                warnings.warn(f"MLflow end_run failed: {e}", stacklevel=2)


# ----------------------------------------------------------------------------------------------
# The headline numbers and the ablation table


def headline(metrics: dict) -> dict[str, float]:
    """A stage's headline results under short names that stay the same across stages and profiles:
    `top1_attentive` and `top1_linear` (a `top1_by_kind` entry), `map` (an `mAP` entry)."""
    out = {f"top1_{kind}": float(v) for kind, v in (metrics.get("top1_by_kind") or {}).items()}
    if isinstance(metrics.get("mAP"), (int, float)):
        out["map"] = float(metrics["mAP"])
    return out


def ablation_experiment(profile: str) -> str:
    """One experiment per profile for the ablation runs, so that its runs table is the ablation table
    (no '/' in the name: MLflow's breadcrumb shows only what follows the last one, and `default`
    alone reads as MLflow's own Default experiment)."""
    return f"{ABLATIONS}-{profile}"


def _joined(values) -> str:
    """One value if all masks agree ('2'), else each mask's, in order ('8+2')."""
    text = [f"{v:g}" if isinstance(v, float) else str(v) for v in values]
    return text[0] if len(set(text)) == 1 else "+".join(text)


def _scale(r) -> float | str:
    lo, hi = r
    return float(lo) if lo == hi else f"{lo:g}-{hi:g}"


def ablation_axes(masks, target: str) -> dict[str, str | int]:
    """The axes Tables 13-15 and Appendix D vary, one scalar param each: masks per sample, blocks
    per mask, block spatial scale and temporal extent (fractions of the frame and of the clip), the
    mask kind and the target kind (ema or copy). Masks that differ show each value ('8+2')."""
    return {
        "masks_per_sample": len(masks),
        "blocks_per_mask": _joined([m.num_blocks for m in masks]),
        "spatial_scale": _joined([_scale(m.spatial_scale) for m in masks]),
        "temporal_extent": _joined([_scale(m.temporal_scale) for m in masks]),
        "mask_kind": _joined([m.kind for m in masks]),
        "target_kind": target,
    }


def mask_metrics(stats: list[dict]) -> dict[str, float]:
    """Table 13's mask statistics, averaged over the masks of a sample: spatial and temporal
    masking ratio, context and target tokens per mask (each mask's own with a `mask<i>_` prefix
    when there are several)."""
    keys = {
        "spatial_masking_ratio": "spatial_masking_ratio",
        "temporal_masking_ratio": "temporal_masking_ratio",
        "context_tokens": "context_tokens_mean",
        "target_tokens": "target_tokens_mean",
    }
    out = {name: sum(s[k] for s in stats) / len(stats) for name, k in keys.items()}
    if len(stats) > 1:
        out.update({f"mask{i}_{name}": s[k] for i, s in enumerate(stats) for name, k in keys.items()})
    return out


def ablation_description(point: str, label: str, tables: list[str], changes: dict) -> str:
    """What the point varies against the profile's own pretraining, in a sentence or two."""

    def mask_text(m: dict) -> str:
        t = m.get("temporal_scale", (1.0, 1.0))
        return (
            f"{m.get('num_blocks', 8)} block(s) at spatial scale {_scale(m.get('spatial_scale', (0.15, 0.15)))}"
            f", temporal extent {_scale(t)}"
            + (f", kind {m['kind']}" if m.get("kind", "multiblock") != "multiblock" else "")
        )

    parts = []
    for key, value in changes.items():
        if key == "masks":
            parts.append(f"{len(value)} mask(s) per sample: " + "; ".join(mask_text(m) for m in value))
        elif key == "target":
            parts.append(f"target {value} " + ("(the context encoder itself, no EMA)" if value == "copy" else ""))
        else:
            parts.append(f"{key} = {value}")
    varies = "; ".join(p.strip() for p in parts) or "nothing: the reference point (the profile's masks, EMA target)"
    return f"Ablation `{point}` ({label}; Table{'s' if len(tables) > 1 else ''} {', '.join(tables)}). Varies: {varies}."


def log_ablation(tracker: Tracker, point: str, spec, cfg, stats: list[dict], metrics: dict) -> None:
    """The ablation table's row for one grid point: its axes as params, the mask statistics and
    headline results as metrics, and a description of what it varies. `spec` is the point
    (tables, label, pretrain changes), `cfg` its PretrainConfig, `stats` one mask_statistics per
    mask, `metrics` the stage's results (top1_by_kind, final_loss)."""
    tracker.params(ablation_axes(cfg.masks, cfg.target))
    tracker.metrics({**headline(metrics), **mask_metrics(stats), "final_loss": metrics["final_loss"]})
    tracker.description(ablation_description(point, spec.label, spec.tables, spec.pretrain))


def ablation_reference(params) -> str | None:
    """The grid point that changes nothing (`pretrain: {}`): the profile's own settings, which every
    other point is compared with."""
    return next((k for k, v in params.ablations.points.items() if not v.pretrain), None)


AXES = ("masks_per_sample", "blocks_per_mask", "spatial_scale", "temporal_extent", "mask_kind", "target_kind")
HEADLINE_METRICS = (
    "top1_attentive",
    "top1_linear",
    "margin_attentive",
    "margin_attentive_low",
    "margin_attentive_high",
    "margin_linear",
    "margin_linear_low",
    "margin_linear_high",
)
VERDICT_TAGS = ("verdict_attentive", "verdict_linear")
VIEW = "ablation-table"  # the shared view the description links to
SHARED_VIEW_TAG = "mlflow.sharedViewState."  # MLflow UI's saved/shared runs-table views, opened by ?viewStateShareKey=


def _column(kind: str, key: str) -> str:
    """A runs-table column as the MLflow UI names it (its canonical sort key)."""
    return f"{kind}.`{key}`"


def ablation_view() -> dict:
    """The runs-table view of an ablation experiment: the axes, the headline metrics and the verdicts
    as columns, sorted by top1_attentive (best first), finished runs only."""
    return {
        "orderByKey": _column("metrics", "top1_attentive"),
        "orderByAsc": False,
        "searchFilter": "attributes.status = 'FINISHED'",
        "selectedColumns": [
            *(_column("params", a) for a in AXES),
            *(_column("metrics", m) for m in HEADLINE_METRICS),
            *(_column("tags", t) for t in VERDICT_TAGS),
        ],
    }


def describe_ablations(tracker: Tracker, profile: str, reference: str | None, task: str) -> None:
    """The ablation experiment's description (what a run is, what the columns mean) with a link that
    opens its runs table on the axes, headline metrics and verdicts, sorted by top1_attentive; the
    linked view is stored in the experiment as MLflow's UI stores a shared view."""
    if not tracker.active:
        return
    import json
    import time

    exp_id = tracker._run.info.experiment_id
    text = (
        f"Ablation grid of the `{profile}` profile (Tables 13-15, Appendix D): one run per grid point "
        f"(`ablate@<point>`), each a short pretraining then frozen probes on `{task}`. Params: the axes "
        f"({', '.join(AXES)}). Metrics: `top1_attentive`, `top1_linear` (validation top-1 %), and once the "
        f"`report` stage has run, `margin_<probe>` with its 95% interval (`_low`, `_high`): the point minus the "
        f"reference point `{reference}` (the profile's own masks, EMA target) in top-1 points, paired clip by "
        "clip; tags `verdict_<probe>`: better, worse or not distinguishable (the interval covers zero). One "
        "seed per point: read the verdict, not the raw gap.\n\n"
        f"[Open the ablation table: axes, top-1, margins and verdicts, best first](#/experiments/{exp_id}"
        f"/runs?viewStateShareKey={VIEW})"
    )
    tracker._call("set_experiment_tag", DESCRIPTION_TAG, text)
    # MLflow's saved-view envelope: the view is listed under the runs table's "Views" menu too
    now = int(time.time() * 1000)
    tracker._call(
        "set_experiment_tag",
        SHARED_VIEW_TAG + VIEW,
        json.dumps(
            {"name": "Ablation table", "createdAt": now, "updatedAt": now, "state": json.dumps(ablation_view())}
        ),
    )


def log_verdicts(profile: str, reference: str | None, comparisons: dict) -> int:
    """Log the report's paired comparisons onto each ablation point's latest finished run in
    `vjepa-ablations-<profile>`: margin_<probe> (_low, _high) metrics and verdict_<probe> tags, the
    reference point's run tagged `verdict_<probe> = reference`. Returns the runs updated (0 when
    MLflow is off or unreachable, or the experiment does not exist)."""
    if os.environ.get("VJEPA_MLFLOW", "1") == "0" or not _server_reachable(tracking_uri()):
        return 0
    try:
        from mlflow.entities import Metric, RunTag
        from mlflow.tracking import MlflowClient
        import time

        client = MlflowClient(tracking_uri())
        exp = client.get_experiment_by_name(ablation_experiment(profile))
        if exp is None:
            return 0
        runs = {}
        for r in client.search_runs(
            [exp.experiment_id], "attributes.status = 'FINISHED'", order_by=["attributes.start_time DESC"]
        ):
            runs.setdefault(r.data.tags.get("ablation"), r)
        now, done = int(time.time() * 1000), set()
        for (point, kind), c in comparisons.items():
            if point not in runs or isinstance(c, str):
                continue
            metrics = [
                Metric(f"margin_{kind}", c.difference, now, 0),
                Metric(f"margin_{kind}_low", c.low, now, 0),
                Metric(f"margin_{kind}_high", c.high, now, 0),
            ]
            client.log_batch(
                runs[point].info.run_id,
                metrics=metrics,
                tags=[RunTag(f"verdict_{kind}", c.verdict), RunTag("reference", str(reference))],
            )
            done.add(point)
        if reference in runs:
            client.log_batch(
                runs[reference].info.run_id,
                tags=[RunTag(f"verdict_{k}", "reference") for k in ("attentive", "linear")]
                + [RunTag("reference", str(reference))],
            )
            done.add(reference)
        return len(done)
    except Exception as e:  # tracking must never take a stage down
        warnings.warn(f"MLflow: could not log the ablation verdicts ({e.__class__.__name__}: {e})", stacklevel=2)
        return 0
