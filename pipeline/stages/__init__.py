"""The DVC stages, one module each: `run(P, key)` reads its typed section of `Params`, calls one
`vjepa` function, writes its outputs and a metrics JSON, and logs the same to MLflow.

Each module imports only what its stage runs, so dvc.yaml lists exactly those files as the
stage's deps (tests/test_dvc_deps.py derives them from the imports and checks). The command line
(`python -m pipeline <stage> [key]`) imports one stage module, never all of them.
"""
from __future__ import annotations

import importlib

STAGES = ("source", "prepare", "masks", "pretrain", "probe", "detect", "learn", "ablate", "finetune", "report")


def run(stage: str, params_path: str = "params.yaml", key: str | None = None):
    """Load and validate the params once, then run one stage (with its foreach key)."""
    from pipeline.config import load

    module = importlib.import_module(f"pipeline.stages.{stage}")
    return module.run(load(params_path), key, params_path)
