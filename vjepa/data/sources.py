"""Where a task's data lives and in which real format: one typed spec per split, read with the
format's own reader. The same spec serves a researcher's K400/SSv2/IN1K/Places205/iNat21 folders
and the small suite that `prepare` writes in those formats."""
from __future__ import annotations

from dataclasses import dataclass

from vjepa.config import FieldError, check_range
from vjepa.data.readers import (AnnotationError, read_image_folder, read_inat_json, read_kinetics_csv,
                                read_path_label_list, read_ssv2)

FORMATS = ("list", "kinetics", "ssv2", "image_folder", "inat")
IMAGE_FORMATS = ("image_folder", "inat")


@dataclass
class SplitSource:
    """One split. format: 'list' (space-separated `path label`), 'kinetics' (release CSV; clips at
    <root>/<label>/<ytid>_<t0>_<t1>.mp4), 'ssv2' (split JSON + labels JSON; <root>/<id><extension>),
    'image_folder' (path is the root of class folders), 'inat' (iNat21 JSON; images under root)."""

    format: str
    path: str
    root: str | None = None
    labels: str | None = None       # ssv2: something-something-v2-labels.json
    extension: str = ".webm"        # ssv2 video files

    def validate(self) -> None:
        if self.format not in FORMATS:
            raise FieldError("format", f"must be one of {FORMATS}, got {self.format!r}")
        if self.format == "ssv2" and not self.labels:
            raise ValueError("format 'ssv2' needs `labels` (the labels JSON)")

    @property
    def is_image(self) -> bool:
        return self.format in IMAGE_FORMATS


@dataclass
class TaskData:
    """A labelled task: a train and a val split in the same label space."""

    train: SplitSource
    val: SplitSource

    def validate(self) -> None:
        if self.train.is_image != self.val.is_image:
            raise ValueError("train and val must both be videos or both be images")


def read_split(src: SplitSource, classes: dict[str, int] | None = None) -> tuple[list[tuple[str, int]], dict[str, int]]:
    """Entries [(path, label)] and the class map of one split; `classes` (from the train split)
    fixes the label indices of a val split whose format derives them from names."""
    f = src.format
    if f == "list":
        entries = read_path_label_list(src.path)  # integer labels: classes are 0..max
        return entries, classes or {str(k): k for k in range(max(label for _, label in entries) + 1)}
    if f == "kinetics":
        return read_kinetics_csv(src.path, video_root=src.root, classes=classes)
    if f == "ssv2":
        return read_ssv2(src.path, src.labels, video_root=src.root, extension=src.extension)
    if f == "image_folder":
        entries, found = read_image_folder(src.path)
        return _onto_classes(entries, found, classes, src.path, "class folders", "training classes")
    entries, found = read_inat_json(src.path, image_root=src.root)
    return _onto_classes(entries, found, classes, src.path, "categories", "training categories", show=5)


def _onto_classes(entries, found: dict[str, int], classes: dict[str, int] | None, path, what: str, where: str,
                  show: int | None = None):
    """Relabel a split's entries (labels indexed by its own `found` names) with the training split's
    `classes`; a name the training split lacks is an error naming the file."""
    if classes is None or found == classes:
        return entries, found
    extra = sorted(set(found) - set(classes))
    if extra:
        raise AnnotationError(path, None, f"{what} {extra[:show]} are not in the {where}")
    inverse = {v: k for k, v in found.items()}
    return [(p, classes[inverse[label]]) for p, label in entries], classes


def read_task(task: TaskData) -> tuple[list, list, dict[str, int]]:
    """(train entries, val entries, class map) with indices shared by both splits."""
    train, classes = read_split(task.train)
    val, _ = read_split(task.val, classes)
    if task.train.format == "list":  # integer labels: the label space is 0..max over both splits
        classes = {str(k): k for k in range(max(y for _, y in train + val) + 1)}
    n = max(classes.values()) + 1 if classes else 0
    bad = [(p, y) for p, y in train + val if not 0 <= y < n]
    if bad:
        raise AnnotationError(task.val.path, None, f"label {bad[0][1]} of {bad[0][0]} outside 0..{n - 1}")
    return train, val, classes

