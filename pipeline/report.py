"""reports/<profile>/: the appendix's tables with the paper's numbers beside ours, and figures,
rebuilt from that profile's metrics files (metrics/<profile>/**.json and the pretraining curves)
and, for Tables 5-8's settings, the typed params, so no training re-runs."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from pipeline import paper
from pipeline.config import Params
from vjepa.stats import PairedComparison, paired_bootstrap, paired_outcomes

RUNS = Path("runs")
# set by build_report to the profile's folders: metrics/<profile>, reports/<profile>
METRICS = Path("metrics") / "default"
REPORTS = Path("reports") / "default"
FIG = REPORTS / "figures"


def _load(pattern: str) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(METRICS.glob(pattern))}


def _fmt(x, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


KINDS = ("attentive", "linear")


def _sd(xs: list[float]) -> float | None:
    """Sample standard deviation (n - 1) over seeds; None under two values."""
    xs = [x for x in xs if x is not None]
    return float(np.std(xs, ddof=1)) if len(xs) > 1 else None


def _mean_spread(xs: list[float]) -> str:
    xs = [x for x in xs if x is not None]
    if not xs:
        return "–"
    return f"{np.mean(xs):.1f} ± {_sd(xs):.1f}" if len(xs) > 1 else f"{xs[0]:.1f}"


def stand_ins(P: Params) -> dict[str, str]:
    """What each task is on this profile: the small suite's stand-in where `prepare` builds the data
    (default and smoke profiles), nothing where the tasks read the real datasets."""
    if P.prepare is None:
        return {}
    motion = P.prepare.ssv2_label
    return {"k400": "K400 stand-in: digit class, moving digits", "ssv2": f"SSv2 stand-in: motion {motion}",
            "in1k": "IN1K stand-in: digit class, still digits", "places205": "Places205 stand-in: footage scene",
            "inat21": "iNat21 stand-in: digit x ink colour", "ava": "AVA stand-in: moving-digit actions"}


def _task_name(task: str, names: dict) -> str:
    return names.get(task, task)


def _unavailable(files: list[str], stage: str) -> str:
    return (f"Paired verdicts unavailable: {', '.join(files)} hold{'s' if len(files) == 1 else ''} no per-clip "
            f"outcomes (the `{stage}` stage writes them from this version on); `dvc repro {stage}` re-runs it.")


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


# ----------------------------------------------------------------------------------------------
# sections

def section_frozen(probes: dict, detect: dict | None, profile: str) -> str:
    tasks = ["k400", "ssv2", "in1k", "places205", "inat21"]
    released = {t for t in tasks if probes.get(t, {}).get("released_probe")}  # probe.tasks.<t>.evaluate_only
    ours = [probes[t]["top1"] if t in probes and t not in released else None for t in tasks]
    rows = [[f"ours ({profile} profile)", *ours, detect.get("mAP") * 100 if detect and detect.get("mAP") is not None else None]]
    if released:
        rows.append(["released probe, evaluated here as it is", *[probes[t]["top1"] if t in released else None
                                                                   for t in tasks], None])
    for name, vals in paper.FROZEN.items():
        rows.append([f"paper, V-JEPA {name}", *[vals[t] for t in tasks], None])
    text = ("## Frozen evaluation (attentive probe, top-1 %; AVA mAP@0.5 x 100)\n\n"
            + _table(["encoder", "K400", "SSv2", "IN1K", "Places205", "iNat21", "AVA"], rows))
    text += ("\n\nOur tasks on the default profile are the small suite's stand-ins (digit class for K400/IN1K, motion "
             "direction for SSv2, footage scenes for Places205, digit x ink for iNat21, moving digits for AVA); "
             "the paper's numbers are for the real datasets. The paper rows are the official README's results of "
             "the released models.\n")
    return text


def section_lin_att(probes: dict, profile: str) -> str:
    rows = []
    for t in ["k400", "ssv2", "in1k", "places205", "inat21"]:
        if t in probes:
            k = probes[t]["top1_by_kind"]
            who = "released probe" if probes[t].get("released_probe") else "ours"
            rows.append([f"{t} ({who}, {profile})", k.get("linear"), k.get("attentive")])
    for name, vals in paper.TABLE9.items():
        for t, (lin, att) in vals.items():
            rows.append([f"{t} (paper Table 9, {name})", lin, att])
    for name, vals in paper.TABLE10.items():
        for t, (lin, att) in vals.items():
            rows.append([f"{t} (paper Table 10, {name})", lin, att])
    return "## Tables 9 and 10: linear vs attentive probes (top-1 %)\n\n" + _table(["task", "linear", "attentive"], rows) + "\n"


def section_coverage(probes: dict, profile: str) -> str:
    rows = []
    k = probes.get("k400")
    if k:
        cov = k["coverage"]
        one, eight = cov.get("segments1", {}), cov.get("segments8", {})
        rows.append([f"ours ({profile}), attentive", one.get("attentive"), eight.get("attentive")])
        rows.append([f"ours ({profile}), linear", one.get("linear"), eight.get("linear")])
    for name, (a, b) in paper.TABLE11.items():
        rows.append([f"paper, {name}", a, b])
    return ("## Table 11: temporal coverage on K400 (top-1 %)\n\n" + _table(["model", "1 clip", "8 clips"], rows)
            + "\n\nOurs: the same frozen encoder and probes, the long videos cut into 1 or 8 segments.\n")


def section_samples(pretrain: dict, profile: str) -> str:
    rows = [[f"ours ({profile}), seed {m['seed']}", f"{m['samples_seen'] / 1e6:.4f}M"]
            for m in pretrain.values() if "samples_seen" in m]
    rows += [[name, f"{v}M"] for name, v in paper.TABLE12.items()]
    return "## Table 12: samples seen during pretraining\n\n" + _table(["model", "#samples seen"], rows) + "\n"


def learn_comparisons(learn: dict) -> tuple[dict[tuple[str, str], PairedComparison | str], list[str]]:
    """(task, probe kind) -> the paired comparison of the pretrained and the random-init encoder over
    every seed's validation clips, or why they do not pair; and the metrics files without per-clip
    outcomes (then no comparison at all)."""
    seeds = sorted(learn.values(), key=lambda m: m["seed"])
    missing = [f"{METRICS}/learn/seed{m['seed']}.json" for m in seeds if not m.get("clips")]
    out = {}
    if missing:
        return out, missing
    for t in seeds[0]["top1"]:
        for kind in KINDS:
            try:
                a, b = paired_outcomes([m["clips"][t]["pretrained"] for m in seeds],
                                       [m["clips"][t]["random"] for m in seeds], kind)
            except (KeyError, ValueError) as e:
                out[t, kind] = f"verdict unavailable: the per-clip outcomes do not pair ({e})"
                continue
            out[t, kind] = paired_bootstrap(a, b)
    return out, []


def _verdict(c: PairedComparison | str, better: str, worse: str, same: str) -> str:
    if isinstance(c, str):
        return c
    return {"better": better, "worse": worse, "not distinguishable": same}[c.verdict] + ": " + c.describe()


def section_learn(learn: dict, profile: str, roles: dict | None = None, names: dict | None = None) -> str:
    """Pretrained vs random-init encoder per task and probe over the seeds, with a paired verdict
    per task and probe. `roles` names a task's role (motion, appearance), `names` its stand-in."""
    if not learn:
        return ""
    roles, names = roles or {}, names or {}
    seeds = sorted(learn.values(), key=lambda m: m["seed"])
    comparisons, missing = learn_comparisons(learn)
    rows, verdicts = [], [_unavailable(missing, "learn")] if missing else []
    for t in seeds[0]["top1"]:
        name = f"{_task_name(t, names)} ({roles[t]})" if t in roles else _task_name(t, names)
        for kind in KINDS:
            pre = [m["top1"][t]["pretrained"].get(kind) for m in seeds]
            rnd = [m["top1"][t]["random"].get(kind) for m in seeds]
            margin = [m["margin"][t].get(kind) for m in seeds]
            rows.append([name, kind, _mean_spread(pre), _mean_spread(rnd), _mean_spread(margin),
                         " / ".join(_fmt(x) for x in margin)])
            if (t, kind) in comparisons:
                verdicts.append(f"- {name}, {kind} probe: " + _verdict(
                    comparisons[t, kind], "pretraining beats random initialisation",
                    "pretraining loses to random initialisation",
                    "pretrained and random-init encoders are not distinguishable"))
    return (f"## Does it learn? V-JEPA against a random encoder of the same shape ({profile} profile, "
            f"{len(seeds)} seeds)\n\n"
            + _table(["task", "probe", "pretrained", "random init", "margin", "margin per seed"], rows)
            + "\n\nMean ± sample standard deviation over seeds (seeds "
            + ", ".join(str(m["seed"]) for m in seeds) + "); each seed pretrains, initialises the random encoder "
            "and trains the probes with that seed; each kind's best probe of the lr x weight-decay grid is kept, "
            "for both encoders alike.\n\n"
            "Verdicts pair the two encoders clip by clip: pretrained minus random top-1, the mean over seeds, with a "
            "95% interval from a paired bootstrap that redraws the seeds and, for all seeds at once, the validation "
            "clips; \"not distinguishable\" where the interval covers zero. The seed-to-seed spread above is no test: "
            "three seeds can give three equal margins (a spread of zero) that rest on a handful of clips.\n\n"
            + "\n".join(verdicts) + "\n")


def ablation_reference(P: Params) -> str | None:
    """The grid point that changes nothing (`pretrain: {}`): the profile's own settings, which every
    other point is compared with."""
    return next((k for k, v in P.ablations.points.items() if not v.pretrain), None)


def ablation_comparisons(ablate: dict, reference: str | None) -> tuple[dict[tuple[str, str], PairedComparison | str],
                                                                     list[str]]:
    """(point, probe kind) -> the paired comparison of the point with the reference point on the same
    validation clips (one seed), or why they do not pair; and the metrics files without per-clip
    outcomes (then no comparison at all)."""
    if reference not in ablate:
        return {}, []
    missing = [f"{METRICS}/ablate/{n}.json" for n, m in sorted(ablate.items()) if "clips" not in m]
    out, ref = {}, ablate[reference]
    if missing:
        return out, missing
    for name, m in sorted(ablate.items()):
        if name == reference:
            continue
        for kind in KINDS:
            try:
                a, b = paired_outcomes([m["clips"]], [ref["clips"]], kind)
            except (KeyError, ValueError) as e:
                out[name, kind] = f"verdict unavailable: the per-clip outcomes do not pair ({e})"
                continue
            out[name, kind] = paired_bootstrap(a, b)
    return out, []


def section_ablations(ablate: dict, profile: str, reference: str | None = None) -> str:
    if not ablate:
        return ""
    out = ["## Masking and target ablations (Tables 13-15, Appendix D)\n"]
    header = ["point", "masks", "blocks per mask", "avg spatial ratio", "avg temporal ratio", "context tokens",
              "target tokens", "target", "attentive", "linear", "target std (end)"]
    for table in ("13", "14", "15", "D"):
        points = [m for m in ablate.values() if table in [str(x) for x in m["tables"]]]
        if not points:
            continue
        rows = []
        for m in sorted(points, key=lambda m: m["point"]):
            st = m["mask_statistics"]
            rows.append([m["label"] or m["point"], m["num_masks"], "/".join(str(x["num_blocks"]) for x in m["masks"]),
                         " / ".join(f"{s['spatial_masking_ratio']:.2f}" for s in st),
                         " / ".join(f"{s['temporal_masking_ratio']:.2f}" for s in st),
                         " / ".join(f"{s['context_tokens_mean']:.0f}" for s in st),
                         " / ".join(f"{s['target_tokens_mean']:.0f}" for s in st), m["target"],
                         m["top1_by_kind"].get("attentive"), m["top1_by_kind"].get("linear"),
                         _fmt(m.get("final_target_std"), 3)])
        title = {"13": "Table 13: masking ratio", "14": "Table 14: block size at a fixed ratio",
                 "15": "Table 15: masks per sample", "D": "Appendix D: EMA target vs a copy of the context encoder"}[table]
        out.append(f"### {title} (ours, {profile} profile, task {points[0]['task']})\n\n" + _table(header, rows) + "\n")
    out.append("Each point is one pretraining run (the main seed) with the shorter schedule of `ablations.pretrain`.\n")
    comparisons, missing = ablation_comparisons(ablate, reference)
    if comparisons or missing:
        lines = [_unavailable(missing, "ablate")] if missing else []
        lines += [f"- {ablate[n]['label'] or n}, {kind} probe: " + _verdict(
            c, f"beats `{reference}`", f"loses to `{reference}`", f"not distinguishable from `{reference}`")
            for (n, kind), c in comparisons.items()]
        out.append(f"### Paired verdicts against the profile's own settings (point `{reference}`)\n\n"
                   "Each point minus the reference, clip by clip on the same validation clips, with a 95% interval "
                   "from a paired bootstrap over those clips. One seed per point: the interval covers which clips "
                   "were drawn, not seed-to-seed variation, which the section above measures on the full schedule.\n\n"
                   + "\n".join(lines) + "\n")
    out.append("Paper (ViT-B/16 on K400, K400 accuracy): Table 13 "
               + ", ".join(f"{d}% depth/{s}% area: {v[3]:.2f}" for (d, s), v in paper.TABLE13.items() if d == 100)
               + "; Table 14 " + ", ".join(f"{b}px x{n}: {a:.2f}" for b, (n, a) in paper.TABLE14.items())
               + "; Table 15 " + ", ".join(f"{k} mask(s): {v:.2f}" for k, v in paper.TABLE15.items()) + ".\n")
    return "\n".join(out)


def section_detect(detect: dict | None, profile: str) -> str:
    if not detect:
        return ""
    rows = [[name, ap * 100 if ap is not None else None, detect["num_gt"].get(name)]
            for name, ap in detect["per_class"].items()]
    return (f"## Frozen detection (AVA format, {profile} profile)\n\nmAP@0.5 {_fmt(detect['mAP'] * 100)} (all detections, "
            f"input-order matching as the SlowFast/ActivityNet API); {_fmt(detect['mAP_official_cli'] * 100)} with the "
            "official command line's top-50 per keyframe. Features: layers "
            f"{detect.get('out_layers')} concatenated along channels.\n\n" + _table(["class", "AP", "GT boxes"], rows) + "\n")


def section_finetune(finetune: dict, probes: dict, profile: str) -> str:
    if not finetune:
        return ""
    rows = []
    for t, m in sorted(finetune.items()):
        rows.append([t, m.get("top1"), m.get("top5"), probes.get(t, {}).get("top1")])
    return (f"## Finetuning (Table 8 recipe, {profile} profile, multi-view test)\n\n"
            + _table(["task", "finetuned top-1", "finetuned top-5", "frozen attentive probe top-1"], rows) + "\n")


def section_hyperparameters(P: Params, profile: str) -> str:
    """Tables 5-8: the paper's settings (ViT-L/16, K400 columns) beside the active profile's, resolved
    through the same typed configs the stages build (so defaults the profile leaves out show too)."""
    pre = P.pretrain_config(P.main_seed)
    data = P.pretrain.data
    o, m = pre.optim, pre.model
    ours5 = {"resolution": m.img_size, "num_frames": m.num_frames, "temporal_stride": data.frame_step,
             "random_resize_scale": f"({data.scale[0]}, {data.scale[1]})",
             "batch_size": pre.batch_size * pre.accumulation_steps, "iterations": o.iterations,
             "warmup_fraction": round(o.warmup / o.iterations, 3),
             "lr": o.lr, "start_lr": o.start_lr, "final_lr": o.final_lr,
             "momentum": f"{o.start_momentum} -> {o.final_momentum}",
             "weight_decay": f"{o.start_weight_decay} -> {o.final_weight_decay}",
             "scheduler_scale_factor": o.scheduler_scale_factor, "patch_size": m.patch_size,
             "tubelet_size": m.tubelet_size, "pred_depth": m.pred_depth, "pred_embed_dim": m.pred_embed_dim,
             "dtype": {"bf16": "bfloat16", "fp32": "float32"}.get(pre.precision, pre.precision)}
    out = [f"## Hyper-parameters: the paper's (ViT-L/16 224) and ours ({profile} profile)",
           f"Encoder: paper ViT-L/16 (width 1024, depth 24); ours width {m.embed_dim}, depth {m.depth}, "
           f"{m.num_heads} heads. Masks: " + "; ".join(f"{x.num_blocks} blocks at scale {x.spatial_scale[0]}"
                                                     for x in pre.masks) + ".",
           "### Table 5: pretraining\n\n" + _table(["hyper-parameter", "paper", "ours"],
                                                   [[k, str(v), str(ours5[k])] for k, v in paper.TABLE5.items()])]
    tasks = P.probe.tasks
    probe = P.probe_defaults()
    k400, ssv2 = tasks.get("k400"), tasks.get("ssv2")
    ours6 = {"num_clips (K400 / SSv2)": f"{k400.segments[0] if k400 else '–'} / {ssv2.segments[0] if ssv2 else '–'}",
             "num_frames": k400.num_frames if k400 else "–", "temporal_stride": k400.frame_step if k400 else "–",
             "horizontal_flip": (k400.hflip and k400.augment) if k400 else "–",
             "random_resize_scale": f"({k400.scale[0]}, {k400.scale[1]})" if k400 and k400.augment else "none (cached features)",
             "batch_size": probe.batch_size, "epochs": probe.epochs, "lr": "/".join(str(x) for x in probe.lrs),
             "final_lr": probe.final_lr, "weight_decay": "/".join(str(x) for x in probe.weight_decays),
             "probe heads": probe.num_heads or "encoder's"}
    out.append("### Table 6: frozen evaluation\n\n" + _table(["hyper-parameter", "paper", "ours"],
                                                               [[k, str(v), str(ours6[k])] for k, v in paper.TABLE6.items()]))
    det = P.detect_config([1], P.main_seed)
    ours7 = {"out_layers": str(det.out_layers), "batch_size": det.batch_size, "epochs": det.epochs, "lr": det.lr,
             "weight_decay": det.weight_decay, "warmup_epochs": det.warmup_epochs, "warmup_lr": det.warmup_lr,
             "min_lr": det.min_lr}
    out.append("### Table 7: frozen detection\n\n" + _table(["hyper-parameter", "paper", "ours"],
                                                              [[k, str(v), str(ours7[k])] for k, v in paper.TABLE7.items()]))
    ft_tasks = P.finetune.tasks
    if ft_tasks:
        name = "k400" if "k400" in ft_tasks else next(iter(ft_tasks))
        ft = P.finetune_config(name, 2)
        ours8 = {"num_frames": ft.num_frames, "sampling_rate": ft.frame_step, "resolution": ft.img_size or m.img_size,
                 "drop_path": ft.drop_path, "head_drop_rate": ft.head_drop_rate, "batch_size": ft.batch_size,
                 "epochs": ft.epochs, "lr": ft.lr, "layer_decay": ft.layer_decay, "weight_decay": ft.weight_decay,
                 "warmup_epochs": ft.warmup_epochs, "num_sample": ft.num_sample, "auto_augment": ft.auto_augment,
                 "color_jitter": ft.color_jitter, "reprob": ft.reprob, "mixup": ft.mixup, "cutmix": ft.cutmix,
                 "mixup_prob": ft.mixup_prob, "smoothing": ft.smoothing, "test_num_segment": ft.test_num_segment,
                 "test_num_crop": ft.test_num_crop}
        out.append(f"### Table 8: finetuning (ours: task {name}, head norm {ft.head_norm})\n\n"
                   + _table(["hyper-parameter", "paper", "ours"], [[k, str(v), str(ours8[k])] for k, v in paper.TABLE8.items()]))
    return "\n\n".join(out) + "\n"


# ----------------------------------------------------------------------------------------------
# figures

def _save(plt, fig, name: str) -> str:
    """Write a figure to reports/figures/<name> (legends outside the axes included); returns its path
    relative to reports/."""
    fig.tight_layout()
    FIG.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIG / name, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return f"figures/{name}"


def figure_curves(pretrain: dict) -> str | None:
    curves = {}
    for name in pretrain:
        path = RUNS / "pretrain" / name / "metrics.jsonl"
        if path.exists():
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            curves[name] = rows
    if not curves:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    for name, rows in curves.items():
        steps = [r["step"] for r in rows]
        axes[0].plot(steps, [r["loss"] for r in rows], label=name, lw=1)
        std = np.array([r["target_std"] for r in rows])
        k = min(20, len(std))  # a 20-step running mean: single batches swing with their mix of sources
        smooth = np.convolve(std, np.ones(k) / k, mode="valid")
        line, = axes[1].plot(steps[k - 1:], smooth, label=name, lw=1.2)
        axes[1].plot(steps, std, lw=0.5, alpha=0.25, color=line.get_color())
        axes[2].plot(steps, [r["lr"] for r in rows], label=name, lw=1)
    for ax, title, ylabel in zip(axes, ["L1 loss", "collapse monitor (20-step mean, raw faint)", "learning rate"],
                                 ["L1 loss (both masks)", "std across clips of the pooled target", "learning rate"]):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("iteration", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
    axes[0].legend(fontsize=7)
    return _save(plt, fig, "pretraining_curves.png")


def figure_probes(learn: dict, names: dict) -> str | None:
    """The main finding: the pretrained encoder beside the random-init encoder of the same shape, per
    task and probe, the mean over seeds with the seed-to-seed standard deviation as error bars and
    each seed as a dot."""
    if not learn:
        return None
    plt = _plt()
    seeds = sorted(learn.values(), key=lambda m: m["seed"])
    tasks = list(seeds[0]["top1"])
    x, w = np.arange(len(tasks)), 0.36
    fig, axes = plt.subplots(1, len(KINDS), figsize=(4.2 * len(KINDS), 3.6), sharey=True, squeeze=False)
    for ax, kind in zip(axes[0], KINDS):
        for j, (enc, colour) in enumerate((("pretrained", "tab:blue"), ("random", "tab:grey"))):
            vals = [[m["top1"][t][enc].get(kind) for m in seeds] for t in tasks]
            pos = x + (j - 0.5) * w
            ax.bar(pos, [np.mean(v) for v in vals], w, yerr=[_sd(v) or 0 for v in vals], capsize=4, color=colour,
                   alpha=0.8, label=f"{enc} encoder" if enc == "pretrained" else "random-init encoder, same shape")
            for i, (p_, v) in enumerate(zip(pos, vals)):
                ax.plot(np.full(len(v), p_), v, "k.", ms=4, label="one seed" if i == j == 0 else None)
        ax.set_xticks(x, [_task_name(t, names).replace(": ", ":\n") for t in tasks], fontsize=8)
        ax.set_xlabel("task", fontsize=8)
        ax.set_title(f"{kind} probe", fontsize=9)
    axes[0][0].set_ylabel("validation top-1 %", fontsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=8, frameon=False)
    return _save(plt, fig, "probes.png")


TABLE_TITLES = {"13": "Table 13: masking ratio", "14": "Table 14: block size at a fixed ratio",
                "15": "Table 15: masks per sample", "D": "Appendix D: EMA target vs a copy"}


def _paper_panel(ax, table: str) -> None:
    """The paper's numbers for one ablation table (ViT-B/16 pretrained on K400, K400 linear probe; the
    appendix's Tables 13-15, which Figure 5 plots)."""
    if table == "13":
        for depth, marker in ((100, "o"), (75, "s"), (50, "^")):
            cells = sorted((s, v[3]) for (d, s), v in paper.TABLE13.items() if d == depth)
            ax.plot([c[0] for c in cells], [100 * c[1] for c in cells], marker=marker, label=f"{depth}% of the frames")
        ax.set_xlabel("average spatial masking ratio (%)", fontsize=8)
        ax.legend(title="temporal extent", fontsize=7, title_fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    elif table == "14":
        items = sorted(paper.TABLE14.items())
        ax.bar(range(len(items)), [100 * a for _, (_, a) in items], color="tab:purple", alpha=0.8)
        ax.set_xticks(range(len(items)), [f"{b} px\nx{n}" for b, (n, _) in items], fontsize=7)
        ax.set_xlabel("block size x blocks per mask (~75% masked)", fontsize=8)
    elif table == "15":
        items = sorted(paper.TABLE15.items())
        ax.bar(range(len(items)), [100 * a for _, a in items], color="tab:purple", alpha=0.8)
        ax.set_xticks(range(len(items)), [str(k) for k, _ in items], fontsize=8)
        ax.set_xlabel("masks per sample", fontsize=8)
    else:
        ax.text(0.5, 0.5, "Appendix D is an argument,\nwith no accuracy to plot", ha="center", va="center",
                fontsize=8, transform=ax.transAxes)
        ax.set_xticks([]); ax.set_yticks([])
        ax.set_xlabel("(no data)", fontsize=8)
        ax.set_ylabel("(no data)", fontsize=8)
        return
    ax.set_ylabel("K400 linear top-1 %", fontsize=8)


def figure_masking(ablate: dict, learn: dict, reference: str | None, names: dict) -> str | None:
    """One row per ablation table: ours (top-1 of each point, both probes, with the seed-to-seed
    spread measured by the `learn` stage on the same task as error bars) beside the paper's."""
    tables = [t for t in TABLE_TITLES if any(t in [str(x) for x in m["tables"]] for m in ablate.values())]
    if not tables:
        return None
    task = next(iter(ablate.values()))["task"]
    seeds = sorted(learn.values(), key=lambda m: m["seed"])
    spread = {k: _sd([m["top1"][task]["pretrained"].get(k) for m in seeds]) if seeds and task in seeds[0]["top1"]
              else None for k in KINDS}
    plt = _plt()
    fig, axes = plt.subplots(len(tables), 2, figsize=(12, 2.9 * len(tables)), squeeze=False,
                             gridspec_kw={"width_ratios": [1.25, 1]})
    colours = {"attentive": "tab:blue", "linear": "tab:orange"}
    for row, table in zip(axes, tables):
        points = sorted((m for m in ablate.values() if table in [str(x) for x in m["tables"]]),
                        key=lambda m: (m["point"] != reference, m["point"]))  # the reference first
        y, h = np.arange(len(points)), 0.38
        for j, kind in enumerate(KINDS):
            row[0].barh(y + (j - 0.5) * h, [m["top1_by_kind"].get(kind, np.nan) for m in points], h,
                        xerr=spread[kind], capsize=3, color=colours[kind], alpha=0.85, label=f"{kind} probe")
        labels = []
        for m in points:
            st = m["mask_statistics"]
            spatial = "/".join(f"{s['spatial_masking_ratio']:.2f}" for s in st)
            temporal = "/".join(f"{s['temporal_masking_ratio']:.2f}" for s in st)
            ratios = f"spatial {spatial}, temporal {temporal}"
            ref = " [reference]" if m["point"] == reference else ""
            labels.append(f"{m['label'] or m['point']}{ref}\n{ratios}")
        row[0].set_yticks(y, labels, fontsize=7)
        row[0].invert_yaxis()
        row[0].set_xlabel(f"top-1 % on {_task_name(task, names)}", fontsize=8)
        row[0].set_title(f"ours: {TABLE_TITLES[table]}", fontsize=9)
        _paper_panel(row[1], table)
        row[1].set_title(f"paper (ViT-B/16, K400): {TABLE_TITLES[table]}", fontsize=9)
    handles, labels = axes[0][0].get_legend_handles_labels()
    note = ("error bars: seed-to-seed s.d. of the full-schedule pretrained encoder on this task (learn stage, "
            f"{len(seeds)} seeds); each ablation point is one seed" if any(v is not None for v in spread.values())
            else "no seed spread measured for this task")
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, fontsize=8, frameon=False,
               title=note, title_fontsize=8)
    return _save(plt, fig, "masking_ablation.png")


KEPT: dict[str, str] = {}  # figure -> why this build kept the earlier image


def _kept(name: str, source: str) -> str | None:
    """An image an earlier build wrote, kept where its input (a DVC output under runs/) is absent
    from this checkout, e.g. a fresh clone that rebuilds the report from the committed metrics."""
    if not (FIG / name).exists():
        return None
    KEPT[f"figures/{name}"] = (f"(Not rebuilt in this build: {source} is absent from this checkout (`dvc pull` "
                               "or `dvc repro` brings it); the image is the one the last build with it wrote.)")
    return f"figures/{name}"


def copy_masks_figure() -> str | None:
    src = RUNS / "masks" / "masks.png"
    if not src.exists():
        return None
    FIG.mkdir(parents=True, exist_ok=True)
    (FIG / "masks.png").write_bytes(src.read_bytes())
    return "figures/masks.png"


# ----------------------------------------------------------------------------------------------

def build_report(P: Params) -> Path:
    """reports/<profile>/README.md and its figures from metrics/<profile>/."""
    global METRICS, REPORTS, FIG
    profile = P.profile
    METRICS, REPORTS = Path("metrics") / profile, Path("reports") / profile
    FIG = REPORTS / "figures"
    KEPT.clear()
    probes = _load("probe/*.json")
    pretrain = _load("pretrain/*.json")
    learn = _load("learn/*.json")
    ablate = _load("ablate/*.json")
    finetune = _load("finetune/*.json")
    detect_path = METRICS / "detect.json"
    detect = json.loads(detect_path.read_text()) if detect_path.exists() else None
    REPORTS.mkdir(parents=True, exist_ok=True)
    FIG.mkdir(parents=True, exist_ok=True)
    roles = {P.learn.motion: "motion", P.learn.appearance: "appearance"}
    names = stand_ins(P)
    reference = ablation_reference(P)
    seeds = len(learn)
    figs = [  # (path or None, one-line caption)
        (figure_probes(learn, names),
         f"Pretrained V-JEPA encoder beside a random-init encoder of the same shape, validation top-1 per task and "
         f"probe ({profile} profile; bars: mean over {seeds} seeds, error bars: seed-to-seed s.d., dots: seeds)."),
        (figure_masking(ablate, learn, reference, names),
         "Masking ablations, one row per table: ours (one seed per point; error bars: the seed spread of the full "
         "run on the same task) beside the paper's Tables 13-15, the values its Figure 5 plots (the appendix "
         "text gives the tables, not the figure's points)."),
        (figure_curves(pretrain) or _kept("pretraining_curves.png", "runs/pretrain/*/metrics.jsonl"),
         "Pretraining curves per seed: L1 loss, the collapse monitor (std across clips of the pooled target "
         "features) and the learning rate against the iteration."),
        (copy_masks_figure() or _kept("masks.png", "runs/masks/masks.png"),
         "Sampled 3D multi-block masks of the profile's two mask settings (first frame; dark: predicted, "
         "light: context)."),
    ]
    lines = []
    for n, (f, caption) in enumerate((x for x in figs if x[0]), 1):
        note = f" {KEPT[f]}" if f in KEPT else ""
        lines.append(f"![{Path(f).stem}]({f})\n\n*Figure {n}: {caption}*{note}")
    parts = [f"# V-JEPA reproduction report ({profile} profile)\n",
             "Generated by the `report` stage from the metrics files alone. Every number of ours is labelled "
             f"with the profile that produced it ({profile}); the paper's numbers are from its appendix and the "
             "official README.\n",
             section_learn(learn, profile, roles, names), section_frozen(probes, detect, profile),
             section_lin_att(probes, profile), section_coverage(probes, profile), section_samples(pretrain, profile),
             section_ablations(ablate, profile, reference), section_detect(detect, profile),
             section_finetune(finetune, probes, profile), section_hyperparameters(P, profile),
             "## Figures\n\n" + "\n\n".join(lines) + "\n"]
    path = REPORTS / "README.md"
    path.write_text("\n".join(p for p in parts if p))
    return path
