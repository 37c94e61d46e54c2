"""pretrain: V-JEPA pretraining with one seed (official-layout checkpoint, step metrics, summary)."""

from __future__ import annotations

from pipeline.config import Params
from pipeline.stages.pretraining import run_stage


def run(params: Params, seed: str | int | None = None, params_path: str = "params.yaml") -> dict | None:
    """Pretrain with one seed; writes runs/pretrain/seed<k>/ and metrics/<profile>/pretrain/seed<k>.json."""
    seed = params.main_seed if seed is None else int(seed)
    return run_stage(params, "pretrain", seed, params.pretrain_config(seed), params.pretrain.data, [], params_path)
