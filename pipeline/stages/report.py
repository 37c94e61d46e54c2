"""report: reports/<profile>/README.md and figures, from that profile's metrics files alone; the
ablation verdicts it reports also land on the ablation runs in MLflow."""

from __future__ import annotations

from pipeline import report
from pipeline.config import Params
from pipeline.tracking import ablation_reference, log_verdicts, stage_run


def run(params: Params, key: str | None = None, params_path: str = "params.yaml") -> dict:
    with stage_run("report", None, {"profile": params.profile}) as t:
        path = report.build_report(params)
        t.artifact(path)
        log_verdicts(params.profile, ablation_reference(params), report.COMPARISONS)
        return {"report": str(path)}
