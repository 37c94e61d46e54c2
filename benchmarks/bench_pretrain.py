"""Throughput and memory of one V-JEPA pretraining step (vjepa.train.pretrain.train_step, the loop's own
step: target pass, context passes for both masks, predictor, backward, AdamW, EMA).

Configs: the CPU profile's tiny model, and ViT-L/16 at 224 px and 16 frames with the paper's masks.
On CPU it runs fp32 (and bf16 autocast for the tiny model); on a GPU bf16 autocast (and fp32 for
comparison), with the model FLOPs utilisation: analytic model FLOPs of the step (matmuls and
attention, backward = 2 x forward) / step time / the GPU's peak dense bf16 rate.

    python benchmarks/bench_pretrain.py                  # CPU: tiny, then 2 steps of ViT-L at batch 1
    python benchmarks/bench_pretrain.py --device cuda --vitl-batch 24
Each config runs in its own process, so each peak memory figure is its own (GPU: torch's peak
allocation; CPU: the process's peak resident set, which includes the ~0.5 GB of torch itself).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

from vjepa.infra.config import from_dict
from vjepa.infra.distributed import DistEnv
from vjepa.models.flops import step_flops
from vjepa.jepa.masks import MaskCollator
from vjepa.jepa.step import Group, train_step
from vjepa.train.pretrain import build_state
from vjepa.infra.configs import PretrainConfig

# the default profile's model (params.yaml `model`), and the paper's ViT-L/16
TINY = yaml.safe_load((Path(__file__).resolve().parents[1] / "profiles" / "default.yaml").read_text())["model"]
VITL = {"size": "large", "img_size": 224, "patch_size": 16, "num_frames": 16}
# peak dense bf16 tensor-core FLOP/s by device name (vendor datasheets, without sparsity)
PEAK_BF16 = {
    "H100": 989e12,
    "H200": 989e12,
    "GH200": 989e12,
    "B200": 2250e12,
    "A100": 312e12,
    "L40S": 362e12,
    "A10G": 70e12,
    "A10": 125e12,
    "L4": 121e12,
    "4090": 165e12,
}


def peak_rate(device_name: str) -> float | None:
    return next((v for k, v in PEAK_BF16.items() if k in device_name), None)


def step_timer(state, cfg: PretrainConfig, masks: MaskCollator, clips: torch.Tensor, dev: torch.device):
    """one(step) -> (seconds, metrics, model FLOPs): one train_step on `clips` with the masks drawn for
    `step`, timed between device syncs, and its model FLOPs counted from the token counts it ran."""
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    n, batch = len(cfg.masks), len(clips)

    def one(step: int):
        ctx, tgt = masks(batch, step)
        mb = [[Group(clips, [c.to(dev) for c in ctx], [t.to(dev) for t in tgt])]]
        sync()
        t0 = time.perf_counter()
        metrics = train_step(state, cfg, mb, step + 1)
        sync()
        dt = time.perf_counter() - t0
        flops = step_flops(
            cfg.model,
            [metrics[f"context_tokens_mask{i}"] for i in range(n)],
            [metrics[f"target_tokens_mask{i}"] for i in range(n)],
        )
        return dt, metrics, {k: batch * v for k, v in flops.items()}

    return one


def config(model: dict, batch: int, dtype: str, device: str, activation_checkpointing: bool = False) -> PretrainConfig:
    return from_dict(
        PretrainConfig,
        {
            "model": {**model, "activation_checkpointing": activation_checkpointing},
            "batch_size": batch,
            "precision": dtype,
            "device": device,
        },
    )


def measure(
    name: str, model: dict, batch: int, dtype: str, device: str, steps: int, act_ckpt: bool, threads: int | None = None
) -> dict:
    if threads:
        torch.set_num_threads(threads)
    cfg = config(model, batch, dtype, device, act_ckpt)
    dev = torch.device(device)
    state = build_state(cfg, DistEnv(device=dev))
    masks = MaskCollator(cfg.masks, cfg.model.grid, seed=0)
    m = cfg.model
    clips = torch.randn(batch, m.in_chans, m.num_frames, m.img_size, m.img_size, device=dev)
    one = step_timer(state, cfg, masks, clips, dev)
    one(0)  # warm-up: allocator, kernels selection
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times, flops = [], []
    for s in range(1, steps + 1):
        dt, _, f = one(s)
        times.append(dt)
        flops.append(f["total"])
    step_s = sum(times) / len(times)
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated(dev) / 2**30
    else:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    out = {
        "name": name,
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "batch": batch,
        "dtype": dtype,
        "activation_checkpointing": act_ckpt,
        "step_s": step_s,
        "clips_per_s": batch / step_s,
        "peak_memory_gib": peak,
        "tflops_per_s": sum(flops) / sum(times) / 1e12,
    }
    if dev.type == "cuda":
        peak = peak_rate(out["device"])
        out["mfu"] = sum(flops) / sum(times) / peak if peak else None
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--vitl-batch", type=int, default=None, help="ViT-L clips per step (default: 1 on CPU, 24 on GPU)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default: 2 on CPU, 10 on GPU)")
    ap.add_argument("--configs", default="tiny,vitl", help="comma-separated subset of tiny,vitl")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--activation-checkpointing", action="store_true", help="for ViT-L")
    ap.add_argument("--only", help=argparse.SUPPRESS)  # child mode: one config as JSON
    args = ap.parse_args()
    if args.only:
        print(json.dumps(measure(**json.loads(args.only))))
        return

    gpu = args.device == "cuda"
    steps = args.steps or (10 if gpu else 2)
    vitl_batch = args.vitl_batch or (24 if gpu else 1)
    which = args.configs.split(",")
    runs = []
    if "tiny" in which:
        runs += [
            dict(
                name="tiny",
                model=TINY,
                batch=32,
                dtype=d,
                device=args.device,
                steps=steps * 5,
                act_ckpt=False,
                threads=args.threads,
            )
            for d in (("bf16", "fp32") if gpu else ("fp32", "bf16"))
        ]
    if "vitl" in which:
        runs += [
            dict(
                name="vitl16-224-16f",
                model=VITL,
                batch=vitl_batch,
                dtype=d,
                device=args.device,
                steps=steps,
                act_ckpt=args.activation_checkpointing,
                threads=args.threads,
            )
            for d in (("bf16", "fp32") if gpu else ("fp32",))
        ]
    results = []
    for r in runs:
        proc = subprocess.run([sys.executable, __file__, "--only", json.dumps(r)], capture_output=True, text=True)
        if proc.returncode:
            print(f"{r['name']} {r['dtype']} batch {r['batch']}: failed\n{proc.stderr[-1500:]}", file=sys.stderr)
            continue
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(res)
        mfu = f"  MFU {res['mfu']:.1%}" if res.get("mfu") is not None else ""
        print(
            f"{res['name']:>16} {res['dtype']:>4} batch {res['batch']:>3} on {res['device']} ({res['threads']} "
            f"threads): "
            f"{res['clips_per_s']:8.2f} clips/s  {res['step_s']:8.3f} s/step  peak {res['peak_memory_gib']:6.2f} GiB  "
            f"{res['tflops_per_s']:8.3f} TFLOP/s{mfu}",
            flush=True,
        )
    by = {(r["name"], r["dtype"]): r for r in results}
    for name in ("tiny", "vitl16-224-16f"):
        if (name, "bf16") in by and (name, "fp32") in by:
            ratio = by[name, "bf16"]["clips_per_s"] / by[name, "fp32"]["clips_per_s"]
            print(f"{name}: bf16 / fp32 throughput ratio {ratio:.2f}")
    fp = [by.get((n, "fp32")) for n in ("tiny", "vitl16-224-16f")]
    if all(fp):
        print(
            f"ViT-L / tiny step time ratio (fp32, per clip): "
            f"{(fp[1]['step_s'] / fp[1]['batch']) / (fp[0]['step_s'] / fp[0]['batch']):.0f}"
        )


if __name__ == "__main__":
    main()
