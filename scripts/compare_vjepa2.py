"""Compare our V-JEPA 2 encoder, predictor and 4-block probe with Hugging Face's VJEPA2Model and, given a
checkout, with the vjepa2 code, on shared random weights and the paper's masks (fp32, CPU, eval mode).

    python scripts/compare_vjepa2.py --size large --img-size 256 --frames 16 --depth 2 \
        [--vjepa2-repo /path/to/vjepa2]

For each size it prints the max absolute difference of the RoPE attention (first encoder block), the full
encoder, the context encoder under each mask config, the predictor for that mask's token, and the probe.
0 means bit-identical. `--depth` and `--pred-depth` cut the blocks (the widths, heads and MLPs stay
those of the size) so ViT-H and ViT-g fit a laptop; the differences grow with depth, so say which.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from functools import partial
from pathlib import Path

import torch
import torch.nn as nn

from vjepa.jepa.masks import MaskCollator
from vjepa.infra.configs import PAPER_MASKS
from vjepa.models import ModelConfig, build_encoder, build_predictor, gather_tokens
from vjepa.models.convert import save_hf
from vjepa.models.probes import vjepa2_probe
from vjepa.models.vit import index_positions


def diff(a: torch.Tensor, b: torch.Tensor) -> str:
    return f"{(a - b).abs().max().item():.3g}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", nargs="+", default=["large", "huge", "giant_xformers"])
    ap.add_argument("--img-size", type=int, default=256)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--depth", type=int, default=None, help="encoder blocks (default: the size's)")
    ap.add_argument("--pred-depth", type=int, default=12)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--vjepa2-repo", default=None, help="a checkout of facebookresearch/vjepa2")
    args = ap.parse_args()
    import transformers

    ref = None
    if args.vjepa2_repo:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
        from official import import_vjepa2

        ref = import_vjepa2(args.vjepa2_repo)
    torch.set_grad_enabled(False)
    for size in args.size:
        cfg = ModelConfig(
            size=size,
            img_size=args.img_size,
            num_frames=args.frames,
            depth=args.depth,
            pred_depth=args.pred_depth,
            pred_num_heads=12,
            num_mask_tokens=10,
            pos_encoding="rope3d",
            pred_sort_tokens=True,
            mask_token_per="group",
        )
        cfg.validate()
        torch.manual_seed(0)
        enc, pred = build_encoder(cfg).eval(), build_predictor(cfg).eval()
        for p in [*enc.parameters(), *pred.parameters()]:  # off the init everywhere, mask tokens included
            p.add_(torch.randn_like(p) * 0.02)
        d, depth, heads, _ = cfg.encoder_shape()
        probe = vjepa2_probe(d, 10, num_heads=16).eval()
        x = torch.randn(args.batch, 3, args.frames, args.img_size, args.img_size)
        ctx_masks, tgt_masks = MaskCollator(list(PAPER_MASKS), cfg.grid, seed=0)(args.batch, 0)
        full = enc(x)
        z = enc(x, ctx_masks)
        tokens = enc.tokens(x)
        print(
            f"== {size}: width {d}, {depth} blocks, {heads} heads; predictor {cfg.pred_depth} blocks, 12 heads; "
            f"{args.frames}x{args.img_size}px, {full.shape[1]} tokens"
        )

        with tempfile.TemporaryDirectory() as folder:
            save_hf(enc, pred, folder)
            hf = transformers.VJEPA2Model.from_pretrained(folder).eval()
        h = hf.encoder.layer[0].attention(enc.blocks[0].norm1(tokens))[0]
        rows = [
            (
                "rope attention",
                enc.blocks[0].attn(
                    enc.blocks[0].norm1(tokens),
                    rope=enc.rope(index_positions(torch.arange(tokens.shape[1]), cfg.grid), x.dtype),
                ),
                None,
                h,
            )
        ]
        rows.append(("full encoder", full, None, hf.encoder(pixel_values_videos=x.transpose(1, 2)).last_hidden_state))
        if ref is not None:
            ln = partial(nn.LayerNorm, eps=1e-6)
            r_enc = ref.vit.VisionTransformer(
                img_size=args.img_size,
                patch_size=16,
                num_frames=args.frames,
                tubelet_size=2,
                embed_dim=d,
                depth=depth,
                num_heads=heads,
                mlp_ratio=cfg.encoder_shape()[3],
                qkv_bias=True,
                norm_layer=ln,
                use_rope=True,
            ).eval()
            r_pred = ref.predictor.vit_predictor(
                img_size=args.img_size,
                patch_size=16,
                num_frames=args.frames,
                tubelet_size=2,
                embed_dim=d,
                predictor_embed_dim=384,
                depth=cfg.pred_depth,
                num_heads=12,
                use_mask_tokens=True,
                num_mask_tokens=10,
                use_rope=True,
            ).eval()
            r_enc.load_state_dict(enc.state_dict(), strict=True)
            r_pred.load_state_dict(pred.state_dict(), strict=True)
            r_probe = ref.pooler.AttentiveClassifier(embed_dim=d, num_heads=16, depth=4, num_classes=10).eval()
            r_probe.load_state_dict(probe.state_dict(), strict=True)
            r_attn = ref.modules.RoPEAttention(d, num_heads=heads, qkv_bias=True, grid_size=cfg.grid[1]).eval()
            r_attn.load_state_dict(enc.blocks[0].attn.state_dict(), strict=True)
            rows[0] = (
                *rows[0][:2],
                r_attn(enc.blocks[0].norm1(tokens), T=cfg.grid[0], H_patches=cfg.grid[1], W_patches=cfg.grid[2]),
                rows[0][3],
            )
            rows[1] = (*rows[1][:2], r_enc(x), rows[1][3])
        for i, (c, t) in enumerate(zip(ctx_masks, tgt_masks)):
            hh = gather_tokens(hf.encoder.embeddings(x.transpose(1, 2)), c)
            for layer in hf.encoder.layer:
                hh = layer(hh, position_mask=c)[0]
            r_z = r_enc(x, masks=[c]) if ref is not None else None
            rows.append((f"context, mask {i}", z[i], r_z, hf.encoder.layernorm(hh)))
            # HF's predictor reads the context from the full encoder output and always uses mask token 1
            p_hf = hf(pixel_values_videos=x.transpose(1, 2), context_mask=[c], target_mask=[t])
            rows.append(
                (
                    f"predictor, mask {i} (token 1)",
                    pred(gather_tokens(full, c), c, t, mask_index=1),
                    r_pred(gather_tokens(full, c), [c], [t], mask_index=1) if ref is not None else None,
                    p_hf.predictor_output.last_hidden_state,
                )
            )
        rows.append(("4-block probe", probe(full), r_probe(full) if ref is not None else None, None))
        print(f"{'':30s} {'vs vjepa2':>12s} {'vs HF':>12s}")
        for name, ours, r, theirs in rows:
            print(
                f"{name:30s} {diff(ours, r) if r is not None else '-':>12s} "
                f"{diff(ours, theirs) if theirs is not None else '-':>12s}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
