"""The small suite: byte-identical for a seed, loadable by the same readers as the real datasets,
train and val digits disjoint, labels that match the pixels (motion, AVA boxes, proposals), and the
moving-digit geometry (sub-tubelet speeds, reversal, wrap and bounce)."""

import hashlib

import numpy as np
import pandas as pd
import pytest

from vjepa.infra.config import ConfigError, from_dict
from vjepa.data import (
    AvaFrameFolder,
    ClipSampling,
    VideoDataset,
    collate,
    eval_transform,
    read_ava_csv,
    read_ava_exclusions,
    read_ava_labelmap,
    read_ava_proposals,
    read_image_folder,
    read_inat_json,
    read_kinetics_csv,
    read_path_label_list,
    read_ssv2,
)
from vjepa.data import moving_digits as md
from vjepa.data.small_suite import _Digits, _rng, build_small_suite
from vjepa.infra.configs import SmallSuiteConfig

TINY = dict(
    k400_train=4,
    k400_val=3,
    k400_frames=16,
    k400_visible_fraction=0.5,
    ssv2_train=6,
    ssv2_val=4,
    ssv2_frames=8,
    in1k_train=6,
    in1k_val=3,
    inat_train=6,
    inat_val=3,
    places_train=4,
    places_val=2,
    ava_train_videos=1,
    ava_val_videos=1,
    ava_keyframes=2,
    footage_size=32,
    footage_chunk_frames=48,
    noise=0.05,
    distractor_prob=0.5,
)


def _digest(root):
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """The tiny suite built twice into the same folder (the second build replaces the first)."""
    cfg = from_dict(SmallSuiteConfig, TINY, "data")
    root = tmp_path_factory.mktemp("suite") / "data"
    build_small_suite(cfg, root)
    first = _digest(root)
    summary = build_small_suite(cfg, root)
    return cfg, root, first, summary


def test_prepare_is_byte_identical_for_a_seed(suite):
    _, root, first, summary = suite
    second = _digest(root)
    assert first == second and len(first) > 100
    assert summary["bytes"] == sum((root / f).stat().st_size for f in second if f != "summary.json")
    assert sorted(p.name for p in root.parent.iterdir()) == ["data"]  # no half-built or old copies left
    # another seed draws other clips: the first motion clip for seeds 0 and 1
    clips = []
    for seed in (0, 1):
        cfg = SmallSuiteConfig(seed=seed)
        clips.append(_Digits(cfg).clip(_rng(cfg, "ssv2", "train", 0), "train", 8)[0])
    assert clips[0].shape == (8, 32, 32, 3) and not np.array_equal(*clips)


def test_the_real_readers_load_every_part(suite):
    cfg, root, _, summary = suite
    classes = summary["parts"]["k400"]["classes"]  # all 10, alphabetical (a tiny train split may miss some)
    assert classes == sorted(md.DIGIT_NAMES)
    for split, folder in (("train", "train"), ("validate", "val")):
        k400, _ = read_kinetics_csv(root / f"k400/annotations/{split}.csv", root / f"k400/videos/{folder}", classes)
        assert sorted(k400) == sorted(read_path_label_list(root / f"k400/{folder}.csv"))
        assert all(f"/{classes[label]}/" in path for path, label in k400)
    ssv2, ssv2_classes = read_ssv2(
        root / "ssv2/something-something-v2-validation.json",
        root / "ssv2/something-something-v2-labels.json",
        root / "ssv2/videos",
    )
    assert len(ssv2) == 4 and len(ssv2_classes) == 8 and all(p.endswith(".webm") for p, _ in ssv2)
    assert sorted(ssv2) == sorted(read_path_label_list(root / "ssv2/val.csv"))
    for task, n in (("digit", 10), ("direction", 8), ("speed", 3), ("reversal", 2), ("direction_speed", 24)):
        assert all(0 <= l < n for _, l in read_path_label_list(root / f"ssv2/motion/train_{task}.csv", num_classes=n))
    assert len(read_image_folder(root / "in1k/val")[0]) == 3
    assert read_image_folder(root / "places205/train")[1].keys() <= {"car_interior", "meadow", "street"}
    entries, cats = read_inat_json(root / "inat21/train.json")
    assert len(entries) == 6 and len(cats) == 30
    mix = {n: read_path_label_list(root / f"pretrain/{n}.csv") for n in summary["pretrain_lists"]}
    assert [len(v) for v in mix.values()] == [4, 6, summary["parts"]["howto100m"]["train"]]
    # every video of the pretraining mix decodes through the dataset, footage included
    ds = VideoDataset(
        [e for v in mix.values() for e in v], ClipSampling(num_frames=4, frame_step=2, random=False), eval_transform(32)
    )
    batch = collate([ds[i] for i in range(len(ds))])
    assert batch["skipped"] == [] and batch["video"].shape == (len(ds), 1, 1, 3, 4, 32, 32)


def test_train_and_val_use_disjoint_digits_and_motion_labels_match_the_metadata(suite):
    _, root, _, _ = suite
    meta = pd.read_csv(root / "ssv2/motion/labels.csv")
    train, val = set(meta[meta.split == "train"].digit_index), set(meta[meta.split == "val"].digit_index)
    assert train and val and not train & val
    tr, va = md.split_digits(md.load_digits()[1], 0.25, seed=0)
    assert not set(tr) & set(va) and len(tr) + len(va) == 1797 and abs(len(va) - 449) <= 5
    direction = read_path_label_list(root / "ssv2/motion/train_direction.csv")
    assert [l for _, l in direction] == meta[meta.split == "train"].direction.tolist()


def test_ava_set_boxes_cover_the_digits_and_proposals_find_them(suite):
    cfg, root, _, _ = suite
    ann = root / "ava/annotations"
    labels = read_ava_labelmap(ann / "ava_action_list_v2.2.pbtxt")
    assert len(labels) == 10 + cfg.directions + 1
    assert set(read_ava_labelmap(ann / "ava_action_list_v2.2_for_activitynet_2019.pbtxt")) <= set(labels)
    frames = AvaFrameFolder(root / "ava/frames")
    for split in ("train", "val"):
        gt = read_ava_csv(ann / f"ava_{split}_v2.2.csv", action_ids=labels)
        excluded = read_ava_exclusions(ann / f"ava_{split}_excluded_timestamps_v2.2.csv")
        props = read_ava_proposals(ann / f"ava_dense_proposals_{split}.FAIR.recall_93.9.pkl", 0.9)
        props_csv = read_ava_proposals(ann / f"ava_{split}_predicted_boxes.csv", 0.9)
        assert props.keys() == props_csv.keys() and len(props) == 2  # every keyframe has boxes >= 0.9
        assert not excluded & set(zip(gt.video_id, gt.timestamp))  # excluded keyframes carry no ground truth
        for (vid, sec, pid), rows in gt.groupby(["video_id", "timestamp", "person_id"]):
            acts = sorted(rows.action_id)
            assert 1 <= acts[0] <= 10 and 11 <= acts[1] <= 10 + cfg.directions  # a digit and a direction
            x1, y1, x2, y2 = rows.iloc[0][["x1", "y1", "x2", "y2"]].to_numpy(float)
            key = frames.load_clip(vid, sec, num_frames=2, frame_step=1)[1, ..., 0].astype(float)  # keyframe
            R = key.shape[0]
            inside = key[int(y1 * R) : int(np.ceil(y2 * R)), int(x1 * R) : int(np.ceil(x2 * R))]
            assert inside.max() > 150  # the digit's ink is inside its box
            ious = [_iou((x1, y1, x2, y2), p[:4]) for p in props[(vid, sec)]]
            assert max(ious) > 0.5


def _iou(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return w * h / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h)


def test_trajectories_speeds_reversal_and_boundaries():
    # 0.5 px/frame floored: one pixel every second frame, so a 2-frame tubelet sees no motion
    pos = md.trajectory(6, (0.0, 0.0), (0.0, 0.5), canvas=32, size=12)
    assert pos[:, 1].tolist() == [0, 0, 1, 1, 2, 2] and pos[:, 0].tolist() == [0] * 6
    pos = md.trajectory(8, (5.0, 5.0), (-2.0, 2.0), canvas=32, size=12, reverse_at=4)
    assert pos[:, 1].tolist() == [5, 7, 9, 11, 13, 11, 9, 7] and pos[:, 0].tolist() == [5, 3, 1, 31, 29, 31, 1, 3]
    bounce = md.trajectory(40, (0.0, 0.0), (1.0, 1.0), canvas=32, size=12, boundary="bounce")
    assert bounce.min() == 0 and bounce.max() == 20 and bounce[20, 0] == 20 and bounce[25, 0] == 15
    # heading: the sign of the motion, after a reversal and after bouncing off a border (span 20)
    assert md.heading(5, (0.0, 0.0), (1.0, 1.0), 32, 12, "bounce") == (1, 1)
    assert md.heading(25, (0.0, 0.0), (1.0, 1.0), 32, 12, "bounce") == (-1, -1) and bounce[26, 0] < bounce[25, 0]
    assert md.heading(12, (0.0, 0.0), (1.0, 0.0), 32, 12, "bounce", reverse_at=10) == (-1, 0)
    assert md.heading(12, (0.0, 0.0), (0.5, -1.0), 32, 12, "wrap", reverse_at=10) == (-1, 1)
    jit = md.trajectory(50, (10.0, 10.0), (0.0, 0.0), canvas=32, size=12, jitter=1, rng=np.random.default_rng(0))
    assert set(np.unique(jit)) == {9, 10, 11}


def test_prepare_refuses_to_replace_a_folder_it_did_not_build(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "README.md").write_text("keep me")
    with pytest.raises(FileExistsError, match="not built by prepare"):
        build_small_suite(SmallSuiteConfig(), tmp_path / "data")
    assert (tmp_path / "data" / "README.md").read_text() == "keep me"


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="data.speeds"):
        from_dict(SmallSuiteConfig, {"speeds": "fast"}, "data")
    with pytest.raises(ConfigError, match="boundary"):
        from_dict(SmallSuiteConfig, {"boundary": "reflect"}, "data")
    with pytest.raises(ConfigError, match="resolution 48 cannot be decoded"):
        from_dict(SmallSuiteConfig, {"resolution": 48, "image_size": 48, "ava_resolution": 48}, "data")
