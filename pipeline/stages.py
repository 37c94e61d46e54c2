"""The DVC stages: one thin function each. A stage reads its params sections (typed, checked at the
edge), calls `vjepa`, writes its outputs and a metrics JSON, and logs the same to MLflow.

Restartable: a stage computes in runs/.work/<stage>/ (not a DVC output, so DVC never deletes it)
and moves the finished folder to its output path at the end. A stage killed halfway resumes from
the checkpoint it left there when re-run with the same params; with other params it starts over.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from pipeline.params import load_params, section, typed, write_json
from pipeline.tracking import ablation_experiment, headline, log_ablation, stage_run
from vjepa.config import ConfigError, from_dict, to_dict
from vjepa.data import (ClipSampling, ImageDataset, MixtureDataset, VideoDataset, eval_transform,
                        probe_train_transform, pretrain_transform, read_path_label_list)
from vjepa.data.sources import TaskData, read_task
from vjepa.masks import MaskConfig, mask_statistics, plot_masks
from vjepa.models import ModelConfig

RUNS = Path("runs")
WORK = RUNS / ".work"


# ----------------------------------------------------------------------------------------------
# Shared plumbing

def _fingerprint(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def work_dir(name: str, settings: dict) -> Path:
    """runs/.work/<name>, kept across a crash; wiped when the stage's settings changed since."""
    w = WORK / name
    stamp = w / "settings.json"
    fp = _fingerprint(settings)
    if w.exists():
        old = json.loads(stamp.read_text()).get("fingerprint") if stamp.exists() else None
        if old != fp:
            print(f"[{name}] settings changed since the interrupted run in {w}: starting over", flush=True)
            shutil.rmtree(w)
        else:
            print(f"[{name}] resuming the interrupted run in {w}", flush=True)
    w.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps({"fingerprint": fp, "settings": settings}, indent=2, default=str))
    return w


def publish(work: Path, out: Path) -> Path:
    """Move a finished work folder to the stage's output path (replacing an older one)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        shutil.rmtree(out)
    os.replace(work, out)
    return out


def profile_name(params: dict) -> str:
    return str(params.get("profile", "default"))


def model_config(params: dict) -> ModelConfig:
    return typed(ModelConfig, params, "model")


def mask_configs(params: dict, key: str = "masks") -> list[MaskConfig]:
    return [from_dict(MaskConfig, m, f"params.yaml:{key}[{i}]") for i, m in enumerate(section(params, key))]


def main_seed(params: dict) -> int:
    return int(section(params, "seeds")[0])


def checkpoint_path(seed: int) -> Path:
    return RUNS / "pretrain" / f"seed{seed}" / "checkpoint.pth.tar"


METRICS = Path("metrics")


def _finish(tracker, name: str, metrics: dict, *artifacts: Path) -> dict:
    """Write the stage's DVC metrics file metrics/<name>.json and log it (and artifacts) to MLflow."""
    path = write_json(METRICS / f"{name}.json", metrics)
    tracker.metrics(metrics)
    tracker.metrics(headline(metrics))  # top1_attentive, top1_linear, map: the same names in every run
    for a in (path, *artifacts):
        tracker.artifact(a)
    return metrics


# ----------------------------------------------------------------------------------------------
# prepare

def prepare(params_path: str = "params.yaml") -> dict:
    """Default profile: build the small real-data suite in data/prepared. Real-data profiles
    (`prepare: null`): read every task's annotations in its format and write an index."""
    from vjepa.data.prepare import SmallSuiteConfig, build_small_suite

    params = load_params(params_path)
    out = Path("data/prepared")
    with stage_run("prepare", {"prepare": params.get("prepare")}, {"profile": profile_name(params)}) as t:
        if params.get("prepare") is not None:
            cfg = typed(SmallSuiteConfig, params, "prepare")
            summary = build_small_suite(cfg, out)
        else:
            summary = {"tasks": {}}
            for name in section(params, "tasks"):
                train, val, classes = read_task(typed(TaskData, params, f"tasks.{name}"))
                summary["tasks"][name] = {"train": len(train), "val": len(val), "classes": len(classes)}
            out.mkdir(parents=True, exist_ok=True)
            write_json(out / "index.json", summary)
        metrics = {"profile": profile_name(params), **_summary_numbers(summary)}
        return _finish(t, "prepare", metrics)


def _summary_numbers(summary: dict) -> dict:
    """The counts, durations and sizes of a prepare summary (class name lists dropped)."""
    def keep(v):
        if isinstance(v, dict):
            return {k: keep(x) for k, x in v.items() if keep(x) is not None}
        return v if isinstance(v, (int, float, str)) and not isinstance(v, bool) else None
    return keep(summary)


# ----------------------------------------------------------------------------------------------
# masks (statistics and the Figure 6 picture)

def masks(params_path: str = "params.yaml") -> dict:
    params = load_params(params_path)
    grid = model_config(params).grid
    cfgs = mask_configs(params)
    out = RUNS / "masks"
    with stage_run("masks", {"masks": section(params, "masks")}, {"profile": profile_name(params)}) as t:
        stats = {f"mask{i}": mask_statistics(c, grid, batch_size=24, num_batches=50) for i, c in enumerate(cfgs)}
        plot_masks(cfgs, grid, out / "masks.png")
        return _finish(t, "masks", {"profile": profile_name(params), "grid": list(grid), **stats}, out / "masks.png")


# ----------------------------------------------------------------------------------------------
# pretrain

@dataclass
class PretrainData:
    """The pretraining mix: path-label lists (VideoMix2M = K710 + SSv2 + HowTo100M) and the clip recipe."""

    sources: list[str]
    weights: list[float] | None = None
    num_frames: int = 16
    frame_step: int = 4
    scale: tuple[float, float] = (0.3, 1.0)
    ratio: tuple[float, float] = (0.75, 1.33)
    hflip: bool = True
    decode_threads: int = 1
    cache_mb: int = 0                   # keep decoded videos in memory (small datasets read many times)


def pretrain_config(params: dict, seed: int, overrides: dict | None = None):
    """PretrainConfig from the `model`, `masks` and `pretrain.train` sections, with this seed."""
    from vjepa.pretrain import PretrainConfig

    raw = {"model": section(params, "model"), "masks": section(params, "masks"),
           **copy.deepcopy(section(params, "pretrain.train")), "seed": seed}
    for k, v in (overrides or {}).items():  # ablation points replace whole keys (masks) or optim entries
        if k == "optim":
            raw["optim"] = {**raw.get("optim", {}), **v}
        elif k == "model":
            raw["model"] = {**raw["model"], **v}
        else:
            raw[k] = v
    if "masks" in (overrides or {}) and "num_mask_tokens" not in (overrides or {}).get("model", {}):
        raw["model"] = {**raw["model"], "num_mask_tokens": len(raw["masks"])}
    return from_dict(PretrainConfig, raw, "params.yaml:pretrain")


def pretrain_dataset(params: dict, cfg, seed: int):
    data = typed(PretrainData, params, "pretrain.data")
    clip = ClipSampling(num_frames=data.num_frames, frame_step=data.frame_step, random=True)
    if cfg.model.num_frames != data.num_frames:
        raise ConfigError(f"params.yaml: pretrain.data.num_frames ({data.num_frames}) must equal model.num_frames "
                          f"({cfg.model.num_frames})")
    transform = pretrain_transform(cfg.model.img_size, data.scale, data.ratio, data.hflip)
    parts = [VideoDataset(read_path_label_list(p), clip, transform, data.decode_threads, seed=seed, cache_mb=data.cache_mb)
             for p in data.sources]
    return MixtureDataset(parts, data.weights)


def _launch_torchrun(stage: str, key: str | None, params_path: str) -> bool:
    """With several GPUs and not yet under torchrun, run this stage once per GPU under torchrun."""
    n = torch.cuda.device_count()
    if n <= 1 or "LOCAL_RANK" in os.environ:
        return False
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
           "-m", "pipeline", stage, *([key] if key is not None else []), "--params", params_path]
    print("launching:", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    return True


def run_pretraining(cfg, dataset, work: Path, tracker, log_every: int = 1) -> dict:
    """vjepa.pretrain.pretrain with its step metrics mirrored to MLflow (rank 0)."""
    from vjepa.pretrain import pretrain as vjepa_pretrain

    def log(metrics, step):
        if step % log_every == 0:
            tracker.metrics({k: v for k, v in metrics.items() if k != "step"}, step=step)
    return vjepa_pretrain(cfg, dataset, work, log_fn=log)


def pretrain(params_path: str = "params.yaml", seed: str | int | None = None) -> dict | None:
    """Pretrain V-JEPA with one seed; writes runs/pretrain/seed<k>/ (official-layout checkpoint,
    per-step metrics.jsonl, summary metrics.json)."""
    params = load_params(params_path)
    seed = main_seed(params) if seed is None else int(seed)
    cfg = pretrain_config(params, seed)
    settings = {"pretrain": to_dict(cfg), "data": section(params, "pretrain.data")}
    name = f"pretrain-seed{seed}"
    # the launching process owns the work folder (resume or start over); torchrun's workers use it
    work = WORK / name if "LOCAL_RANK" in os.environ else work_dir(name, settings)
    if _launch_torchrun("pretrain", str(seed), params_path):
        return None
    rank0 = int(os.environ.get("RANK", "0")) == 0
    with stage_run("pretrain", settings, {"profile": profile_name(params), "seed": seed}, enabled=rank0) as t:
        summary = run_pretraining(cfg, pretrain_dataset(params, cfg, seed), work, t,
                                  int(section(params, "pretrain.mlflow_every", 1)))
        if not rank0:
            return summary
        (work / "latest.pth.tar").replace(work / "checkpoint.pth.tar")
        out = publish(work, RUNS / "pretrain" / f"seed{seed}")
        summary["checkpoint"] = str(out / "checkpoint.pth.tar")
        summary["samples_seen"] = summary["steps"] * summary["global_batch"]
        return _finish(t, f"pretrain/seed{seed}", {"profile": profile_name(params), "seed": seed, **summary},
                       out / "metrics.jsonl")


# ----------------------------------------------------------------------------------------------
# frozen probes

@dataclass
class ProbeTask:
    """How one task is probed: its data, clip sampling, views and transforms, plus ProbeConfig
    overrides (`probe`) on top of the `probe.defaults` section."""

    data: str                                   # a key of the `tasks` section
    segments: list[int] = field(default_factory=lambda: [1])  # first = headline; the rest: Table 11
    num_frames: int = 16
    frame_step: int = 4
    eval_views: int = 3
    still_frames: int = 16
    augment: bool = True                        # random resized crop + flip (Table 6); false allows caching
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (0.75, 1.33)
    hflip: bool = True
    auto_augment: str | None = None             # IN1K: "original" (AutoAugment)
    reprob: float = 0.0
    probe: dict = field(default_factory=dict)


def probe_datasets(params: dict, task: ProbeTask, img_size: int, segments: int, seed: int):
    """(train set, val set, number of classes) of a task in its real format."""
    data = typed(TaskData, params, f"tasks.{task.data}")
    train, val, classes = read_task(data)
    if task.augment:
        train_tf = probe_train_transform(img_size, task.scale, task.ratio, task.hflip, task.auto_augment, task.reprob)
    else:
        train_tf = eval_transform(img_size, 1)
    val_tf = eval_transform(img_size, task.eval_views)
    if data.train.is_image:
        return (ImageDataset(train, train_tf, task.still_frames, seed=seed),
                ImageDataset(val, val_tf, task.still_frames, seed=seed), len(classes))
    def clips(random):
        return ClipSampling(num_frames=task.num_frames, frame_step=task.frame_step, num_segments=segments, random=random)
    return (VideoDataset(train, clips(task.augment), train_tf, seed=seed),
            VideoDataset(val, clips(False), val_tf, seed=seed), len(classes))


def probe_config(params: dict, task: ProbeTask, num_classes: int, segments: int, seed: int, extra: dict | None = None):
    from vjepa.probe import ProbeConfig

    from_dict(ProbeConfig, {**section(params, "probe.defaults"), "num_classes": 2}, "params.yaml:probe.defaults")
    raw = {**section(params, "probe.defaults"), **task.probe, **(extra or {}),
           "num_classes": num_classes, "num_segments": segments, "still_frames": task.still_frames, "seed": seed}
    if not task.augment:
        raw.setdefault("cache_features", True)
    return from_dict(ProbeConfig, raw, f"params.yaml:probe.tasks.{task.data}")


def frozen_encoder(params: dict, checkpoint: str | None, model: ModelConfig | None = None,
                   override: bool = True):
    """The EMA target encoder of a checkpoint (None: random init) of shape `model` (default: the
    `model` section), or, with override, the `probe.encoder` section's encoder (a released V-JEPA
    file or a timm image model run frame by frame)."""
    from vjepa.probe import EncoderConfig, build_frozen_encoder

    raw = {"checkpoint": checkpoint, **(section(params, "probe.encoder", {}) if override else {})}
    enc_cfg = from_dict(EncoderConfig, raw, "params.yaml:probe.encoder")
    return build_frozen_encoder(enc_cfg, model or model_config(params)), enc_cfg


def run_probe_task(params: dict, task: ProbeTask, encoder, out: Path, seed: int, segments: int,
                   name: str, extra: dict | None = None) -> dict:
    from vjepa.probe import run_probe

    img = model_config(params).img_size
    train_set, val_set, n = probe_datasets(params, task, img, segments, seed)
    cfg = probe_config(params, task, n, segments, seed, extra)
    return run_probe(cfg, encoder, train_set, val_set, out, encoder_name=name)


def probe(params_path: str = "params.yaml", task_name: str | None = None) -> dict:
    """Frozen evaluation of the main seed's target encoder on one task: every probe of the grid,
    at each temporal coverage in `segments`; writes runs/probe/<task>/."""
    params = load_params(params_path)
    task = typed(ProbeTask, params, f"probe.tasks.{task_name}")
    seed = main_seed(params)
    ckpt = str(checkpoint_path(seed)) if not section(params, "probe.encoder", {}).get("checkpoint") else None
    settings = {"task": to_dict(task), "defaults": section(params, "probe.defaults"),
                "encoder": section(params, "probe.encoder", {}), "checkpoint": ckpt, "seed": seed,
                "data": section(params, f"tasks.{task.data}")}
    with stage_run("probe", settings, {"profile": profile_name(params), "task": task_name}) as t:
        encoder, enc_cfg = frozen_encoder(params, ckpt)
        work = work_dir(f"probe-{task_name}", settings)
        results = {}
        for s in task.segments:
            results[f"segments{s}"] = run_probe_task(params, task, encoder, work / f"segments{s}", seed, s,
                                                     enc_cfg.checkpoint or enc_cfg.timm_model or "random")
        head = results[f"segments{task.segments[0]}"]
        out = publish(work, RUNS / "probe" / task_name)
        metrics = {"profile": profile_name(params), "task": task_name, "seed": seed,
                   "encoder": enc_cfg.checkpoint or enc_cfg.timm_model, "top1": head["best_top1"],
                   "top1_by_kind": {k: head["probes"][n]["top1"] for k, n in head["best_probe_by_kind"].items()},
                   "coverage": {s: {k: r["probes"][n]["top1"] for k, n in r["best_probe_by_kind"].items()}
                                for s, r in results.items()},
                   "runs": results}
        return _finish(t, f"probe/{task_name}", metrics)



# ----------------------------------------------------------------------------------------------
# frozen AVA detection

@dataclass
class AvaFiles:
    """An AVA v2.2 folder's files (SlowFast frame layout, 30 fps, clips cut from second 900)."""

    frames: str
    train_groundtruth: str
    val_groundtruth: str
    labelmap: str                       # the evaluation subset (60 classes for AVA v2.2)
    val_proposals: str                  # person boxes with scores: mmaction pickle or SlowFast CSV
    train_exclusions: str | None = None
    val_exclusions: str | None = None


def detect(params_path: str = "params.yaml") -> dict:
    """Frozen AVA detection with the main seed's target encoder: a RoIAlign + linear head on four
    layers' features, mAP@0.5 over the evaluation classes; writes runs/detect/."""
    from vjepa.data import AvaFrameFolder, read_ava_csv, read_ava_exclusions, read_ava_labelmap, read_ava_proposals
    from vjepa.detect import AvaBoxDataset, AvaClipConfig, DetectConfig, ava_gt_boxes, ava_proposal_boxes, run_detection

    params = load_params(params_path)
    files = typed(AvaFiles, params, "detect.data")
    clip = typed(AvaClipConfig, params, "detect.clip")
    seed = main_seed(params)
    labelmap = read_ava_labelmap(files.labelmap)
    cfg = from_dict(DetectConfig, {"eval_classes": sorted(labelmap), "seed": seed, **section(params, "detect.head")},
                    "params.yaml:detect.head")
    ckpt = str(checkpoint_path(seed)) if not section(params, "probe.encoder", {}).get("checkpoint") else None
    settings = {"detect": section(params, "detect"), "encoder": section(params, "probe.encoder", {}), "checkpoint": ckpt}
    with stage_run("detect", settings, {"profile": profile_name(params)}) as t:
        frames = AvaFrameFolder(files.frames)
        train_gt = read_ava_csv(files.train_groundtruth)
        if files.train_exclusions:
            excluded = read_ava_exclusions(files.train_exclusions)
            keep = [(v, s) not in excluded for v, s in zip(train_gt["video_id"], train_gt["timestamp"])]
            train_gt = train_gt[keep]
        val_gt = read_ava_csv(files.val_groundtruth)
        proposals = read_ava_proposals(files.val_proposals, clip.proposal_score_threshold)
        train_set = AvaBoxDataset(frames, ava_gt_boxes(train_gt, cfg.num_classes), clip, train=True, seed=seed)
        val_set = AvaBoxDataset(frames, ava_proposal_boxes(proposals, cfg.num_classes), clip, train=False, seed=seed)
        encoder, enc_cfg = frozen_encoder(params, ckpt)
        work = work_dir("detect", settings)
        result = run_detection(cfg, encoder, train_set, val_set, val_gt, work,
                               read_ava_exclusions(files.val_exclusions) if files.val_exclusions else None, labelmap)
        out = publish(work, RUNS / "detect")
        metrics = {"profile": profile_name(params), "seed": seed, "encoder": enc_cfg.checkpoint,
                   "train_keyframes": len(train_set), "val_keyframes": len(val_set), **result}
        return _finish(t, "detect", metrics, out / "detections.csv")


# ----------------------------------------------------------------------------------------------
# Does it learn? pretrained against randomly initialised encoders, per seed

def learn(params_path: str = "params.yaml", seed: str | int | None = None) -> dict:
    """For one seed: that seed's pretrained target encoder and a randomly initialised encoder of the
    same shape, under the same probes, on the tasks of `learn.tasks` (motion and appearance)."""
    params = load_params(params_path)
    seed = main_seed(params) if seed is None else int(seed)
    names = [section(params, "learn.motion"), section(params, "learn.appearance")]
    extra = section(params, "learn.probe", {})
    ckpt = str(checkpoint_path(seed))
    settings = {"learn": section(params, "learn"), "seed": seed, "checkpoint": ckpt,
                "tasks": {n: section(params, f"probe.tasks.{n}") for n in names},
                "defaults": section(params, "probe.defaults")}
    with stage_run("learn", settings, {"profile": profile_name(params), "seed": seed}) as t:
        work = work_dir(f"learn-seed{seed}", settings)
        results = {}
        for encoder_kind in ("pretrained", "random"):
            torch.manual_seed(seed)  # the random encoder's init is a function of the seed
            encoder, _ = frozen_encoder(params, ckpt if encoder_kind == "pretrained" else None, override=False)
            for name in names:
                task = typed(ProbeTask, params, f"probe.tasks.{name}")
                segments = int(section(params, "learn.segments", 1))
                r = run_probe_task(params, task, encoder, work / encoder_kind / name, seed, segments,
                                   encoder_kind, extra)
                results.setdefault(name, {})[encoder_kind] = {
                    k: r["probes"][n]["top1"] for k, n in r["best_probe_by_kind"].items()}
        publish(work, RUNS / "learn" / f"seed{seed}")
        margins = {name: {k: r["pretrained"][k] - r["random"][k] for k in r["pretrained"]} for name, r in results.items()}
        return _finish(t, f"learn/seed{seed}", {"profile": profile_name(params), "seed": seed,
                                                 "top1": results, "margin": margins})


# ----------------------------------------------------------------------------------------------
# ablations: one short pretraining + probe per grid point

@dataclass
class AblationPoint:
    """A grid point: the tables it belongs to, a label, and what it changes in pretraining
    (e.g. `masks`, `target: copy`, `optim: {...}`)."""

    tables: list[str]
    label: str = ""
    pretrain: dict = field(default_factory=dict)


def ablate(params_path: str = "params.yaml", point: str | None = None) -> dict:
    """Pretrain with the point's changes on top of `ablations.pretrain` (a shorter run), then probe
    `ablations.task`; records the mask statistics that Tables 13-15 report."""
    params = load_params(params_path)
    spec = typed(AblationPoint, params, f"ablations.points.{point}")
    seed = main_seed(params)
    overrides = copy.deepcopy(section(params, "ablations.pretrain", {}))
    for k, v in spec.pretrain.items():
        overrides[k] = {**overrides.get(k, {}), **v} if isinstance(v, dict) and isinstance(overrides.get(k), dict) else v
    cfg = pretrain_config(params, seed, overrides)
    task_name = section(params, "ablations.task")
    task = typed(ProbeTask, params, f"probe.tasks.{task_name}")
    settings = {"point": to_dict(spec), "pretrain": to_dict(cfg), "data": section(params, "pretrain.data"),
                "task": to_dict(task), "defaults": section(params, "probe.defaults"),
                "probe": section(params, "ablations.probe", {})}
    tags = {"profile": profile_name(params), "ablation": point, "tables": ",".join(spec.tables),
            "target": cfg.target, "num_masks": len(cfg.masks)}
    with stage_run("ablate", settings, tags, experiment=ablation_experiment(profile_name(params))) as t:
        work = work_dir(f"ablate-{point}", settings)
        summary = run_pretraining(cfg, pretrain_dataset(params, cfg, seed), work / "pretrain", t,
                                  int(section(params, "pretrain.mlflow_every", 1)))
        encoder, _ = frozen_encoder(params, str(work / "pretrain" / "latest.pth.tar"), cfg.model, override=False)
        r = run_probe_task(params, task, encoder, work / "probe", seed, task.segments[0], point,
                           section(params, "ablations.probe", {}))
        stats = [mask_statistics(m, cfg.model.grid, batch_size=cfg.batch_size, num_batches=20) for m in cfg.masks]
        (work / "pretrain" / "latest.pth.tar").unlink()  # keep the curve and probe results, not the weights
        publish(work, RUNS / "ablate" / point)
        metrics = {"profile": profile_name(params), "point": point, "label": spec.label, "tables": spec.tables,
                   "task": task_name, "target": cfg.target, "num_masks": len(cfg.masks),
                   "masks": [to_dict(m) for m in cfg.masks], "mask_statistics": stats,
                   "top1_by_kind": {k: r["probes"][n]["top1"] for k, n in r["best_probe_by_kind"].items()},
                   "final_loss": summary["final_loss"], "final_target_std": summary["final_target_std"],
                   "samples_seen": summary["steps"] * summary["global_batch"]}
        log_ablation(t, point, spec, cfg, stats, metrics)  # its row of the ablation table in MLflow
        return _finish(t, f"ablate/{point}", metrics)


# ----------------------------------------------------------------------------------------------
# finetuning (Table 8)

def finetune_config(params: dict, task_name: str, num_classes: int, seed: int = 0):
    """FinetuneConfig of one task: `finetune.defaults`, then the task's entries, on the `model` section."""
    from vjepa.finetune import FinetuneConfig

    spec = section(params, f"finetune.tasks.{task_name}")
    raw = {**section(params, "finetune.defaults", {}), **{k: v for k, v in spec.items() if k != "data"},
           "model": section(params, "model"), "num_classes": num_classes, "seed": seed}
    return from_dict(FinetuneConfig, raw, f"params.yaml:finetune.tasks.{task_name}")


def finetune(params_path: str = "params.yaml", task_name: str | None = None) -> dict:
    """Finetune the main seed's encoder end to end on one task (VideoMAE recipe, multi-view test);
    writes runs/finetune/<task>/."""
    from vjepa.finetune import build_datasets
    from vjepa.finetune import finetune as vjepa_finetune

    params = load_params(params_path)
    seed = main_seed(params)
    spec = section(params, f"finetune.tasks.{task_name}")
    data = typed(TaskData, params, f"tasks.{spec['data']}")
    train, val, classes = read_task(data)
    cfg = finetune_config(params, task_name, len(classes), seed)
    ckpt = section(params, "finetune").get("checkpoint") or str(checkpoint_path(seed))  # or a released file
    settings = {"finetune": to_dict(cfg), "checkpoint": ckpt, "data": section(params, f"tasks.{spec['data']}")}
    with stage_run("finetune", settings, {"profile": profile_name(params), "task": task_name}) as t:
        work = work_dir(f"finetune-{task_name}", settings)
        train_set, val_set = build_datasets(cfg, train, val)
        result = vjepa_finetune(cfg, ckpt, train_set, val_set, work,
                                log_fn=lambda m, step: t.metrics({k: v for k, v in m.items() if k != "step"}, step=step))
        (work / "latest.pth.tar").unlink(missing_ok=True)  # the resume state; the finetuned model stays
        publish(work, RUNS / "finetune" / task_name)
        return _finish(t, f"finetune/{task_name}", {"profile": profile_name(params), "task": task_name,
                                                     "checkpoint": ckpt, **result})


# ----------------------------------------------------------------------------------------------
# report

def report(params_path: str = "params.yaml") -> dict:
    """reports/README.md and figures, from the metrics files alone."""
    from pipeline.report import build_report

    params = load_params(params_path)
    with stage_run("report", None, {"profile": profile_name(params)}) as t:
        path = build_report(params)
        t.artifact(path)
        return {"report": str(path)}


# ----------------------------------------------------------------------------------------------
# checking a params file before a long run

def check(params_path: str = "params.yaml") -> list[str]:
    """Build every typed config of a params file without touching data or weights, so a typo or a
    wrong type fails in seconds with its key path, not hours into a run. Returns what was checked."""
    from vjepa.detect import AvaClipConfig, DetectConfig
    from vjepa.probe import EncoderConfig, ProbeConfig

    params = load_params(params_path)
    checked = []
    if params.get("prepare") is not None:
        from vjepa.data.prepare import SmallSuiteConfig
        typed(SmallSuiteConfig, params, "prepare")
    for name in section(params, "tasks"):
        typed(TaskData, params, f"tasks.{name}")
    model_config(params), mask_configs(params)
    for seed in section(params, "seeds"):
        pretrain_config(params, int(seed))
    typed(PretrainData, params, "pretrain.data")
    checked += ["prepare", "tasks", "model", "masks", "pretrain"]
    from_dict(EncoderConfig, section(params, "probe.encoder", {}), "params.yaml:probe.encoder")
    for name in section(params, "probe.tasks"):
        task = typed(ProbeTask, params, f"probe.tasks.{name}")
        if task.data not in section(params, "tasks"):
            raise ConfigError(f"params.yaml:probe.tasks.{name}.data: no task '{task.data}' in `tasks`")
        for s in task.segments:
            probe_config(params, task, 2, s, 0)
    checked.append("probe")
    typed(AvaFiles, params, "detect.data"), typed(AvaClipConfig, params, "detect.clip")
    from_dict(DetectConfig, section(params, "detect.head"), "params.yaml:detect.head")
    for name in section(params, "finetune.tasks"):
        finetune_config(params, name, 2)
    for key in ("learn.motion", "learn.appearance", "ablations.task"):
        if section(params, key) not in section(params, "probe.tasks"):
            raise ConfigError(f"params.yaml:{key}: '{section(params, key)}' is not a key of probe.tasks")
    for point in section(params, "ablations.points"):
        spec = typed(AblationPoint, params, f"ablations.points.{point}")
        overrides = copy.deepcopy(section(params, "ablations.pretrain", {}))
        overrides.update(spec.pretrain)
        pretrain_config(params, 0, overrides)
    checked += ["detect", "finetune", "learn", "ablations"]
    return checked


STAGES = {"prepare": prepare, "masks": masks, "pretrain": pretrain, "probe": probe, "detect": detect,
          "learn": learn, "ablate": ablate, "finetune": finetune, "report": report}
