"""detect: frozen AVA detection (Table 7) with the main seed's target encoder: a RoIAlign + linear
head on four layers' features, mAP@0.5 over the evaluation classes."""

from __future__ import annotations

from pathlib import Path

import torch

from pipeline.config import Params
from pipeline.plumbing import PREPARED, RUNS, finish, is_rank0, launch_torchrun, once, publish, shared_work_dir
from pipeline.stages.common import encoder_files, frozen_encoder, probe_checkpoint
from pipeline.tracking import stage_run
from vjepa.infra.config import to_dict
from vjepa.data.ava import read_ava_labelmap
from vjepa.data.detection import ava_datasets
from vjepa.evals.detect import run_detection


def run(params: Params, key: str | None = None, params_path: str = "params.yaml") -> dict | None:
    """Train the head on the ground truth, predict on the proposals; writes runs/detect/. With
    several GPUs, relaunched under torchrun, one process per GPU (global batch = batch x GPUs)."""
    seed = params.main_seed
    labelmap = read_ava_labelmap(params.detect.data.labelmap)
    cfg = params.detect_config(sorted(labelmap), seed)
    ckpt = probe_checkpoint(params)
    settings = {"detect": to_dict(params.detect), "encoder": to_dict(params.probe.encoder), "checkpoint": ckpt}
    files = [f for k, f in vars(params.detect.data).items() if f and k != "frames"]  # the frames: too many to hash
    work = shared_work_dir("detect", settings, [PREPARED, *encoder_files(params, ckpt)], files)
    if launch_torchrun("detect", None, params_path, torch.cuda.device_count()):
        return None
    rank0 = is_rank0()
    with stage_run("detect", settings, {"profile": params.profile}, enabled=rank0) as t:
        sets = ava_datasets(params.detect.data, params.detect.clip, cfg.num_classes, seed)
        encoder, enc = frozen_encoder(params, ckpt)
        result = once(
            work,
            lambda: run_detection(
                cfg, encoder, sets.train, sets.val, sets.val_groundtruth, work, sets.val_exclusions, labelmap
            ),
            record=rank0,
        )
        if not rank0:
            return result
        out = publish(work, RUNS / "detect")
        metrics = {
            "profile": params.profile,
            "seed": seed,
            "encoder": enc.checkpoint,
            "train_keyframes": len(sets.train),
            "val_keyframes": len(sets.val),
            **result,
        }
        return finish(t, Path("metrics") / params.profile, "detect", metrics, out / "detections.csv")
