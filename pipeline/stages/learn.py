"""learn@seed: does it learn? That seed's pretrained target encoder against a randomly initialised
encoder of the same shape, under the same probes, on a motion and an appearance task."""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.config import Params
from pipeline.plumbing import (
    PREPARED,
    RUNS,
    finish,
    is_rank0,
    launch_torchrun,
    once,
    publish,
    shared_work_dir,
)
from pipeline.stages.common import frozen_encoder, probe_task, task_files, top1_by_kind
from pipeline.tracking import stage_run
from vjepa.infra.config import to_dict
from vjepa.infra.distributed import process_group
from vjepa.evals.stats import clip_outcomes


def run(params: Params, seed: str | int | None = None, params_path: str = "params.yaml") -> dict | None:
    """Probe the seed's encoder and a random one on the motion and appearance tasks; with several
    GPUs, relaunched under torchrun (the probes run data-parallel, one process per GPU)."""
    seed = params.main_seed if seed is None else int(seed)
    names, ckpt = params.learn.tasks, params.encoder_checkpoint(seed)
    settings = {
        "learn": to_dict(params.learn),
        "seed": seed,
        "checkpoint": ckpt,
        "tasks": {n: to_dict(params.probe.tasks[n]) for n in names},
        "defaults": params.probe.defaults,
    }
    files = task_files(params, *(params.probe.tasks[n].data for n in names))
    work = shared_work_dir(f"learn-seed{seed}", settings, [PREPARED, ckpt], files)
    if launch_torchrun("learn", str(seed), params_path, torch.cuda.device_count()):
        return None
    rank0 = is_rank0()
    with stage_run("learn", settings, {"profile": params.profile, "seed": seed}, enabled=rank0) as t:

        def compute():
            results, clips = {}, {}  # clips: per-clip outcomes, for the report's paired verdicts
            with process_group(params.probe_defaults().device):  # one group for all the probes
                for kind in ("pretrained", "random"):
                    torch.manual_seed(seed)  # the random encoder's init is a function of the seed
                    encoder, _ = frozen_encoder(params, ckpt if kind == "pretrained" else None, override=False)
                    for name in names:
                        out = work / kind / name
                        r = probe_task(
                            params, name, encoder, out, seed, params.learn.segments, kind, params.learn.probe
                        )
                        results.setdefault(name, {})[kind] = top1_by_kind(r)
                        # rank 0 wrote the predictions the outcomes are read from
                        clips.setdefault(name, {})[kind] = clip_outcomes(out, r) if rank0 else None
            return {"top1": results, "clips": clips}

        result = once(work, compute, record=rank0)
        if not rank0:
            return result
        results = result["top1"]
        publish(work, RUNS / "learn" / f"seed{seed}")
        margins = {
            name: {k: r["pretrained"][k] - r["random"][k] for k in r["pretrained"]} for name, r in results.items()
        }
        return finish(
            t,
            Path("metrics") / params.profile,
            f"learn/seed{seed}",
            {"profile": params.profile, "seed": seed, "top1": results, "margin": margins, "clips": result["clips"]},
        )
