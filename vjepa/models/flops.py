"""Model FLOPs of the V-JEPA pretraining step, counted analytically from the shapes as the step runs
them (matmuls and attention, 2 FLOPs per multiply-add; norms, activations and the optimizer are
left out, as model FLOPs utilisation conventionally does). Written here because a profiler's count
misses the fused attention kernels on some backends; tests/test_flops.py checks it against torch's
counter and a hand count for one block."""

from __future__ import annotations


def block_flops(tokens: int, width: int, mlp_ratio: float = 4.0) -> float:
    """One pre-norm transformer block forward on `tokens` tokens of `width`: the qkv, output and two
    MLP matmuls (2 n d^2 (4 + 2 r)) plus QK^T and attention x V (4 n^2 d)."""
    n, d = tokens, width
    return 2 * n * d * d * (4 + 2 * mlp_ratio) + 4 * n * n * d


def step_flops(model, context_tokens: list[int], target_tokens: list[int]) -> dict[str, float]:
    """FLOPs per clip of one step of `model` (a vjepa.models.ModelConfig) whose mask configs keep
    context_tokens[i] and predict target_tokens[i]: the target encoder forward on all N tokens (no
    backward), then the context encoder (patch embedding once, blocks per mask) and the predictor
    per mask, forward and backward (backward = 2 x forward). Returns the parts and their total."""
    D, depth, _, ratio = model.encoder_shape()
    P, pdepth = model.pred_embed_dim, model.pred_depth
    t, h, w = model.grid
    N = t * h * w
    patch = 2 * N * D * model.in_chans * model.tubelet_size * model.patch_size**2
    target = patch + depth * block_flops(N, D, ratio)
    context = patch + sum(depth * block_flops(kc, D, ratio) for kc in context_tokens)
    predictor = sum(
        2 * kc * D * P + pdepth * block_flops(kc + kt, P, 4.0) + 2 * kt * P * D
        for kc, kt in zip(context_tokens, target_tokens)
    )
    parts = {"target_encoder": float(target), "context_encoder": 3.0 * context, "predictor": 3.0 * predictor}
    parts["total"] = sum(parts.values())
    return parts
