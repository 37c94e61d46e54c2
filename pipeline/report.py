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


def _mean_spread(xs: list[float]) -> str:
    xs = [x for x in xs if x is not None]
    if not xs:
        return "–"
    return f"{np.mean(xs):.1f} ± {np.std(xs):.1f}" if len(xs) > 1 else f"{xs[0]:.1f}"


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


def section_learn(learn: dict, profile: str, roles: dict | None = None) -> str:
    """Pretrained vs random-init encoder per task and probe over the seeds, with a verdict of each
    margin against its seed-to-seed spread. `roles` names a task's role (motion, appearance)."""
    if not learn:
        return ""
    roles = roles or {}
    seeds = sorted(learn.values(), key=lambda m: m["seed"])
    rows, verdicts = [], []
    for t in seeds[0]["top1"]:
        name = f"{t} ({roles[t]})" if t in roles else t
        for kind in ("attentive", "linear"):
            pre = [m["top1"][t]["pretrained"].get(kind) for m in seeds]
            rnd = [m["top1"][t]["random"].get(kind) for m in seeds]
            margin = [m["margin"][t].get(kind) for m in seeds]
            rows.append([name, kind, _mean_spread(pre), _mean_spread(rnd), _mean_spread(margin),
                         " / ".join(_fmt(x) for x in margin)])
            known = [x for x in margin if x is not None]
            if len(known) < 2:
                continue
            mean, spread = float(np.mean(known)), float(np.std(known))
            verdict = ("beats random initialisation by more than the seed-to-seed spread" if mean > spread
                       else "loses to random initialisation by more than the seed-to-seed spread" if -mean > spread
                       else "is within the seed-to-seed spread of random initialisation")
            verdicts.append(f"- {name}, {kind} probe: pretraining {verdict} ({mean:+.1f} ± {spread:.1f} points).")
    return (f"## Does it learn? V-JEPA against a random encoder of the same shape ({profile} profile, "
            f"{len(seeds)} seeds)\n\n"
            + _table(["task", "probe", "pretrained", "random init", "margin", "margin per seed"], rows)
            + "\n\nMean ± standard deviation over seeds (seeds "
            + ", ".join(str(m["seed"]) for m in seeds) + "); each seed pretrains, initialises the random encoder "
            "and trains the probes with that seed.\n\n" + "\n".join(verdicts) + "\n")


def section_ablations(ablate: dict, profile: str) -> str:
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
    out.append("Each point is one pretraining run (the main seed) with the shorter schedule of `ablations.pretrain`; "
               "read differences against the seed-to-seed spread of the probes in the section above.\n")
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
             "dtype": {"bf16": "bfloat16", "fp32": "float32"}.get(pre.dtype, pre.dtype)}
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
    """Write a figure to reports/figures/<name>; returns its path relative to reports/."""
    fig.tight_layout()
    FIG.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIG / name, dpi=100)
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
    for ax, title in zip(axes, ["L1 loss", "collapse monitor: target std across clips (20-step mean)", "learning rate"]):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("iteration", fontsize=8)
    axes[0].legend(fontsize=7)
    return _save(plt, fig, "pretraining_curves.png")


def figure_probes(probes: dict) -> str | None:
    if not probes:
        return None
    plt = _plt()
    tasks = sorted(probes)
    x = np.arange(len(tasks))
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for i, kind in enumerate(["linear", "attentive"]):
        ax.bar(x + (i - 0.5) * 0.38, [probes[t]["top1_by_kind"].get(kind, 0) for t in tasks], 0.38, label=kind)
    ax.set_xticks(x, tasks)
    ax.set_ylabel("top-1 %")
    ax.set_title("frozen probes of the pretrained encoder", fontsize=9)
    ax.legend(fontsize=8)
    return _save(plt, fig, "probes.png")


def figure_masking(ablate: dict) -> str | None:
    points = [m for m in ablate.values() if "13" in [str(t) for t in m["tables"]]]
    if not points:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    for kind, marker in (("attentive", "o"), ("linear", "s")):
        xs = [np.mean([s["spatial_masking_ratio"] for s in m["mask_statistics"]]) for m in points]
        ys = [m["top1_by_kind"].get(kind) for m in points]
        ax.scatter(xs, ys, marker=marker, label=kind)
        for m, x, y in zip(points, xs, ys):
            ax.annotate(m["label"] or m["point"], (x, y), fontsize=6)
    ax.set_xlabel("average spatial masking ratio")
    ax.set_ylabel(f"top-1 % ({points[0]['task']})")
    ax.set_title("masking ratio ablation (cf. Figure 5c)", fontsize=9)
    ax.legend(fontsize=8)
    return _save(plt, fig, "masking_ablation.png")


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
    figs = [f for f in (figure_curves(pretrain), copy_masks_figure(), figure_probes(probes), figure_masking(ablate)) if f]
    parts = [f"# V-JEPA reproduction report ({profile} profile)\n",
             "Generated by the `report` stage from the metrics files alone. Every number of ours is labelled "
             f"with the profile that produced it ({profile}); the paper's numbers are from its appendix and the "
             "official README.\n",
             section_learn(learn, profile, roles), section_frozen(probes, detect, profile), section_lin_att(probes, profile),
             section_coverage(probes, profile), section_samples(pretrain, profile), section_ablations(ablate, profile),
             section_detect(detect, profile), section_finetune(finetune, probes, profile),
             section_hyperparameters(P, profile),
             "## Figures\n\n" + "\n\n".join(f"![{Path(f).stem}]({f})" for f in figs) + "\n"]
    path = REPORTS / "README.md"
    path.write_text("\n".join(p for p in parts if p))
    return path
