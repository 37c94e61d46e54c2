"""The stage functions: each reads its params section, calls vjepa, writes outputs and metrics."""
from __future__ import annotations

from pathlib import Path

from pipeline.params import load_params, typed, write_json, section
from vjepa.masks import MaskConfig, mask_statistics, plot_masks
from vjepa.models import ModelConfig


def masks(params_path: str = "params.yaml") -> dict:
    """Mask statistics of the configured mask set and a picture of sampled masks (Figure 6)."""
    params = load_params(params_path)
    model = typed(ModelConfig, params, "model")
    cfgs = [typed(MaskConfig, {"m": m}, "m") for m in section(params, "masks")]
    out = Path("runs/masks")
    stats = {f"mask{i}": mask_statistics(c, model.grid, batch_size=24, num_batches=50) for i, c in enumerate(cfgs)}
    plot_masks(cfgs, model.grid, out / "masks.png")
    write_json(out / "metrics.json", stats)
    return stats


STAGES = {"masks": masks}
