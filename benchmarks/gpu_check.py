"""The parts of benchmarks/gpu_check.sh, one per call (each in its own process, under its own time
budget, so a failure or an out-of-memory in one leaves the others their lines):

    python benchmarks/gpu_check.py --part vitl [--compile] [--budget 120]   # ViT-L/16 224 px bf16 step, MFU
    python benchmarks/gpu_check.py --part vith384 [--budget 90]             # ViT-H/16 384 px, act. ckpt, batch 10
    python benchmarks/gpu_check.py --part loader                            # GPU-transform loader vs the step
Model FLOPs are counted analytically (vjepa.flops) from the shapes the step ran; utilisation is
those FLOPs over the step time and the GPU's peak dense bf16 rate.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's vjepa, not whichever one is installed
SHAPES = {"vitl": {"size": "large", "img_size": 224, "num_frames": 16},
          "vith384": {"size": "huge", "img_size": 384, "num_frames": 16}}


def step_run(shape: str, batch: int, compile_: bool, act_ckpt: bool, budget: float, device: str = "cuda") -> dict:
    """Warm-up steps, then timed steps until `budget` seconds are used (at least 2 timed steps).
    `shape` is a key of SHAPES or a ModelConfig dict (a CPU dry run of this code uses a tiny one)."""
    from bench_pretrain import peak_rate, step_timer  # the step timing both benchmarks share
    from vjepa.config import from_dict
    from vjepa.distributed import DistEnv
    from vjepa.masks import MaskCollator
    from vjepa.pretrain import PretrainConfig, build_state

    t_start = time.perf_counter()
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    torch.backends.cudnn.benchmark = True
    model = SHAPES[shape] if isinstance(shape, str) else shape
    cfg = from_dict(PretrainConfig, {"model": {**model, "activation_checkpointing": act_ckpt},
                                     "batch_size": batch, "precision": "bf16", "device": device})
    state = build_state(cfg, DistEnv(device=dev))
    if compile_:  # token counts change with every mask draw: compile for dynamic shapes once
        state.context_path = torch.compile(state.context_path, dynamic=True)
        state.target_encoder = torch.compile(state.target_encoder)
    masks = MaskCollator(cfg.masks, cfg.model.grid, seed=0)
    m = cfg.model
    clips = torch.randn(batch, m.in_chans, m.num_frames, m.img_size, m.img_size, device=dev)

    one = step_timer(state, cfg, masks, clips, dev)
    warm = [one(s)[0] for s in range(3 if compile_ else 2)]
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    times, flops, parts, s = [], [], None, len(warm)
    while len(times) < 2 or (time.perf_counter() - t_start < 0.8 * budget and len(times) < 20):
        dt, _, f = one(s)
        s += 1
        parts = parts or f
        times.append(dt)
        flops.append(f["total"])
    name = torch.cuda.get_device_name(dev) if cuda else "cpu"
    rate = sum(flops) / sum(times)
    peak = peak_rate(name)
    return {"shape": shape if isinstance(shape, str) else "custom", "batch": batch, "compile": compile_, "activation_checkpointing": act_ckpt,
            "device": name, "warmup_s": sum(warm), "timed_steps": len(times), "step_s": sum(times) / len(times),
            "clips_per_s": batch * len(times) / sum(times), "tflops_per_s": rate / 1e12,
            "mfu": rate / peak if peak else None, "flops_first_step": parts,
            "peak_memory_gib": torch.cuda.max_memory_allocated(dev) / 2**30 if cuda else float("nan"),
            "reserved_gib": torch.cuda.max_memory_reserved(dev) / 2**30 if cuda else float("nan")}


def print_step(r: dict) -> None:
    p = r["flops_first_step"]
    mfu = f"MFU {r['mfu']:.1%}" if r["mfu"] is not None else "MFU n/a (unknown peak rate for this GPU)"
    print(f"{r['shape']} bf16 batch {r['batch']} compile={r['compile']} act_ckpt={r['activation_checkpointing']} "
          f"on {r['device']}: {r['clips_per_s']:.1f} clips/s, {r['step_s'] * 1e3:.0f} ms/step over "
          f"{r['timed_steps']} steps, {r['tflops_per_s']:.0f} TFLOP/s, {mfu}; peak allocated "
          f"{r['peak_memory_gib']:.1f} GiB (reserved {r['reserved_gib']:.1f} GiB)")
    print(f"    model FLOPs of one step (first timed step, batch {r['batch']}): target encoder "
          f"{p['target_encoder'] / 1e12:.2f} T, context encoder {p['context_encoder'] / 1e12:.2f} T, predictor "
          f"{p['predictor'] / 1e12:.2f} T, total {p['total'] / 1e12:.2f} T (forward + 2x for backward where trained)")


def loader_part(step_json: Path | None, budget: float) -> None:
    consumption = None
    if step_json and step_json.exists():
        consumption = json.loads(step_json.read_text())["clips_per_s"]
        print(f"the ViT-L/16 bf16 step above consumes {consumption:.0f} clips/s")
    script = ROOT / "benchmarks" / "bench_loader.py"
    if not script.exists():
        print("loader with the GPU transform: benchmarks/bench_loader.py is not in this checkout (it comes with the "
              "loader work); no loader line")
        return
    # the loader benchmark's 'finish' rows convert, resize, flip and normalise on --device
    cmd = [sys.executable, str(script), "--device", "cuda", "--clips", "12", "--preset", "veryfast"]
    print("running: " + " ".join(cmd[1:]))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=budget)
        print(proc.stdout.rstrip())
        if proc.returncode:
            print(f"loader benchmark failed (exit {proc.returncode}): {proc.stderr.strip()[-800:]}")
    except subprocess.TimeoutExpired:
        print(f"loader benchmark: over its {budget:.0f} s budget, stopped")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", required=True, choices=["vitl", "vith384", "loader"])
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--batch", type=int, default=None, help="vitl: 24 (paper per-GPU batch); vith384: 10")
    ap.add_argument("--budget", type=float, default=120.0, help="seconds this part may take")
    ap.add_argument("--json", type=Path, help="write (vitl) or read (loader) the step's result here")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device visible to torch: nothing to measure")
        return 0
    if args.part == "loader":
        loader_part(args.json, args.budget)
        return 0
    if args.part == "vitl":
        r = step_run("vitl", args.batch or 24, args.compile, False, args.budget)
    else:
        r = step_run("vith384", args.batch or 10, args.compile, True, args.budget)
    print_step(r)
    if r["shape"] == "vith384":
        fits = "within" if r["reserved_gib"] <= 80 else "over"
        print(f"    ViT-H/16 384 px at per-GPU batch {r['batch']}: {fits} 80 GB (reserved {r['reserved_gib']:.1f} GiB)")
    if args.json:
        args.json.write_text(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
