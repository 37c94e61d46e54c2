"""Ours beside the official V-JEPA implementation (facebookresearch/jepa), measured in one run on the
same inputs, printed as ratios with the command that reproduces each line.

    python benchmarks/bench_official.py --official-repo /path/to/jepa            # every line
    python benchmarks/bench_official.py --official-repo /path/to/jepa --parts step-tiny,masks

Lines (each step measurement in its own fresh process, so each peak memory is that process's own):
- step-tiny / step-vitl: one pretraining step (target forward, context encoder and predictor for
  both masks, backward, AdamW, EMA) in fp32 on this machine's CPU, from the same weights, clips
  and masks; clips/s, peak resident memory, and how far the two runs' losses and final target
  encoders differ. The official step is its train.py step written out over its own modules.
  step-tiny alternates the two sides over --rounds processes each.
- masks: the paper's two multi-block masks for a batch of 24 at 224 px x 16 frames, ours and the
  official collator called in turn in one process.
- probes: K probes trained in one pass (the frozen encoder shared) against one probe, ours, the two
  interleaved in one process; the official evaluation trains one probe per run, so its K probes
  cost K runs.
- loader: benchmarks/bench_loader.py --official-repo <checkout>, run as a subprocess when it exists.
The official checkout is read from outside this repository (docs/benchmarks.md, "The pretraining
step against the official code"); nothing of it is copied here.
"""

from __future__ import annotations

import argparse
import json
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # this checkout's vjepa, not whichever one is installed
# shapes of the step lines: ViT-tiny (192 wide, 12 blocks) at 64 px x 8 frames with a 6-block predictor
# as wide, and the paper's ViT-L/16 at 224 px x 16 frames with its 12-block, 384-wide predictor
STEP_CONFIGS = {
    "step-tiny": {
        "model": {"size": "tiny", "img_size": 64, "num_frames": 8, "pred_depth": 6, "pred_embed_dim": 192},
        "batch": 4,
        "steps": 20,
    },
    "step-vitl": {"model": {"size": "large", "img_size": 224, "num_frames": 16}, "batch": 1, "steps": 1},
}
OPTIM = {
    "iterations": 100,
    "warmup_iterations": 10,
    "lr": 6.25e-4,
    "start_lr": 2e-4,
    "final_lr": 1e-6,
    "start_weight_decay": 0.04,
    "final_weight_decay": 0.4,
    "start_momentum": 0.998,
    "final_momentum": 1.0,
}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# ----------------------------------------------------------------------------------------------
# The inputs both sides read (written by the parent, which is not measured)


def write_step_inputs(name: str, path: Path) -> None:
    from vjepa.infra.config import from_dict
    from vjepa.jepa.masks import MaskCollator
    from vjepa.models import ModelConfig, build_encoder, build_predictor

    spec = STEP_CONFIGS[name]
    model = from_dict(ModelConfig, spec["model"])
    torch.manual_seed(0)
    enc, pred = build_encoder(model), build_predictor(model)
    with torch.no_grad():  # the mask tokens start at zero; give them values so both paths use them
        for t in pred.mask_tokens:
            t.normal_(0, 0.02)
    steps = spec["steps"] + 1  # one warm-up step
    from vjepa.infra.configs import PAPER_MASKS

    collator = MaskCollator(PAPER_MASKS, model.grid, seed=0)
    masks = [collator(spec["batch"], s) for s in range(steps)]
    clips = torch.randn(spec["batch"], 3, model.num_frames, model.img_size, model.img_size)
    torch.save(
        {
            "encoder": enc.state_dict(),
            "predictor": pred.state_dict(),
            "clips": clips,
            "masks": masks,
            "model": spec["model"],
        },
        path,
    )


# ----------------------------------------------------------------------------------------------
# Children: one measurement each


def step_ours(inputs: dict, out: Path) -> dict:
    from vjepa.infra.config import from_dict
    from vjepa.infra.distributed import DistEnv
    from vjepa.jepa.step import Group, train_step
    from vjepa.train.pretrain import build_state
    from vjepa.infra.configs import PretrainConfig

    cfg = from_dict(
        PretrainConfig,
        {
            "model": inputs["model"],
            "batch_size": len(inputs["clips"]),
            "precision": "fp32",
            "device": "cpu",
            "optim": OPTIM,
        },
    )
    state = build_state(cfg, DistEnv(device=torch.device("cpu")))
    state.encoder.load_state_dict(inputs["encoder"])
    state.target_encoder.load_state_dict(inputs["encoder"])
    state.predictor.load_state_dict(inputs["predictor"])
    clips, losses, times = inputs["clips"], [], []
    for s, (ctx, tgt) in enumerate(inputs["masks"], start=1):
        t0 = time.perf_counter()
        metrics = train_step(state, cfg, [[Group(clips, ctx, tgt)]], s)
        times.append(time.perf_counter() - t0)
        losses.append(metrics["loss"])
    torch.save(state.target_encoder.state_dict(), out)
    return {"times": times[1:], "losses": losses}


def step_official(inputs: dict, repo: str, out: Path) -> dict:
    """The official train.py step over the official modules: a target pass under no_grad, LayerNorm,
    gather at the target masks; the wrapped encoder and predictor per mask; L1 loss; AdamW in the
    official 4 groups with its warmup-cosine lr and cosine wd schedulers; the EMA as its loop does."""
    import copy
    import math
    import torch.nn.functional as F

    sys.path.insert(0, str(HERE))
    from official import import_official

    off = import_official(repo, "vit", "predictor", "multimask", "apply_masks")
    sys.path.insert(0, str(Path(repo).resolve()))
    from app.vjepa.utils import init_opt  # official optimiser and schedulers

    m = inputs["model"]
    size = m["size"]
    enc = getattr(off.vit, f"vit_{size}")(
        img_size=m["img_size"], num_frames=m["num_frames"], tubelet_size=2, uniform_power=True, use_sdpa=True
    )
    enc.load_state_dict(inputs["encoder"])
    d, heads = enc.embed_dim, enc.num_heads
    pred = off.predictor.vit_predictor(
        img_size=m["img_size"],
        patch_size=16,
        num_frames=m["num_frames"],
        tubelet_size=2,
        embed_dim=d,
        predictor_embed_dim=m.get("pred_embed_dim", 384),
        depth=m.get("pred_depth", 12),
        num_heads=heads,
        uniform_power=True,
        use_mask_tokens=True,
        num_mask_tokens=2,
        zero_init_mask_tokens=True,
        use_sdpa=True,
    )
    pred.load_state_dict(inputs["predictor"])
    encoder, predictor = off.multimask.MultiMaskWrapper(enc), off.multimask.PredictorMultiMaskWrapper(pred)
    target = copy.deepcopy(encoder)
    for p in target.parameters():
        p.requires_grad = False
    ipe = OPTIM["iterations"]
    optimizer, _, scheduler, wd_scheduler = init_opt(
        encoder,
        predictor,
        iterations_per_epoch=ipe,
        start_lr=OPTIM["start_lr"],
        ref_lr=OPTIM["lr"],
        warmup=OPTIM["warmup_iterations"] / ipe,
        num_epochs=1,
        wd=OPTIM["start_weight_decay"],
        final_wd=OPTIM["final_weight_decay"],
        final_lr=OPTIM["final_lr"],
        mixed_precision=False,
        ipe_scale=1.25,
    )
    ema = (OPTIM["start_momentum"], OPTIM["final_momentum"])
    total = ipe * 1.25
    momenta = (ema[0] + i * (ema[1] - ema[0]) / total for i in range(int(total) + 1))
    apply_masks = off.apply_masks.apply_masks
    clips, losses, times = inputs["clips"], [], []
    for ctx, tgt in inputs["masks"]:
        t0 = time.perf_counter()
        scheduler.step()
        wd_scheduler.step()
        with torch.no_grad():
            h = F.layer_norm(target(clips), (d,))
            h = apply_masks(h, tgt, concat=False)
        z = predictor(encoder(clips, ctx), h, ctx, tgt)
        loss = sum(torch.mean(torch.abs(zi - hi)) for zi, hi in zip(z, h)) / len(tgt)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        mom = next(momenta)
        with torch.no_grad():
            for q, k in zip(encoder.parameters(), target.parameters()):
                k.data.mul_(mom).add_((1.0 - mom) * q.detach().data)
        lv = float(loss)
        times.append(time.perf_counter() - t0)
        losses.append(lv if math.isfinite(lv) else None)
    torch.save(target.backbone.state_dict(), out)
    return {"times": times[1:], "losses": losses}


def masks_both(repo: str, calls: int) -> dict:
    """Our and the official MaskCollator for the same settings, their calls interleaved in one process
    (a load change on the machine hits both alike)."""
    from vjepa.jepa.masks import MaskCollator
    from vjepa.infra.configs import PAPER_MASKS

    sys.path.insert(0, str(HERE))
    from official import import_official

    off = import_official(repo, "masks")
    cfgs = [
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
    official = off.masks.MaskCollator(cfgs_mask=cfgs, crop_size=224, num_frames=16, patch_size=16, tubelet_size=2)
    ours = MaskCollator(PAPER_MASKS, (8, 14, 14), seed=0)
    batch = [torch.zeros(1)] * 24
    calls_of = {"ours": lambda s: ours(24, s), "official": lambda s: official(batch)}
    for f in calls_of.values():
        f(0)
    times = {i: [] for i in calls_of}
    for s in range(1, calls + 1):
        for i, f in calls_of.items():
            t0 = time.perf_counter()
            f(s)
            times[i].append(time.perf_counter() - t0)
    return {"times": times}


def probe_batches(ks: list[int], steps: int, cached: bool, seed: int = 0) -> dict:
    """Our probe inner loop: encoder forward (unless cached) shared by k probes, then each probe's
    step; one ProbeSet per k in ks, their steps interleaved in this process so a load change on the
    machine hits every k alike."""
    from vjepa.models import ModelConfig, build_encoder
    from vjepa.evals.frozen import encode
    from vjepa.evals.probe import ProbeSet
    from vjepa.infra.configs import ProbeConfig
    import contextlib

    model = ModelConfig(size="tiny", img_size=64, num_frames=16)
    torch.manual_seed(seed)
    encoder = build_encoder(model).eval().requires_grad_(False)
    sets = {}
    for k in ks:
        kinds = ["attentive", "linear"] if k > 1 else ["attentive"]
        per_kind = max(k // len(kinds), 1)
        lrs = [1e-3 * (i + 1) for i in range(per_kind)]
        cfg = ProbeConfig(num_classes=10, kinds=kinds, lrs=lrs, weight_decays=[0.01], precision="fp32", batch_size=16)
        sets[k] = ProbeSet(cfg, encoder.embed_dim, encoder.num_heads, torch.device("cpu"))
    video = torch.randn(16, 1, 1, 3, 16, 64, 64)
    labels = torch.randint(0, 10, (16,))
    fixed = encode(encoder, video) if cached else None
    times = {k: [] for k in ks}
    for s in range(steps + 1):
        for k, probes in sets.items():
            t0 = time.perf_counter()
            probes.set_schedule(s + 1, steps + 1)
            with torch.no_grad():
                tokens = fixed if cached else encode(encoder, video)
            probes.train_step(tokens, labels, contextlib.nullcontext)
            times[k].append(time.perf_counter() - t0)
    return {"times": {str(k): t[1:] for k, t in times.items()}, "k": {str(k): len(p.probes) for k, p in sets.items()}}


def probe_official(repo: str, steps: int, seed: int = 0) -> dict:
    """One official attentive probe trained on the same frozen encoder (the official eval's inner loop:
    encoder forward under no_grad, classifier, cross-entropy, AdamW)."""
    sys.path.insert(0, str(HERE))
    from official import import_official

    off = import_official(repo, "vit", "pooler")
    torch.manual_seed(seed)
    enc = off.vit.vit_tiny(img_size=64, num_frames=16, tubelet_size=2, uniform_power=True, use_sdpa=True).eval()
    for p in enc.parameters():
        p.requires_grad = False
    clf = off.pooler.AttentiveClassifier(embed_dim=enc.embed_dim, num_heads=12, depth=1, num_classes=10)
    opt = torch.optim.AdamW(clf.parameters(), lr=1e-3, weight_decay=0.01)
    video = torch.randn(16, 3, 16, 64, 64)
    labels = torch.randint(0, 10, (16,))
    times = []
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        with torch.no_grad():
            tokens = enc(video)
        loss = torch.nn.functional.cross_entropy(clf(tokens), labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(clf.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t0)
    return {"times": times[1:]}


def child(job: dict) -> dict:
    kind, out = job["kind"], Path(job["out"]) if job.get("out") else None
    if kind.startswith("step"):
        inputs = torch.load(job["inputs"], weights_only=True)
        res = step_ours(inputs, out) if job["impl"] == "ours" else step_official(inputs, job["repo"], out)
    elif kind == "masks":
        res = masks_both(job["repo"], job["calls"])
    elif kind == "probes":
        res = (
            probe_official(job["repo"], job["steps"])
            if job["impl"] == "official"
            else probe_batches(job["ks"], job["steps"], job["cached"])
        )
    else:
        raise ValueError(f"unknown job kind {kind!r}")
    res["peak_rss_mib"] = peak_rss_mib()
    res["threads"] = torch.get_num_threads()
    return res


# ----------------------------------------------------------------------------------------------
# Parent


def run_child(job: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(job)], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{job['kind']} ({job['impl']}) failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def bench_step(name: str, repo: str, tmp: Path, rounds: int) -> list[str]:
    inputs = tmp / f"{name}.pt"
    write_step_inputs(name, inputs)
    batch = STEP_CONFIGS[name]["batch"]
    runs = {"ours": [], "official": []}
    order = ["official", "ours"]
    for r in range(rounds):  # alternate which side goes first, so a load change hits both
        for impl in order if r % 2 == 0 else order[::-1]:
            runs[impl].append(
                run_child(
                    {
                        "kind": name,
                        "impl": impl,
                        "inputs": str(inputs),
                        "repo": repo,
                        "out": str(tmp / f"{name}-{impl}.pt"),
                    }
                )
            )
    rate = {i: batch / median([t for r in v for t in r["times"]]) for i, v in runs.items()}
    peak = {i: max(r["peak_rss_mib"] for r in v) for i, v in runs.items()}
    lo, lf = runs["ours"][0]["losses"], runs["official"][0]["losses"]
    dloss = max(abs(a - b) for a, b in zip(lo, lf))
    wo, wf = torch.load(tmp / f"{name}-ours.pt"), torch.load(tmp / f"{name}-official.pt")
    dw = max((wo[k] - wf[k]).abs().max().item() for k in wo)
    return [
        f"{name}: ours {rate['ours']:.3f} clips/s, official {rate['official']:.3f} clips/s -> "
        f"x{rate['ours'] / rate['official']:.2f} clips/s; peak RSS ours {peak['ours']:.0f} MiB, official "
        f"{peak['official']:.0f} MiB -> x{peak['ours'] / peak['official']:.3f}; batch {batch}, "
        f"{runs['ours'][0]['threads']} threads, {sum(len(r['times']) for r in runs['ours'])} timed steps each",
        f"    same result: max|loss diff| over {len(lo)} steps {dloss:.2g}, max|target encoder diff| {dw:.2g}",
    ]


def bench_masks(repo: str, calls: int) -> list[str]:
    t = {i: median(ts) for i, ts in run_child({"kind": "masks", "repo": repo, "calls": calls})["times"].items()}
    return [
        f"masks (batch 24, 224 px x 16 frames, 2 mask configs): ours {t['ours'] * 1e3:.2f} ms, official "
        f"{t['official'] * 1e3:.2f} ms -> ours takes x{t['ours'] / t['official']:.2f} the official time "
        f"(interleaved in one process)"
    ]


def bench_probes(repo: str, k: int, steps: int) -> list[str]:
    res = {
        cached: run_child({"kind": "probes", "impl": "ours", "ks": [1, k], "steps": steps, "cached": cached})
        for cached in (False, True)
    }
    off = median(run_child({"kind": "probes", "impl": "official", "repo": repo, "steps": steps})["times"])
    one, t_many = (median(res[False]["times"][str(i)]) for i in (1, k))
    one_c, many_c = (median(res[True]["times"][str(i)]) for i in (1, k))
    kk = res[False]["k"][str(k)]
    return [
        f"probes (ViT-tiny 64 px x 16 frames encoder, batch 16): ours {kk} probes in one pass "
        f"{t_many * 1e3:.0f} ms/batch, ours 1 probe {one * 1e3:.0f} ms -> x{t_many / one:.2f} one probe; official "
        f"1 probe {off * 1e3:.0f} ms, {kk} probes = {kk} runs -> ours x{kk * off / t_many:.2f} faster",
        f"    from cached features (no encoder pass): {kk} probes {many_c * 1e3:.1f} ms, 1 probe "
        f"{one_c * 1e3:.1f} ms -> x{many_c / one_c:.2f}; ours 1 and {kk} probes interleaved in one process",
    ]


def bench_loader(repo: str) -> list[str]:
    script = HERE / "bench_loader.py"
    if not script.exists():
        return [
            f"loader: {script.relative_to(HERE.parent)} is not in this checkout (the loader benchmark comes "
            "with the loader work); no loader line"
        ]
    proc = subprocess.run([sys.executable, str(script), "--official-repo", repo], capture_output=True, text=True)
    lines = [l for l in proc.stdout.splitlines() if l.strip()]
    if proc.returncode:
        lines.append(f"loader benchmark failed (exit {proc.returncode}): {proc.stderr.strip()[-1500:]}")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official-repo", help="a checkout of facebookresearch/jepa (outside this repository)")
    ap.add_argument("--parts", default="step-tiny,step-vitl,masks,probes,loader")
    ap.add_argument("--rounds", type=int, default=4, help="processes per side for step-tiny (alternating order)")
    ap.add_argument(
        "--tiny-steps",
        type=int,
        default=STEP_CONFIGS["step-tiny"]["steps"],
        help="timed steps per process for step-tiny (after one warm-up step)",
    )
    ap.add_argument("--mask-calls", type=int, default=50)
    ap.add_argument("--probes-k", type=int, default=8)
    ap.add_argument("--probe-steps", type=int, default=8)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    if not args.official_repo:
        ap.error("--official-repo is required (see the README section on benchmarks against the official code)")
    STEP_CONFIGS["step-tiny"]["steps"] = args.tiny_steps
    sys.path.insert(0, str(HERE))
    from official import import_official

    import_official(args.official_repo, "vit")  # fail early, naming the path, if it is not a checkout
    base = f"python benchmarks/bench_official.py --official-repo {shlex.quote(args.official_repo)}"
    for opt in ("rounds", "tiny_steps", "mask_calls", "probes_k", "probe_steps"):  # what this run changed
        if getattr(args, opt) != ap.get_default(opt):
            base += f" --{opt.replace('_', '-')} {getattr(args, opt)}"
    print(f"ours vs official, measured in this run ({torch.get_num_threads()} torch threads); ratios are what to read")
    with tempfile.TemporaryDirectory() as tmp:
        for part in args.parts.split(","):
            t0 = time.perf_counter()
            if part == "step-tiny":
                lines = bench_step(part, args.official_repo, Path(tmp), args.rounds)
            elif part == "step-vitl":
                lines = bench_step(part, args.official_repo, Path(tmp), 1)
            elif part == "masks":
                lines = bench_masks(args.official_repo, args.mask_calls)
            elif part == "probes":
                lines = bench_probes(args.official_repo, args.probes_k, args.probe_steps)
            elif part == "loader":
                lines = bench_loader(args.official_repo)
            else:
                ap.error(f"unknown part {part!r}")
            print("\n".join(lines))
            print(f"    reproduce: {base} --parts {part}   ({time.perf_counter() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
