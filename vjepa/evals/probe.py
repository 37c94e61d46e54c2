"""Frozen evaluation (appendix B.1, Table 6): probes trained on the tokens of a frozen encoder.

- Features: the EMA target encoder of a checkpoint (ours or a released file), or a 2D image model
  run frame by frame (Table 10). Each of the S temporal segments of a video is encoded separately
  and their tokens are concatenated along the token axis (K400: 8 segments; SSv2: 1, official 2);
  each of the V spatial views gives one token sequence.
- Several probes learn from the same features in one pass (attentive and linear, over a grid of
  learning rates and weight decays): the encoder runs once per batch, each probe keeps its own
  optimiser, schedule and result.
- Training: cross-entropy averaged over views; AdamW, cosine from lr to final_lr without warmup,
  weight decay fixed (appendix) or cosine (official). Test: softmax probabilities averaged over views.
- Data-parallel under torchrun: each process encodes batch_size clips of a global batch of
  batch_size x processes, the probes' gradients are summed over processes (each loss weighted by
  its share of the global batch), and evaluation is split into one block per process.

Batches follow the data contract: {"video": [B, S, V, C, T, H, W], "label": [B], "index", "path"};
an image is a still clip (S=1), and a clip with T=1 is repeated to `still_frames` frames here.
"""

from __future__ import annotations

import math
import time
from itertools import product
from pathlib import Path
from typing import Callable

import pandas as pd
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from vjepa.infra.checkpoint import load, load_into, save_atomic
from vjepa.infra.runtime import CheckpointError
from vjepa.infra.config import ConfigError, to_dict
from vjepa.infra.runtime import (
    atomic_file,
    autocast_for,
    check_resume,
    epoch_generator,
    require_finite,
    use_foreach,
    without_timings,
    write_json,
)
from vjepa.data import SkipCounter, collate
from vjepa.infra.distributed import (
    DistEnv,
    all_reduce_grads,
    all_reduce_sum,
    broadcast_buffers,
    gather_objects,
    global_count,
    map_blocks,
    process_group,
    sharded_batches,
)
from vjepa.models.probes import AttentiveClassifier, LinearProbe, official_probe_state, probe_kind, vjepa2_probe
from vjepa.infra.schedules import cosine_weight_decay, warmup_cosine_lr
from vjepa.infra.configs import ProbeConfig, probe_name
from vjepa.evals.frozen import average_views, encode, param_groups, view_loss


class ProbeSet:
    """The probes of one run, each with its own optimiser, grad scaler and hyper-parameters."""

    def __init__(self, cfg: ProbeConfig, embed_dim: int, encoder_heads: int | None, device: torch.device):
        self.cfg, self.device = cfg, device
        heads = cfg.num_heads or encoder_heads
        if {"attentive", "attentive4"} & set(cfg.kinds) and (heads is None or embed_dim % heads):
            raise ConfigError(
                f"probe.num_heads: {heads} heads do not divide the encoder width {embed_dim} "
                "(the appendix's 12 cannot split ViT-L/H widths; set num_heads: null for the "
                "encoder's heads, as the official code does)"
            )
        torch.manual_seed(cfg.seed)
        self.probes: dict[str, nn.Module] = {}
        self.hparams: dict[str, dict] = {}
        self.opts: dict[str, torch.optim.Optimizer] = {}
        self.scalers: dict[str, torch.amp.GradScaler] = {}
        for kind, lr, wd in product(cfg.kinds, cfg.lrs, cfg.weight_decays):
            name = probe_name(kind, lr, wd)
            probe = (
                AttentiveClassifier(embed_dim, cfg.num_classes, heads, depth=cfg.depth)
                if kind == "attentive"
                else vjepa2_probe(embed_dim, cfg.num_classes, heads)
                if kind == "attentive4"
                else LinearProbe(embed_dim, cfg.num_classes, cfg.linear_norm)
            ).to(device)
            self.probes[name] = probe
            self.hparams[name] = {"kind": kind, "lr": lr, "weight_decay": wd}
            self.opts[name] = torch.optim.AdamW(
                param_groups(probe), lr=lr, weight_decay=wd, foreach=use_foreach(device)
            )
            self.scalers[name] = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")

    def set_schedule(self, step: int, total: int) -> None:
        """Values for the step-th update (1-based, as the official schedulers count) of `total`."""
        for name, opt in self.opts.items():
            hp = self.hparams[name]
            lr = warmup_cosine_lr(
                step, lr=hp["lr"], start_lr=hp["lr"], final_lr=self.cfg.final_lr, warmup=0, total=total
            )
            wd = (
                hp["weight_decay"]
                if self.cfg.wd_schedule == "constant"
                else cosine_weight_decay(step, start=hp["weight_decay"], final=self.cfg.final_weight_decay, total=total)
            )
            for g in opt.param_groups:
                g["lr"] = lr
                if g["decay"]:
                    g["weight_decay"] = wd

    def train_step(
        self,
        tokens: torch.Tensor | None,
        labels: torch.Tensor | None,
        autocast,
        where: str = "a training step",
        env: DistEnv | None = None,
        share: float = 1.0,
    ) -> dict[str, tuple[float, int]]:
        """One optimiser step per probe on the same tokens [V, B, L, D]; returns (loss, correct) each.
        Data-parallel (env): this process's loss is weighted by `share`, its part of the global
        batch, and the gradients summed over processes; a process with no tokens this step (None)
        adds zeros. Non-finite tokens or a non-finite loss stop the run (NonFiniteLossError naming
        `where`) before any probe's weights change."""
        if tokens is not None:
            require_finite(tokens, f"features from the frozen encoder at {where}")
        out = {name: (0.0, 0) for name in self.probes}
        for name, probe in self.probes.items():
            probe.train()
            if tokens is None:
                continue
            with autocast():
                logits = torch.stack([probe(tv) for tv in tokens])  # [V, B, K]
            loss = view_loss(logits, labels)
            require_finite(loss, f"loss of probe {name} at {where}", self.opts[name])
            self.scalers[name].scale(loss if share == 1.0 else loss * share).backward()
            correct = int((average_views(logits.detach()).argmax(-1) == labels).sum())
            out[name] = (float(loss.detach()), correct)
        if env is not None:
            all_reduce_grads((p for probe in self.probes.values() for p in probe.parameters()), env)
        for name, probe in self.probes.items():
            opt, scaler = self.opts[name], self.scalers[name]
            if self.cfg.grad_clip:
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(probe.parameters(), self.cfg.grad_clip)
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)
        return out

    def state(self) -> dict:
        return {
            "probes": {n: p.state_dict() for n, p in self.probes.items()},
            "opts": {n: o.state_dict() for n, o in self.opts.items()},
            "scalers": {n: s.state_dict() for n, s in self.scalers.items()},
        }

    def load_state(self, state: dict, where: str) -> None:
        for n, p in self.probes.items():
            load_into(p, state["probes"][n], where=f"{where} probe {n}")
            self.opts[n].load_state_dict(state["opts"][n])
            if state["scalers"][n]:
                self.scalers[n].load_state_dict(state["scalers"][n])


def _epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    return torch.randperm(n, generator=epoch_generator(seed, epoch)).tolist()


def _check_batch(batch: dict, cfg: ProbeConfig, where: str) -> None:
    video, labels = batch["video"], batch["label"]
    if video.ndim != 7:
        raise ValueError(f"{where}: expected video [B, S, V, C, T, H, W], got shape {tuple(video.shape)}")
    if video.shape[1] != cfg.num_segments:
        raise ConfigError(
            f"probe.num_segments is {cfg.num_segments} but the {where} items have "
            f"{video.shape[1]} segments (build the dataset with the same number)"
        )
    bad = ((labels < 0) | (labels >= cfg.num_classes)).nonzero().flatten()
    if len(bad):
        i = int(bad[0])
        raise ValueError(
            f"{where} item {batch['path'][i]} (index {int(batch['index'][i])}) has label "
            f"{int(labels[i])} outside 0..{cfg.num_classes - 1} (probe.num_classes)"
        )


@torch.no_grad()
def _cache_features(encoder, dataset, cfg, device, autocast, collate_fn, env) -> tuple[list, list, list]:
    """Encode the training set once (only valid for a deterministic transform, checked on item 0):
    lists of feature and label tensors, and the skipped paths."""
    a, b = dataset[0], dataset[0]
    if (
        a is not None
        and b is not None
        and a.get("video") is not None
        and b.get("video") is not None
        and not torch.equal(a["video"], b["video"])
    ):
        raise ConfigError(
            "probe.cache_features: training item 0 differs between two reads, so the training "
            "transform is random; caching would freeze one augmentation. Turn caching off."
        )
    loader = DataLoader(dataset, cfg.batch_size, shuffle=False, collate_fn=collate_fn, num_workers=cfg.num_workers)
    feats, labels, skipped = [], [], []
    counter = SkipCounter(len(dataset), cfg.max_skipped_fraction, "probe training set")
    for batch in tqdm(loader, desc="caching features", leave=False, disable=not env.is_main):
        skipped += batch["skipped"]
        counter.update(batch["skipped"])  # stops as soon as too many items failed
        if len(batch["label"]):
            _check_batch(batch, cfg, "training")
            with autocast():
                feats.append(encode(encoder, batch["video"].to(device), cfg.still_frames, cfg.encoder_chunk).cpu())
            labels.append(batch["label"])
    return feats, labels, skipped


def _cache_all(encoder, dataset, cfg, device, autocast, collate_fn, env: DistEnv):
    """The training set's features [V, n, L, D] and labels [n], in the dataset's order; under
    torchrun each process encodes one block and every process gets all of them."""
    parts = map_blocks(lambda d: _cache_features(encoder, d, cfg, device, autocast, collate_fn, env), dataset, env)
    feats, labels, skipped = ([x for p in parts for x in p[i]] for i in range(3))
    if not feats:
        raise ValueError(f"no training item could be read ({len(skipped)} skipped)")
    return torch.cat(feats, dim=1), torch.cat(labels), skipped


def _train_batches(cfg, dataset, encoder, device, autocast, epoch, cache, collate_fn, env: DistEnv):
    """Yield (tokens [V, B, L, D], labels, skipped paths) for one epoch, in the epoch's shuffled
    order (the same with or without a feature cache), one item per global batch: this process's
    slice of it (sharded_batches), tokens None where it has none. A batch of one clip is left out:
    the linear probe's BatchNorm needs two."""
    if cache is not None:
        feats, labels = cache
        order = _epoch_order(len(labels), cfg.seed, epoch)
        for idx in sharded_batches(order, cfg.batch_size, env):
            if len(idx) > 1 or (len(idx) == 1 and len(order) == 1):
                idx = torch.tensor(idx)
                yield feats[:, idx].to(device), labels[idx].to(device), []
            else:
                yield None, None, []
        return
    order = _epoch_order(len(dataset), cfg.seed, epoch)
    batches = sharded_batches(order, cfg.batch_size, env)
    loader = iter(
        DataLoader(dataset, batch_sampler=[b for b in batches if b], collate_fn=collate_fn, num_workers=cfg.num_workers)
    )
    for batch in (next(loader) if b else None for b in batches):
        if batch is None:
            yield None, None, []
            continue
        if len(batch["label"]) == 0 or (len(batch["label"]) == 1 and len(order) > 1):
            yield None, None, batch["skipped"]
            continue
        _check_batch(batch, cfg, "training")
        with torch.no_grad(), autocast():
            tokens = encode(encoder, batch["video"].to(device), cfg.still_frames, cfg.encoder_chunk)
        yield tokens, batch["label"].to(device), batch["skipped"]


@torch.no_grad()
def evaluate(
    encoder: nn.Module,
    probes: dict[str, nn.Module],
    dataset: Dataset,
    cfg: ProbeConfig,
    device: torch.device,
    autocast,
    collate_fn: Callable = collate,
    env: DistEnv | None = None,
) -> dict:
    """Run every probe on every view; returns labels, index, path, skipped paths, per-probe
    view-averaged probabilities [n, K] and per-view predictions [V, n]. Under torchrun each process
    reads one block of the dataset and every process gets the whole result, in the dataset's order."""
    env = env or DistEnv()
    parts = map_blocks(
        lambda d: _evaluate_part(encoder, probes, d, cfg, device, autocast, collate_fn, env), dataset, env
    )
    skipped = [x for p in parts for x in p["skipped"]]
    SkipCounter(len(dataset), cfg.max_skipped_fraction, "probe evaluation set").update(skipped)
    got = [p for p in parts if p["labels"]]
    if not got:
        raise ValueError(f"no evaluation item could be read ({len(skipped)} skipped)")
    return {
        "label": torch.cat([x for p in got for x in p["labels"]]),
        "index": torch.cat([x for p in got for x in p["index"]]),
        "path": [x for p in got for x in p["paths"]],
        "skipped": skipped,
        "probs": {n: torch.cat([x for p in got for x in p["probs"][n]]) for n in probes},
        "view_pred": {n: torch.cat([x for p in got for x in p["view_pred"][n]], dim=1) for n in probes},
    }


def _evaluate_part(encoder, probes, dataset, cfg, device, autocast, collate_fn, env) -> dict:
    """evaluate on the items of this process: lists of per-batch tensors."""
    loader = DataLoader(dataset, cfg.batch_size, shuffle=False, collate_fn=collate_fn, num_workers=cfg.num_workers)
    for p in probes.values():
        p.eval()
    probs = {n: [] for n in probes}
    view_pred = {n: [] for n in probes}
    labels, index, paths, skipped = [], [], [], []
    for batch in tqdm(loader, desc="probe eval", leave=False, disable=not env.is_main):
        skipped += batch["skipped"]
        if len(batch["label"]) == 0:
            continue
        _check_batch(batch, cfg, "evaluation")
        with autocast():
            tokens = encode(encoder, batch["video"].to(device), cfg.still_frames, cfg.encoder_chunk)
            require_finite(tokens, f"features from the frozen encoder at evaluation batch {len(labels) + 1}")
            for n, probe in probes.items():
                logits = torch.stack([probe(tv) for tv in tokens]).float()  # [V, B, K]
                probs[n].append(average_views(logits).cpu())
                view_pred[n].append(logits.argmax(-1).cpu())
        labels.append(batch["label"])
        index.append(batch["index"])
        paths += batch["path"]
    return {
        "labels": labels,
        "index": index,
        "paths": paths,
        "skipped": skipped,
        "probs": probs,
        "view_pred": view_pred,
    }


def _top1(pred: torch.Tensor, labels: torch.Tensor) -> float:
    return 100.0 * float((pred == labels).float().mean())


def _metrics_and_predictions(result: dict, hparams: dict, history: dict) -> tuple[dict, pd.DataFrame]:
    labels, per_probe, rows = result["label"], {}, []
    for name, probs in result["probs"].items():
        k = min(5, probs.shape[1])
        top = probs.topk(k, dim=1)
        views = result["view_pred"][name]  # [V, n]
        per_view = [_top1(v, labels) for v in views]
        per_probe[name] = {
            **hparams[name],
            "top1": _top1(top.indices[:, 0], labels),  # softmax averaged over all views
            "top5": 100.0 * float((top.indices == labels[:, None]).any(1).float().mean()),
            "top1_single_view": per_view[len(per_view) // 2],  # the centre crop of 3 views
            "top1_per_view": per_view,
            "train_loss": history[name]["loss"],
            "train_top1": history[name]["top1"],
        }
        rows.append(
            pd.DataFrame(
                {
                    "probe": name,
                    "index": result["index"].numpy(),
                    "path": result["path"],
                    "label": labels.numpy(),
                    "predicted": top.indices[:, 0].numpy(),
                    "top5": [" ".join(map(str, r)) for r in top.indices.tolist()],
                    "top5_prob": [" ".join(f"{p:.5f}" for p in r) for r in top.values.tolist()],
                }
            )
        )
    best = max(per_probe, key=lambda n: per_probe[n]["top1"])
    metrics = {
        "probes": per_probe,
        "best_probe": best,
        "best_top1": per_probe[best]["top1"],
        "best_probe_by_kind": {
            k: max((n for n in per_probe if per_probe[n]["kind"] == k), key=lambda n: per_probe[n]["top1"])
            for k in sorted({v["kind"] for v in per_probe.values()})
        },
    }
    return metrics, pd.concat(rows, ignore_index=True)


def run_probe(
    cfg: ProbeConfig,
    encoder: nn.Module,
    train_set: Dataset,
    val_set: Dataset,
    out_dir: str | Path,
    encoder_name: str = "",
    collate_fn: Callable = collate,
) -> dict:
    """Train every probe of the grid on frozen features, evaluate them, and write
    out_dir/metrics.json, out_dir/predictions.csv and out_dir/probes/<name>.pth.tar (the official
    probe layout). Resumes from out_dir/probe_state.pt after a crash (epoch granularity).
    `collate_fn` turns a list of items into a batch with "skipped" paths (default: the data layer's).
    Under torchrun, data-parallel (module docstring); rank 0 writes the files, every rank returns."""
    with process_group(cfg.device) as env:
        return _run_probe(cfg, encoder, train_set, val_set, Path(out_dir), encoder_name, collate_fn, env)


def _run_probe(cfg, encoder, train_set, val_set, out: Path, encoder_name, collate_fn, env: DistEnv) -> dict:
    device, autocast = env.device, autocast_for(env.device, cfg.precision)
    encoder = encoder.to(device).eval().requires_grad_(False)
    probes = ProbeSet(cfg, encoder.embed_dim, getattr(encoder, "num_heads", None), device)
    history = {n: {"loss": float("nan"), "top1": float("nan")} for n in probes.probes}
    state_path, start_epoch = out / "probe_state.pt", 0
    if state_path.exists():
        state = load(state_path)
        check_resume(
            state["config"],
            to_dict(cfg),
            state_path,
            ignore=("max_skipped_fraction",),
            extra={"processes": (state.get("world_size", 1), env.world_size)},
        )
        probes.load_state(state, str(state_path))
        start_epoch, history = state["epoch"], state["history"]

    t0 = time.time()
    cache, train_skipped = None, []
    if cfg.cache_features and start_epoch < cfg.epochs:
        feats, labels, train_skipped = _cache_all(encoder, train_set, cfg, device, autocast, collate_fn, env)
        cache = (feats, labels)
    n_train = len(cache[1]) if cache else len(train_set)
    steps_per_epoch = math.ceil(n_train / (cfg.batch_size * env.world_size))
    total = cfg.epochs * steps_per_epoch
    for epoch in range(start_epoch, cfg.epochs):
        sums = torch.zeros(len(probes.probes), 3, dtype=torch.float64)  # per probe: loss*B, correct, seen
        bar = tqdm(
            _train_batches(cfg, train_set, encoder, device, autocast, epoch, cache, collate_fn, env),
            total=steps_per_epoch,
            desc=f"probe epoch {epoch + 1}/{cfg.epochs}",
            leave=False,
            disable=not env.is_main,
        )
        epoch_skipped = []
        share_of_set = math.ceil(len(train_set) / env.world_size)  # this process reads about this many items
        counter = SkipCounter(share_of_set, cfg.max_skipped_fraction, f"probe training set, epoch {epoch + 1}")
        for i, (tokens, labels, skipped) in enumerate(bar):
            epoch_skipped += skipped
            counter.update(skipped)  # stops the run as soon as too many items failed, not after the epoch
            n_local = 0 if tokens is None else len(labels)
            n_global = global_count(n_local, env)
            if n_global == 0:
                continue
            step = epoch * steps_per_epoch + i + 1
            probes.set_schedule(step, total)
            where = f"step {step} (epoch {epoch + 1})"
            out_step = probes.train_step(tokens, labels, autocast, where, env, n_local / n_global)
            for j, (loss, correct) in enumerate(out_step.values()):
                sums[j] += torch.tensor([loss * n_local, correct, n_local], dtype=torch.float64)
        if env.distributed:
            sums = all_reduce_sum(sums.to(device), env).cpu()
            epoch_skipped = [p for part in gather_objects(epoch_skipped, env) for p in part]
            SkipCounter(len(train_set), cfg.max_skipped_fraction, f"probe training set, epoch {epoch + 1}").update(
                epoch_skipped
            )
            for probe in probes.probes.values():
                broadcast_buffers(probe, env)
        if not cache:
            train_skipped = epoch_skipped
        history = {
            n: {"loss": float(s[0]) / max(float(s[2]), 1), "top1": 100.0 * float(s[1]) / max(float(s[2]), 1)}
            for n, s in zip(probes.probes, sums)
        }
        if env.is_main:
            state = {"epoch": epoch + 1, "history": history, "config": to_dict(cfg), "world_size": env.world_size}
            save_atomic({**state, **probes.state()}, state_path)

    result = evaluate(encoder, probes.probes, val_set, cfg, device, autocast, collate_fn, env)
    metrics, predictions = _metrics_and_predictions(result, probes.hparams, history)
    v, s = (int(x) for x in (len(result["view_pred"][metrics["best_probe"]]), cfg.num_segments))
    metrics.update(
        {
            "encoder": encoder_name,
            "segments": s,
            "views": v,
            "num_train": n_train,
            "num_val": len(result["label"]),
            "skipped_train": len(train_skipped),
            "skipped_val": len(result["skipped"]),
            "skipped_paths": sorted(set(train_skipped + result["skipped"]) - {"<unknown>"})[:20],
            "epochs": cfg.epochs,
            "seconds": round(time.time() - t0, 1),
        }
    )
    if not env.is_main:
        return metrics
    for name, probe in probes.probes.items():
        save_atomic(
            {
                "classifier": official_probe_state(probe),
                "opt": probes.opts[name].state_dict(),
                "scaler": probes.scalers[name].state_dict() or None,
                "epoch": cfg.epochs,
                "batch_size": cfg.batch_size,
                "world_size": env.world_size,
                "lr": probes.hparams[name]["lr"],
            },
            out / "probes" / f"{name}.pth.tar",
        )
    _write_results(out, metrics, predictions)
    return metrics


def _write_results(out: Path, metrics: dict, predictions: pd.DataFrame) -> None:
    """out/predictions.csv and out/metrics.json, each written whole or not at all."""
    with atomic_file(out / "predictions.csv") as f:
        predictions.to_csv(f, index=False)
    write_json(out / "metrics.json", without_timings(metrics))


def evaluate_released(
    cfg: ProbeConfig,
    encoder: nn.Module,
    head: nn.Module,
    probe: str,
    val_set: Dataset,
    out_dir: str | Path,
    encoder_name: str = "",
    collate_fn: Callable = collate,
) -> dict:
    """Evaluate a released probe as it is (no training): `head`, loaded from the file or name `probe`
    (vjepa.hub.load_probe), on val_set, whose items carry the protocol's segments and views; writes
    out_dir/metrics.json and predictions.csv as run_probe does, the probe labelled as released.
    Under torchrun each process evaluates one block of val_set; rank 0 writes the files."""
    with process_group(cfg.device) as env:
        return _evaluate_released(cfg, encoder, head, probe, val_set, Path(out_dir), encoder_name, collate_fn, env)


def _evaluate_released(cfg, encoder, head, probe, val_set, out: Path, encoder_name, collate_fn, env) -> dict:
    t0 = time.time()
    device, autocast = env.device, autocast_for(env.device, cfg.precision)
    encoder = encoder.to(device).eval().requires_grad_(False)
    head = head.to(device).eval()
    if head.linear.out_features != cfg.num_classes or head.linear.in_features != encoder.embed_dim:
        raise CheckpointError(
            f"{probe}: the probe maps {head.linear.in_features}-wide tokens to "
            f"{head.linear.out_features} classes; the task has {cfg.num_classes} classes and the "
            f"encoder writes {encoder.embed_dim}-wide tokens"
        )
    kind = probe_kind(head)
    name = f"{kind}_released"
    result = evaluate(encoder, {name: head}, val_set, cfg, device, autocast, collate_fn, env)
    metrics, predictions = _metrics_and_predictions(
        result, {name: {"kind": kind, "released": str(probe)}}, {name: {"loss": None, "top1": None}}
    )
    metrics.update(
        {
            "encoder": encoder_name,
            "released_probe": str(probe),
            "segments": cfg.num_segments,
            "views": int(len(result["view_pred"][name])),
            "num_train": 0,
            "num_val": len(result["label"]),
            "skipped_train": 0,
            "skipped_val": len(result["skipped"]),
            "skipped_paths": sorted(set(result["skipped"]) - {"<unknown>"})[:20],
            "epochs": 0,
            "seconds": round(time.time() - t0, 1),
        }
    )
    if env.is_main:
        _write_results(out, metrics, predictions)
    return metrics
