"""The JEPA step of V-JEPA: the context path, the L1 feature-prediction loss against the EMA target
encoder, the EMA update and one optimizer update over micro-batches. With the masks
(vjepa.jepa.masks), this is the whole method; vjepa.train.pretrain runs it in a loop.

One step, in order (spec 4.2 of docs/official-vjepa-spec.md):
  1. set lr / weight decay for this step;
  2. targets: h = LN(target_encoder(clip)) over all N tokens (no affine, eps 1e-5), gathered at
     each target mask -> [B, K_tgt_i, D];
  3. context: z_i = encoder(clip, context mask i); p_i = predictor(z_i, mask token i) -> [B, K_tgt_i, D];
  4. loss = mean_i L1(p_i, h_i), plus reg_coeff x the official variance regulariser (default 0);
     with V-JEPA 2's clips of several lengths, each length is a group with its own masks, and the
     loss is the mean over every (group, mask) pair;
  5. backward (per micro-batch; DDP averages over processes), optional clipping, AdamW step;
  6. EMA: theta_tgt <- m theta_tgt + (1 - m) theta_ctx.

Steps are 1-based (step s is the s-th update); masks for step s are drawn with the 0-based
iteration s - 1, as the official collator's counter does.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from vjepa.infra.configs import PretrainConfig
from vjepa.infra.distributed import DistEnv, all_reduce_sum
from vjepa.infra.runtime import autocast_for, require_finite, use_foreach
from vjepa.models import gather_tokens


class Group(NamedTuple):
    """The clips of one length in a micro-batch, with their masks (V-JEPA 1: one group a batch)."""

    clips: torch.Tensor  # [B_g, C, T_g, H, W]
    context_masks: list[torch.Tensor]  # one [B_g, K_ctx_i] per mask config
    target_masks: list[torch.Tensor]  # one [B_g, K_tgt_i] per mask config
    index: int = 0  # the length's place in PretrainConfig.groups
    token: int = 0  # its mask token, per 'group' (PretrainConfig.group_token)


class ContextPath(nn.Module):
    """Context encoder + predictor as one module, so that one DDP wrapper averages both."""

    def __init__(self, encoder: nn.Module, predictor: nn.Module):
        super().__init__()
        self.encoder, self.predictor = encoder, predictor

    def forward(self, groups: list[Group]) -> list[list[torch.Tensor]]:
        out = []
        for g in groups:
            z = self.encoder(g.clips, g.context_masks)  # [B, K_ctx_i, D] per mask
            out.append(self.predictor.forward_masks(z, g.context_masks, g.target_masks, g.token))  # [B, K_tgt_i, D]
        return out


@dataclass
class JepaOutput:
    loss: torch.Tensor  # scalar to backpropagate: mean over (group, mask) pairs + reg_coeff * reg
    per_mask: list[torch.Tensor]  # L1 mean of each mask config (averaged over the groups)
    reg: torch.Tensor  # the variance regulariser (logged even when reg_coeff = 0)
    target_pooled: torch.Tensor  # [B, D] mean-pooled normalised targets, for the collapse monitor


def jepa_loss(
    context_path: nn.Module, target_encoder: nn.Module, groups: list[Group], reg_coeff: float = 0.0
) -> JepaOutput:
    """The V-JEPA objective for the groups of one micro-batch, each clips [B, C, T, H, W] with one
    (context, target) mask pair per mask config."""
    with torch.no_grad():
        hs = []
        for g in groups:
            h = target_encoder(g.clips)  # [B, N, D], after the encoder's own final LN
            hs.append(F.layer_norm(h, (h.size(-1),)))  # no affine, eps 1e-5
        targets = [[gather_tokens(h, m) for m in g.target_masks] for h, g in zip(hs, groups)]  # [B, K_tgt_i, D]
    preds = context_path(groups)
    pairs = [[(p - t).abs().mean() for p, t in zip(ps, ts)] for ps, ts in zip(preds, targets)]  # [group][mask]
    flat = [loss for row in pairs for loss in row]
    loss = sum(flat) / len(flat)  # V-JEPA 2's loss_fn: the mean over every (group, mask) pair
    per_mask = pairs[0] if len(pairs) == 1 else [sum(col) / len(col) for col in zip(*pairs)]
    # official reg_fn: hinge on the std of each prediction over its tokens
    flat_preds = [p for ps in preds for p in ps]
    reg = sum(F.relu(1.0 - torch.sqrt(p.float().var(dim=1) + 1e-4)).mean() for p in flat_preds) / len(flat_preds)
    if reg_coeff:
        loss = loss + reg_coeff * reg
    return JepaOutput(loss, per_mask, reg.detach(), torch.cat([h.float().mean(1) for h in hs]))


@torch.no_grad()
def ema_update_(target: nn.Module, context: nn.Module, momentum: float) -> None:
    """theta_tgt <- m * theta_tgt + (1 - m) * theta_ctx, for every parameter (pos_embed included, as
    the official code does), computed as official: mul_(m) then add_((1 - m) * theta_ctx)."""
    tgt, ctx = list(target.parameters()), list(context.parameters())
    if use_foreach(tgt[0].device):
        torch._foreach_mul_(tgt, momentum)
        torch._foreach_add_(tgt, torch._foreach_mul(ctx, 1.0 - momentum))
    else:
        for t, c in zip(tgt, ctx):
            t.mul_(momentum).add_(c * (1.0 - momentum))


def param_groups(encoder: nn.Module, predictor: nn.Module) -> list[dict]:
    """The official 4 AdamW groups: encoder / predictor weights (decayed), then their biases and 1-D
    parameters (WD_exclude, no decay). Frozen pos_embeds are listed too (they get no gradient), so
    the optimizer state lines up with the official one."""

    def split(model, decayed):
        return [p for n, p in model.named_parameters() if (("bias" not in n) and p.ndim != 1) == decayed]

    return [
        {"params": split(encoder, True)},
        {"params": split(predictor, True)},
        {"params": split(encoder, False), "WD_exclude": True, "weight_decay": 0.0},
        {"params": split(predictor, False), "WD_exclude": True, "weight_decay": 0.0},
    ]


@dataclass
class TrainState:
    encoder: nn.Module
    predictor: nn.Module
    target_encoder: nn.Module  # the encoder itself when cfg.target == "copy"
    context_path: nn.Module  # ContextPath, DDP-wrapped when distributed
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    env: DistEnv


def grad_norm_(module: nn.Module, clip: float | None) -> float:
    """The total gradient norm of `module`, its gradients clipped to `clip` when given."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return 0.0
    norm = torch.nn.utils.get_total_norm(grads)
    if clip is not None:
        torch.nn.utils.clip_grads_with_norm_([p for p in module.parameters() if p.grad is not None], clip, norm)
    return float(norm)


@dataclass
class StepSums:
    """What one step sums over its micro-batches and processes, by name."""

    loss_per_mask: torch.Tensor  # [M]
    reg: torch.Tensor  # [1]
    micro_batches: torch.Tensor  # [1]
    clips: torch.Tensor  # [1]
    target_sum: torch.Tensor  # [D]
    target_sq_sum: torch.Tensor  # [D]
    group_clips: torch.Tensor  # [G] clips of each length

    def all_reduce(self, env: DistEnv) -> "StepSums":
        """The sums over all processes, in one collective (this process's sums when it is alone)."""
        parts = list(vars(self).values())
        flat = all_reduce_sum(torch.cat(parts), env)
        return StepSums(*flat.split([len(p) for p in parts]))


def train_step(state: TrainState, cfg: PretrainConfig, micro_batches: list, step: int) -> dict:
    """One optimizer update (1-based `step`) over this process's micro-batches, each a list of
    Groups (one per clip length present; none when no clip decoded). Returns the step's metrics,
    averaged over all micro-batches of all processes. Raises NonFiniteLossError before touching any weight."""
    env, opt = state.env, cfg.optim
    lr, wd = opt.lr_at(step), opt.weight_decay_at(step)
    for g in state.optimizer.param_groups:
        g["lr"] = lr
        if not g.get("WD_exclude"):
            g["weight_decay"] = wd

    M, n, D, lengths = len(cfg.masks), len(micro_batches), state.encoder.embed_dim, cfg.groups
    f64 = {"dtype": torch.float64, "device": env.device}
    # sums over micro-batches, then over processes (StepSums.all_reduce: one collective)
    sums = StepSums(
        loss_per_mask=torch.zeros(M, **f64),
        reg=torch.zeros(1, **f64),
        micro_batches=torch.zeros(1, **f64),
        clips=torch.zeros(1, **f64),
        target_sum=torch.zeros(D, **f64),  # of the mean-pooled targets over clips, for the collapse monitor
        target_sq_sum=torch.zeros(D, **f64),
        group_clips=torch.zeros(len(lengths), **f64),
    )
    autocast = autocast_for(env.device, cfg.precision)()
    for i, groups in enumerate(micro_batches):
        if not groups:
            if env.distributed:
                raise RuntimeError(
                    f"step {step}: every clip of a micro-batch failed to decode; with several "
                    "processes this would stall the gradient exchange"
                )
            continue  # one process: this micro-batch contributes no gradient
        last = i == n - 1
        sync = contextlib.nullcontext() if last or not env.distributed else state.context_path.no_sync()
        with sync:
            with autocast:
                out = jepa_loss(state.context_path, state.target_encoder, groups, cfg.reg_coeff)
            # / n: the accumulated gradient is the mean over micro-batches (DDP then averages processes)
            state.scaler.scale(out.loss / n).backward()
        pooled = out.target_pooled.double()
        sums.loss_per_mask += torch.stack([l.detach().double() for l in out.per_mask])
        sums.reg += out.reg.double()
        sums.micro_batches += 1
        for g in groups:
            sums.clips += g.clips.size(0)
            sums.group_clips[g.index] += g.clips.size(0)
        sums.target_sum += pooled.sum(0)
        sums.target_sq_sum += pooled.square().sum(0)
    sums = sums.all_reduce(env)
    count, clips_seen = max(sums.micro_batches.item(), 1.0), sums.clips.item()
    per_mask = (sums.loss_per_mask / count).tolist()
    require_finite(per_mask, f"loss at step {step}: loss per mask {per_mask}", state.optimizer)
    # collapse monitor: std over all clips of the step of the mean-pooled target, averaged over channels
    target_std = None
    if clips_seen > 1:
        s1, s2 = sums.target_sum, sums.target_sq_sum
        var = (s2 - s1.square() / clips_seen) / (clips_seen - 1)
        target_std = var.clamp(min=0).sqrt().mean().item()

    state.scaler.unscale_(state.optimizer)
    clip = opt.clip_grad if step >= opt.clip_grad_from_step else None
    norm_enc = grad_norm_(state.encoder, clip)  # clipped separately, as the official code does
    norm_pred = grad_norm_(state.predictor, clip)
    state.scaler.step(state.optimizer)
    state.scaler.update()
    state.optimizer.zero_grad(set_to_none=True)

    if cfg.target == "ema":
        m = opt.momentum_at(step)
        ema_update_(state.target_encoder, state.encoder, m)
    else:
        m = 0.0  # the target is the context encoder itself

    jepa, reg = sum(per_mask) / M, sums.reg.item() / count
    metrics = {
        "loss": jepa + cfg.reg_coeff * reg,
        "loss_jepa": jepa,
        **{f"loss_mask{i}": v for i, v in enumerate(per_mask)},
        "loss_reg": reg,
        "lr": lr,
        "weight_decay": wd,
        "momentum": m,
        "grad_norm_encoder": norm_enc,
        "grad_norm_predictor": norm_pred,
        "target_std": target_std,
        "clips": int(clips_seen),
    }
    first = micro_batches[0][0] if micro_batches[0] else None  # token counts of the first group (0: none)
    metrics.update({f"context_tokens_mask{i}": first.context_masks[i].size(1) if first else 0 for i in range(M)})
    metrics.update({f"target_tokens_mask{i}": first.target_masks[i].size(1) if first else 0 for i in range(M)})
    if len(lengths) > 1:  # how the step's clips fell into V-JEPA 2's clip lengths
        metrics.update({f"clips_{t}f": int(c) for t, c in zip(lengths, sums.group_clips.tolist())})
    return metrics
