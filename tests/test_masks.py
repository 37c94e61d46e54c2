"""3D multi-block masks: block geometry, context = complement of the union, batch-equal lengths,
statistics against the official collator's measured distribution, random tubes, the figure."""

import pytest
import torch

from vjepa.infra.config import ConfigError, from_dict
from vjepa.jepa.masks import MaskCollator, MaskGenerator, mask_statistics, plot_masks
from vjepa.infra.configs import MaskConfig
from vjepa.infra.configs import LONG_RANGE, PAPER_MASKS, SHORT_RANGE

GRID = (8, 14, 14)


def test_block_sizes_follow_the_step_seeded_draws():
    # The official collator's first block sizes (spec 3.2): (8,5,6) short-range and (8,11,13) long-range at seed 0.
    assert MaskGenerator(SHORT_RANGE, GRID).block_size(0) == (8, 5, 6)
    assert MaskGenerator(LONG_RANGE, GRID).block_size(0) == (8, 11, 13)
    for step in range(50):
        t, h, w = MaskGenerator(SHORT_RANGE, GRID).block_size(step)
        assert t == 8 and 5 <= h <= 7 and 4 <= w <= 6
        t, h, w = MaskGenerator(LONG_RANGE, GRID).block_size(step)
        assert t == 8 and 10 <= h <= 14 and 10 <= w <= 14


def test_context_is_the_complement_of_the_target_union_and_spans_all_frames():
    gen = MaskGenerator(SHORT_RANGE, GRID, seed=3)
    grids = gen.sample_grids(4, step=7)
    ctx, tgt = gen.to_indices(grids)
    assert ctx.dtype == torch.int64 and ctx.shape[0] == tgt.shape[0] == 4
    for b, keep in enumerate(grids):
        # full temporal extent: every frame has the same spatial mask
        assert torch.equal(keep, keep[:1].expand_as(keep))
        flat = keep.flatten()
        c = torch.nonzero(flat).flatten()
        t = torch.nonzero(flat == 0).flatten()
        assert torch.equal(ctx[b], c[: ctx.shape[1]])  # cut keeps the lowest indices
        assert torch.equal(tgt[b], t[: tgt.shape[1]])
        assert set(c.tolist()).isdisjoint(t.tolist()) and len(c) + len(t) == 8 * 14 * 14
    assert ctx.shape[1] == min(int(g.sum()) for g in grids)
    assert (ctx.diff(dim=1) > 0).all() and (tgt.diff(dim=1) > 0).all()


def test_masks_are_a_function_of_seed_step_and_rank():
    a = MaskCollator(PAPER_MASKS, GRID, seed=1)(6, step=11)
    b = MaskCollator(PAPER_MASKS, GRID, seed=1)(6, step=11)
    c = MaskCollator(PAPER_MASKS, GRID, seed=1, rank=1)(6, step=11)
    assert all(torch.equal(x, y) for x, y in zip(a[0] + a[1], b[0] + b[1]))
    assert (
        not all(torch.equal(x, y) for x, y in zip(a[0], c[0]) if x.shape == y.shape) or a[0][0].shape != c[0][0].shape
    )


def test_statistics_match_the_official_collator():
    """Spec 3.2 (official collator, 200 batches of 24 at 224 px, 16 frames): context / target tokens
    366 / 747 (short-range) and 107 / 1102 (long-range). Tolerance: 4% of the mean."""
    short = mask_statistics(SHORT_RANGE, GRID, batch_size=24, num_batches=200)
    long_ = mask_statistics(LONG_RANGE, GRID, batch_size=24, num_batches=200)
    for got, ref in [
        (short["context_tokens_mean"], 366),
        (short["target_tokens_mean"], 747),
        (long_["context_tokens_mean"], 107),
        (long_["target_tokens_mean"], 1102),
    ]:
        assert abs(got - ref) <= 0.04 * ref, (got, ref)
    # ranges inside the official ones, widened by one block row
    assert 180 <= short["context_tokens_min"] and short["context_tokens_max"] <= 560
    assert 1000 <= long_["target_tokens_min"] and long_["target_tokens_max"] <= 1260
    assert short["temporal_masking_ratio"] == 1.0
    assert 0.55 < short["spatial_masking_ratio"] < 0.7 and 0.75 < long_["spatial_masking_ratio"] < 0.87


def test_temporal_keep_limit_moves_late_frames_to_the_target():
    cfg = MaskConfig(num_blocks=1, spatial_scale=(0.1, 0.1), max_temporal_keep=0.5)
    gen = MaskGenerator(cfg, GRID)
    keep = gen.sample_grids(2, 0)[0]
    assert keep[4:].sum() == 0 and keep[:4].sum() > 0


def test_random_tube_masks_tile_one_spatial_pattern():
    cfg = MaskConfig(kind="random_tube", ratio=0.9)
    gen = MaskGenerator(cfg, GRID)
    ctx, tgt = gen(3, step=0)
    assert ctx.shape == (3, 8 * int(196 * 0.1)) and tgt.shape == (3, 1568 - 8 * 19)
    spatial = ctx % 196
    assert torch.equal(spatial[:, :19].repeat(1, 8), spatial)


def test_mask_config_is_validated_at_the_edge():
    with pytest.raises(ConfigError, match="mask.spatial_scale"):
        from_dict(MaskConfig, {"spatial_scale": [0.2, "big"]}, "mask")
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(MaskConfig, {"num_block": 3}, "mask")
    with pytest.raises(ConfigError, match="kind"):
        from_dict(MaskConfig, {"kind": "tube"}, "mask")
    cfg = from_dict(MaskConfig, {"num_blocks": 2, "spatial_scale": [0.7, 0.7]})
    assert cfg.spatial_scale == (0.7, 0.7)


def test_figure_of_sampled_masks_is_written(tmp_path):
    path = tmp_path / "masks.png"
    plot_masks(PAPER_MASKS, GRID, path, samples=3)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 2000


def test_a_batch_without_clips_gets_empty_masks_not_an_error():
    # every clip of a micro-batch failed to decode: the collator returns [0, 0] masks per config
    ctx, tgt = MaskCollator(PAPER_MASKS, (8, 14, 14), seed=0)(0, step=3)
    assert [tuple(c.shape) for c in ctx + tgt] == [(0, 0)] * 4 and all(c.dtype == torch.int64 for c in ctx + tgt)
