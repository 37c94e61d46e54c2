"""What several stages share on top of the typed params: the frozen encoder a probe or the
detection head reads, and one probe run on a task."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from pipeline.config import Params
from pipeline.plumbing import PREPARED
from vjepa.data import read_task, task_datasets
from vjepa.data.index import load_task_index
from vjepa.models import ModelConfig
from vjepa.evals.frozen import build_frozen_encoder
from vjepa.evals.probe import run_probe
from vjepa.infra.configs import EncoderConfig

INDEX = PREPARED / "index"


def frozen_encoder(params: Params, checkpoint: str | None, model: ModelConfig | None = None, override: bool = True):
    """The EMA target encoder of a checkpoint (None: random init) of shape `model` (default: the
    `model` section), or, with override, the `probe.encoder` section's encoder (a released V-JEPA
    file or a timm image model run frame by frame). Returns (encoder, its config)."""
    enc = params.probe.encoder if override else EncoderConfig()
    if enc.checkpoint is None:
        enc = dataclasses.replace(enc, checkpoint=checkpoint)
    return build_frozen_encoder(enc, model or params.model), enc


def task_files(params: Params, *tasks: str) -> list[str]:
    """The annotation files (and ImageFolder roots) of tasks as their specs name them: what,
    besides data/prepared and a checkpoint, keys a stage's work folder (plumbing.work_dir)."""
    return [
        f for t in tasks for src in (params.tasks[t].train, params.tasks[t].val) for f in (src.path, src.labels) if f
    ]


def encoder_files(params: Params, checkpoint: str | None) -> list[str]:
    """The files a frozen encoder is read from: the checkpoint, or `probe.encoder`'s own file."""
    return [f for f in (checkpoint, params.probe.encoder.checkpoint, params.probe.encoder.timm_weights) if f]


def probe_checkpoint(params: Params) -> str | None:
    """The main seed's pretraining checkpoint, unless `probe.encoder` names another encoder."""
    return None if params.probe.encoder.checkpoint else params.encoder_checkpoint(params.main_seed)


def task_entries(params: Params, name: str):
    """(train, val, classes) of a task: real-data profiles (`prepare: null`) load the index that
    prepare wrote (read and checked once); the small suite is read directly (it is tiny)."""
    return load_task_index(name, params.tasks[name], INDEX) if params.prepare is None else read_task(params.tasks[name])


def probe_task(
    params: Params, task: str, encoder, out: Path, seed: int, segments: int, name: str, extra: dict | None = None
) -> dict:
    """Every probe of the grid on one task (its datasets from the task spec), written under `out`."""
    spec = params.probe.tasks[task]
    train_set, val_set, n = task_datasets(
        params.tasks[spec.data], spec, params.model.img_size, segments, seed, task_entries(params, spec.data)
    )
    return run_probe(
        params.probe_config(task, n, segments, seed, extra), encoder, train_set, val_set, out, encoder_name=name
    )


def top1_by_kind(result: dict) -> dict:
    """{probe kind: top-1 of that kind's best probe} of a run_probe result."""
    return {k: result["probes"][n]["top1"] for k, n in result["best_probe_by_kind"].items()}
