"""Datasets of a labelled task from its spec: the task's data in its real format (`TaskData`) and
how clips or still images are cut and augmented from it (`TaskViews`). Frozen probes, the
learned-vs-random comparison and the ablations' probe all build their sets here."""

from __future__ import annotations


from vjepa.data.datasets import ImageDataset, VideoDataset
from vjepa.data.sampling import ClipSampling
from vjepa.data.sources import read_task
from vjepa.infra.configs import TaskData
from vjepa.data.transforms import eval_transform, probe_train_transform
from vjepa.infra.configs import TaskViews


def clip_datasets(
    train_entries,
    val_entries,
    train_clip: ClipSampling,
    val_clip: ClipSampling,
    train_transform,
    val_transform,
    decode_threads: int = 1,
    seed: int | None = None,
) -> tuple[VideoDataset, VideoDataset]:
    """The (train, val) video sets of labelled entries, given how clips are sampled and transformed
    in each: the one assembly step the frozen evaluations (task_datasets) and finetuning share."""
    return (
        VideoDataset(train_entries, train_clip, train_transform, decode_threads, seed=seed),
        VideoDataset(val_entries, val_clip, val_transform, decode_threads, seed=seed),
    )


def task_datasets(
    data: TaskData, views: TaskViews, img_size: int, segments: int, seed: int, entries: tuple | None = None
):
    """(train set, val set, number of classes) of a task in its real format; `entries`: its
    (train, val, classes) already read (e.g. from prepare's index), else read here."""
    train, val, classes = entries if entries is not None else read_task(data)
    if views.augment:
        train_tf = probe_train_transform(
            img_size, views.scale, views.ratio, views.hflip, views.auto_augment, views.reprob
        )
    else:
        train_tf = eval_transform(img_size, 1)
    val_tf = eval_transform(img_size, views.eval_views)
    if data.train.is_image:
        return (
            ImageDataset(train, train_tf, views.still_frames, seed=seed),
            ImageDataset(val, val_tf, views.still_frames, seed=seed),
            len(classes),
        )

    def clips(random):
        return ClipSampling(
            num_frames=views.num_frames,
            frame_step=views.frame_step,
            num_segments=segments,
            random=random,
            allow_overlap=views.allow_overlap,
        )

    return (*clip_datasets(train, val, clips(views.augment), clips(False), train_tf, val_tf, seed=seed), len(classes))
