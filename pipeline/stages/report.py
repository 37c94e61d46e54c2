"""report: reports/<profile>/README.md and figures, from that profile's metrics files alone; the
ablation verdicts it reports also land on the ablation runs in MLflow."""

from __future__ import annotations

from pipeline import report
from pipeline.config import Params
from pipeline.tracking import ablation_reference, log_verdicts, stage_run


def run(P: Params, key: str | None = None, params_path: str = "params.yaml") -> dict:
    with stage_run("report", None, {"profile": P.profile}) as t:
        path = report.build_report(P)
        t.artifact(path)
        log_verdicts(P.profile, ablation_reference(P), report.COMPARISONS)
        return {"report": str(path)}
