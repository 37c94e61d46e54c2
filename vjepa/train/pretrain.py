"""V-JEPA pretraining: the loop around the JEPA step (vjepa.jepa.step) with AdamW and the paper's
schedules, atomic checkpoints, exact resume and data-parallel training (see vjepa.infra.distributed).
"""

from __future__ import annotations

import copy
import functools
import random
import resource
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from vjepa.infra.checkpoint import load, load_official_module, official_layout, save_atomic, strip_prefix
from vjepa.infra.runtime import CheckpointError
from vjepa.infra.config import to_dict
from vjepa.infra.runtime import (
    JsonlLog,
    NonFiniteLossError,
    check_resume,
    use_foreach,
    without_timings,
)
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
from vjepa.train.batches import KeyedBatches, identity
from vjepa.jepa.masks import MaskCollator
from vjepa.jepa.step import ContextPath, Group, TrainState, param_groups, train_step
from vjepa.models import build_encoder, build_predictor
from vjepa.infra.configs import (
    InitConfig,
    PretrainConfig,
)

if TYPE_CHECKING:
    from vjepa.data import SkipCounter


# ----------------------------------------------------------------------------------------------
# The models and optimizer


def build_state(cfg: PretrainConfig, env: DistEnv) -> TrainState:
    """Models (seeded by cfg.seed, identical on every process), optimizer and scaler."""
    torch.manual_seed(cfg.seed)
    encoder = build_encoder(cfg.model).to(env.device)
    predictor = build_predictor(cfg.model).to(env.device)
    if cfg.target == "ema":
        target = copy.deepcopy(encoder).requires_grad_(False)  # starts identical to the context encoder
    else:
        target = encoder
    ck = None
    if cfg.init is not None:
        ck = init_from_checkpoint(cfg.init, encoder, predictor, target if cfg.target == "ema" else None, env)
    kernel = {"fused": True} if cfg.optim.fused else {"foreach": use_foreach(env.device)}
    optimizer = torch.optim.AdamW(
        param_groups(encoder, predictor), lr=cfg.optim.lr, betas=cfg.optim.betas, eps=cfg.optim.eps, **kernel
    )
    scaler = torch.amp.GradScaler(env.device.type, enabled=cfg.grad_scaler)
    if ck is not None and cfg.init.optimizer:  # V-JEPA 2's cooldown: the first stage's AdamW moments go on
        if not ck.get("opt"):
            raise CheckpointError(f"pretrain.init.optimizer: {cfg.init.checkpoint} holds no optimizer state ('opt')")
        optimizer.load_state_dict(ck["opt"])
        if cfg.grad_scaler and ck.get("scaler"):
            scaler.load_state_dict(ck["scaler"])
    # a mask token per clip length gets no gradient on a process that drew no clip of that length
    unused = cfg.model.mask_token_per == "group" and len(cfg.groups) > 1
    context_path = wrap_ddp(ContextPath(encoder, predictor), env, find_unused=unused)
    return TrainState(encoder, predictor, target, context_path, optimizer, scaler, env)


def init_from_checkpoint(
    init: InitConfig, encoder: nn.Module, predictor: nn.Module, target: nn.Module | None, env: DistEnv
) -> dict:
    """Load the models of a continued pretraining from init.checkpoint (official layout), strictly
    unless init.strict is False; nothing of its schedule or step is taken. Returns the checkpoint
    (build_state takes its optimizer state when init.optimizer says so)."""
    ck = load(init.checkpoint, map_location=env.device)
    pairs = [("encoder", encoder)] + ([] if init.reinit_predictor else [("predictor", predictor)])
    pairs += [("target_encoder", target)] if target is not None else []
    for key, model in pairs:
        if init.strict:
            load_official_module(model, ck, key, init.checkpoint)
            continue
        if key not in ck:
            raise CheckpointError(f"{init.checkpoint} has no '{key}' entry; it has {sorted(ck)}")
        own, state = model.state_dict(), strip_prefix(ck[key])
        fits = {k: v for k, v in state.items() if k in own and v.shape == own[k].shape}
        kept = sorted(set(own) - set(fits))
        if kept and env.is_main:
            warnings.warn(
                f"pretrain.init (strict: false): {init.checkpoint}['{key}'] gives no value of the "
                f"model's shape for {kept}; those keep their fresh initialisation",
                stacklevel=3,
            )
        model.load_state_dict({**own, **fits}, strict=True)
    return ck


# ----------------------------------------------------------------------------------------------
# Checkpoints and exact resume


def _rng_state() -> dict:
    keys, pos, has_gauss, cached = np.random.get_state()[1:]
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": random.getstate(),
    }


def _set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    if s["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])
    n = s["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    version, internal, gauss = s["python"]
    random.setstate((version, tuple(internal), gauss))


def preprocessing(cfg: PretrainConfig, dataset) -> dict:
    """How to feed the model this run trains, saved in every checkpoint (vjepa.hub.load_processor
    reads it): image size and frames (the model's), frame step (the data's clip sampling; None when
    the dataset does not say, e.g. a tensor dataset, or its parts disagree) or frames per second
    (`fps`, V-JEPA 2's sampling, when every part samples so) and the normalisation."""
    from vjepa.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    parts = getattr(dataset, "datasets", [dataset])
    steps = {getattr(getattr(d, "clip", None), "frame_step", None) for d in parts}
    durations = {getattr(getattr(d, "clip", None), "clip_duration", None) for d in parts}
    rates = {getattr(getattr(d, "clip", None), "fps", None) for d in parts}
    by_rate = len(rates) == 1 and None not in rates  # V-JEPA 2's sampling by frames per second
    return {
        "img_size": cfg.model.img_size,
        "num_frames": cfg.model.num_frames,
        "frame_step": steps.pop() if len(steps) == 1 and durations == {None} and rates == {None} else None,
        **({"fps": rates.pop()} if by_rate else {}),
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
    }


def save_checkpoint(
    path: Path,
    state: TrainState,
    cfg: PretrainConfig,
    step: int,
    loss: float,
    sampler: ShardedBatchSampler,
    skipped: SkipCounter,
    prep: dict | None = None,
) -> None:
    """Official layout (spec 5.1) plus our training state, the model config (`config.model`) and
    how to feed the model (`preprocessing`, see preprocessing()); written atomically by rank 0 (all
    ranks must call: the RNG states are gathered from every process)."""
    env = state.env
    rngs = gather_objects(_rng_state(), env)
    if env.is_main:
        ck = official_layout(
            state.encoder,
            state.predictor,
            state.target_encoder,
            opt=state.optimizer.state_dict(),
            scaler=state.scaler.state_dict() if cfg.grad_scaler else None,
            epoch=sampler.position(step)["epoch"],
            loss=loss,
            batch_size=cfg.batch_size,
            world_size=env.world_size,
            lr=cfg.optim.lr,
            step=step,
            accumulation_steps=cfg.accumulation_steps,
            rng=rngs,
            sampler=sampler.position(step),
            skipped=sorted(skipped.paths),
            fallback=sorted(skipped.fallback_paths),
            declared_over=sorted(skipped.declared_over_paths),
            config=to_dict(cfg),
            preprocessing=prep,
        )
        save_atomic(ck, path)
    barrier(env)


# config keys that fix which clips, masks and models a step sees: a resume must not change them
_FIXED_KEYS = ("model", "masks", "seed", "batch_size", "target", "clip_lengths", "group_token")


def restore_checkpoint(path: Path, state: TrainState, cfg: PretrainConfig) -> dict:
    """Load models, optimizer, scaler and RNG states from a training checkpoint; returns it."""
    env = state.env
    ck = load(path, map_location=env.device)
    for key in ("step", "config", "rng", "opt"):
        if key not in ck:
            raise CheckpointError(f"{path} has no '{key}' entry: not a resumable training checkpoint")
    saved, now = dict(ck["config"]), to_dict(cfg)
    if "dtype" in saved and "precision" not in saved:  # a checkpoint from before the rename: the same setting
        saved["precision"] = saved.pop("dtype")
    saved.setdefault("group_token", "length")  # from before the setting: what its runs did
    saved_global = saved["batch_size"] * ck["world_size"] * ck["accumulation_steps"]
    now_global = cfg.batch_size * env.world_size * cfg.accumulation_steps
    others = check_resume(saved, now, path, keys=_FIXED_KEYS, extra={"global batch": (saved_global, now_global)})
    if others and env.is_main:
        warnings.warn(f"resuming {path} with changed settings {others}", stacklevel=3)
    load_official_module(state.encoder, ck, "encoder", str(path))
    load_official_module(state.predictor, ck, "predictor", str(path))
    if cfg.target == "ema":
        load_official_module(state.target_encoder, ck, "target_encoder", str(path))
    state.optimizer.load_state_dict(ck["opt"])
    if cfg.grad_scaler and ck.get("scaler"):
        state.scaler.load_state_dict(ck["scaler"])
    if len(ck["rng"]) == env.world_size:
        _set_rng_state(ck["rng"][env.rank])
    elif env.is_main:
        # the step itself draws no global random numbers (masks and data are seeded by position)
        warnings.warn(
            f"{path} was written by {len(ck['rng'])} processes, now {env.world_size}: "
            "global RNG states are not restored",
            stacklevel=3,
        )
    return ck


# ----------------------------------------------------------------------------------------------
# The loop


def _clips(video, cfg: PretrainConfig) -> torch.Tensor:
    """One group's collated video [B, 1, 1, C, T, H, W] -> clips [B, C, T, H, W] (or UnfinishedClips,
    finished in the loop on the training device), checked against the model's channels and size."""
    m = cfg.model
    if hasattr(video, "finish"):  # UnfinishedClips: boxes to be finished on the training device
        if video.transform.size != m.img_size:
            raise ValueError(f"clips finished at {video.transform.size} px do not match model.img_size {m.img_size}")
        return video
    if video.ndim != 7 or video.shape[1:3] != (1, 1):
        raise ValueError(
            f"pretraining takes one segment and one view per video: batch['video'] has shape "
            f"{tuple(video.shape)}, expected [B, 1, 1, C, T, H, W]"
        )
    if (video.shape[3], *video.shape[5:]) != (m.in_chans, m.img_size, m.img_size):  # T: by MicroBatches
        raise ValueError(
            f"clips of shape [C, T, H, W] = {tuple(video.shape[3:])} do not match the model's "
            f"{m.in_chans} channels at {m.img_size} px"
        )
    return video[:, 0, 0]


def _num_frames(item: dict) -> int:
    v = item["video"]
    return len(v.box) if hasattr(v, "box") else v.shape[-3]  # an UnfinishedClip, or [S, V, C, T, H, W]


class MicroBatches(KeyedBatches):
    """Pretraining's micro-batches: KeyedBatches (each item drawn with the RNGs seeded by its item seed,
    so augmentations are a function of the data position alone, which exact resume needs), grouped by
    clip length (cfg.groups; one group for V-JEPA 1), each group's clips checked against the model and
    its masks drawn for the clips that decoded (as the official collators do in their workers)."""

    def __init__(self, dataset, cfg: PretrainConfig):
        super().__init__(dataset)
        self.cfg = cfg

    def __getitem__(self, key) -> dict:
        from vjepa.data import collate

        items, lengths = self.items(key), self.cfg.groups
        by_length: dict[int, list] = {}
        for x in items:
            if x is not None and x.get("video") is not None:
                by_length.setdefault(_num_frames(x), []).append(x)
        found = sorted(set(by_length) - set(lengths))
        if found:
            raise ValueError(
                f"clips of {found} frames in a batch; the run takes clips of {lengths} frames "
                "(pretrain clip_lengths, or model.num_frames)"
            )
        bad = collate([x for x in items if x is None or x.get("video") is None])  # names the unreadable files
        groups = []
        for g, length in enumerate(lengths):
            part = by_length.get(length)
            if not part:
                continue
            clips = _clips(collate(part)["video"], self.cfg)
            grid = self.cfg.group_grid(length)
            masks = MaskCollator(self.cfg.masks, grid, seed=self.cfg.seed, rank=key[1], group=g)
            token = len(groups) if self.cfg.group_token == "present" else g
            groups.append(Group(clips, *masks(len(clips), key[0]), g, token))
        return {
            "groups": groups,
            "skipped": bad["skipped"],
            "fallback": bad["fallback"],
            "declared_over": bad["declared_over"],
            "step": key[0],
            "shard": key[1],
        }


def _to_device(group: Group, device: torch.device) -> Group:
    """A group on the training device; UnfinishedClips (finish_on_device) converted, resized and
    normalised there."""
    clips = group.clips.finish(device) if hasattr(group.clips, "finish") else group.clips.to(device, non_blocking=True)

    def moved(masks):
        return [m.to(device, non_blocking=True) for m in masks]

    return group._replace(clips=clips, context_masks=moved(group.context_masks), target_masks=moved(group.target_masks))


def _peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory allocated by torch, or on CPU the process's peak resident set."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def pretrain(cfg: PretrainConfig, dataset, out_dir, log_fn: Callable[[dict, int], None] | None = None) -> dict:
    """Train V-JEPA on `dataset` (items as vjepa.data produces, one segment and one view), writing
    out_dir/latest.pth.tar every cfg.checkpoint_every steps and at the end, and metrics.jsonl (the
    per-step curve: losses, lr, target std, counts; no timing, so two runs write the same bytes).
    Resumes from out_dir/latest.pth.tar when it exists. Under torchrun, runs data-parallel.
    log_fn(metrics, step) is called on rank 0 every cfg.log_every steps with the same row plus
    clips_per_s and peak_memory_mb. Returns a summary (with the mean rate, peak memory, wall_s)."""
    env = init_distributed(cfg.device)
    try:
        return _pretrain(cfg, dataset, Path(out_dir), log_fn, env)
    finally:
        shutdown(env)


def _pretrain(cfg: PretrainConfig, dataset, out_dir: Path, log_fn, env: DistEnv) -> dict:
    from vjepa.data import SkipCounter, mixture_indices  # the data layer (pandas, decoders) loads only for the loop

    cfg.validate()
    out_dir.mkdir(parents=True, exist_ok=True)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    if env.device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed clip shape: let cuDNN pick the Conv3d kernel once
    state = build_state(cfg, env)
    prep = preprocessing(cfg, dataset)
    ckpt_path = out_dir / "latest.pth.tar"
    start, last_loss = 0, float("nan")
    skipped = SkipCounter(len(dataset), cfg.max_skipped_fraction)  # the same on every process
    if ckpt_path.exists():
        ck = restore_checkpoint(ckpt_path, state, cfg)
        start, last_loss = ck["step"], ck["loss"]
        skipped.paths, skipped.fallback_paths = set(ck["skipped"]), set(ck.get("fallback", ()))
        skipped.declared_over_paths = set(ck.get("declared_over", ()))
        del ck
    total = cfg.optim.iterations
    order_fn = None
    if getattr(dataset, "weights", None) is not None:  # a weighted MixtureDataset: draw with its weights
        order_fn = functools.partial(mixture_indices, dataset.sizes, dataset.weights, len(dataset), cfg.seed)
    sampler = ShardedBatchSampler(
        len(dataset), cfg.batch_size, cfg.accumulation_steps, env, cfg.seed, total, start, order_fn
    )
    loader = torch.utils.data.DataLoader(
        MicroBatches(dataset, cfg),
        sampler=sampler,
        batch_size=None,
        collate_fn=identity,
        num_workers=cfg.num_workers,
        pin_memory=env.device.type == "cuda",
    )
    log = JsonlLog(out_dir / "metrics.jsonl", start) if env.is_main else None

    batches = iter(loader)
    saved_step, window, rates, last, empty_steps = start, [], [], {}, 0
    t_start = time.perf_counter()
    bar = tqdm(
        range(start + 1, total + 1),
        initial=start,
        total=total,
        desc="pretrain",
        disable=not env.is_main,
        dynamic_ncols=True,
    )
    for step in bar:
        t0 = time.perf_counter()
        micro, step_skipped, step_fallback, step_over = [], [], [], []
        for _ in range(cfg.accumulation_steps):
            mb = next(batches)
            if mb["step"] != step - 1:  # the loader and the loop must move in lockstep
                raise RuntimeError(f"data loader is at iteration {mb['step']}, the loop at {step - 1}")
            step_skipped += mb["skipped"]
            step_fallback += mb["fallback"]
            step_over += mb["declared_over"]
            micro.append([_to_device(g, env.device) for g in mb["groups"]])
        # one exchange before the step, the same on every process: undecodable and fallback files, and
        # micro-batches left without a clip (any, with several processes: the gradient exchange needs
        # every process; all of them, with one): such a step is skipped everywhere and counted
        n_empty = sum(not groups for groups in micro)
        flags = all_reduce_sum(
            torch.tensor(
                [
                    len(step_skipped),
                    len(step_fallback) + len(step_over),
                    n_empty if env.distributed else int(n_empty == len(micro)),
                ],
                device=env.device,
            ),
            env,
        ).tolist()
        if flags[0] or flags[1]:  # rare: share the paths so that every process counts (and stops on) the same files
            for paths, fallback, over in gather_objects((step_skipped, step_fallback, step_over), env):
                skipped.update(paths, fallback, over)
        if flags[2]:
            empty_steps += 1
        else:
            try:
                metrics = train_step(state, cfg, micro, step)
            except NonFiniteLossError as e:
                good = f"{ckpt_path} (step {saved_step})" if ckpt_path.exists() else "none written yet"
                raise NonFiniteLossError(f"{e}; the weights were not updated; last good checkpoint: {good}") from None
            dt = time.perf_counter() - t0
            metrics.update(
                {
                    **skipped.metrics(),
                    "empty_steps": empty_steps,
                    "step": step,
                    "epoch": sampler.position(step - 1)["epoch"],
                    "clips_per_s": metrics["clips"] / dt,
                    "peak_memory_mb": _peak_memory_mb(env.device),
                }
            )
            window.append(metrics["loss"])
            rates.append(metrics["clips_per_s"])
            last = metrics
            if env.is_main:
                bar.set_postfix(loss=f"{metrics['loss']:.4f}", lr=f"{metrics['lr']:.2e}")
                if step % cfg.log_every == 0 or step == total:
                    log.write(without_timings(metrics))  # the curve; rates and memory go to log_fn only
                    if log_fn is not None:
                        log_fn(metrics, step)
        if step % cfg.checkpoint_every == 0 or step == total:
            last_loss = float(np.mean(window)) if window else last_loss
            save_checkpoint(ckpt_path, state, cfg, step, last_loss, sampler, skipped, prep)
            saved_step, window = step, []
    bar.close()
    return {
        "steps": total,
        "final_loss": last.get("loss", last_loss),
        "final_loss_per_mask": [last[f"loss_mask{i}"] for i in range(len(cfg.masks))] if last else None,
        "final_target_std": last.get("target_std"),
        "clips_per_s": float(np.mean(rates)) if rates else None,
        "peak_memory_mb": _peak_memory_mb(env.device),
        **skipped.metrics(),
        "empty_steps": empty_steps,
        "global_batch": cfg.batch_size * env.world_size * cfg.accumulation_steps,
        "world_size": env.world_size,
        "checkpoint": str(ckpt_path),
        "wall_s": time.perf_counter() - t_start,
    }


__all__ = [
    "build_state",
    "init_from_checkpoint",
    "save_checkpoint",
    "restore_checkpoint",
    "MicroBatches",
    "pretrain",
]
