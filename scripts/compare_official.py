"""Compare our encoder and predictor with the official implementation on the same weights and masks.

Needs a checkout of facebookresearch/jepa (not shipped here; its licence is non-commercial):
    python scripts/compare_official.py --official-repo ../jepa --size large --img-size 224 --frames 16
Prints the max absolute difference of the full encoder, the masked context encoder under both
mask configs, and the predictor for both mask tokens (fp32, CPU, eval mode). 0.0 means bit-identical.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from vjepa.infra.configs import PAPER_MASKS
from vjepa.models import ModelConfig, build_encoder, build_predictor


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official-repo", required=True)
    ap.add_argument("--size", default="tiny")
    ap.add_argument("--img-size", type=int, default=64)
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--batch", type=int, default=2)
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from official import import_official  # the one way the scripts load the official checkout

    off = import_official(args.official_repo, "vit", "predictor", "masks")
    MaskCollator, official_vit, vit_predictor = off.masks.MaskCollator, off.vit, off.predictor.vit_predictor

    cfg = ModelConfig(size=args.size, img_size=args.img_size, num_frames=args.frames)
    torch.manual_seed(0)
    enc, pred = build_encoder(cfg).eval(), build_predictor(cfg).eval()
    with torch.no_grad():  # random weights everywhere, mask tokens included
        for p in [*enc.parameters(), *pred.parameters()]:
            if p.requires_grad:
                p.normal_(0, 0.05)
    d, _, heads, _ = cfg.encoder_shape()
    o_enc = getattr(official_vit, f"vit_{args.size}")(
        img_size=args.img_size, num_frames=args.frames, tubelet_size=2, uniform_power=True
    ).eval()
    o_pred = vit_predictor(
        img_size=args.img_size,
        patch_size=16,
        num_frames=args.frames,
        tubelet_size=2,
        embed_dim=d,
        predictor_embed_dim=384,
        depth=12,
        num_heads=heads,
        uniform_power=True,
        use_mask_tokens=True,
        num_mask_tokens=2,
    ).eval()
    o_enc.load_state_dict(enc.state_dict(), strict=True)
    o_pred.load_state_dict(pred.state_dict(), strict=True)
    mask_cfgs = [
        dict(
            spatial_scale=m.spatial_scale,
            temporal_scale=m.temporal_scale,
            aspect_ratio=m.aspect_ratio,
            num_blocks=m.num_blocks,
            max_temporal_keep=m.max_temporal_keep,
            max_keep=m.max_keep,
        )
        for m in PAPER_MASKS
    ]
    collator = MaskCollator(
        cfgs_mask=mask_cfgs, crop_size=args.img_size, num_frames=args.frames, patch_size=16, tubelet_size=2
    )
    _, ctx_masks, tgt_masks = collator([torch.zeros(1)] * args.batch)
    x = torch.randn(args.batch, 3, args.frames, args.img_size, args.img_size)
    with torch.no_grad():
        print(f"full encoder      max|diff| = {(enc(x) - o_enc(x)).abs().max().item():.3g}")
        ours = enc(x, ctx_masks)
        for i, (c, t) in enumerate(zip(ctx_masks, tgt_masks)):
            theirs = o_enc(x, [c])
            print(f"context, mask {i}   max|diff| = {(ours[i] - theirs).abs().max().item():.3g}")
            p_ours = pred(ours[i], c, t, mask_index=i)
            p_theirs = o_pred(theirs, None, [c], [t], mask_index=i)
            print(f"predictor, mask {i} max|diff| = {(p_ours - p_theirs).abs().max().item():.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
