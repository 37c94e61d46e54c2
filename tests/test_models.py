"""The video ViT and predictor: sizes, positions, token order, masked forward, determinism."""

import numpy as np
import pytest
import torch

from vjepa.models import ModelConfig, build_encoder, build_predictor, count_trainable, gather_tokens
from vjepa.models.pos_embed import interpolate_pos_embed, sincos_1d, sincos_3d

TINY = ModelConfig(
    size="tiny",
    img_size=32,
    num_frames=4,
    patch_size=8,
    embed_dim=48,
    depth=2,
    num_heads=3,
    pred_depth=2,
    pred_embed_dim=24,
    pred_num_heads=3,
)


@pytest.mark.parametrize(
    "size,encoder,predictor",
    [
        ("large", 303_885_312, 22_082_944),
        ("huge", 631_648_000, 22_279_808),
    ],
)
def test_parameter_counts_match_the_released_models(size, encoder, predictor):
    cfg = ModelConfig(size=size)
    with torch.device("meta"):  # no weights allocated
        enc, pred = build_encoder(cfg), build_predictor(cfg)
    assert count_trainable(enc) == encoder
    assert count_trainable(pred) == predictor
    assert not enc.pos_embed.requires_grad and not pred.predictor_pos_embed.requires_grad
    assert enc.pos_embed.shape == (1, 1568, cfg.encoder_shape()[0])


def test_sincos_1d_is_sines_then_cosines():
    d = 8
    emb = sincos_1d(d, np.array([3.0]))[0]
    omega = 1.0 / 10000 ** (np.arange(4) / 4.0)
    np.testing.assert_allclose(emb, np.concatenate([np.sin(3 * omega), np.cos(3 * omega)]))


@pytest.mark.parametrize("dim,part", [(1024, 342), (1280, 428), (384, 128)])
def test_position_table_is_the_closed_form_uniform_power_recipe(dim, part):
    T, H, W = 8, 14, 14
    table = sincos_3d(dim, T, H, W, uniform_power=True)
    assert table.shape == (T * H * W, dim)
    # token n = t*H*W + h*W + w carries [sincos(t) | sincos(h) | sincos(w)] truncated to dim
    for t, h, w in [(0, 0, 0), (3, 5, 7), (7, 13, 13)]:
        n = t * H * W + h * W + w
        expect = np.concatenate(
            [sincos_1d(part, np.array([t])), sincos_1d(part, np.array([h])), sincos_1d(part, np.array([w]))], axis=1
        )[0, :dim]
        np.testing.assert_array_equal(table[n], expect)


def test_position_table_without_uniform_power_splits_half_quarter_quarter():
    table = sincos_3d(16, 2, 3, 3, uniform_power=False)
    n = 1 * 9 + 2 * 3 + 1
    expect = np.concatenate([sincos_1d(8, np.array([1])), sincos_1d(4, np.array([2])), sincos_1d(4, np.array([1]))], 1)[
        0
    ]
    np.testing.assert_array_equal(table[n], expect)


def test_tokens_are_ordered_time_then_height_then_width():
    enc = build_encoder(TINY).eval()
    x = torch.zeros(1, 3, 4, 32, 32)
    x[:, :, 2:4, 8:16, 24:32] = 1.0  # tubelet t=1, row h=1, column w=3
    with torch.no_grad():
        emb = enc.patch_embed(x)[0]
    baseline = enc.patch_embed(torch.zeros_like(x))[0]
    changed = (emb - baseline).abs().sum(-1).nonzero().flatten().tolist()
    assert changed == [1 * 16 + 1 * 4 + 3]


def test_positions_interpolate_trilinearly_and_identity_on_same_grid():
    table = torch.from_numpy(sincos_3d(12, 4, 4, 4)).float().unsqueeze(0)
    assert interpolate_pos_embed(table, (4, 4, 4), (4, 4, 4)) is table
    up = interpolate_pos_embed(table, (4, 4, 4), (8, 4, 4))
    ref = torch.nn.functional.interpolate(
        table.reshape(1, 4, 4, 4, 12).permute(0, 4, 1, 2, 3), size=(8, 4, 4), mode="trilinear"
    )
    torch.testing.assert_close(up, ref.permute(0, 2, 3, 4, 1).reshape(1, -1, 12))
    enc = build_encoder(TINY).eval()
    with torch.no_grad():
        out = enc(torch.randn(2, 3, 8, 48, 32))  # other frame count and size
    assert out.shape == (2, 4 * 6 * 4, 48)


def test_masked_forward_equals_gathering_rows_of_the_full_computation_for_one_block():
    """With no attention between tokens (1 kept token), masked forward = that token alone."""
    enc = build_encoder(TINY).eval()
    x = torch.randn(2, 3, 4, 32, 32)
    keep = torch.tensor([[5], [17]])
    with torch.no_grad():
        (z,) = enc(x, [keep])
        tokens = gather_tokens(enc.tokens(x), keep)
        ref = enc.norm(enc.blocks[1](enc.blocks[0](tokens)))
    assert z.shape == (2, 1, 48)
    torch.testing.assert_close(z, ref, rtol=0, atol=0)


def test_out_layers_return_normed_intermediate_features():
    enc = build_encoder(TINY).eval()
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        l1, l2 = enc(x, out_layers=[1, 2])
        full = enc(x)
        t = enc.tokens(x)
        ref1 = enc.norm(enc.blocks[0](t))
    torch.testing.assert_close(l2, full, rtol=0, atol=0)
    torch.testing.assert_close(l1, ref1, rtol=0, atol=0)
    with pytest.raises(ValueError, match="out_layers"):
        enc(x, out_layers=[3])


def test_images_become_still_clips():
    enc = build_encoder(TINY).eval()
    img = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        a = enc(img)
        b = enc(img.unsqueeze(2).repeat(1, 1, 4, 1, 1))
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_encoder_and_predictor_train_forward_backward_deterministically():
    def run():
        torch.manual_seed(123)
        enc, pred = build_encoder(TINY), build_predictor(TINY)
        x = torch.randn(3, 3, 4, 32, 32)
        ctx = torch.tensor([[0, 1, 2, 9, 20, 30]] * 3)
        tgt = torch.tensor([[3, 4, 5, 6, 31]] * 3)
        (z,) = enc(x, [ctx])
        p = pred(z, ctx, tgt, mask_index=1)
        loss = p.abs().mean()
        loss.backward()
        return p.detach(), enc.patch_embed.proj.weight.grad.clone(), pred.mask_tokens[1].grad.clone()

    p1, g1, m1 = run()
    p2, g2, m2 = run()
    assert p1.shape == (3, 5, 48)
    assert torch.equal(p1, p2) and torch.equal(g1, g2) and torch.equal(m1, m2)
    assert g1.abs().sum() > 0 and m1.abs().sum() > 0


def test_attention_unbinds_q_k_v_and_gets_the_bits_of_indexing_them_forward_and_backward():
    """Attention takes q, k, v by unbind (its backward stacks three gradients) where the official
    code indexes qkv[0], qkv[1], qkv[2] (its backward sums three zero-padded copies): the same
    outputs and the same gradients, bit for bit."""
    import torch.nn.functional as F
    from vjepa.models.vit import Attention

    def indexed(attn, qkv):  # the official form
        B, N, C3 = qkv.shape
        qkv = qkv.reshape(B, N, 3, attn.num_heads, C3 // (3 * attn.num_heads)).permute(2, 0, 3, 1, 4)
        return F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2]).transpose(1, 2).reshape(B, N, C3 // 3)

    torch.manual_seed(0)
    attn = Attention(48, 3)
    x = torch.randn(3, 20, 48, requires_grad=True)
    w = torch.randn(3, 20, 48)
    results = []
    for attend in (attn.attend, lambda qkv: indexed(attn, qkv)):
        x.grad = None
        attn.zero_grad(set_to_none=True)
        y = attn.proj(attend(attn.qkv(x)))
        (y * w).sum().backward()
        results.append([y.detach(), x.grad, attn.qkv.weight.grad, attn.qkv.bias.grad, attn.proj.weight.grad])
    for ours, official in zip(*results):
        assert torch.equal(ours, official)
    assert results[0][2].abs().sum() > 0


def test_predictor_uses_mask_token_of_its_config():
    pred = build_predictor(TINY).eval()
    with torch.no_grad():
        pred.mask_tokens[0].fill_(1.0)
        pred.mask_tokens[1].fill_(-1.0)
        z = torch.randn(1, 3, 48)
        ctx, tgt = torch.tensor([[0, 1, 2]]), torch.tensor([[7, 8]])
        a, b = pred(z, ctx, tgt, 0), pred(z, ctx, tgt, 1)
    assert not torch.equal(a, b)
    with torch.no_grad():
        assert torch.equal(pred(z, ctx, tgt, 2), a)  # index taken modulo the number of tokens


def test_effective_init_has_no_depth_rescaling_and_zero_mask_tokens():
    cfg = ModelConfig(size="base", img_size=32, num_frames=2)
    enc, pred = build_encoder(cfg), build_predictor(cfg)
    assert abs(enc.blocks[-1].attn.proj.weight.std().item() - 0.02) < 2e-3
    assert abs(enc.patch_embed.proj.weight.std().item() - 0.02) < 2e-3
    assert all(torch.count_nonzero(t) == 0 for t in pred.mask_tokens)
    assert torch.count_nonzero(enc.blocks[0].attn.qkv.bias) == 0


def test_predictor_normalises_only_the_target_tokens_it_reads_out_and_gets_the_same_numbers():
    cfg = ModelConfig(
        size="tiny",
        img_size=32,
        patch_size=8,
        num_frames=4,
        embed_dim=48,
        depth=1,
        num_heads=3,
        pred_depth=2,
        pred_embed_dim=24,
    )
    torch.manual_seed(0)
    pred = build_predictor(cfg).eval()
    ctx_idx, tgt_idx = torch.tensor([[0, 3, 5, 9], [1, 2, 4, 6]]), torch.tensor([[1, 2, 7], [0, 8, 9]])
    z = torch.randn(2, 4, 48)
    seen = {}
    pred.predictor_norm.register_forward_hook(
        lambda m, args, out: seen.update(rows=args[0].numel() // args[0].shape[-1])
    )
    with torch.no_grad():
        ours = pred(z, ctx_idx, tgt_idx)
        # reference: every token through the final norm, then the target rows read out
        pos = pred.predictor_pos_embed.expand(2, -1, -1)
        x = torch.cat(
            [
                pred.predictor_embed(z) + gather_tokens(pos, ctx_idx),
                pred.mask_tokens[0].expand(2, 3, -1) + gather_tokens(pos, tgt_idx),
            ],
            dim=1,
        )
        for blk in pred.predictor_blocks:
            x = blk(x)
        ref = pred.predictor_proj(
            torch.nn.functional.layer_norm(x, (24,), pred.predictor_norm.weight, pred.predictor_norm.bias, 1e-6)[:, -3:]
        )
    assert seen["rows"] == 2 * 3 and ours.shape == (2, 3, 48)
    assert torch.equal(ours, ref)


def _one_pass_per_mask(enc, pred, x, ctx_masks, tgt_masks):
    """The official order of work: the encoder and the predictor run each mask's sequences alone."""
    tokens = enc.tokens(x)
    preds = []
    for i, (c, t) in enumerate(zip(ctx_masks, tgt_masks)):
        z = gather_tokens(tokens, c)
        for blk in enc.blocks:
            z = blk(z)
        z = enc.norm(z)
        pos = pred.predictor_pos_embed.expand(x.size(0), -1, -1)
        s = torch.cat(
            [
                pred.predictor_embed(z) + gather_tokens(pos, c),
                pred.mask_tokens[i].expand(*t.shape, -1) + gather_tokens(pos, t),
            ],
            dim=1,
        )
        for blk in pred.predictor_blocks:
            s = blk(s)
        preds.append(pred.predictor_proj(pred.predictor_norm(s[:, -t.size(1) :])))
    return preds


@pytest.mark.parametrize("checkpointing", [False, True])
def test_packed_masks_give_the_numbers_of_one_pass_per_mask(checkpointing):
    """Both masks' token sets run through each block as one matrix (attention split per mask): the
    forward pass gives the per-mask numbers (float rounding at most: a larger matrix product may
    block its sums differently; on x86 CPUs they come out bit for bit), the gradients sum the same
    products in another order (stated tolerance 1e-5 relative)."""
    cfg = ModelConfig(**{**TINY.__dict__, "activation_checkpointing": checkpointing})
    torch.manual_seed(0)
    enc, pred = build_encoder(cfg).train(), build_predictor(cfg).train()
    with torch.no_grad():
        for t in pred.mask_tokens:
            t.normal_(0, 0.02)
    x = torch.randn(3, 3, 4, 32, 32)
    g = torch.Generator().manual_seed(1)
    ctx = [torch.randperm(32, generator=g)[:k].sort().values.expand(3, -1) for k in (9, 20)]
    tgt = [torch.randperm(32, generator=g)[:k].sort().values.expand(3, -1) for k in (7, 12)]

    def run(fn):
        enc.zero_grad(), pred.zero_grad()
        preds = fn()
        sum(p.abs().mean() for p in preds).backward()
        grads = {n: p.grad.clone() for m in (enc, pred) for n, p in m.named_parameters() if p.grad is not None}
        return [p.detach() for p in preds], grads

    packed, g_packed = run(lambda: pred.forward_masks(enc(x, ctx), ctx, tgt))
    ref, g_ref = run(lambda: _one_pass_per_mask(enc, pred, x, ctx, tgt))
    assert [p.shape for p in packed] == [(3, 7, 48), (3, 12, 48)]
    for a, b in zip(packed, ref):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert g_packed.keys() == g_ref.keys() and len(g_ref) > 20
    for name in g_ref:
        torch.testing.assert_close(g_packed[name], g_ref[name], rtol=1e-5, atol=1e-8, msg=name)


def test_packed_masked_forward_returns_out_layers_per_mask():
    enc = build_encoder(TINY).eval()
    x = torch.randn(2, 3, 4, 32, 32)
    masks = [torch.tensor([[0, 4, 9]] * 2), torch.tensor([[1, 2, 3, 30, 31]] * 2)]
    with torch.no_grad():
        per_mask = enc(x, masks, out_layers=[1, 2])
        last = enc(x, masks)
    assert [[t.shape for t in layers] for layers in per_mask] == [[(2, 3, 48)] * 2, [(2, 5, 48)] * 2]
    for layers, z in zip(per_mask, last):
        torch.testing.assert_close(layers[1], z, rtol=0, atol=0)  # the same packed computation
