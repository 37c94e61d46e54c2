"""detect: frozen AVA detection (Table 7) with the main seed's target encoder: a RoIAlign + linear
head on four layers' features, mAP@0.5 over the evaluation classes."""
from __future__ import annotations

from pathlib import Path

from pipeline.config import Params
from pipeline.plumbing import RUNS, finish, once, publish, work_dir
from pipeline.stages.common import frozen_encoder, probe_checkpoint
from pipeline.tracking import stage_run
from vjepa.config import to_dict
from vjepa.data import AvaFrameFolder, read_ava_csv, read_ava_exclusions, read_ava_labelmap, read_ava_proposals
from vjepa.detect import AvaBoxDataset, ava_gt_boxes, ava_proposal_boxes, run_detection


def run(P: Params, key: str | None = None, params_path: str = "params.yaml") -> dict:
    """Train the head on the ground truth, predict on the proposals; writes runs/detect/."""
    files, clip, seed = P.detect.data, P.detect.clip, P.main_seed
    labelmap = read_ava_labelmap(files.labelmap)
    cfg = P.detect_config(sorted(labelmap), seed)
    ckpt = probe_checkpoint(P)
    settings = {"detect": to_dict(P.detect), "encoder": to_dict(P.probe.encoder), "checkpoint": ckpt}
    with stage_run("detect", settings, {"profile": P.profile}) as t:
        frames = AvaFrameFolder(files.frames)
        train_gt = read_ava_csv(files.train_groundtruth)
        if files.train_exclusions:
            excluded = read_ava_exclusions(files.train_exclusions)
            train_gt = train_gt[[(v, s) not in excluded for v, s in zip(train_gt["video_id"], train_gt["timestamp"])]]
        val_gt = read_ava_csv(files.val_groundtruth)
        proposals = read_ava_proposals(files.val_proposals, clip.proposal_score_threshold)
        train_set = AvaBoxDataset(frames, ava_gt_boxes(train_gt, cfg.num_classes), clip, train=True, seed=seed)
        val_set = AvaBoxDataset(frames, ava_proposal_boxes(proposals, cfg.num_classes), clip, train=False, seed=seed)
        encoder, enc = frozen_encoder(P, ckpt)
        work = work_dir("detect", settings)
        val_exclusions = read_ava_exclusions(files.val_exclusions) if files.val_exclusions else None
        result = once(work, lambda: run_detection(cfg, encoder, train_set, val_set, val_gt, work, val_exclusions,
                                                  labelmap))
        out = publish(work, RUNS / "detect")
        metrics = {"profile": P.profile, "seed": seed, "encoder": enc.checkpoint,
                   "train_keyframes": len(train_set), "val_keyframes": len(val_set), **result}
        return finish(t, Path("metrics") / P.profile, "detect", metrics, out / "detections.csv")
