"""report: reports/<profile>/README.md and figures, from that profile's metrics files alone."""
from __future__ import annotations

from pipeline.config import Params
from pipeline.report import build_report
from pipeline.tracking import stage_run


def run(P: Params, key: str | None = None, params_path: str = "params.yaml") -> dict:
    with stage_run("report", None, {"profile": P.profile}) as t:
        path = build_report(P)
        t.artifact(path)
        return {"report": str(path)}
