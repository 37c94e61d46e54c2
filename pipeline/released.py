"""The probe stage for `probe.tasks.<task>.evaluate_only: {probe: <file>, encoder: <file>}`: a released
probe evaluated as it is on the task's validation set, with the official protocol for that task
(segments and views; overlapping clips in short videos), written where a trained probe's results
go (runs/probe/<task>/, metrics/probe/<task>.json) and labelled there as a released probe."""
from __future__ import annotations

import dataclasses

from pipeline.params import section
from pipeline.stages import (RUNS, ProbeTask, _finish, checkpoint_path, frozen_encoder, main_seed, model_config,
                             probe_config, probe_datasets, profile_name, publish, work_dir)
from pipeline.tracking import stage_run
from vjepa.config import from_dict, to_dict
from vjepa.probe import EvaluateOnly, evaluate_released


def evaluate_only_spec(task: ProbeTask, task_name: str) -> EvaluateOnly:
    return from_dict(EvaluateOnly, task.evaluate_only, f"params.yaml:probe.tasks.{task_name}.evaluate_only")


def evaluate_only(params: dict, task_name: str, task: ProbeTask) -> dict:
    """Evaluate the released probe of one task; returns (and writes) the stage's metrics."""
    spec = evaluate_only_spec(task, task_name)
    segments, views = spec.protocol(task_name)
    seed = main_seed(params)
    encoder_file = (spec.encoder or section(params, "probe.encoder", {}).get("checkpoint")
                    or str(checkpoint_path(seed)))
    settings = {"task": to_dict(task), "evaluate_only": to_dict(spec), "encoder": encoder_file,
                "segments": segments, "views": views, "data": section(params, f"tasks.{task.data}")}
    with stage_run("probe", settings, {"profile": profile_name(params), "task": task_name, "released": "true"}) as t:
        encoder, _ = frozen_encoder(params, encoder_file, override=False)
        protocol = dataclasses.replace(task, eval_views=views, allow_overlap=True)  # official frozen-eval clips
        _, val_set, n = probe_datasets(params, protocol, model_config(params).img_size, segments, seed)
        cfg = probe_config(params, task, n, segments, seed)
        work = work_dir(f"probe-{task_name}", settings)
        run = evaluate_released(cfg, encoder, spec.probe, val_set, work / f"segments{segments}", encoder_file,
                                spec.num_heads)
        publish(work, RUNS / "probe" / task_name)
        by_kind = {k: run["probes"][n]["top1"] for k, n in run["best_probe_by_kind"].items()}
        metrics = {"profile": profile_name(params), "task": task_name, "seed": seed, "encoder": encoder_file,
                   "released_probe": spec.probe, "top1": run["best_top1"], "top1_by_kind": by_kind,
                   "coverage": {f"segments{segments}": by_kind}, "runs": {f"segments{segments}": run}}
        return _finish(t, f"probe/{task_name}", metrics)
