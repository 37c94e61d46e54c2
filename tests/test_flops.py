"""The analytic FLOP count behind the GPU script's model FLOPs utilisation."""

import torch
from torch.utils.flop_counter import FlopCounterMode

from vjepa.models.flops import block_flops, step_flops
from vjepa.models import ModelConfig
from vjepa.models.vit import Block


def test_block_flops_match_a_hand_count_and_torch_counts_its_matmuls():
    n, d = 10, 48
    # by hand: qkv 2*n*d*3d + proj 2*n*d*d + fc1, fc2 2*n*d*4d each; QK^T and AV 2*n*n*d each
    hand = 2 * n * d * 3 * d + 2 * n * d * d + 2 * (2 * n * d * 4 * d) + 2 * (2 * n * n * d)
    assert block_flops(n, d, 4.0) == hand == 572_160
    with FlopCounterMode(display=False) as counter:  # torch counts the Linear layers (not CPU's fused attention)
        Block(d, num_heads=3)(torch.randn(1, n, d))
    assert counter.get_total_flops() == block_flops(n, d, 4.0) - 4 * n * n * d


def test_step_flops_add_target_forward_and_three_times_context_and_predictor():
    m = ModelConfig(
        size="tiny",
        img_size=32,
        patch_size=8,
        num_frames=4,
        embed_dim=48,
        depth=2,
        num_heads=3,
        pred_depth=1,
        pred_embed_dim=24,
    )  # grid 2x4x4: N = 32
    f = step_flops(m, context_tokens=[20, 6], target_tokens=[12, 26])
    patch = 2 * 32 * 48 * 3 * 2 * 8 * 8
    assert f["target_encoder"] == patch + 2 * block_flops(32, 48)
    assert f["context_encoder"] == 3 * (patch + 2 * block_flops(20, 48) + 2 * block_flops(6, 48))
    pred = sum(2 * c * 48 * 24 + block_flops(c + t, 24) + 2 * t * 24 * 48 for c, t in ((20, 12), (6, 26)))
    assert f["predictor"] == 3 * pred
    assert f["total"] == f["target_encoder"] + f["context_encoder"] + f["predictor"]
