"""Data: readers for the real annotation formats, decoding and clip sampling, transforms, datasets
and the small real-data suite that `prepare` builds.

Classification items are dicts {"video": FloatTensor [S, V, C, T, H, W], "label", "index", "path"}
(S temporal segments, V spatial views), or None when a file cannot be decoded; `collate` stacks
them and lists the skipped paths. Transforms and prepare import timm/PyAV lazily. Readers return
`Entries` (paths in one Arrow array, int32 labels); `vjepa.data.index` writes and loads the
per-task index that `prepare` builds for real-data profiles.
"""

from vjepa.data.readers import (
    AnnotationError,
    Entries,
    read_image_folder,
    read_inat_json,
    read_kinetics_csv,
    read_path_label_list,
    read_ssv2,
    read_ssv2_labels,
    write_path_label_list,
)
from vjepa.data.ava import AvaFrameFolder, read_ava_csv, read_ava_exclusions, read_ava_labelmap, read_ava_proposals
from vjepa.data.sampling import ClipSampling, clip_indices
from vjepa.data.video import VideoDecodeError, decode_clips, read_clips
from vjepa.data.datasets import (
    ImageDataset,
    MixtureDataset,
    SkipCounter,
    TooManySkipped,
    VideoDataset,
    collate,
    mixture_indices,
)
from vjepa.data.transforms import (
    ClipAutoAugment,
    ClipColorJitter,
    ClipRandAugment,
    ClipRandomErasing,
    EvalClipTransform,
    RepeatedAugment,
    TrainClipTransform,
    UnfinishedClips,
    eval_transform,
    finetune_train_transform,
    pretrain_transform,
    probe_train_transform,
)
from vjepa.data.sources import read_task
from vjepa.infra.configs import SplitSource, TaskData
from vjepa.data.tasks import clip_datasets, task_datasets
from vjepa.infra.configs import TaskViews

__all__ = [
    "AnnotationError",
    "Entries",
    "read_image_folder",
    "read_inat_json",
    "read_kinetics_csv",
    "read_path_label_list",
    "read_ssv2",
    "read_ssv2_labels",
    "write_path_label_list",
    "AvaFrameFolder",
    "read_ava_csv",
    "read_ava_exclusions",
    "read_ava_labelmap",
    "read_ava_proposals",
    "ClipSampling",
    "clip_indices",
    "VideoDecodeError",
    "decode_clips",
    "read_clips",
    "ImageDataset",
    "MixtureDataset",
    "SkipCounter",
    "TooManySkipped",
    "VideoDataset",
    "collate",
    "mixture_indices",
    "ClipAutoAugment",
    "ClipColorJitter",
    "ClipRandAugment",
    "ClipRandomErasing",
    "EvalClipTransform",
    "RepeatedAugment",
    "TrainClipTransform",
    "UnfinishedClips",
    "eval_transform",
    "finetune_train_transform",
    "pretrain_transform",
    "probe_train_transform",
    "SplitSource",
    "TaskData",
    "read_task",
    "TaskViews",
    "clip_datasets",
    "task_datasets",
]
