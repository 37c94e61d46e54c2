"""learn@seed: does it learn? That seed's pretrained target encoder against a randomly initialised
encoder of the same shape, under the same probes, on a motion and an appearance task."""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.config import Params
from pipeline.plumbing import PREPARED, RUNS, checkpoint_path, finish, once, publish, work_dir
from pipeline.stages.common import frozen_encoder, probe_task, task_files, top1_by_kind
from pipeline.tracking import stage_run
from vjepa.config import to_dict
from vjepa.stats import clip_outcomes


def run(P: Params, seed: str | int | None = None, params_path: str = "params.yaml") -> dict:
    seed = P.main_seed if seed is None else int(seed)
    names, ckpt = P.learn.tasks, str(checkpoint_path(seed))
    settings = {
        "learn": to_dict(P.learn),
        "seed": seed,
        "checkpoint": ckpt,
        "tasks": {n: to_dict(P.probe.tasks[n]) for n in names},
        "defaults": P.probe.defaults,
    }
    with stage_run("learn", settings, {"profile": P.profile, "seed": seed}) as t:
        work = work_dir(
            f"learn-seed{seed}", settings, [PREPARED, ckpt], task_files(P, *(P.probe.tasks[n].data for n in names))
        )

        def compute():
            results, clips = {}, {}  # clips: per-clip outcomes, for the report's paired verdicts
            for kind in ("pretrained", "random"):
                torch.manual_seed(seed)  # the random encoder's init is a function of the seed
                encoder, _ = frozen_encoder(P, ckpt if kind == "pretrained" else None, override=False)
                for name in names:
                    r = probe_task(P, name, encoder, work / kind / name, seed, P.learn.segments, kind, P.learn.probe)
                    results.setdefault(name, {})[kind] = top1_by_kind(r)
                    clips.setdefault(name, {})[kind] = clip_outcomes(work / kind / name, r)
            return {"top1": results, "clips": clips}

        result = once(work, compute)
        results = result["top1"]
        publish(work, RUNS / "learn" / f"seed{seed}")
        margins = {
            name: {k: r["pretrained"][k] - r["random"][k] for k in r["pretrained"]} for name, r in results.items()
        }
        return finish(
            t,
            Path("metrics") / P.profile,
            f"learn/seed{seed}",
            {"profile": P.profile, "seed": seed, "top1": results, "margin": margins, "clips": result["clips"]},
        )
