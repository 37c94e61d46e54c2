"""reports/<profile>/: the appendix's tables with the paper's numbers beside ours, and figures,
rebuilt from that profile's metrics files (metrics/<profile>/**.json and the pretraining curves)
and, for Tables 5-8's settings, the typed params, so no training re-runs."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np

from pipeline import paper
from pipeline.config import Params
from pipeline.plumbing import DETAILS
from pipeline.tracking import ablation_reference
from vjepa.infra.configs import PROBE_KINDS
from vjepa.infra.runtime import write_json, write_text
from vjepa.evals.stats import PairedComparison, paired_bootstrap, paired_outcomes

RUNS = Path("runs")
# set by build_report to the profile's folders: metrics/<profile>, reports/<profile>
METRICS = Path("metrics") / "default"
REPORTS = Path("reports") / "default"
FIG = REPORTS / "figures"


def _load(pattern: str) -> dict[str, dict]:
    """The stages' full results (metrics/<profile>/details/<pattern>): the metrics files beside them
    hold only the headline numbers."""
    return {p.stem: json.loads(p.read_text()) for p in sorted((METRICS / DETAILS).glob(pattern))}


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


def kinds_of(*by_kind: dict) -> tuple[str, ...]:
    """The probe kinds with a result in any of these {kind: top-1} mappings, in PROBE_KINDS' order
    (attentive, attentive4, linear): a profile's report shows the kinds it trained."""
    return tuple(k for k in PROBE_KINDS if any(k in d for d in by_kind if d))


TASK_TITLES = {"k400": "K400", "ssv2": "SSv2", "in1k": "IN1K", "places205": "Places205", "inat21": "iNat21"}


def _sd(xs: list[float]) -> float | None:
    """Sample standard deviation (n - 1) over seeds; None under two values."""
    xs = [x for x in xs if x is not None]
    return float(np.std(xs, ddof=1)) if len(xs) > 1 else None


def _mean_spread(xs: list[float]) -> str:
    xs = [x for x in xs if x is not None]
    if not xs:
        return "–"
    return f"{np.mean(xs):.1f} ± {_sd(xs):.1f}" if len(xs) > 1 else f"{xs[0]:.1f}"


def stand_ins(params: Params) -> dict[str, str]:
    """What each task is on this profile: the small suite's stand-in where `prepare` builds the data
    (default and smoke profiles), nothing where the tasks read the real datasets."""
    if params.prepare is None:
        return {}
    motion = params.prepare.ssv2_label
    return {
        "k400": "K400 stand-in: digit class, moving digits",
        "ssv2": f"SSv2 stand-in: motion {motion}",
        "in1k": "IN1K stand-in: digit class, still digits",
        "places205": "Places205 stand-in: footage scene",
        "inat21": "iNat21 stand-in: digit x ink colour",
        "ava": "AVA stand-in: moving-digit actions",
    }


def _task_name(task: str, names: dict) -> str:
    return names.get(task, task)


def _unavailable(files: list[str], stage: str) -> str:
    return (
        f"Paired verdicts unavailable: {', '.join(files)} hold{'s' if len(files) == 1 else ''} no per-clip "
        f"outcomes (the `{stage}` stage writes them from this version on); `dvc repro {stage}` re-runs it."
    )


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ----------------------------------------------------------------------------------------------
# sections


def section_frozen(
    probes: dict, detect: dict | None, profile: str, names: dict | None = None, segments: dict | None = None
) -> str:
    """Our frozen attentive probes beside the released models', one row per task, each row naming
    the data our number is measured on (a stand-in where the profile builds one)."""
    names, segments = names or {}, segments or {}
    tasks = ["k400", "ssv2", "in1k", "places205", "inat21"]
    rows = []
    for t in tasks:
        m = probes.get(t, {})
        who = "released probe, evaluated here" if m.get("released_probe") else "ours"
        rows.append(
            [
                TASK_TITLES[t],
                f"{who}: {_task_name(t, names)}",
                segments.get(t, "–"),
                m.get("top1"),
                *[vals[t] for vals in paper.FROZEN.values()],
            ]
        )
    if detect and detect.get("mAP") is not None:
        rows.append(
            [
                "AVA (mAP@0.5 x 100)",
                f"ours: {_task_name('ava', names)}",
                "–",
                detect["mAP"] * 100,
                *["–" for _ in paper.FROZEN],
            ]
        )
    seeds = sorted({m.get("seed") for m in probes.values() if m.get("seed") is not None})
    probe = "attentive, the best of the lr x weight-decay grid"
    return (
        "## Frozen evaluation (attentive probe, top-1 %)\n\n"
        f"*{setup_line('per task, in the clips column', len(seeds) or 1, probe)}"
        f" Ours: {profile} profile, seed {', '.join(map(str, seeds)) or '–'}. Paper: the official README's results of "
        "the released models on the real datasets (K400 16x8x3, SSv2 16x2x3).*\n\n"
        + _table(
            ["task", "ours measured on", "clips per video", "ours", *[f"paper V-JEPA {n}" for n in paper.FROZEN]], rows
        )
        + "\n"
    )


def section_lin_att(probes: dict, profile: str, names: dict | None = None, segments: dict | None = None) -> str:
    names, segments = names or {}, segments or {}
    # linear first, then the attentive kinds this profile trained (V-JEPA 2's 4-block probe beside them)
    kinds = ("linear", *[k for k in kinds_of(*(m["top1_by_kind"] for m in probes.values())) if k != "linear"])
    kinds = kinds if len(kinds) > 1 else ("linear", "attentive")
    rows = []
    for t in ["k400", "ssv2", "in1k", "places205", "inat21"]:
        if t in probes:
            k = probes[t]["top1_by_kind"]
            who = "released probe" if probes[t].get("released_probe") else "ours"
            rows.append(
                [
                    f"{_task_name(t, names)} ({who}, {profile}, {segments.get(t, '–')} "
                    f"clip{'' if segments.get(t) == 1 else 's'})",
                    *[k.get(kind) for kind in kinds],
                ]
            )
    paper_cols = {"linear": 0, "attentive": 1}  # the paper's tables: linear and attentive
    for table, values in (("Table 9", paper.TABLE9), ("Table 10", paper.TABLE10)):
        for name, vals in values.items():
            for t, pair in vals.items():
                rows.append(
                    [f"{t} (paper {table}, {name})", *[pair[paper_cols[k]] if k in paper_cols else None for k in kinds]]
                )
    return (
        "## Tables 9 and 10: linear vs attentive probes (top-1 %)\n\n"
        f"*{setup_line('per task, in each row', 1, 'linear and attentive, each the best of its grid')} The paper's "
        "rows: its models on the real datasets.*\n\n" + _table(["task", *kinds], rows) + "\n"
    )


def section_coverage(probes: dict, profile: str, names: dict | None = None) -> str:
    rows = []
    k = probes.get("k400")
    if k:
        cov = k["coverage"]
        one, eight = cov.get("segments1", {}), cov.get("segments8", {})
        for kind in kinds_of(one, eight):
            rows.append([f"ours ({profile}), {kind}", one.get(kind), eight.get(kind)])
    for name, (a, b) in paper.TABLE11.items():
        rows.append([f"paper, {name}", a, b])
    return (
        "## Table 11: temporal coverage on K400 (top-1 %)\n\n"
        f"*{setup_line('1 or 8 per video (the columns)', 1, 'attentive and linear (rows), each the best of its grid')}"
        f" Ours on {_task_name('k400', names or {})}: the same frozen encoder and probes, the long videos cut into "
        "1 or 8 segments.*\n\n" + _table(["model", "1 clip", "8 clips"], rows) + "\n"
    )


def section_samples(pretrain: dict, profile: str) -> str:
    rows = [
        [f"ours ({profile}), seed {m['seed']}", _samples(m["samples_seen"])]
        for m in pretrain.values()
        if "samples_seen" in m
    ]
    rows += [[name, f"{v}M"] for name, v in paper.TABLE12.items()]
    return "## Table 12: samples seen during pretraining\n\n" + _table(["model", "#samples seen"], rows) + "\n"


def learn_comparisons(learn: dict) -> tuple[dict[tuple[str, str], PairedComparison | str], list[str]]:
    """(task, probe kind) -> the paired comparison of the pretrained and the random-init encoder over
    every seed's validation clips, or why they do not pair; and the metrics files without per-clip
    outcomes (then no comparison at all)."""
    seeds = sorted(learn.values(), key=lambda m: m["seed"])
    missing = [f"{METRICS / DETAILS}/learn/seed{m['seed']}.json" for m in seeds if not m.get("clips")]
    out = {}
    if missing:
        return out, missing
    for t in seeds[0]["top1"]:
        for kind in kinds_of(*(m["top1"][t]["pretrained"] for m in seeds)):
            try:
                a, b = paired_outcomes(
                    [m["clips"][t]["pretrained"] for m in seeds], [m["clips"][t]["random"] for m in seeds], kind
                )
            except (KeyError, ValueError) as e:
                out[t, kind] = f"verdict unavailable: the per-clip outcomes do not pair ({e})"
                continue
            out[t, kind] = paired_bootstrap(a, b)
    return out, []


VERDICT_HEADER = ["probe", "margin (points)", "95% interval", "verdict", "clips only A / only B right, per seed"]


def _verdict_row(c: PairedComparison | str, kind: str) -> list:
    """One row of a verdict table: the margin A - B, its interval and verdict, the discordant clips."""
    if isinstance(c, str):
        return [kind, "–", "–", c, "–"]
    return [
        kind,
        f"{c.difference:+.1f}",
        f"[{c.low:+.1f}, {c.high:+.1f}]",
        c.verdict,
        ", ".join(f"{a}/{b}" for a, b in c.discordant),
    ]


def verdict_numbers(c: PairedComparison | str) -> dict:
    """A comparison as the verdict metrics file holds it: margin, interval and verdict."""
    if isinstance(c, str):
        return {"verdict": "unavailable"}
    return {"margin": round(c.difference, 4), "low": round(c.low, 4), "high": round(c.high, 4), "verdict": c.verdict}


def _n(count: int, noun: str) -> str:
    """'1 seed', '3 seeds'."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _samples(n: int) -> str:
    """A sample count in the unit that shows it: 2.3M, 41.5k, 16 (a shrunk test run is not 0.0000M)."""
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


def setup_line(clips: str | int, seeds: int, probe: str) -> str:
    """What a table was measured with: clips per video, seeds, probe."""
    clips = f"{clips} clip{'s' if str(clips) != '1' else ''} per video" if isinstance(clips, int) else clips
    return f"Clips: {clips}; seeds: {seeds}; probe: {probe}."


def section_learn(
    learn: dict,
    profile: str,
    roles: dict | None = None,
    names: dict | None = None,
    clips: int | str = "as each task's probe settings",
) -> str:
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
        for kind in kinds_of(*(m["top1"][t]["pretrained"] for m in seeds)):
            pre = [m["top1"][t]["pretrained"].get(kind) for m in seeds]
            rnd = [m["top1"][t]["random"].get(kind) for m in seeds]
            margin = [m["margin"][t].get(kind) for m in seeds]
            rows.append(
                [
                    name,
                    kind,
                    _mean_spread(pre),
                    _mean_spread(rnd),
                    _mean_spread(margin),
                    " / ".join(_fmt(x) for x in margin),
                ]
            )
            if (t, kind) in comparisons:
                verdicts.append([name, *_verdict_row(comparisons[t, kind], kind)])
    first = comparisons and next((c for c in comparisons.values() if not isinstance(c, str)), None)
    test = f"{first.test}; {first.clips} validation clips x {_n(first.seeds, 'seed')}" if first else ""
    table = (
        _table(
            ["task (A = pretrained, B = random init)", *VERDICT_HEADER], [v for v in verdicts if isinstance(v, list)]
        )
        if any(isinstance(v, list) for v in verdicts)
        else ""
    )
    verdict_text = "\n".join([v for v in verdicts if isinstance(v, str)] + ([table] if table else []))
    trained = " and ".join(kinds_of(*(m["top1"][t]["pretrained"] for m in seeds for t in m["top1"])))
    return (
        f"## Does it learn? V-JEPA against a random encoder of the same shape ({profile} profile, "
        f"{_n(len(seeds), 'seed')})\n\n"
        + f"*{setup_line(clips, len(seeds), f'{trained}, each the best of the lr x weight-decay grid')}*\n\n"
        + _table(["task", "probe", "pretrained", "random init", "margin", "margin per seed"], rows)
        + "\n\nMean ± sample standard deviation over seeds (seeds "
        + ", ".join(str(m["seed"]) for m in seeds)
        + "); each seed pretrains, initialises the random encoder "
        "and trains the probes with that seed; each kind's best probe of the lr x weight-decay grid is kept, "
        "for both encoders alike.\n\n"
        "Verdicts pair the two encoders clip by clip: pretrained minus random top-1, the mean over seeds, with a "
        "95% interval from a paired bootstrap that redraws the seeds and, for all seeds at once, the validation "
        'clips; "not distinguishable" where the interval covers zero. The seed-to-seed spread above is no test: '
        "three seeds can give three equal margins (a spread of zero) that rest on a handful of clips."
        + (f" Test: {test}." if test else "")
        + "\n\n"
        + verdict_text
        + "\n"
    )


def ablation_comparisons(
    ablate: dict, reference: str | None
) -> tuple[dict[tuple[str, str], PairedComparison | str], list[str]]:
    """(point, probe kind) -> the paired comparison of the point with the reference point on the same
    validation clips (one seed), or why they do not pair; and the metrics files without per-clip
    outcomes (then no comparison at all)."""
    if reference not in ablate:
        return {}, []
    missing = [f"{METRICS / DETAILS}/ablate/{n}.json" for n, m in sorted(ablate.items()) if "clips" not in m]
    out, ref = {}, ablate[reference]
    if missing:
        return out, missing
    for name, m in sorted(ablate.items()):
        if name == reference:
            continue
        for kind in kinds_of(m["top1_by_kind"], ref["top1_by_kind"]):
            try:
                a, b = paired_outcomes([m["clips"]], [ref["clips"]], kind)
            except (KeyError, ValueError) as e:
                out[name, kind] = f"verdict unavailable: the per-clip outcomes do not pair ({e})"
                continue
            out[name, kind] = paired_bootstrap(a, b)
    return out, []


PAPER_SETUP = "ViT-B/16 pretrained on K400, K400 linear probe, top-1 %"  # Tables 13-15


def paper_ablation_rows(table: str, width: int) -> list[list]:
    """The paper's rows of Table 13, 14 or 15 in our ablation table's columns (top-1 in %, the
    paper's linear probe; cells the paper does not report are '–')."""

    def row(label, masks, blocks, spatial, temporal, linear):
        return [f"paper: {label}", masks, blocks, spatial, temporal, "–", "–", "ema", None, 100 * linear, None][:width]

    if table == "13":
        return [
            row(f"{px} px x{n}, {frames} of 16 frames", 1, n, f"{s / 100:.2f}", f"{d / 100:.2f}", acc)
            for (d, s), (px, frames, n, acc) in paper.TABLE13.items()
        ]
    if table == "14":
        return [row(f"{px} px x{n}", 1, n, "~0.75", "1.00", acc) for px, (n, acc) in paper.TABLE14.items()]
    if table == "15":
        return [
            row(f"{k} mask(s) of 2 x 160 px", k, "/".join(["2"] * k), "–", "1.00", acc)
            for k, acc in paper.TABLE15.items()
        ]
    return []


def section_ablations(
    ablate: dict,
    profile: str,
    reference: str | None = None,
    names: dict | None = None,
    clips: int | str = 1,
    comparisons: dict | None = None,
) -> str:
    """Tables 13-15 and Appendix D: each point of ours, the paper's rows beside them, and the paired
    verdicts against the reference point as a table."""
    if not ablate:
        return ""
    names = names or {}
    task = next(iter(ablate.values()))["task"]
    kinds = kinds_of(*(m["top1_by_kind"] for m in ablate.values()))
    out = [
        "## Masking and target ablations (Tables 13-15, Appendix D)\n",
        f"*Ours: {profile} profile, task {_task_name(task, names)}; "
        + setup_line(clips, 1, f"{' and '.join(kinds)}, each the best of its grid")
        + " Each point is one "
        "pretraining run (the main seed) with the shorter schedule of `ablations.pretrain`; the point "
        f"`{reference}` is the profile's own masks and EMA target, which every other point is compared with. "
        f"Rows marked paper: {PAPER_SETUP} (the appendix's Tables 13-15), another model, dataset and "
        "schedule than ours: compare the trend across rows, not the values across setups.*\n",
    ]
    header = [
        "point",
        "masks",
        "blocks per mask",
        "avg spatial ratio",
        "avg temporal ratio",
        "context tokens",
        "target tokens",
        "target",
        *kinds,
        "target std (end)",
    ]
    for table in ("13", "14", "15", "D", "V2"):
        points = [m for m in ablate.values() if table in [str(x) for x in m["tables"]]]
        if not points:
            continue
        rows = []
        for m in sorted(points, key=lambda m: (m["point"] != reference, m["point"])):
            st = m["mask_statistics"]
            label = m["label"] or m["point"]
            rows.append(
                [
                    f"ours: {label}",
                    m["num_masks"],
                    "/".join(str(x["num_blocks"]) for x in m["masks"]),
                    " / ".join(f"{s['spatial_masking_ratio']:.2f}" for s in st),
                    " / ".join(f"{s['temporal_masking_ratio']:.2f}" for s in st),
                    " / ".join(f"{s['context_tokens_mean']:.0f}" for s in st),
                    " / ".join(f"{s['target_tokens_mean']:.0f}" for s in st),
                    m["target"],
                    *[m["top1_by_kind"].get(k) for k in kinds],
                    _fmt(m.get("final_target_std"), 3),
                ]
            )
        rows += paper_ablation_rows(table, len(header))
        title = {
            "13": "Table 13: masking ratio",
            "14": "Table 14: block size at a fixed ratio",
            "15": "Table 15: masks per sample",
            "D": "Appendix D: EMA target vs a copy of the context encoder",
            "V2": "V-JEPA 2's model switches on V-JEPA 1's recipe (no paper row: V-JEPA 2 reports no such ablation)",
        }[table]
        out.append(
            f"### {title} (top-1 %: ours on {_task_name(task, names)}; paper on K400)\n\n" + _table(header, rows) + "\n"
        )
    if comparisons is None:
        comparisons, missing = ablation_comparisons(ablate, reference)
    else:
        missing = []
    if comparisons or missing:
        lines = [_unavailable(missing, "ablate")] if missing else []
        rows = [[ablate[n]["label"] or n, *_verdict_row(c, kind)] for (n, kind), c in comparisons.items()]
        first = next((c for c in comparisons.values() if not isinstance(c, str)), None)
        out.append(
            f"### Paired verdicts against the reference point `{reference}` (the profile's own settings)\n\n"
            f"A = the point, B = `{reference}`, clip by clip on the same validation clips. "
            + (f"Test: {first.test}; {first.clips} clips x 1 seed. " if first else "")
            + "One seed per point: the interval covers which clips were drawn, not seed-to-seed variation.\n\n"
            + "\n".join(lines + ([_table([f"point (A) vs `{reference}` (B)", *VERDICT_HEADER], rows)] if rows else []))
            + "\n"
        )
    return "\n".join(out)


def section_detect(detect: dict | None, profile: str, names: dict | None = None) -> str:
    if not detect:
        return ""
    names = names or {}
    rows = [
        [name, ap * 100 if ap is not None else None, detect["num_gt"].get(name)]
        for name, ap in detect["per_class"].items()
    ]
    return (
        f"## Frozen detection (AVA format, {profile} profile: "
        f"{_task_name('ava', names)})\n\n"
        f"*{setup_line('one per keyframe', 1, 'RoIAlign + linear head on the frozen encoder')}*\n\n"
        f"mAP@0.5 {_fmt(detect['mAP'] * 100)} (all detections, "
        f"input-order matching as the SlowFast/ActivityNet API); {_fmt(detect['mAP_official_cli'] * 100)} with the "
        "official command line's top-50 per keyframe. Features: layers "
        f"{detect.get('out_layers')} concatenated along channels.\n\n"
        + _table(["class", "AP", "GT boxes"], rows)
        + "\n"
    )


def section_finetune(
    finetune: dict, probes: dict, profile: str, names: dict | None = None, segments: dict | None = None
) -> str:
    if not finetune:
        return ""
    names, segments = names or {}, segments or {}
    rows = []
    for t, m in sorted(finetune.items()):
        rows.append(
            [
                _task_name(t, names),
                f"{m.get('segments', '–')} x {m.get('crops', '–')}",
                m.get("top1"),
                m.get("top5"),
                segments.get(t, "–"),
                probes.get(t, {}).get("top1"),
            ]
        )
    clips = "per task, in the clips columns (finetuned: segments x crops)"
    probe = "none for the finetuned model (end to end); attentive for the frozen column"
    return (
        f"## Finetuning (Table 8 recipe, {profile} profile, multi-view test)\n\n"
        f"*{setup_line(clips, 1, probe)}*\n\n"
        + _table(
            [
                "task",
                "finetuned: clips x crops",
                "finetuned top-1",
                "finetuned top-5",
                "frozen: clips",
                "frozen attentive probe top-1",
            ],
            rows,
        )
        + "\n"
    )


def switched_off(ours8: dict) -> list[str]:
    """Table 8's augmentations and regularisers the paper uses that these settings turn off, each
    with the setting that turns it off (mixup 0.8 reads as on unless mixup_prob says otherwise)."""
    off = []
    if not ours8["mixup_prob"]:
        off.append(
            f"mixup and cutmix (mixup_prob {ours8['mixup_prob']}: the mixup {ours8['mixup']} and cutmix "
            f"{ours8['cutmix']} above are never applied)"
        )
    for key, what in (
        ("auto_augment", "RandAugment"),
        ("color_jitter", "colour jitter"),
        ("reprob", "random erasing"),
        ("drop_path", "stochastic depth"),
        ("head_drop_rate", "head dropout"),
    ):
        if not ours8[key] and paper.TABLE8[key]:
            off.append(f"{what} ({key} {ours8[key]})")
    return off


def section_hyperparameters(params: Params, profile: str) -> str:
    """Tables 5-8: the paper's settings (ViT-L/16, K400 columns) beside the active profile's, resolved
    through the same typed configs the stages build (so defaults the profile leaves out show too)."""
    pre = params.pretrain_config(params.main_seed)
    data = params.pretrain.data
    o, m = pre.optim, pre.model
    ours5 = {
        "resolution": m.img_size,
        "num_frames": m.num_frames,
        "temporal_stride": data.frame_step if data.fps is None else f"{data.fps:g} fps",
        "random_resize_scale": f"({data.scale[0]}, {data.scale[1]})",
        "batch_size": pre.batch_size * pre.accumulation_steps,
        "iterations": o.iterations,
        "warmup_fraction": round(o.warmup / o.iterations, 3),
        "lr": o.lr,
        "start_lr": o.start_lr,
        "final_lr": o.final_lr,
        "momentum": f"{o.start_momentum} -> {o.final_momentum}",
        "weight_decay": f"{o.start_weight_decay} -> {o.final_weight_decay}",
        "scheduler_scale_factor": o.scheduler_scale_factor,
        "patch_size": m.patch_size,
        "tubelet_size": m.tubelet_size,
        "pred_depth": m.pred_depth,
        "pred_embed_dim": m.pred_embed_dim,
        "dtype": {"bf16": "bfloat16", "fp32": "float32"}.get(pre.precision, pre.precision),
    }
    out = [
        f"## Hyper-parameters: the paper's (ViT-L/16 224) and ours ({profile} profile)",
        f"Encoder: paper ViT-L/16 (width 1024, depth 24); ours width {m.embed_dim}, depth {m.depth}, "
        f"{m.num_heads} heads. Masks: "
        + "; ".join(f"{x.num_blocks} blocks at scale {x.spatial_scale[0]}" for x in pre.masks)
        + ".",
        "### Table 5: pretraining\n\n"
        + _table(["hyper-parameter", "paper", "ours"], [[k, str(v), str(ours5[k])] for k, v in paper.TABLE5.items()]),
    ]
    tasks = params.probe.tasks
    probe = params.probe_defaults()
    k400, ssv2 = tasks.get("k400"), tasks.get("ssv2")
    ours6 = {
        "num_clips (K400 / SSv2)": f"{k400.segments[0] if k400 else '–'} / {ssv2.segments[0] if ssv2 else '–'}",
        "num_frames": k400.num_frames if k400 else "–",
        "temporal_stride": k400.frame_step if k400 else "–",
        "horizontal_flip": (k400.hflip and k400.augment) if k400 else "–",
        "random_resize_scale": f"({k400.scale[0]}, {k400.scale[1]})"
        if k400 and k400.augment
        else "none (cached features)",
        "batch_size": probe.batch_size,
        "epochs": probe.epochs,
        "lr": "/".join(str(x) for x in probe.lrs),
        "final_lr": probe.final_lr,
        "weight_decay": "/".join(str(x) for x in probe.weight_decays),
        "probe heads": probe.num_heads or "encoder's",
    }
    out.append(
        "### Table 6: frozen evaluation\n\n"
        + _table(["hyper-parameter", "paper", "ours"], [[k, str(v), str(ours6[k])] for k, v in paper.TABLE6.items()])
    )
    det = params.detect_config([1], params.main_seed)
    ours7 = {
        "out_layers": str(det.out_layers),
        "batch_size": det.batch_size,
        "epochs": det.epochs,
        "lr": det.lr,
        "weight_decay": det.weight_decay,
        "warmup_epochs": det.warmup_epochs,
        "warmup_lr": det.warmup_lr,
        "min_lr": det.min_lr,
    }
    out.append(
        "### Table 7: frozen detection\n\n"
        + _table(["hyper-parameter", "paper", "ours"], [[k, str(v), str(ours7[k])] for k, v in paper.TABLE7.items()])
    )
    ft_tasks = params.finetune.tasks
    if ft_tasks:
        name = "k400" if "k400" in ft_tasks else next(iter(ft_tasks))
        ft = params.finetune_config(name, 2)
        ours8 = {
            "num_frames": ft.num_frames,
            "sampling_rate": ft.frame_step,
            "resolution": ft.img_size or m.img_size,
            "drop_path": ft.drop_path,
            "head_drop_rate": ft.head_drop_rate,
            "batch_size": ft.batch_size,
            "epochs": ft.epochs,
            "lr": ft.lr,
            "layer_decay": ft.layer_decay,
            "weight_decay": ft.weight_decay,
            "warmup_epochs": ft.warmup_epochs,
            "num_sample": ft.num_sample,
            "auto_augment": ft.auto_augment,
            "color_jitter": ft.color_jitter,
            "reprob": ft.reprob,
            "mixup": ft.mixup,
            "cutmix": ft.cutmix,
            "mixup_prob": ft.mixup_prob,
            "smoothing": ft.smoothing,
            "test_num_segment": ft.test_num_segment,
            "test_num_crop": ft.test_num_crop,
        }
        off = switched_off(ours8)
        out.append(
            f"### Table 8: finetuning (ours: task {name}, head norm {ft.head_norm})\n\n"
            + _table(
                ["hyper-parameter", "paper", "ours"], [[k, str(v), str(ours8[k])] for k, v in paper.TABLE8.items()]
            )
            + (f"\n\nSwitched off in the {profile} profile, used by the paper: " + "; ".join(off) + "." if off else "")
        )
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
        (line,) = axes[1].plot(steps[k - 1 :], smooth, label=name, lw=1.2)
        axes[1].plot(steps, std, lw=0.5, alpha=0.25, color=line.get_color())
        axes[2].plot(steps, [r["lr"] for r in rows], label=name, lw=1)
    for ax, title, ylabel in zip(
        axes,
        ["L1 loss", "collapse monitor (20-step mean, raw faint)", "learning rate"],
        ["L1 loss (both masks)", "std across clips of the pooled target", "learning rate"],
    ):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("iteration", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
    axes[0].legend(fontsize=7)
    return _save(plt, fig, "pretraining_curves.png")


def figure_probes(learn: dict, names: dict) -> str | None:
    """The main finding: the pretrained encoder beside the random-init encoder of the same shape, per
    task and probe, the mean over seeds and each seed as a dot."""
    if not learn:
        return None
    plt = _plt()
    seeds = sorted(learn.values(), key=lambda m: m["seed"])
    tasks = list(seeds[0]["top1"])
    x, w = np.arange(len(tasks)), 0.36
    kinds = kinds_of(*(m["top1"][t]["pretrained"] for m in seeds for t in tasks))
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.2 * len(kinds), 3.6), sharey=True, squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        for j, (enc, colour) in enumerate((("pretrained", "tab:blue"), ("random", "tab:grey"))):
            vals = [[m["top1"][t][enc].get(kind) for m in seeds] for t in tasks]
            pos = x + (j - 0.5) * w
            ax.bar(
                pos,
                [np.mean(v) for v in vals],
                w,
                color=colour,  # no error bars: the verdicts test paired clips
                alpha=0.8,
                label=f"{enc} encoder" if enc == "pretrained" else "random-init encoder, same shape",
            )
            for i, (p_, v) in enumerate(zip(pos, vals)):
                ax.plot(np.full(len(v), p_), v, "k.", ms=4, label="one seed" if i == j == 0 else None)
        ax.set_xticks(x, [_task_name(t, names).replace(": ", ":\n") for t in tasks], fontsize=8)
        ax.set_xlabel("task", fontsize=8)
        ax.set_title(f"{kind} probe", fontsize=9)
    axes[0][0].set_ylabel("validation top-1 %", fontsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=8, frameon=False)
    return _save(plt, fig, "probes.png")


TABLE_TITLES = {
    "13": "Table 13: masking ratio",
    "14": "Table 14: block size at a fixed ratio",
    "15": "Table 15: masks per sample",
    "D": "Appendix D: EMA target vs a copy",
}


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
        ax.text(
            0.5,
            0.5,
            "Appendix D is an argument,\nwith no accuracy to plot",
            ha="center",
            va="center",
            fontsize=8,
            transform=ax.transAxes,
        )
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("(no data)", fontsize=8)
        ax.set_ylabel("(no data)", fontsize=8)
        return
    ax.set_ylabel("K400 linear top-1 %", fontsize=8)


def figure_masking(ablate: dict, reference: str | None, names: dict) -> str | None:
    """One row per ablation table: ours (top-1 of each point, both probes, no error bars: each point
    is one seed, and the paired interval against the reference is in the verdict table) beside the
    paper's."""
    tables = [t for t in TABLE_TITLES if any(t in [str(x) for x in m["tables"]] for m in ablate.values())]
    if not tables:
        return None
    task = next(iter(ablate.values()))["task"]
    plt = _plt()
    fig, axes = plt.subplots(
        len(tables), 2, figsize=(12, 2.9 * len(tables)), squeeze=False, gridspec_kw={"width_ratios": [1.25, 1]}
    )
    colours = {"attentive": "tab:blue", "attentive4": "tab:green", "linear": "tab:orange"}
    kinds = kinds_of(*(m["top1_by_kind"] for m in ablate.values()))
    for row, table in zip(axes, tables):
        points = sorted(
            (m for m in ablate.values() if table in [str(x) for x in m["tables"]]),
            key=lambda m: (m["point"] != reference, m["point"]),
        )  # the reference first
        y, h = np.arange(len(points)), 0.76 / len(kinds)
        for j, kind in enumerate(kinds):
            row[0].barh(
                y + (j - (len(kinds) - 1) / 2) * h,
                [m["top1_by_kind"].get(kind, np.nan) for m in points],
                h,
                color=colours[kind],
                alpha=0.85,
                label=f"{kind} probe",
            )
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
    note = (
        "no error bars: each point is one seed; the verdict table gives each point's paired margin "
        "against the reference and its interval"
    )
    fig.legend(
        handles,
        labels,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=2,
        fontsize=8,
        frameon=False,
        title=note,
        title_fontsize=8,
    )
    return _save(plt, fig, "masking_ablation.png")


def write_verdicts(ablations: dict, learn: dict, ablate: dict, reference: str | None) -> None:
    """reports/<profile>/verdicts/ (the report stage's DVC metrics: one file per ablation point and per
    learn task, margin, interval and verdict per probe kind, so `dvc metrics show` lists them beside
    the top-1) and reports/<profile>/ablations.csv (the ablation comparison `dvc plots` draws)."""
    out = REPORTS / "verdicts"
    if out.exists():
        shutil.rmtree(out)  # a point removed from the profile leaves no stale verdict behind
    by_file: dict[Path, dict] = {}
    for (point, kind), c in ablations.items():
        by_file.setdefault(out / "ablate" / f"{point}.json", {"against": reference})[kind] = verdict_numbers(c)
    for (task, kind), c in learn.items():
        by_file.setdefault(out / "learn" / f"{task}.json", {"against": "random init"})[kind] = verdict_numbers(c)
    for path, data in by_file.items():
        write_json(path, data)
    rows = ["point_probe,point,probe,top1,margin,low,high,verdict"]
    kinds = kinds_of(*(m["top1_by_kind"] for m in ablate.values()))
    for name, m in sorted(ablate.items(), key=lambda kv: (kv[0] != reference, kv[0])):
        for kind in kinds:
            c = ablations.get((name, kind))
            v = verdict_numbers(c) if c is not None else {"verdict": "reference"}
            rows.append(
                ",".join(
                    str(x)
                    for x in (
                        f"{name} ({kind})",
                        name,
                        kind,
                        m["top1_by_kind"].get(kind),
                        v.get("margin", ""),
                        v.get("low", ""),
                        v.get("high", ""),
                        v["verdict"],
                    )
                )
            )
    if ablate:
        write_text(REPORTS / "ablations.csv", "\n".join(rows) + "\n")


KEPT: dict[str, str] = {}  # figure -> why this build kept the earlier image


def _kept(name: str, source: str) -> str | None:
    """An image an earlier build wrote, kept where its input (a DVC output under runs/) is absent
    from this checkout, e.g. a fresh clone that rebuilds the report from the committed metrics."""
    if not (FIG / name).exists():
        return None
    KEPT[f"figures/{name}"] = (
        f"(Not rebuilt in this build: {source} is absent from this checkout (`dvc pull` "
        "or `dvc repro` brings it); the image is the one the last build with it wrote.)"
    )
    return f"figures/{name}"


def copy_masks_figure() -> str | None:
    src = RUNS / "masks" / "masks.png"
    if not src.exists():
        return None
    FIG.mkdir(parents=True, exist_ok=True)
    (FIG / "masks.png").write_bytes(src.read_bytes())
    return "figures/masks.png"


# ----------------------------------------------------------------------------------------------

COMPARISONS: dict = {}  # set by build_report: (point, probe kind) -> the ablation verdicts it reported


def build_report(params: Params) -> Path:
    """reports/<profile>/README.md and its figures from metrics/<profile>/ (the ablation verdicts it
    reports stay in COMPARISONS for the stage to log to MLflow)."""
    global METRICS, REPORTS, FIG
    profile = params.profile
    METRICS, REPORTS = Path("metrics") / profile, Path("reports") / profile
    FIG = REPORTS / "figures"
    KEPT.clear()
    probes = _load("probe/*.json")
    pretrain = _load("pretrain/*.json")
    learn = _load("learn/*.json")
    ablate = _load("ablate/*.json")
    finetune = _load("finetune/*.json")
    detect_path = METRICS / DETAILS / "detect.json"
    detect = json.loads(detect_path.read_text()) if detect_path.exists() else None
    REPORTS.mkdir(parents=True, exist_ok=True)
    FIG.mkdir(parents=True, exist_ok=True)
    roles = {params.learn.motion: "motion", params.learn.appearance: "appearance"}
    names = stand_ins(params)
    reference = ablation_reference(params)
    seeds = len(learn)
    segments = {t: task.segments[0] for t, task in params.probe.tasks.items()}
    comparisons, _ = ablation_comparisons(ablate, reference)
    COMPARISONS.clear()
    COMPARISONS.update(comparisons)
    write_verdicts(comparisons, learn_comparisons(learn)[0] if learn else {}, ablate, reference)
    figs = [  # (path or None, one-line caption)
        (
            figure_probes(learn, names),
            f"Pretrained V-JEPA encoder beside a random-init encoder of the same shape, validation top-1 per task and "
            f"probe ({profile} profile; bars: mean over {_n(seeds, 'seed')}, dots: seeds; "
            "no error bars: the verdict table's "
            "paired intervals are the test).",
        ),
        (
            figure_masking(ablate, reference, names),
            "Masking ablations, one row per table: ours (one seed per point, no error bars; the paired verdicts "
            "against the reference point are in the verdict table) beside the paper's Tables 13-15 (ViT-B/16 on "
            "K400, linear probe), the values its Figure 5 plots (the appendix text gives the tables, not the "
            "figure's points).",
        ),
        (
            figure_curves(pretrain) or _kept("pretraining_curves.png", "runs/pretrain/*/metrics.jsonl"),
            "Pretraining curves per seed: L1 loss, the collapse monitor (std across clips of the pooled target "
            "features) and the learning rate against the iteration.",
        ),
        (
            copy_masks_figure() or _kept("masks.png", "runs/masks/masks.png"),
            "Sampled 3D multi-block masks of the profile's two mask settings (first frame; dark: predicted, "
            "light: context).",
        ),
    ]
    lines = []
    for n, (f, caption) in enumerate((x for x in figs if x[0]), 1):
        note = f" {KEPT[f]}" if f in KEPT else ""
        lines.append(f"![{Path(f).stem}]({f})\n\n*Figure {n}: {caption}*{note}")
    parts = [
        f"# V-JEPA reproduction report ({profile} profile)\n",
        "Generated by the `report` stage from the metrics files alone. Every number of ours is labelled "
        f"with the profile that produced it ({profile}); the paper's numbers are from its appendix and the "
        "official README.\n",
        section_learn(learn, profile, roles, names, params.learn.segments),
        section_frozen(probes, detect, profile, names, segments),
        section_lin_att(probes, profile, names, segments),
        section_coverage(probes, profile, names),
        section_samples(pretrain, profile),
        section_ablations(
            ablate, profile, reference, names, segments.get(params.ablations.task, "–"), comparisons if ablate else None
        ),
        section_detect(detect, profile, names),
        section_finetune(finetune, probes, profile, names, segments),
        section_hyperparameters(params, profile),
        "## Figures\n\n" + "\n\n".join(lines) + "\n",
    ]
    path = REPORTS / "README.md"
    path.write_text("\n".join(p for p in parts if p))
    return path
