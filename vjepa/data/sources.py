"""Where a task's data lives and in which real format: one typed spec per split, read with the
format's own reader. The same spec serves a researcher's K400/SSv2/IN1K/Places205/iNat21 folders
and the small suite that `prepare` writes in those formats."""

from __future__ import annotations


import numpy as np

from vjepa.data.readers import (
    AnnotationError,
    Entries,
    read_image_folder,
    read_inat_json,
    read_kinetics_csv,
    read_path_label_list,
    read_ssv2,
)
from vjepa.infra.configs import KINETICS_PATH_FORMAT
from vjepa.infra.configs import (
    SplitSource,
    TaskData,
)


def read_split(
    src: SplitSource, classes: dict[str, int] | None = None, check_files: bool = True, progress: bool = False
) -> tuple[Entries, dict[str, int]]:
    """Entries and the class map of one split; `classes` (from the train split) fixes the label
    indices of a val split whose format derives them from names. `check_files` (default on) stats
    every listed file; ImageFolder trees are listings, so their files always exist."""
    f = src.format
    kw = dict(check_files=check_files, progress=progress)
    if f == "list":
        entries = read_path_label_list(src.path, num_classes=src.num_classes, **kw)
        n = src.num_classes if src.num_classes is not None else int(entries.labels.max()) + 1
        return entries, classes or {str(k): k for k in range(n)}  # integer labels: classes 0..n-1
    if f == "kinetics":
        return read_kinetics_csv(
            src.path, video_root=src.root, classes=classes, path_format=src.path_format or KINETICS_PATH_FORMAT, **kw
        )
    if f == "ssv2":
        return read_ssv2(src.path, src.labels, video_root=src.root, extension=src.extension, **kw)
    if f == "image_folder":
        entries, found = read_image_folder(src.path)
        return _onto_classes(entries, found, classes, src.path, "class folders", "training classes")
    entries, found = read_inat_json(src.path, image_root=src.root, **kw)
    return _onto_classes(entries, found, classes, src.path, "categories", "training categories", show=5)


def _onto_classes(
    entries: Entries,
    found: dict[str, int],
    classes: dict[str, int] | None,
    path,
    what: str,
    where: str,
    show: int | None = None,
):
    """Relabel a split's entries (labels indexed by its own `found` names) with the training split's
    `classes`; a name the training split lacks is an error naming the file."""
    if classes is None or found == classes:
        return entries, found
    extra = sorted(set(found) - set(classes))
    if extra:
        raise AnnotationError(path, None, f"{what} {extra[:show]} are not in the {where}")
    table = np.empty(max(found.values()) + 1, dtype=np.int64)
    for name, k in found.items():
        table[k] = classes[name]
    return entries.map_labels(table), classes


def _check_list_labels(task: TaskData, train: Entries, val: Entries) -> None:
    """`list` format without `num_classes`: the label space is 0..max of the training labels, and
    a validation label that never occurs in training is an error naming its line (a probe would
    otherwise silently grow an output that no training sample teaches)."""
    seen = np.zeros(int(max(train.labels.max(), val.labels.max())) + 1, dtype=bool)
    seen[train.labels] = True
    unseen = np.flatnonzero(~seen[val.labels])
    if len(unseen):
        n = int(unseen[0])
        raise AnnotationError(
            task.val.path,
            n + 1,  # a list's entry n is its line n + 1
            f"label {int(val.labels[n])} never occurs in the training list {task.train.path}; "
            "set `num_classes` on both splits if the label space is larger than what training covers",
        )


def read_task(
    task: TaskData, check_files: bool = True, progress: bool = False
) -> tuple[Entries, Entries, dict[str, int]]:
    """(train entries, val entries, class map) with indices shared by both splits."""
    train, classes = read_split(task.train, check_files=check_files, progress=progress)
    val, _ = read_split(task.val, classes, check_files=check_files, progress=progress)
    if task.train.format == "list" and task.train.num_classes is None:
        _check_list_labels(task, train, val)
    n = max(classes.values()) + 1 if classes else 0
    for split, entries in (("train", train), ("val", val)):
        bad = np.flatnonzero((entries.labels < 0) | (entries.labels >= n))
        if len(bad):
            p, y = entries[int(bad[0])]
            raise AnnotationError(getattr(task, split).path, None, f"label {y} of {p} outside 0..{n - 1}")
    return train, val, classes
