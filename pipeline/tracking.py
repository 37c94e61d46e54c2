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
EXPERIMENT_KIND = "mlflow.experimentKind"    # MLflow 3's experiment type tag: model training, not GenAI traces
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
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root or repo_root(), capture_output=True,
                             text=True, timeout=10)
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
            warnings.warn(f"MLflow {name} failed ({e.__class__.__name__}: {e}); tracking disabled for this stage, "
                          "metrics still go to the DVC metrics files", stacklevel=2)
            self._run = None

    def params(self, params: dict) -> None:
        flat = {k: (str(v) if isinstance(v, (list, tuple, dict)) else v) for k, v in flatten(params).items()}
        items = list(flat.items())
        for i in range(0, len(items), 100):  # MLflow caps a batch at 100 params
            self._call("log_params", dict(items[i:i + 100]))

    def metrics(self, metrics: dict, step: int | None = None) -> None:
        numeric = {k: float(v) for k, v in flatten(metrics).items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if numeric:
            self._call("log_metrics", numeric, step=step)

    def tags(self, tags: dict) -> None:
        self._call("set_tags", {k: str(v) for k, v in tags.items() if v is not None})

    def description(self, text: str) -> None:
        self._call("set_tag", DESCRIPTION_TAG, text)

    def artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if Path(path).exists():
            self._call("log_artifact", str(path), artifact_path)


@contextmanager
def stage_run(stage: str, params: dict | None = None, tags: dict | None = None,
              enabled: bool = True, experiment: str | None = None) -> Iterator[Tracker]:
    """Open one MLflow run for a stage execution, tagged with the stage, git commit, DVC experiment
    and profile, in `experiment` (default: MLFLOW_EXPERIMENT_NAME or vjepa-reproduction); yields a
    Tracker (inactive if MLflow is unreachable, enabled is False (e.g. on ranks other than 0) or
    VJEPA_MLFLOW=0)."""
    if not enabled or os.environ.get("VJEPA_MLFLOW", "1") == "0":
        yield Tracker()
        return
    uri = tracking_uri()
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    run = None
    if not _server_reachable(uri):
        warnings.warn(f"MLflow tracking server {uri} is not reachable; stage '{stage}' runs without tracking "
                      "(its metrics still go to the DVC metrics files)", stacklevel=3)
    else:
        try:
            import mlflow
            mlflow.set_tracking_uri(uri)
            exp = mlflow.set_experiment(experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME", EXPERIMENT))
            if EXPERIMENT_KIND not in exp.tags:  # what these runs are, as MLflow 3's UI records an experiment's type
                mlflow.set_experiment_tag(EXPERIMENT_KIND, "custom_model_development")
            run = mlflow.start_run(run_name=os.environ.get("DVC_STAGE", stage))
        except Exception as e:
            warnings.warn(f"MLflow could not start a run at {uri} ({e.__class__.__name__}: {e}); "
                          f"stage '{stage}' runs without tracking", stacklevel=3)
            run = None
    tracker = Tracker(run)
    marker = open_run_marker(os.environ.get("DVC_STAGE", stage), run)
    base_tags = {"stage": stage, "dvc_stage": os.environ.get("DVC_STAGE"), "git_commit": git_commit(),
                 "dvc_experiment": os.environ.get("DVC_EXP_NAME")}
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
        if marker is not None:
            marker.unlink(missing_ok=True)


MARKERS = Path("runs") / ".work" / ".mlflow"


def open_run_marker(name: str, run) -> Path | None:
    """Mark the previous run of this stage KILLED if it never ended (the stage was killed: its
    marker is still there), then leave a marker for this run, removed when it ends."""
    marker = MARKERS / f"{name.replace('/', '_')}.run"
    if marker.exists():
        old = marker.read_text().strip()
        try:
            from mlflow.tracking import MlflowClient
            client = MlflowClient(tracking_uri())
            if client.get_run(old).info.status == "RUNNING":
                client.set_terminated(old, status="KILLED")
        except Exception as e:  # tracking must never take a stage down
            warnings.warn(f"MLflow: could not mark the interrupted run {old} killed ({e})", stacklevel=3)
        marker.unlink()
    if run is None:
        return None
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(run.info.run_id + "\n")
    return marker


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
    """One experiment per profile for the ablation runs, so that its runs table is the ablation table."""
    return f"{ABLATIONS}/{profile}"


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
    return {"masks_per_sample": len(masks),
            "blocks_per_mask": _joined([m.num_blocks for m in masks]),
            "spatial_scale": _joined([_scale(m.spatial_scale) for m in masks]),
            "temporal_extent": _joined([_scale(m.temporal_scale) for m in masks]),
            "mask_kind": _joined([m.kind for m in masks]),
            "target_kind": target}


def mask_metrics(stats: list[dict]) -> dict[str, float]:
    """Table 13's mask statistics, averaged over the masks of a sample: spatial and temporal
    masking ratio, context and target tokens per mask (each mask's own with a `mask<i>_` prefix
    when there are several)."""
    keys = {"spatial_masking_ratio": "spatial_masking_ratio", "temporal_masking_ratio": "temporal_masking_ratio",
            "context_tokens": "context_tokens_mean", "target_tokens": "target_tokens_mean"}
    out = {name: sum(s[k] for s in stats) / len(stats) for name, k in keys.items()}
    if len(stats) > 1:
        out.update({f"mask{i}_{name}": s[k] for i, s in enumerate(stats) for name, k in keys.items()})
    return out


def ablation_description(point: str, label: str, tables: list[str], changes: dict) -> str:
    """What the point varies against the profile's own pretraining, in a sentence or two."""
    def mask_text(m: dict) -> str:
        t = m.get("temporal_scale", (1.0, 1.0))
        return (f"{m.get('num_blocks', 8)} block(s) at spatial scale {_scale(m.get('spatial_scale', (0.15, 0.15)))}"
                f", temporal extent {_scale(t)}" + (f", kind {m['kind']}" if m.get("kind", "multiblock") != "multiblock" else ""))
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
