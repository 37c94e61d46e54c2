"""prepare: the small real-data suite (default profile), or an index of a real-data profile's tasks."""
from __future__ import annotations

from pathlib import Path

from pipeline.config import Params
from pipeline.plumbing import finish
from pipeline.tracking import stage_run
from vjepa.config import to_dict
from vjepa.data.index import write_task_index
from vjepa.data.small_suite import build_small_suite
from vjepa.runtime import without_timings, write_json

OUT = Path("data/prepared")


def run(P: Params, key: str | None = None, params_path: str = "params.yaml") -> dict:
    """`prepare` set: build the small suite in data/prepared. `prepare: null`: read every task's
    annotations in its format once, check them and write a compact index that later stages load."""
    settings = {"prepare": to_dict(P.prepare) if P.prepare else None}
    with stage_run("prepare", settings, {"profile": P.profile}) as t:
        if P.prepare is not None:
            summary = build_small_suite(P.prepare, OUT)
        else:
            summary = {"tasks": {name: write_task_index(name, data, OUT / "index", P.index)
                                 for name, data in P.tasks.items()}}
            write_json(OUT / "index.json", without_timings(summary))  # read_seconds: metrics file only
        return finish(t, Path("metrics") / P.profile, "prepare", {"profile": P.profile, **summary_numbers(summary)})


def summary_numbers(summary: dict) -> dict:
    """The counts, durations and sizes of a prepare summary (class name lists dropped)."""
    def keep(v):
        if isinstance(v, dict):
            return {k: keep(x) for k, x in v.items() if keep(x) is not None}
        return v if isinstance(v, (int, float, str)) and not isinstance(v, bool) else None
    return keep(summary)
