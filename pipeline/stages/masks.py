"""masks: mask statistics and sampled masks (Figure 6)."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import Params
from pipeline.plumbing import RUNS, finish
from pipeline.tracking import stage_run
from vjepa.infra.config import to_dict
from vjepa.jepa.masks import mask_statistics, plot_masks


def run(params: Params, key: str | None = None, params_path: str = "params.yaml") -> dict:
    grid = params.model.grid
    out = RUNS / "masks"
    with stage_run("masks", {"masks": [to_dict(m) for m in params.masks]}, {"profile": params.profile}) as t:
        stats = {
            f"mask{i}": mask_statistics(c, grid, batch_size=24, num_batches=50) for i, c in enumerate(params.masks)
        }
        plot_masks(params.masks, grid, out / "masks.png")
        return finish(
            t,
            Path("metrics") / params.profile,
            "masks",
            {"profile": params.profile, "grid": list(grid), **stats},
            out / "masks.png",
        )
