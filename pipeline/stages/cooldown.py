"""cooldown: V-JEPA 2's second pretraining stage for one seed: from the seed's pretraining
checkpoint with its optimizer state, on longer and larger clips, with a linear learning-rate decay."""

from __future__ import annotations

from pipeline.config import Params
from pipeline.plumbing import checkpoint_path
from pipeline.stages.pretraining import run_stage


def run(params: Params, seed: str | int | None = None, params_path: str = "params.yaml") -> dict | None:
    """Writes runs/cooldown/seed<k>/ and metrics/<profile>/cooldown/seed<k>.json."""
    seed = params.main_seed if seed is None else int(seed)
    cfg = params.cooldown_config(seed)
    upstream = [checkpoint_path(seed, "pretrain")]  # its content keys the work folder
    return run_stage(params, "cooldown", seed, cfg, params.cooldown_data(), upstream, params_path)
