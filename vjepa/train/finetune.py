"""Full finetuning (appendix B.3, Table 8): the pretrained encoder and a linear head trained end to
end with the VideoMAE recipe (Tong et al. 2022), then tested on several views per video.

- Model: encoder -> mean of the tokens -> LayerNorm (fc_norm) -> dropout 0.5 -> Linear, the head
  initialised at 0.001 x N(0, 0.02); drop path 0.2 rising linearly with depth. Option: a batch norm
  (no affine) as fc_norm, for pooled features that barely vary across clips (the small suite). A clip with more
  frames or pixels than the encoder was pretrained on (SSv2: 32 frames on a 16-frame encoder) uses
  the encoder's position table interpolated trilinearly.
- Optimiser: AdamW over timm's layer-decay groups: embeddings id 0, block k id k+1, final norm and
  head id L+1, lr scale decay^(L+1-id); no weight decay on biases, 1-D parameters and pos_embed.
  timm's CosineLRScheduler: linear warmup from warmup_lr, then cosine to min_lr, per step.
- Data: repeated augmentation (num_sample views of each decoded clip), clip-consistent RandAugment,
  random resized crop, flip, colour jitter and random erasing (vjepa.data.transforms); per batch,
  timm Mixup/CutMix on clips folded to [B, C*T, H, W], so one CutMix box cuts through all frames,
  with label smoothing and timm's SoftTargetCrossEntropy.
- Test: S temporal x V spatial views per video (K400 5 x 3, SSv2 2 x 3); the softmax of each view,
  averaged; top-1 and top-5.
- Runs: atomic checkpoints every `checkpoint_every` steps and each epoch; a killed run resumes from
  out_dir/latest.pth.tar with the same model, optimiser, schedule position, data position and random
  draws (each item's and each micro-batch's draws come from seeds fixed by their position).
  Data-parallel under torchrun as vjepa.train.pretrain.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from vjepa.infra.checkpoint import add_prefix, load, load_into, load_official_module, save_atomic
from vjepa.infra.runtime import CheckpointError
from vjepa.infra.config import to_dict
from vjepa.infra.runtime import (
    atomic_file,
    autocast_for,
    check_resume,
    mix_seed,
    require_finite,
    seeded,
    without_timings,
    write_json,
)
from vjepa.data import ClipSampling, SkipCounter, VideoDataset, clip_datasets, collate
from vjepa.data.transforms import RepeatedAugment, eval_transform, finetune_train_transform
from vjepa.infra.distributed import (
    DistEnv,
    ShardedBatchSampler,
    all_reduce_sum,
    barrier,
    gather_objects,
    init_distributed,
    shutdown,
    wrap_ddp,
)
from vjepa.models import build_encoder
from vjepa.models.vit import LayerNorm, VisionTransformer
from vjepa.train.batches import KeyedBatches, identity
from vjepa.evals.frozen import average_views
from vjepa.infra.configs import (
    FinetuneConfig,
)


# ----------------------------------------------------------------------------------------------
# Model


class VideoClassifier(nn.Module):
    """Encoder -> mean of its tokens -> LayerNorm (fc_norm) -> dropout -> Linear: [B, C, T, H, W] -> [B, K].
    head_norm="batchnorm" standardises each pooled channel over the batch instead (no affine)."""

    def __init__(
        self,
        encoder: VisionTransformer,
        num_classes: int,
        head_drop_rate: float = 0.5,
        init_scale: float = 0.001,
        encoder_norm: bool = True,
        head_norm: str = "layernorm",
    ):
        super().__init__()
        if not encoder_norm:  # VideoMAE: under mean pooling the final norm is an identity
            encoder.norm = nn.Identity()
        self.encoder = encoder
        D = encoder.embed_dim
        self.fc_norm = LayerNorm(D) if head_norm == "layernorm" else nn.BatchNorm1d(D, affine=False)
        self.head_drop = nn.Dropout(head_drop_rate)
        self.head = nn.Linear(encoder.embed_dim, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        with torch.no_grad():
            self.head.weight.mul_(init_scale)
            self.head.bias.mul_(init_scale)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        tokens = self.encoder(clips)  # [B, N, D]
        return self.head(self.head_drop(self.fc_norm(tokens.mean(1))))

    def group_matcher(self, coarse: bool = False) -> dict:
        """timm layer groups: embeddings 0, block k k+1; everything unmatched (final norm, fc_norm,
        head) lands in the top group L+1, as VideoMAE's get_num_layer_for_vit."""
        return {"stem": r"^encoder\.(?:patch_embed|pos_embed)", "blocks": r"^encoder\.blocks\.(\d+)"}

    def no_weight_decay(self) -> set[str]:
        return {"encoder.pos_embed"}  # fixed here; listed so a learnt table is never decayed


def layer_decay_groups(model: VideoClassifier, weight_decay: float, layer_decay: float) -> list[dict]:
    """timm's layer-decay parameter groups, each with its `lr_scale` and weight decay (0 for biases,
    1-D parameters and pos_embed)."""
    from timm.optim import param_groups_layer_decay

    return param_groups_layer_decay(
        model, weight_decay=weight_decay, no_weight_decay_list=model.no_weight_decay(), layer_decay=layer_decay
    )


def build_model(cfg: FinetuneConfig, encoder_checkpoint: str | Path | None = None) -> VideoClassifier:
    """The classifier: the encoder from `encoder_checkpoint` (strict, weights_only) or random init."""
    torch.manual_seed(cfg.seed)  # the same init on every process
    encoder = build_encoder(cfg.model, drop_path_rate=cfg.drop_path)
    if encoder_checkpoint is not None:
        load_official_module(encoder, load(encoder_checkpoint), cfg.checkpoint_key, str(encoder_checkpoint))
    return VideoClassifier(
        encoder, cfg.num_classes, cfg.head_drop_rate, cfg.init_scale, cfg.encoder_norm, cfg.head_norm
    )


# ----------------------------------------------------------------------------------------------
# Mixup / CutMix on clips


class ClipMixup:
    """timm Mixup/CutMix on clips [B, C, T, H, W] -> (mixed clips, soft targets [B, K]). timm draws
    its CutMix box over the last two dims but pastes it into dims 2-3 (T, H on a 5-D clip), so the
    clip is folded to [B, C*T, H, W]: one box, through every frame and channel."""

    def __init__(self, cfg: FinetuneConfig):
        from timm.data import Mixup

        self.mix = Mixup(
            mixup_alpha=cfg.mixup,
            cutmix_alpha=cfg.cutmix,
            prob=cfg.mixup_prob,
            switch_prob=cfg.mixup_switch_prob,
            mode=cfg.mixup_mode,
            label_smoothing=cfg.smoothing,
            num_classes=cfg.num_classes,
        )

    def __call__(self, clips: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, C, T, H, W = clips.shape
        if B % 2:
            raise ValueError(f"mixup needs an even number of clips, got {B}")
        folded = clips.reshape(B, C * T, H, W).clone()  # timm mixes in place
        folded, targets = self.mix(folded, labels)
        return folded.view(B, C, T, H, W), targets


def build_loss(cfg: FinetuneConfig) -> nn.Module:
    """SoftTargetCrossEntropy under mixup (targets already smoothed), else label-smoothing CE (timm)."""
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

    if cfg.mixup_active:
        return SoftTargetCrossEntropy()
    return LabelSmoothingCrossEntropy(cfg.smoothing) if cfg.smoothing > 0 else nn.CrossEntropyLoss()


# ----------------------------------------------------------------------------------------------
# Data


def build_datasets(cfg: FinetuneConfig, train_entries, val_entries) -> tuple[VideoDataset, VideoDataset]:
    """Training items of 1 clip x num_sample augmented views; test items of test_num_segment clips
    x test_num_crop crops (the data contract's [S, V, C, T, H, W])."""
    train_clip = ClipSampling(num_frames=cfg.num_frames, frame_step=cfg.frame_step, method=cfg.sampling)
    test_clip = ClipSampling(
        num_frames=cfg.num_frames,
        frame_step=cfg.frame_step,
        num_segments=cfg.test_num_segment,
        random=False,
        method=cfg.test_sampling,
    )
    train_tf = finetune_train_transform(
        cfg.input_size,
        cfg.hflip,
        cfg.auto_augment,
        cfg.color_jitter,
        cfg.reprob,
        cfg.train_interpolation,
        cfg.crop_scale,
        cfg.crop_ratio,
    )
    return clip_datasets(
        train_entries,
        val_entries,
        train_clip,
        test_clip,
        RepeatedAugment(train_tf, cfg.num_sample),
        eval_transform(cfg.input_size, cfg.test_num_crop),
        cfg.decode_threads,
    )


def _check_labels(labels: torch.Tensor, paths: list[str], num_classes: int, where: str) -> None:
    bad = ((labels < 0) | (labels >= num_classes)).nonzero().flatten()
    if len(bad):
        i = int(bad[0])
        raise ValueError(
            f"{where} item {paths[i]} has label {int(labels[i])} outside 0..{num_classes - 1} (finetune.num_classes)"
        )


def training_clips(batch: dict, cfg: FinetuneConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """batch video [B, S, V, C, T, H, W] -> clips [B*S*V, C, T, H, W] (views of one video adjacent,
    as VideoMAE's repeated-augmentation collate) and labels repeated to match."""
    video, labels = batch["video"], batch["label"]
    if video.ndim != 7:
        raise ValueError(f"expected training video [B, S, V, C, T, H, W], got shape {tuple(video.shape)}")
    want = (cfg.model.in_chans, cfg.num_frames, cfg.input_size, cfg.input_size)
    if video.size(0) and tuple(video.shape[3:]) != want:
        raise ValueError(f"training clips [C, T, H, W] = {tuple(video.shape[3:])} do not match the config {want}")
    _check_labels(labels, batch["path"], cfg.num_classes, "training")
    per_video = video.shape[1] * video.shape[2]
    return video.flatten(0, 2), labels.repeat_interleave(per_video)


# ----------------------------------------------------------------------------------------------
# Multi-view testing


@torch.no_grad()
def evaluate(
    model: nn.Module, dataset: Dataset, cfg: FinetuneConfig, device: torch.device, autocast, env: DistEnv | None = None
) -> dict:
    """Every view of every video through the model; returns labels, index, path, skipped paths,
    view-averaged softmax probabilities [n, K], per-view predicted classes [S*V, n] and the numbers
    of segments and crops. Under DDP each process takes every world_size-th video and the results
    are gathered on all processes."""
    env = env or DistEnv()
    model.eval()
    mine = list(range(env.rank, len(dataset), env.world_size))
    loader = DataLoader(
        torch.utils.data.Subset(dataset, mine),
        cfg.batch_size,
        shuffle=False,
        collate_fn=collate,
        num_workers=cfg.num_workers,
    )
    chunk = cfg.batch_size * cfg.num_sample  # clips per forward pass, as in training
    probs, view_pred, labels, index, paths, skipped, shape = [], [], [], [], [], [], None
    for batch in tqdm(loader, desc="finetune eval", leave=False, disable=not env.is_main):
        skipped += batch["skipped"]
        if len(batch["label"]) == 0:
            continue
        video = batch["video"]
        _check_labels(batch["label"], batch["path"], cfg.num_classes, "evaluation")
        B, S, V = video.shape[:3]
        if shape not in (None, (S, V)):
            raise ValueError(f"evaluation items have {S} segments x {V} crops after {shape[0]} x {shape[1]}")
        shape = (S, V)
        clips = video.flatten(0, 2)  # order (b, s, v)
        with autocast():
            out = torch.cat([model(c.to(device, non_blocking=True)).float() for c in clips.split(chunk)])
        logits = out.view(B, S * V, -1).transpose(0, 1)  # [S*V, B, K]
        probs.append(average_views(logits).cpu())  # mean of the views' softmaxes
        view_pred.append(logits.argmax(-1).cpu())
        labels.append(batch["label"])
        index.append(batch["index"])
        paths += batch["path"]
    local = {
        "probs": torch.cat(probs) if probs else None,
        "view_pred": torch.cat(view_pred, 1) if probs else None,
        "label": torch.cat(labels) if labels else None,
        "index": torch.cat(index) if index else None,
        "path": paths,
        "skipped": skipped,
        "shape": shape,
    }
    parts = gather_objects(local, env)
    got = [p for p in parts if p["probs"] is not None]
    SkipCounter(len(dataset), cfg.max_skipped_fraction, "finetuning evaluation set").update(
        x for p in parts for x in p["skipped"]
    )
    if not got:
        raise ValueError(f"no evaluation video could be read ({sum(len(p['skipped']) for p in parts)} skipped)")
    return {
        "probs": torch.cat([p["probs"] for p in got]),
        "view_pred": torch.cat([p["view_pred"] for p in got], 1),
        "segments": got[0]["shape"][0],
        "crops": got[0]["shape"][1],
        "label": torch.cat([p["label"] for p in got]),
        "index": torch.cat([p["index"] for p in got]),
        "path": [x for p in got for x in p["path"]],
        "skipped": [x for p in parts for x in p["skipped"]],
    }


def topk_accuracy(probs: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> dict[str, float]:
    """Top-k accuracies in % of class scores [n, K] (k capped at K)."""
    top = probs.topk(min(max(ks), probs.shape[1]), dim=1).indices
    return {f"top{k}": 100.0 * float((top[:, :k] == labels[:, None]).any(1).float().mean()) for k in ks}


def multiview_metrics(result: dict) -> tuple[dict, pd.DataFrame]:
    """Top-1/top-5 of the averaged softmax, top-1 of each view alone; and the predictions table."""
    probs, labels = result["probs"], result["label"]
    per_view = [100.0 * float((v == labels).float().mean()) for v in result["view_pred"]]
    k = min(5, probs.shape[1])
    top = probs.topk(k, dim=1)
    metrics = {
        **topk_accuracy(probs, labels),
        "top1_per_view": per_view,
        "views": len(per_view),
        "segments": result["segments"],
        "crops": result["crops"],
        "num_val": len(labels),
        "skipped_val": len(result["skipped"]),
    }
    predictions = pd.DataFrame(
        {
            "index": result["index"].numpy(),
            "path": result["path"],
            "label": labels.numpy(),
            "predicted": top.indices[:, 0].numpy(),
            "top5": [" ".join(map(str, r)) for r in top.indices.tolist()],
            "top5_prob": [" ".join(f"{p:.5f}" for p in r) for r in top.values.tolist()],
        }
    )
    return metrics, predictions.sort_values("index", kind="stable")


# ----------------------------------------------------------------------------------------------
# Training state and checkpoints


@dataclass
class FinetuneState:
    model: VideoClassifier
    ddp_model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object  # timm CosineLRScheduler, driven per step
    mixup: ClipMixup | None
    loss_fn: nn.Module
    env: DistEnv


def lr_values(cfg: FinetuneConfig, world_size: int = 1) -> dict[str, float]:
    """Peak, warmup-start and final lr, scaled by global batch / 256 when scale_lr_by_batch."""
    scale = cfg.batch_size * world_size * cfg.accumulation_steps / 256 if cfg.scale_lr_by_batch else 1.0
    return {"lr": cfg.lr * scale, "warmup_lr": cfg.warmup_lr * scale, "min_lr": cfg.min_lr * scale}


def build_state(cfg: FinetuneConfig, encoder_checkpoint, env: DistEnv, steps_per_epoch: int) -> FinetuneState:
    from timm.scheduler import CosineLRScheduler

    model = build_model(cfg, encoder_checkpoint).to(env.device)
    lrs = lr_values(cfg, env.world_size)
    optimizer = torch.optim.AdamW(
        layer_decay_groups(model, cfg.weight_decay, cfg.layer_decay), lr=lrs["lr"], betas=cfg.betas, eps=cfg.eps
    )
    total = cfg.epochs * steps_per_epoch
    warmup = cfg.warmup_steps if cfg.warmup_steps is not None else int(round(cfg.warmup_epochs * steps_per_epoch))
    if warmup >= total:
        raise ValueError(
            f"warmup of {warmup} steps does not fit in {total} training steps ({cfg.epochs} epochs of "
            f"{steps_per_epoch}); lower warmup_epochs or set warmup_steps"
        )
    # warmup_prefix: the cosine runs over the steps after warmup, as VideoMAE's cosine_scheduler
    scheduler = CosineLRScheduler(
        optimizer,
        t_initial=max(total - warmup, 1),
        lr_min=lrs["min_lr"],
        warmup_t=warmup,
        warmup_lr_init=lrs["warmup_lr"],
        warmup_prefix=True,
        t_in_epochs=False,
    )
    return FinetuneState(
        model,
        wrap_ddp(model, env),
        optimizer,
        scheduler,
        ClipMixup(cfg) if cfg.mixup_active else None,
        build_loss(cfg),
        env,
    )


def train_step(state: FinetuneState, cfg: FinetuneConfig, micro_batches: list[dict], step: int) -> dict:
    """One optimizer update (1-based `step`) over this process's micro-batches (collated items).
    Each micro-batch's mixup, drop path and dropout draws come from a seed of (seed, step, shard)."""
    env = state.env
    state.scheduler.step_update(step - 1)  # group lr = scheduled lr x its lr_scale
    autocast = autocast_for(env.device, cfg.precision)()
    state.model.train()
    n = len(micro_batches)
    sums = torch.zeros(3, dtype=torch.float64, device=env.device)  # loss x clips, clips, hard-label hits
    for i, mb in enumerate(micro_batches):
        clips, labels = training_clips(mb, cfg)
        if state.mixup is not None and len(clips) % 2:  # an undecodable video left an odd count
            clips, labels = clips[:-1], labels[:-1]
        if len(clips) < (2 if cfg.head_norm == "batchnorm" else 1):  # batch statistics need two clips
            if env.distributed:
                raise RuntimeError(
                    f"step {step}: no clip of a micro-batch could be decoded; with several processes "
                    "this would stall the gradient exchange"
                )
            continue
        clips, labels = clips.to(env.device, non_blocking=True), labels.to(env.device, non_blocking=True)
        last = i == n - 1
        sync = contextlib.nullcontext() if last or not env.distributed else state.ddp_model.no_sync()
        with seeded(mix_seed(cfg.seed, step, mb["shard"]), env.device), sync:
            targets = labels
            if state.mixup is not None:
                clips, targets = state.mixup(clips, labels)
            with autocast:
                logits = state.ddp_model(clips)
            loss = state.loss_fn(logits.float(), targets)
            (loss / n).backward()
        sums += torch.tensor(
            [float(loss.detach()) * len(clips), len(clips), float((logits.detach().argmax(-1) == labels).sum())],
            dtype=torch.float64,
            device=env.device,
        )
    sums = all_reduce_sum(sums, env)
    loss = (sums[0] / sums[1].clamp(min=1)).item()
    require_finite(loss, f"finetuning loss at step {step}; the weights were not updated", state.optimizer)
    grad_norm = None
    if cfg.clip_grad is not None:
        grad_norm = float(torch.nn.utils.clip_grad_norm_(state.model.parameters(), cfg.clip_grad))
    state.optimizer.step()
    state.optimizer.zero_grad(set_to_none=True)
    top_lr = max(g["lr"] for g in state.optimizer.param_groups)
    return {
        "step": step,
        "loss": loss,
        "lr": top_lr,
        "clips": int(sums[1].item()),
        "grad_norm": grad_norm,
        "train_top1_hard": 100.0 * (sums[2] / sums[1].clamp(min=1)).item(),
    }  # vs unmixed labels


# config keys a resumed run may change (they do not alter what is computed)
_RUNTIME_KEYS = ("device", "num_workers", "decode_threads", "checkpoint_every", "eval_every", "max_skipped_fraction")


def save_checkpoint(
    path: Path,
    state: FinetuneState,
    cfg: FinetuneConfig,
    step: int,
    history: list,
    skipped: SkipCounter,
    epoch_loss: tuple[float, int] = (0.0, 0),
) -> None:
    """Model, optimizer, step (the schedule, data position and random draws follow from it),
    per-epoch history and the running (loss sum, steps) of the current epoch."""
    if state.env.is_main:
        save_atomic(
            {
                "model": state.model.state_dict(),
                "opt": state.optimizer.state_dict(),
                "step": step,
                "history": history,
                "epoch_loss": list(epoch_loss),
                "skipped": sorted(skipped.paths),
                "config": to_dict(cfg),
                "world_size": state.env.world_size,
            },
            path,
        )
    barrier(state.env)


def restore_checkpoint(path: Path, state: FinetuneState, cfg: FinetuneConfig) -> dict:
    ck = load(path, map_location=state.env.device)
    for key in ("model", "opt", "step", "config"):
        if key not in ck:
            raise CheckpointError(f"{path} has no '{key}' entry: not a finetuning checkpoint")
    check_resume(
        ck["config"],
        to_dict(cfg),
        path,
        ignore=_RUNTIME_KEYS,
        extra={"processes": (ck.get("world_size", 1), state.env.world_size)},
    )
    load_into(state.model, ck["model"], where=f"{path}['model']")
    state.optimizer.load_state_dict(ck["opt"])
    return ck


def _write_outputs(
    out: Path, metrics: dict, predictions: pd.DataFrame, model: VideoClassifier, cfg: FinetuneConfig
) -> None:
    """metrics.json, predictions.csv and finetuned.pth.tar (encoder in the official key layout, so
    vjepa.infra.checkpoint loads it into a VisionTransformer; head separately), each written atomically."""
    head = {k: v for k, v in model.state_dict().items() if not k.startswith("encoder.")}
    save_atomic(
        {
            "encoder": add_prefix(model.encoder.state_dict()),
            "head": head,
            "num_classes": cfg.num_classes,
            "config": to_dict(cfg),
        },
        out / "finetuned.pth.tar",
    )
    with atomic_file(out / "predictions.csv") as f:
        predictions.to_csv(f, index=False)
    write_json(out / "metrics.json", without_timings(metrics))


# ----------------------------------------------------------------------------------------------
# The loop


def finetune(
    cfg: FinetuneConfig,
    encoder_checkpoint: str | Path | None,
    train_set: Dataset,
    val_set: Dataset,
    out_dir: str | Path,
    log_fn: Callable[[dict, int], None] | None = None,
) -> dict:
    """Finetune the encoder of `encoder_checkpoint` (cfg.checkpoint_key; None: random init, the
    baseline) with a linear head on `train_set`, then test on every view of `val_set` (items as
    vjepa.data produces; build_datasets makes both from (path, label) lists). Writes
    out_dir/latest.pth.tar (resumed from when present), metrics.json, predictions.csv and
    finetuned.pth.tar; log_fn(metrics, step) gets every step's metrics on rank 0. Returns the metrics."""
    env = init_distributed(cfg.device)
    try:
        return _finetune(cfg, encoder_checkpoint, train_set, val_set, Path(out_dir), log_fn, env)
    finally:
        shutdown(env)


def _finetune(cfg, encoder_checkpoint, train_set, val_set, out: Path, log_fn, env: DistEnv) -> dict:
    cfg.validate()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    global_batch = cfg.batch_size * env.world_size * cfg.accumulation_steps
    steps_per_epoch = len(train_set) // global_batch  # the remainder is dropped, as VideoMAE's drop_last
    if steps_per_epoch == 0:
        raise ValueError(f"the training set has {len(train_set)} videos, fewer than one global batch of {global_batch}")
    total = cfg.epochs * steps_per_epoch
    state = build_state(cfg, encoder_checkpoint, env, steps_per_epoch)
    ckpt_path = out / "latest.pth.tar"
    start, history, epoch_loss = 0, [], (0.0, 0)
    skipped = SkipCounter(len(train_set), cfg.max_skipped_fraction, "finetuning training set")
    if ckpt_path.exists():
        ck = restore_checkpoint(ckpt_path, state, cfg)
        start, history, skipped.paths = ck["step"], ck["history"], set(ck["skipped"])
        epoch_loss = tuple(ck["epoch_loss"])
        del ck
    sampler = ShardedBatchSampler(len(train_set), cfg.batch_size, cfg.accumulation_steps, env, cfg.seed, total, start)
    loader = DataLoader(
        KeyedBatches(train_set),
        sampler=sampler,
        batch_size=None,
        collate_fn=identity,
        num_workers=cfg.num_workers,
        pin_memory=env.device.type == "cuda",
    )
    autocast = autocast_for(env.device, cfg.precision)

    batches, result, rates = iter(loader), None, []
    bar = tqdm(
        range(start + 1, total + 1),
        initial=start,
        total=total,
        desc="finetune",
        disable=not env.is_main,
        dynamic_ncols=True,
    )
    for step in bar:
        t_step = time.perf_counter()
        micro = []
        for _ in range(cfg.accumulation_steps):
            mb = next(batches)
            if mb["step"] != step - 1:  # the loader and the loop must move in lockstep
                raise RuntimeError(f"data loader is at iteration {mb['step']}, the loop at {step - 1}")
            micro.append(mb)
        metrics = train_step(state, cfg, micro, step)
        step_skipped = [p for mb in micro for p in mb["skipped"]]
        if all_reduce_sum(torch.tensor([len(step_skipped)], device=env.device), env).item():
            skipped.update(p for paths in gather_objects(step_skipped, env) for p in paths)
        epoch, in_epoch = divmod(step, steps_per_epoch)
        metrics.update(
            {
                "epoch": (step - 1) // steps_per_epoch,
                **skipped.metrics(),
                "clips_per_s": metrics["clips"] / (time.perf_counter() - t_step),
            }
        )
        rates.append(metrics["clips_per_s"])
        epoch_loss = (epoch_loss[0] + metrics["loss"], epoch_loss[1] + 1)
        if env.is_main:
            bar.set_postfix(loss=f"{metrics['loss']:.4f}", lr=f"{metrics['lr']:.2e}")
            if log_fn is not None:
                log_fn(metrics, step)
        if in_epoch == 0:  # an epoch ended
            record = {"epoch": epoch, "step": step, "train_loss": epoch_loss[0] / epoch_loss[1], "lr": metrics["lr"]}
            epoch_loss = (0.0, 0)
            if (cfg.eval_every and epoch % cfg.eval_every == 0) or step == total:
                result = evaluate(state.model, val_set, cfg, env.device, autocast, env)
                evaluated, _ = multiview_metrics(result)
                record.update({"val_top1": evaluated["top1"], "val_top5": evaluated["top5"]})
            history = [h for h in history if h["epoch"] != epoch] + [record]
            if env.is_main and log_fn is not None:
                log_fn({f"epoch_{k}": v for k, v in record.items()}, step)
            save_checkpoint(ckpt_path, state, cfg, step, history, skipped, epoch_loss)
        elif step % cfg.checkpoint_every == 0:
            save_checkpoint(ckpt_path, state, cfg, step, history, skipped, epoch_loss)
    bar.close()

    if result is None:  # resumed after the last step: test again
        result = evaluate(state.model, val_set, cfg, env.device, autocast, env)
    metrics, predictions = multiview_metrics(result)
    metrics.update(
        {
            "top1_single_view": metrics["top1_per_view"][len(metrics["top1_per_view"]) // 2],
            "history": history,
            "num_train": len(train_set),
            "steps": total,
            "epochs": cfg.epochs,
            "global_batch": global_batch,
            "clips_per_step": global_batch * cfg.num_sample,
            **lr_values(cfg, env.world_size),
            "encoder_checkpoint": None if encoder_checkpoint is None else str(encoder_checkpoint),
            **{f"train_{k}": v for k, v in skipped.metrics().items()},
            "skipped_paths": sorted(set(skipped.paths) | set(result["skipped"]) - {"<unknown>"})[:20],
            "train_clips_per_s": float(np.mean(rates)) if rates else None,
            "seconds": round(time.perf_counter() - t0, 1),
        }
    )
    if env.is_main:
        _write_outputs(out, metrics, predictions, state.model, cfg)
    barrier(env)
    return metrics


__all__ = [
    "FinetuneConfig",
    "VideoClassifier",
    "layer_decay_groups",
    "build_model",
    "ClipMixup",
    "build_loss",
    "build_datasets",
    "training_clips",
    "evaluate",
    "topk_accuracy",
    "multiview_metrics",
    "FinetuneState",
    "lr_values",
    "build_state",
    "train_step",
    "save_checkpoint",
    "restore_checkpoint",
    "finetune",
]
