"""The typed parameter tree: `load()` reads params.yaml once into `Params`, checking every key at
every depth (unknown keys named by their full path with a did-you-mean) and every value's range,
and builds each config a stage will run (every seed, probe task, finetuning task and ablation
point) so a bad value fails at load, in seconds, with its key.

Sections that hold overrides of a `vjepa` config (`pretrain.train`, `probe.defaults`, a probe
task's `probe`, `finetune.defaults`, `detect.head`, an ablation point's `pretrain`) are typed as
`Partial` mappings of that config's fields; the methods of `Params` merge them into the config the
stage runs, in one place each (`check` and the stages call the same methods).

Adding a key: a field of a `vjepa` config is at once allowed in its override section; a key of
the orchestration layer is a field of the section's dataclass below (with a default, so older
params files stay valid), plus a `check_range` in its `validate()` when it has a range.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import yaml

from pipeline.plumbing import checkpoint_path
from vjepa.infra.config import ConfigError, FieldError, Partial, check_range, from_dict, join, to_dict
from vjepa.infra.configs import (
    BACKENDS,
    DEFAULT_BACKEND,
    AvaClipConfig,
    AvaFiles,
    DetectConfig,
    EncoderConfig,
    EvaluateOnly,
    FinetuneConfig,
    IndexConfig,
    MaskConfig,
    ModelConfig,
    PretrainConfig,
    ProbeConfig,
    SmallSuiteConfig,
    TaskData,
    TaskViews,
)

# Override sections: the fields a stage fills itself are excluded, so setting them is an error.
PretrainOverrides = Annotated[dict, Partial(PretrainConfig, exclude=("model", "masks", "seed", "clip_lengths"))]
PointOverrides = Annotated[dict, Partial(PretrainConfig, exclude=("seed", "clip_lengths"))]
ProbeOverrides = Annotated[dict, Partial(ProbeConfig, exclude=("num_classes", "num_segments", "still_frames", "seed"))]
FinetuneOverrides = Annotated[dict, Partial(FinetuneConfig, exclude=("model", "num_classes", "seed"))]
FinetuneTask = Annotated[
    dict, Partial(FinetuneConfig, exclude=("model", "num_classes", "seed"), extra=(("data", str),))
]
DetectHead = Annotated[dict, Partial(DetectConfig, exclude=("eval_classes", "seed"))]


class Replace(dict):
    """A mapping that replaces the base's mapping instead of merging into it (a profile's `!replace`)."""


def merge(base: dict, override: dict) -> dict:
    """`override` on top of `base`: mappings merge key by key; anything else (lists, masks) and a
    Replace mapping replace what the base holds. The one merge of the project (profiles, ablation
    points, per-task settings)."""
    out = copy.deepcopy(base)
    for k, v in override.items():
        nested = isinstance(v, dict) and not isinstance(v, Replace) and isinstance(out.get(k), dict)
        out[k] = merge(out[k], v) if nested else copy.deepcopy(v)
    return out


def _pretrain_config(raw: dict, where: str, data_where: str) -> PretrainConfig:
    """A PretrainConfig; an error in the clip lengths it took from the data names the data's
    `dataset_fpcs` (the key a user sets), not `clip_lengths`."""
    try:
        return from_dict(PretrainConfig, raw, where)
    except ConfigError as e:
        prefix = f"{join(where, 'clip_lengths')}: "
        if str(e).startswith(prefix):
            raise ConfigError(f"{data_where}.dataset_fpcs: {str(e)[len(prefix) :]}") from None
        raise


def data_over(base: dict, over: dict) -> dict:
    """Pretraining data `over` a base's: new `sources` drop the base's `weights` and `dataset_fpcs`
    (they were for its own lists: the new lists mix evenly, at `num_frames`), and a new `num_frames`
    drops its `dataset_fpcs`, unless `over` sets them too."""
    resets = {}
    if "sources" in over:
        resets = {"weights": None, "dataset_fpcs": None}
    elif "num_frames" in over:
        resets = {"dataset_fpcs": None}
    return merge(base, {**resets, **over})


def _check_frames(where: str, data: "PretrainData", model_key: str, model_frames: int) -> None:
    """The model's frames are the data's clip length (V-JEPA 2: the longest of dataset_fpcs)."""
    key = "num_frames" if data.dataset_fpcs is None else "dataset_fpcs"
    frames = max(data.frames_per_clip())
    if frames != model_frames:
        what = f"{frames} frames" if key == "num_frames" else f"at most {frames} frames"
        raise ConfigError(f"{where}.{key}: {what}, but {model_key} is {model_frames}")


# ----------------------------------------------------------------------------------------------
# sections


@dataclass
class PretrainData:
    """The pretraining mix: path-label lists (VideoMix2M = K710 + SSv2 + HowTo100M) and the clip recipe."""

    sources: list[str]
    weights: list[float] | None = None
    num_frames: int = 16
    frame_step: int = 4
    fps: float | None = None  # V-JEPA 2's sampling by frames per second: set, it replaces frame_step
    # (each video's step is ceil(its fps) // fps)
    dataset_fpcs: list[int] | None = None  # V-JEPA 2's frames per clip of each source; null: num_frames
    scale: tuple[float, float] = (0.3, 1.0)
    ratio: tuple[float, float] = (0.75, 1.33)
    hflip: bool = True
    decode_threads: int = 1
    cache_mb: int = 0  # keep decoded videos in memory (small datasets read many times)
    video_backend: str = DEFAULT_BACKEND  # "pyav" | "decord" (the official loader's); same frames, byte for byte
    finish_on_device: bool = False  # workers only decode and cut the box; the training process converts,
    # resizes, flips and normalises on its GPU (docs/videos-and-loader.md)

    def validate(self) -> None:
        if not self.sources:
            raise FieldError("sources", "needs at least one path-label list")
        if self.weights is not None and len(self.weights) != len(self.sources):
            raise FieldError("weights", f"{len(self.weights)} weights for {len(self.sources)} sources")
        check_range(self, "weights", "cache_mb", ge=0)
        check_range(self, "num_frames", "frame_step", "decode_threads", "dataset_fpcs", ge=1)
        check_range(self, "fps", gt=0)
        if self.dataset_fpcs is not None and len(self.dataset_fpcs) != len(self.sources):
            raise FieldError("dataset_fpcs", f"{len(self.dataset_fpcs)} frame counts for {len(self.sources)} sources")
        check_range(self, "scale", gt=0, le=1)
        check_range(self, "ratio", gt=0)
        if self.video_backend not in BACKENDS:
            raise FieldError("video_backend", f"must be one of {BACKENDS}, got {self.video_backend!r}")

    def frames_per_clip(self) -> list[int]:
        """The frames per clip of each source."""
        return list(self.dataset_fpcs) if self.dataset_fpcs is not None else [self.num_frames] * len(self.sources)

    @property
    def clip_lengths(self) -> list[int] | None:
        """The distinct frames per clip in source order (PretrainConfig.clip_lengths); None without dataset_fpcs."""
        return None if self.dataset_fpcs is None else list(dict.fromkeys(self.dataset_fpcs))


PretrainDataOverrides = Annotated[dict, Partial(PretrainData)]
ModelOverrides = Annotated[dict, Partial(ModelConfig)]


@dataclass
class PretrainSection:
    data: PretrainData
    train: PretrainOverrides = field(
        default_factory=dict
    )  # vjepa.train.pretrain.PretrainConfig minus model, masks, seed
    mlflow_every: int = 1  # steps between step metrics sent to MLflow

    def validate(self) -> None:
        check_range(self, "mlflow_every", ge=1)


@dataclass
class CooldownSection:
    """V-JEPA 2's second pretraining stage, `cooldown@<seed>`: it starts from the seed's pretraining
    checkpoint with its AdamW state (the step back at 1) and trains on longer and larger clips
    (`model`, `data` over `model` and `pretrain.data`; RoPE takes any grid) with `train` over
    `pretrain.train` (a linear decay: `optim.lr_schedule: linear_decay`). No seeds: no such stage."""

    seeds: list[int] = field(default_factory=list)  # none, or every seed of `seeds`
    evaluate: str = "pretrain"  # whose encoders the evaluations read: "pretrain", or "cooldown" when seeds are set
    model: ModelOverrides = field(default_factory=dict)
    data: PretrainDataOverrides = field(default_factory=dict)
    train: PretrainOverrides = field(default_factory=dict)

    def validate(self) -> None:
        if self.evaluate not in ("pretrain", "cooldown"):
            raise FieldError("evaluate", f"must be 'pretrain' or 'cooldown', got {self.evaluate!r}")
        if bool(self.seeds) != (self.evaluate == "cooldown"):
            raise FieldError(
                "evaluate",
                f"must be 'cooldown' when seeds are set and 'pretrain' when not (seeds {self.seeds}, "
                f"evaluate {self.evaluate!r}): the evaluations read the last stage's encoders",
            )


@dataclass
class ProbeTask(TaskViews):
    """How one task is probed: its data (a key of `tasks`), the clip counts to probe at, its views
    and transforms (vjepa.data.TaskViews), plus ProbeConfig overrides (`probe`) on top of the
    `probe.defaults` section."""

    data: str = ""  # required: a key of the `tasks` section
    segments: list[int] = field(default_factory=lambda: [1])  # first = headline; the rest: Table 11
    probe: ProbeOverrides = field(default_factory=dict)
    evaluate_only: EvaluateOnly | None = None  # {probe: <file>, encoder: <file>}: a released probe as it is

    def validate(self) -> None:
        if not self.data:
            raise FieldError("data", "required key is missing (a key of the `tasks` section)")
        if not self.segments:
            raise FieldError("segments", "needs at least one clip count")
        check_range(self, "segments", ge=1)
        super().validate()


@dataclass
class ProbeSection:
    tasks: dict[str, ProbeTask]
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    defaults: ProbeOverrides = field(default_factory=dict)  # vjepa.evals.probe.ProbeConfig minus num_classes


@dataclass
class DetectSection:
    data: AvaFiles
    clip: AvaClipConfig = field(default_factory=AvaClipConfig)
    head: DetectHead = field(default_factory=dict)  # vjepa.evals.detect.DetectConfig minus eval_classes, seed


@dataclass
class FinetuneSection:
    tasks: dict[str, FinetuneTask] = field(default_factory=dict)  # `data` (a key of `tasks`) + FinetuneConfig keys
    checkpoint: str | None = None  # null: the main seed's pretraining; or a released/official-layout file
    defaults: FinetuneOverrides = field(default_factory=dict)


@dataclass
class LearnSection:
    """Pretrained against randomly initialised encoders: the motion and the appearance task (keys of
    probe.tasks), the clips per video, and probe overrides."""

    motion: str
    appearance: str
    segments: int = 1
    probe: ProbeOverrides = field(default_factory=dict)

    def validate(self) -> None:
        check_range(self, "segments", ge=1)

    @property
    def tasks(self) -> list[str]:
        return [self.motion, self.appearance]


@dataclass
class AblationPoint:
    """A grid point: the tables it belongs to, a label, and what it changes in pretraining
    (e.g. `masks`, `target: copy`, `optim: {...}`)."""

    tables: list[str]
    label: str = ""
    pretrain: PointOverrides = field(default_factory=dict)
    data: PretrainDataOverrides = field(default_factory=dict)  # its own pretraining data, over ablations.data


@dataclass
class AblationsSection:
    task: str  # a key of probe.tasks
    points: dict[str, AblationPoint] = field(default_factory=dict)
    pretrain: PointOverrides = field(default_factory=dict)  # every point's shorter run, before its own changes
    data: PretrainDataOverrides = field(default_factory=dict)  # every point's data over pretrain.data (C.3: K400)
    probe: ProbeOverrides = field(default_factory=dict)


@dataclass
class SourceFile:
    """A release file outside the pipeline that stages read (an annotation file, a pretraining
    list, an AVA file): `dvc.yaml`'s `source@<key>` stage has it as an external dependency, so
    an edit shows in `dvc status` and re-runs the stages of its group (tasks: prepare and all it
    feeds; pretrain; ablate; detect)."""

    group: str
    path: str

    def validate(self) -> None:
        if self.group not in SOURCE_GROUPS:
            raise FieldError("group", f"must be one of {SOURCE_GROUPS}, got {self.group!r}")


SOURCE_GROUPS = ("tasks", "pretrain", "ablate", "detect")


# ----------------------------------------------------------------------------------------------
# the root


@dataclass
class Params:
    """params.yaml, typed. Top level: profile, seeds, prepare, tasks, model, masks, pretrain, probe,
    detect, finetune, learn, ablations."""

    profile: str
    seeds: list[int]
    tasks: dict[str, TaskData]
    model: ModelConfig
    masks: list[MaskConfig]
    pretrain: PretrainSection
    probe: ProbeSection
    detect: DetectSection
    finetune: FinetuneSection
    learn: LearnSection
    ablations: AblationsSection
    cooldown: CooldownSection = field(default_factory=CooldownSection)  # V-JEPA 2's second stage (none by default)
    prepare: SmallSuiteConfig | None = None  # the small suite; null: real data, prepare only indexes it
    index: IndexConfig = field(default_factory=IndexConfig)  # how prepare checks a real-data task it indexes
    sources: dict[str, SourceFile] | None = None  # generated by `profile` from the data paths (derived_sources)

    @property
    def main_seed(self) -> int:
        """The seed whose pretraining feeds the probes, detection and finetuning."""
        return self.seeds[0]

    # -- the merges: one function per config a stage runs ---------------------------------------

    def pretrain_config(self, seed: int, point: str | None = None) -> PretrainConfig:
        """`model`, `masks` and `pretrain.train` with this seed; with an ablation point, then
        `ablations.pretrain` and the point's `pretrain` on top (a point's masks also set the
        number of mask tokens, unless it sets model.num_mask_tokens itself or takes them per fpc group)."""
        raw, where = self._pretrain_base(self.pretrain.data), "pretrain.train"
        if point is not None:
            raw["clip_lengths"] = self.ablation_data(point).clip_lengths
            changes = merge(self.ablations.pretrain, self.ablations.points[point].pretrain)
            raw = merge(raw, changes)
            per_mask = raw["model"].get("mask_token_per", "mask") == "mask"
            if "masks" in changes and "num_mask_tokens" not in changes.get("model", {}) and per_mask:
                raw["model"]["num_mask_tokens"] = len(raw["masks"])
            where = f"ablations.points.{point}.pretrain"
        data_where = "pretrain.data" if point is None else f"ablations.points.{point}.data"
        return _pretrain_config({**raw, "seed": seed}, where, data_where)

    def _pretrain_base(self, data: PretrainData) -> dict:
        """`model`, `masks` and `pretrain.train` as one PretrainConfig mapping (without the seed), with
        the clip lengths of `data`."""
        base = {"model": to_dict(self.model), "masks": [to_dict(m) for m in self.masks], **self.pretrain.train}
        return {**base, "clip_lengths": data.clip_lengths}

    def cooldown_config(self, seed: int) -> PretrainConfig:
        """`pretrain_config(seed)` with `cooldown.model` and `cooldown.train` on top, started from the
        seed's pretraining checkpoint with its optimizer state."""
        raw = merge(self._pretrain_base(self.cooldown_data()), {"model": self.cooldown.model, **self.cooldown.train})
        init = {"checkpoint": str(checkpoint_path(seed, "pretrain")), "optimizer": True}
        return _pretrain_config({**raw, "seed": seed, "init": init}, "cooldown", "cooldown.data")

    def cooldown_data(self) -> PretrainData:
        """`pretrain.data` with `cooldown.data` on top (as `data_over`)."""
        return from_dict(PretrainData, data_over(to_dict(self.pretrain.data), self.cooldown.data), "cooldown.data")

    def encoder_checkpoint(self, seed: int) -> str:
        """The checkpoint the evaluations read for a seed: its pretraining's, or its cooldown's."""
        return str(checkpoint_path(seed, self.cooldown.evaluate))

    def ablation_data(self, point: str) -> PretrainData:
        """`pretrain.data`, then `ablations.data` and the point's `data` on top (as `data_over`)."""
        raw = to_dict(self.pretrain.data)
        for over in (self.ablations.data, self.ablations.points[point].data):
            raw = data_over(raw, over)
        return from_dict(PretrainData, raw, f"ablations.points.{point}.data")

    def probe_config(
        self, task: str, num_classes: int, segments: int, seed: int, extra: dict | None = None
    ) -> ProbeConfig:
        """`probe.defaults`, the task's `probe`, then `extra` (learn.probe, ablations.probe)."""
        spec = self.probe.tasks[task]
        raw = {
            **self.probe.defaults,
            **spec.probe,
            **(extra or {}),
            "num_classes": num_classes,
            "num_segments": segments,
            "still_frames": spec.still_frames,
            "seed": seed,
        }
        if not spec.augment:
            raw.setdefault("cache_features", True)
        return from_dict(ProbeConfig, raw, f"probe.tasks.{task}.probe")

    def probe_defaults(self) -> ProbeConfig:
        """`probe.defaults` alone (two classes), as the report's Table 6 shows it."""
        return from_dict(ProbeConfig, {**self.probe.defaults, "num_classes": 2}, "probe.defaults")

    def finetune_config(self, task: str, num_classes: int, seed: int = 0) -> FinetuneConfig:
        """`finetune.defaults`, then the task's entries, on the `model` section."""
        spec = {k: v for k, v in self.finetune.tasks[task].items() if k != "data"}
        raw = {**self.finetune.defaults, **spec, "model": to_dict(self.model), "num_classes": num_classes, "seed": seed}
        return from_dict(FinetuneConfig, raw, f"finetune.tasks.{task}")

    def detect_config(self, eval_classes: list[int], seed: int) -> DetectConfig:
        return from_dict(DetectConfig, {"eval_classes": eval_classes, "seed": seed, **self.detect.head}, "detect.head")

    def finetune_data(self, task: str) -> str:
        return self.finetune.tasks[task]["data"]

    def global_batches(self, gpus: int) -> dict[str, str]:
        """{stage: how its global batch is made} on `gpus` GPUs of one machine: every training stage
        runs one process per GPU (batch x processes x accumulation; probes and the detection head
        do not accumulate)."""

        def ddp(batch: int, accumulation: int) -> str:
            return f"{batch} x {gpus} GPU{'s' if gpus > 1 else ''} x {accumulation} = {batch * gpus * accumulation}"

        pre = self.pretrain_config(self.main_seed)
        out = {"pretrain": ddp(pre.batch_size, pre.accumulation_steps)}
        for task in self.finetune.tasks:
            ft = self.finetune_config(task, 2)
            out[f"finetune@{task}"] = ddp(ft.batch_size, ft.accumulation_steps)
        for task, spec in self.probe.tasks.items():
            if spec.evaluate_only is None:
                out[f"probe@{task}"] = ddp(self.probe_config(task, 2, 1, 0).batch_size, 1)
        for seed in self.cooldown.seeds:
            cool = self.cooldown_config(seed)
            out[f"cooldown@{seed}"] = ddp(cool.batch_size, cool.accumulation_steps)
        out["detect"] = ddp(self.detect_config([1], 0).batch_size, 1)
        for name in self.learn.tasks:
            out[f"learn ({name} probe)"] = ddp(self.probe_config(name, 2, 1, 0, self.learn.probe).batch_size, 1)
        task = self.ablations.task
        for point in self.ablations.points:
            cfg = self.pretrain_config(self.main_seed, point)
            out[f"ablate@{point}"] = ddp(cfg.batch_size, cfg.accumulation_steps)
        out[f"ablate ({task} probe)"] = ddp(self.probe_config(task, 2, 1, 0, self.ablations.probe).batch_size, 1)
        return out

    def derived_sources(self) -> dict[str, dict]:
        """The `sources` section these params imply: every release file a stage reads that is not
        an output of the pipeline (under data/prepared) or a folder (images, frames: too many to
        hash), keyed `<group>-<name>`."""
        found = {}
        for name, task in self.tasks.items():
            for split in ("train", "val"):
                src = getattr(task, split)
                if src.format != "image_folder":  # a folder of class folders: prepare's index stamps it
                    found[f"tasks-{name}-{split}"] = ("tasks", src.path)
                found[f"tasks-{name}-{split}-labels"] = ("tasks", src.labels)
        for i, path in enumerate(self.pretrain.data.sources):
            found[f"pretrain-{i}"] = ("pretrain", path)
        ablation_lists = dict.fromkeys(p for point in self.ablations.points for p in self.ablation_data(point).sources)
        for i, path in enumerate(ablation_lists):
            found[f"ablate-{i}"] = ("ablate", path)
        for key, path in vars(self.detect.data).items():
            if key != "frames":
                found[f"detect-{key}"] = ("detect", path)
        return {
            k: {"group": g, "path": p}
            for k, (g, p) in found.items()
            if p and not Path(p).as_posix().startswith("data/prepared/")
        }

    # -- checks across sections, and every config built once ---------------------------------------

    def validate(self) -> None:
        check_profile_name(self.profile)  # it becomes metrics/<profile>/ and reports/<profile>/
        if not self.seeds:
            raise FieldError("seeds", "needs at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise FieldError("seeds", f"must be distinct, got {self.seeds}")
        check_range(self, "seeds", ge=0)
        refs = [(f"probe.tasks.{n}.data", t.data, self.tasks, "tasks") for n, t in self.probe.tasks.items()]
        refs += [
            (f"finetune.tasks.{n}.data", t.get("data"), self.tasks, "tasks") for n, t in self.finetune.tasks.items()
        ]
        refs += [
            (f"learn.{k}", getattr(self.learn, k), self.probe.tasks, "probe.tasks") for k in ("motion", "appearance")
        ]
        refs += [("ablations.task", self.ablations.task, self.probe.tasks, "probe.tasks")]
        for key, value, allowed, name in refs:
            if value not in allowed:
                raise ConfigError(f"{key}: '{value}' is not a key of {name} ({', '.join(allowed)})")
        _check_frames("pretrain.data", self.pretrain.data, "model.num_frames", self.model.num_frames)
        self.probe_defaults()
        from_dict(
            FinetuneConfig,
            {**self.finetune.defaults, "model": to_dict(self.model), "num_classes": 2},
            "finetune.defaults",
        )
        self.pretrain_config(self.main_seed)
        if self.cooldown.seeds:
            if sorted(self.cooldown.seeds) != sorted(self.seeds):
                raise FieldError(
                    "cooldown.seeds", f"must be every seed of `seeds` ({self.seeds}), got {self.cooldown.seeds}"
                )
            cool, data = self.cooldown_config(self.main_seed), self.cooldown_data()
            _check_frames("cooldown.data", data, "the cooldown's model.num_frames", cool.model.num_frames)
            if cool.model.grid != self.model.grid and cool.model.pos_encoding != "rope3d":
                raise ConfigError(
                    "cooldown.model: a cooldown that changes frames or resolution needs model.pos_encoding "
                    "rope3d (a sin-cos table is tied to its grid)"
                )
        for point in self.ablations.points:
            frames, data = self.pretrain_config(self.main_seed, point).model.num_frames, self.ablation_data(point)
            _check_frames(f"ablations.points.{point}.data", data, "the point's model.num_frames", frames)
        for name, task in self.probe.tasks.items():
            for s in task.segments:
                self.probe_config(name, 2, s, 0)
            if task.evaluate_only is not None:
                try:
                    task.evaluate_only.protocol(name)
                except ConfigError as e:
                    raise ConfigError(f"probe.tasks.{name}.{e}") from None
        for name in self.learn.tasks:
            self.probe_config(name, 2, self.learn.segments, 0, self.learn.probe)
        self.probe_config(
            self.ablations.task, 2, self.probe.tasks[self.ablations.task].segments[0], 0, self.ablations.probe
        )
        for name in self.finetune.tasks:
            self.finetune_config(name, 2)
        derived = self.derived_sources()
        if self.sources is not None and {k: to_dict(v) for k, v in self.sources.items()} != derived:
            raise ConfigError(
                f"sources: out of date with the data paths above (DVC tracks these files through it); "
                f"run `python -m pipeline profile {self.profile}` again, or set it to {derived}"
            )
        depth = self.model.encoder_shape()[1]
        head = self.detect_config([1], 0)
        if max(head.out_layers) > depth:
            raise ConfigError(
                f"detect.head.out_layers: block {max(head.out_layers)} exceeds the encoder's depth {depth}"
            )


SECTIONS = (
    "profile",
    "seeds",
    "prepare",
    "index",
    "tasks",
    "model",
    "masks",
    "pretrain",
    "cooldown",
    "probe",
    "detect",
    "finetune",
    "learn",
    "ablations",
    "sources",
)


# A profile's name: a file name in profiles/ without its .yaml; no path separator, no leading dot (so no `..`).
PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def check_profile_name(name, where: str = "profile") -> str:
    """`name` if it can name a file of profiles/ (it becomes metrics/<name>/ and reports/<name>/, so
    no path may pass); else a ConfigError naming `where`. Whether the file exists is profile_file's check."""
    if not isinstance(name, str) or not PROFILE_NAME.fullmatch(name):
        raise ConfigError(
            f"{where}: no profile {name!r}: a profile is named by a file of profiles/ "
            "(letters, digits and _ . -, not starting with a dot; no path)"
        )
    return name


class DuplicateKeyError(yaml.YAMLError):
    """A key given twice in one YAML mapping."""


class ParamsLoader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses a key given twice in one mapping (plain PyYAML keeps the
    last value silently, while DVC refuses the file): the error names the key's path and both lines."""

    def construct_document(self, node):
        _check_unique_keys(self, node, "", set())
        return super().construct_document(node)


def _check_unique_keys(loader: yaml.SafeLoader, node: yaml.Node, where: str, seen: set[int]) -> None:
    if id(node) in seen:  # an alias of a node checked already
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        lines = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: the mapping's own keys may override it
                continue
            key = loader.construct_object(key_node, deep=True)
            path, line = join(where, str(key)), key_node.start_mark.line + 1
            try:
                first = lines.get(key)
            except TypeError:  # an unhashable key: the safe constructor's own error names it
                continue
            if first is not None:
                raise DuplicateKeyError(f"{path}: key given twice, at line {first} and line {line}")
            lines[key] = line
            _check_unique_keys(loader, value_node, path, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_unique_keys(loader, item, join(where, f"[{i}]"), seen)


def read_yaml(path: str | Path, loader: type[yaml.SafeLoader] = ParamsLoader) -> dict:
    """A YAML mapping read with `loader` (a duplicate key is an error), errors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"params file not found: {path.resolve()}")
    try:
        data = yaml.load(path.read_text(), Loader=loader) or {}
    except DuplicateKeyError as e:
        raise ConfigError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data


def from_mapping(data: dict, name: str = "params.yaml") -> Params:
    """Params from an already-read mapping; errors start with `name`."""
    try:
        return from_dict(Params, data, "")
    except ConfigError as e:
        raise ConfigError(f"{name}: {e}") from None


def load(path: str | Path = "params.yaml") -> Params:
    """Read and validate a params file (errors: `params.yaml: pretrain.train.optim.lr: ...`); its
    generated `sources` section must be there when the params name release files."""
    params = from_mapping(read_yaml(path), str(path))
    if params.sources is None and params.derived_sources():
        raise ConfigError(
            f"{path}: sources: missing (the release files DVC tracks); write the params file with "
            f"`python -m pipeline profile {params.profile}`"
        )
    return params
