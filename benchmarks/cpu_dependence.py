"""How much does a pretraining run move with the CPU's kernel dispatch? The same short run of the
default profile's model (vjepa.train.pretrain.train_step on fixed clips, seeded masks) is repeated, each
in its own process, under environment settings that change which CPU kernels torch, MKL and oneDNN
pick: the machine's own (twice, to show same-machine bit-reproducibility), ATen's vectorised
kernels forced lower (`ATEN_CPU_CAPABILITY`), MKL's code path pinned (`MKL_CBWR`), oneDNN capped
(`ONEDNN_MAX_CPU_ISA`), another thread count, and all the pins together. It prints, per setting,
whether the initial weights are bit-identical to the first run, the first step whose loss differs,
the final loss and its difference, the largest weight difference at the end, and the step time as
a ratio to the first run (ratios measured in one run: they survive a busy machine better).

    python benchmarks/cpu_dependence.py --steps 25 --batch 8      # 50 min on 2 very busy cores
    python benchmarks/cpu_dependence.py --steps 2 --batch 4 --settings 0 6 8   # a subset of the rows
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from vjepa.infra.config import from_dict
from vjepa.infra.distributed import DistEnv
from vjepa.jepa.masks import MaskCollator
from vjepa.jepa.step import Group, train_step
from vjepa.train.pretrain import build_state
from vjepa.infra.configs import PretrainConfig

ROOT = Path(__file__).resolve().parents[1]
PROFILE = yaml.safe_load((ROOT / "profiles" / "default.yaml").read_text())
PINNED = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "SSE41"}
SETTINGS = [  # (name, environment overrides, torch threads)
    ("machine default", {}, None),
    ("machine default, again", {}, None),
    ("ATEN_CPU_CAPABILITY=default", {"ATEN_CPU_CAPABILITY": "default"}, None),
    ("MKL_CBWR=COMPATIBLE", {"MKL_CBWR": "COMPATIBLE"}, None),
    ("ONEDNN_MAX_CPU_ISA=SSE41", {"ONEDNN_MAX_CPU_ISA": "SSE41"}, None),
    ("1 thread", {}, 1),
    ("all three pins", PINNED, None),
    ("all three pins, 1 thread", PINNED, 1),
    # an older CPU's MKL path under the pins: unchanged if MKL_CBWR=COMPATIBLE holds the GEMMs fixed
    ("all pins + MKL SSE4_2", {**PINNED, "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"}, None),
]


def child(steps: int, batch: int, threads: int | None, out: str) -> None:
    if threads:
        torch.set_num_threads(threads)
    raw = {
        "model": PROFILE["model"],
        "masks": PROFILE["masks"],
        **PROFILE["pretrain"]["train"],
        "batch_size": batch,
        "device": "cpu",
        "seed": 0,
    }
    raw["optim"] = {**raw["optim"], "iterations": steps, "warmup_iterations": max(1, steps // 10)}
    cfg = from_dict(PretrainConfig, raw, "profiles/default.yaml:pretrain.train")
    state = build_state(cfg, DistEnv(device=torch.device("cpu")))
    init = {k: v.clone() for k, v in state.encoder.state_dict().items()}
    m = cfg.model
    # inputs from numpy's generator, so that they cannot depend on torch's vectorised kernels
    clips = torch.from_numpy(
        np.random.default_rng(0)
        .standard_normal((batch, m.in_chans, m.num_frames, m.img_size, m.img_size))
        .astype(np.float32)
    )
    masks = MaskCollator(cfg.masks, m.grid, seed=0)
    losses, times = [], []
    for s in range(1, steps + 1):
        ctx, tgt = masks(batch, s)
        t0 = time.perf_counter()
        losses.append(train_step(state, cfg, [[Group(clips, ctx, tgt)]], s)["loss"])
        times.append(time.perf_counter() - t0)
    torch.save(
        {
            "init": init,
            "final": state.target_encoder.state_dict(),
            "losses": losses,
            "step_s": float(np.median(times[1:] or times)),
            "capability": torch.backends.cpu.get_cpu_capability(),
            "threads": torch.get_num_threads(),
        },
        out,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--settings", nargs="+", metavar="N", type=int, help="run only these rows of SETTINGS (0-based)")
    ap.add_argument("--only", help=argparse.SUPPRESS)  # child mode
    args = ap.parse_args()
    if args.only:
        child(**json.loads(args.only))
        return
    print(
        f"torch {torch.__version__}, machine capability {torch.backends.cpu.get_cpu_capability()}, "
        f"{torch.get_num_threads()} threads; {args.steps} steps of batch {args.batch}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        runs = []
        chosen = [SETTINGS[i] for i in args.settings] if args.settings else SETTINGS
        for i, (name, env, threads) in enumerate(chosen):
            out = f"{tmp}/{i}.pt"
            spec = json.dumps({"steps": args.steps, "batch": args.batch, "threads": threads, "out": out})
            subprocess.run([sys.executable, __file__, "--only", spec], env={**os.environ, **env}, check=True)
            runs.append((name, torch.load(out, weights_only=True)))
    base = runs[0][1]
    print(
        f"{'setting':28s} {'capability':>10s} {'init =':>6s} {'1st diff':>8s} {'final loss':>12s} "
        f"{'diff':>9s} {'max |dW|':>9s} {'step time':>9s}"
    )
    for name, r in runs:
        same_init = all(torch.equal(r["init"][k], base["init"][k]) for k in base["init"])
        first = next((i + 1 for i, (a, b) in enumerate(zip(r["losses"], base["losses"])) if a != b), None)
        dw = max(float((r["final"][k].float() - base["final"][k].float()).abs().max()) for k in base["final"])
        print(
            f"{name:28s} {r['capability']:>10s} {str(same_init):>6s} {str(first or '-'):>8s} "
            f"{r['losses'][-1]:12.7f} {r['losses'][-1] - base['losses'][-1]:+9.1e} {dw:9.1e} "
            f"{r['step_s'] / base['step_s']:8.2f}x"
        )
    groups = []  # settings whose final weights are bit-identical to each other
    for name, r in runs:
        g = next((g for g in groups if all(torch.equal(r["final"][k], g[0][1]["final"][k]) for k in r["final"])), None)
        g.append((name, r)) if g else groups.append([(name, r)])
    print("bit-identical final weights: " + "; ".join("{" + ", ".join(n for n, _ in g) + "}" for g in groups))


if __name__ == "__main__":
    main()
