"""What `prepare` reads before anything trains, so a wrong root or a missing file set fails in
seconds naming the file, not after pretraining: the files a list or split names (every one, or a
seeded random sample when stat-ing millions on a network file system would take minutes), the
pretraining lists, and an AVA folder (its CSVs, label map, exclusions, proposals and the frames
of every keyframe it lists)."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import pyarrow as pa

from vjepa.data.ava import AvaFrameFolder, read_ava_labelmap
from vjepa.data.detection import ava_datasets
from vjepa.infra.configs import AvaClipConfig, AvaFiles
from vjepa.data.readers import AnnotationError, check_files_exist, read_path_label_list


def check_sample(paths: Sequence[str] | pa.Array, where, sample: int, seed: int = 0) -> int:
    """Stat `sample` of the listed files, drawn at random with `seed` (all of them when there are
    fewer); any missing one is an AnnotationError naming `where`, the count and the first missing.
    Returns how many were checked."""
    items = paths.to_pylist() if isinstance(paths, pa.Array) else list(paths)
    if not items or sample <= 0:
        return 0
    if len(items) > sample:
        picked = np.random.default_rng(seed).choice(len(items), size=sample, replace=False)
        items = [items[i] for i in sorted(picked)]
    missing = [p for p in items if not os.path.isfile(p)]
    if missing:
        raise AnnotationError(
            where,
            None,
            f"{len(missing)} of {len(items)} sampled listed files not found, e.g. "
            f"{missing[:3]}; is the root (or the list's folder) right?",
        )
    return len(items)


def check_files(paths: Sequence[str] | pa.Array, where, every: bool, sample: int, progress: bool = False) -> int:
    """Every listed file (`every`) or a sample of them exists; returns how many were checked."""
    if every:
        check_files_exist(paths, where, progress=progress)
        return len(paths)
    return check_sample(paths, where, sample)


def check_pretraining_lists(sources: Sequence[str], every: bool, sample: int, progress: bool = False) -> dict:
    """Read each `path label` list of the pretraining mix and check the files it names."""
    out = {}
    for src in dict.fromkeys(sources):
        entries = read_path_label_list(src, check_files=False)
        checked = check_files(entries.paths, src, every, sample, progress)
        out[str(src)] = {"entries": len(entries), "files_checked": checked}
    return out


def check_ava(files: AvaFiles, clip: AvaClipConfig, num_classes: int = 80) -> dict:
    """Read every AVA file detection will read (ground truth, label map, exclusions, proposals)
    and find the frames of every keyframe they list (one folder listing per video)."""
    labelmap = read_ava_labelmap(files.labelmap)
    sets = ava_datasets(files, clip, num_classes)
    frames = AvaFrameFolder(files.frames)
    keys = [*sets.train.keys, *sets.val.keys, *zip(sets.val_groundtruth["video_id"], sets.val_groundtruth["timestamp"])]
    for video, sec in dict.fromkeys((str(v), int(s)) for v, s in keys):
        try:
            frames.clip_indices(video, sec, clip.num_frames, clip.frame_step)
        except IndexError as e:
            raise AnnotationError(files.frames, None, str(e)) from None
    return {
        "classes": len(labelmap),
        "train_keyframes": len(sets.train),
        "val_keyframes": len(sets.val),
        "videos": len({v for v, _ in keys}),
    }
