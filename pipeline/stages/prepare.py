"""prepare: the small real-data suite (default profile), or an index of a real-data profile's tasks."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import Params
from pipeline.plumbing import finish
from pipeline.tracking import stage_run
from vjepa.infra.config import to_dict
from vjepa.data.checks import check_ava, check_pretraining_lists
from vjepa.data.readers import check_files_exist
from vjepa.data.index import read_checked_task, write_task_index
from vjepa.data.small_suite import build_small_suite
from vjepa.infra.runtime import without_timings, write_json

OUT = Path("data/prepared")


def run(params: Params, key: str | None = None, params_path: str = "params.yaml") -> dict:
    """`prepare` set: build the small suite in data/prepared. `prepare: null`: read every task's
    annotations in its format once, check them and write a compact index that later stages load,
    after checking every other file a later stage reads (check_later_inputs)."""
    settings = {"prepare": to_dict(params.prepare) if params.prepare else None}
    with stage_run("prepare", settings, {"profile": params.profile}) as t:
        if params.prepare is not None:
            summary = build_small_suite(params.prepare, OUT)
        else:
            tasks = {
                name: write_task_index(name, data, OUT / "index", params.index) for name, data in params.tasks.items()
            }
            write_json(OUT / "index.json", without_timings({"tasks": tasks}))  # read_seconds: metrics file only
            summary = {"tasks": tasks, **check_later_inputs(params)}
        return finish(
            t, Path("metrics") / params.profile, "prepare", {"profile": params.profile, **summary_numbers(summary)}
        )


def pretraining_lists(params: Params) -> list[str]:
    """Every `path label` list a pretraining reads: the main mix and each ablation point's own."""
    lists = list(params.pretrain.data.sources)
    for point in params.ablations.points:
        lists += params.ablation_data(point).sources
    return list(dict.fromkeys(lists))


def check_later_inputs(params: Params) -> dict:
    """Read what the stages after prepare read, besides the tasks prepare indexes: the pretraining
    lists and the files they name (all, or `index.sample_files` of each), the AVA folder, and the
    checkpoint files a profile names. A wrong path fails here, naming the file."""
    every, sample, bar = params.index.check_files, params.index.sample_files, params.index.progress
    files = [
        f for f in (params.probe.encoder.checkpoint, params.probe.encoder.timm_weights, params.finetune.checkpoint) if f
    ]
    check_files_exist(files, "params.yaml", what="checkpoint named by the profile")
    return {
        "pretrain_lists": check_pretraining_lists(pretraining_lists(params), every, sample, bar),
        "detect": check_ava(params.detect.data, params.detect.clip),
    }


def check_inputs(params: Params) -> dict:
    """What prepare reads and checks on a real-data profile, without writing anything (`check
    --files`); the small suite is what prepare builds, so there is nothing to read before it."""
    if params.prepare is not None:
        return {"small_suite": "built by prepare: nothing to read before it"}
    tasks = {}
    for name, data in params.tasks.items():
        train, val, _ = read_checked_task(data, params.index)
        tasks[name] = {"train": len(train), "val": len(val)}
    return {"tasks": tasks, **check_later_inputs(params)}


def summary_numbers(summary: dict) -> dict:
    """The counts, durations and sizes of a prepare summary (class name lists dropped)."""

    def keep(v):
        if isinstance(v, dict):
            return {k: keep(x) for k, x in v.items() if keep(x) is not None}
        return v if isinstance(v, (int, float, str)) and not isinstance(v, bool) else None

    return keep(summary)
