"""Frozen AVA detection: channel-concatenated multi-layer features, RoIAlign box scaling, the head's
pooling, ground-truth grouping, the clip+boxes dataset's transforms, and an end-to-end run."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset

from vjepa.infra.config import from_dict
from vjepa.data.ava import AvaFrameFolder
from vjepa.data.datasets import TooManySkipped
from vjepa.data.detection import AvaBoxDataset, ava_gt_boxes, ava_proposal_boxes
from vjepa.infra.configs import AvaClipConfig
from vjepa.evals.detect import DetectionHead, collate_boxes, feature_map, run_detection
from vjepa.infra.configs import DetectConfig
from vjepa.evals.ava_eval import read_detections_csv
from vjepa.models import ModelConfig, build_encoder

TINY = ModelConfig(size="tiny", img_size=32, num_frames=4, patch_size=8, embed_dim=48, depth=2, num_heads=3)


def test_roi_align_maps_normalised_boxes_through_pixels_to_feature_coordinates():
    # a linear feature map f(h, w) = 10 h + w on a 4x4 grid (32 px input, patch 8): bilinear sampling
    # is exact, so each 7x7 bin averages to f at its centre
    grid = torch.arange(4.0)
    fmap = (10 * grid[:, None] + grid[None, :]).expand(1, 1, 2, 4, 4)  # [B, C, T', H', W']
    item = {
        "video": torch.zeros(3, 4, 32, 32),
        "boxes": torch.tensor([[0.25, 0.25, 0.75, 0.625]]),
        "labels": torch.zeros(1, 80),
        "video_id": "v",
        "sec": 902,
    }
    batch = collate_boxes([item])
    assert batch["rois"].tolist() == [[0.0, 8.0, 8.0, 24.0, 20.0]]  # batch index, input pixels
    head = DetectionHead(1, 80, patch_size=8)
    bins = head.roi_features(fmap, batch["rois"])[0, 0]  # [7, 7]
    # pixels -> feature units (x 1/8) -> aligned half-pixel shift (-0.5): x in [0.5, 2.5], y in [0.5, 2.0]
    xc = 0.5 + (torch.arange(7) + 0.5) * 2.0 / 7
    yc = 0.5 + (torch.arange(7) + 0.5) * 1.5 / 7
    torch.testing.assert_close(bins, 10 * yc[:, None] + xc[None, :])


def test_head_averages_time_then_max_pools_space():
    fmap = torch.zeros(1, 2, 3, 4, 4)
    fmap[0, 0] = torch.tensor([1.0, 2.0, 6.0])[:, None, None]  # channel 0 varies over time only
    fmap[0, 1, :, 1, 2] = 9.0  # channel 1: one hot cell, all frames
    head = DetectionHead(2, 3, patch_size=8, dropout=0.0).eval()
    with torch.no_grad():
        head.projection.weight.copy_(torch.eye(3, 2))
        head.projection.bias.zero_()
        out = head(fmap, torch.tensor([[0.0, 0.0, 0.0, 32.0, 32.0]]))
    assert out[0, 0].item() == pytest.approx(3.0)  # temporal mean of 1, 2, 6
    assert out[0, 1].item() > 4.0  # the spatial max keeps the hot cell (bilinear spread)


def test_feature_map_concatenates_layers_along_channels_on_the_token_grid():
    torch.manual_seed(0)
    enc = build_encoder(TINY).eval()
    x = torch.randn(2, 3, 4, 32, 40)
    with torch.no_grad():
        fmap = feature_map(enc, x, [1, 2])
        l1, l2 = enc(x, out_layers=[1, 2])
    assert fmap.shape == (2, 96, 2, 4, 5)
    t, h, w = 1, 3, 2
    n = t * 4 * 5 + h * 5 + w  # token order (t, h, w)
    assert torch.equal(fmap[1, :48, t, h, w], l1[1, n]) and torch.equal(fmap[1, 48:, t, h, w], l2[1, n])


def test_ground_truth_rows_of_one_person_become_one_multi_hot_box():
    gt = pd.DataFrame(
        [
            ("v", 902, 0.1, 0.1, 0.5, 0.9, 12, 0),
            ("v", 902, 0.1, 0.1, 0.5, 0.9, 80, 0),
            ("v", 902, 0.6, 0.2, 0.9, 0.9, 1, 1),
            ("v", 903, 0.1, 0.1, 0.5, 0.9, 12, 0),
        ],
        columns=["video_id", "timestamp", "x1", "y1", "x2", "y2", "action_id", "person_id"],
    )
    boxes = ava_gt_boxes(gt)
    b, lab = boxes[("v", 902)]
    np.testing.assert_allclose(b, [[0.1, 0.1, 0.5, 0.9], [0.6, 0.2, 0.9, 0.9]], rtol=1e-6)
    assert np.nonzero(lab[0])[0].tolist() == [11, 79] and np.nonzero(lab[1])[0].tolist() == [0]
    props = ava_proposal_boxes({("v", 903): np.array([[0.1, 0.2, 0.3, 0.4, 0.95]], np.float32)})
    np.testing.assert_allclose(props[("v", 903)][0], [[0.1, 0.2, 0.3, 0.4]], rtol=1e-6)
    assert props[("v", 903)][1].shape == (1, 80) and props[("v", 903)][1].sum() == 0


def write_frames(root, vid, n=100, h=24, w=32, box=(0.5, 0.25, 0.75, 0.75)):
    """An AVA frame folder (30 fps from second 900) with a white box on black frames."""
    (root / vid).mkdir(parents=True)
    img = np.zeros((h, w, 3), np.uint8)
    img[round(box[1] * h) : round(box[3] * h), round(box[0] * w) : round(box[2] * w)] = 255
    for k in range(1, n + 1):
        Image.fromarray(img).save(root / vid / f"{vid}_{k:06d}.jpg", quality=95)


def test_ava_dataset_moves_boxes_with_the_crop_and_flip_and_keeps_them_at_test(tmp_path):
    write_frames(tmp_path, "vid")
    box = np.array([[0.5, 0.25, 0.75, 0.75]], np.float32)
    boxes = {("vid", 902): (box, np.eye(80, dtype=np.float32)[[4]])}
    cfg = from_dict(
        AvaClipConfig, {"num_frames": 4, "frame_step": 2, "train_scale": [32, 40], "crop_size": 24, "test_size": 24}
    )
    train = AvaBoxDataset(AvaFrameFolder(tmp_path), boxes, cfg, train=True, seed=0)
    flips = 0
    for epoch in range(6):
        train.set_epoch(epoch)
        item = train[0]
        assert item["video"].shape == (3, 4, 24, 24)
        x1, y1, x2, y2 = (item["boxes"][0] * 24).round().int().tolist()
        inside = item["video"][0, :, y1 + 1 : y2 - 1, x1 + 1 : x2 - 1].mean()
        outside = item["video"][0, :, :, : max(x1 - 1, 0)].mean() if x1 > 2 else item["video"][0, :, :, x2 + 1 :].mean()
        assert inside > outside + 3.0  # white box vs black, in normalised units
        flips += int(x1 < 12)  # flipped boxes sit in the left half
    assert 0 < flips < 6
    test = AvaBoxDataset(AvaFrameFolder(tmp_path), boxes, cfg, train=False)[0]
    assert test["video"].shape == (3, 4, 24, 32) and torch.equal(test["boxes"], torch.as_tensor(box))


class Squares(Dataset):
    """Keyframes with 1-2 coloured squares: a red square does action 1, a green one actions 3 and 80."""

    def __init__(self, n, seed):
        g = np.random.default_rng(seed)
        self.items = []
        for i in range(n):
            video = torch.randn(3, 4, 32, 32) * 0.2
            boxes, labels = [], []
            for k in range(int(g.integers(1, 3))):
                x, y, green = 16 * k + int(g.integers(0, 2)) * 4, int(g.integers(0, 3)) * 8, bool(g.integers(0, 2))
                video[1 if green else 0, :, y : y + 12, x : x + 12] += 2.0
                boxes.append([x / 32, y / 32, (x + 12) / 32, (y + 12) / 32])
                labels.append(np.eye(80, dtype=np.float32)[[2, 79] if green else [0]].sum(0))
            self.items.append(
                {
                    "video": video,
                    "boxes": torch.tensor(boxes),
                    "labels": torch.tensor(np.stack(labels)),
                    "video_id": f"v{i % 3}",
                    "sec": 902 + i,
                }
            )

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]

    def groundtruth(self) -> pd.DataFrame:
        return pd.DataFrame(
            [
                (it["video_id"], it["sec"], *b.tolist(), int(c) + 1)
                for it in self.items
                for b, lab in zip(it["boxes"], it["labels"])
                for c in torch.nonzero(lab).flatten()
            ],
            columns=["video_id", "timestamp", "x1", "y1", "x2", "y2", "action_id"],
        )


def test_detection_trains_on_boxes_and_reports_map_and_the_official_csv(tmp_path):
    torch.manual_seed(0)
    enc = build_encoder(TINY).eval()
    train, val = Squares(48, seed=0), Squares(16, seed=1)
    gt = val.groundtruth()
    cfg = from_dict(
        DetectConfig,
        {
            "out_layers": [1, 2],
            "epochs": 6,
            "batch_size": 8,
            "lr": 3e-3,
            "warmup_epochs": 1,
            "eval_classes": [1, 3, 80],
            "precision": "fp32",
            "device": "cpu",
        },
    )
    m = run_detection(cfg, enc, train, val, gt, tmp_path, labelmap={1: "bend/bow", 3: "crouch/kneel", 80: "watch"})
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["mAP"] == m["mAP"] and "seconds" in m and "seconds" not in saved  # timings: metrics file only
    assert set(m["per_class"]) == {"bend/bow", "crouch/kneel", "watch"} and len(m["train_loss"]) == 6
    assert m["train_loss"][-1] < m["train_loss"][0]
    assert m["mAP"] >= 0.9  # colour is trivially separable
    n_boxes = sum(len(it["boxes"]) for it in val.items)
    det = read_detections_csv(tmp_path / "detections.csv")
    assert len(det) == m["num_detections"] == 3 * n_boxes and set(det.action_id) == {1, 3, 80}
    assert m["mAP_official_cli"] == pytest.approx(m["mAP"], abs=0.05)  # few rows per keyframe: no top-50 cut
    again = run_detection(cfg, enc, train, val, gt, tmp_path)  # resumes: nothing left to train
    assert again["train_loss"] == m["train_loss"] and again["mAP"] == m["mAP"]


class Unreadable(Squares):
    """Squares whose first `bad` keyframes cannot be read (as AvaBoxDataset returns them: None)."""

    def __init__(self, n, seed, bad):
        super().__init__(n, seed)
        self.bad = bad

    def __getitem__(self, i):
        return None if i < self.bad else self.items[i]


def test_detection_counts_unreadable_keyframes_and_stops_past_the_cap(tmp_path):
    enc = build_encoder(TINY).eval()
    val = Squares(8, seed=1)
    cfg = from_dict(
        DetectConfig,
        {
            "out_layers": [1],
            "epochs": 1,
            "batch_size": 8,
            "eval_classes": [1, 3, 80],
            "precision": "fp32",
            "device": "cpu",
            "max_skipped_fraction": 0.1,
        },
    )
    m = run_detection(cfg, enc, Unreadable(16, 0, bad=1), val, val.groundtruth(), tmp_path / "ok")
    assert m["skipped_train"] == 1  # 1 of 16 (6%) is under the 10% cap
    with pytest.raises(TooManySkipped, match="3 of 16 keyframes could not be read in training epoch 1"):
        run_detection(cfg, enc, Unreadable(16, 0, bad=3), val, val.groundtruth(), tmp_path / "stop")


def test_ava_datasets_builds_both_sets_from_an_ava_folder_without_the_excluded_keyframes(tiny_suite, tmp_path):
    from vjepa.data.ava import read_ava_csv, read_ava_exclusions, write_ava_csv
    from vjepa.data.detection import ava_datasets
    from vjepa.infra.configs import AvaFiles

    root, _ = tiny_suite
    ann = root / "ava/annotations"
    train_csv = tmp_path / "train.csv"  # the training and validation keyframes, so there are several to drop from
    write_ava_csv(
        pd.concat([read_ava_csv(ann / "ava_train_v2.2.csv"), read_ava_csv(ann / "ava_val_v2.2.csv")]), train_csv
    )
    gt = read_ava_csv(train_csv)
    keyframes = sorted(set(zip(gt["video_id"], gt["timestamp"])))
    assert len(keyframes) >= 2
    excluded = tmp_path / "excluded.csv"  # drop the first keyframe of the training set
    excluded.write_text(f"{keyframes[0][0]},{keyframes[0][1]:04d}\n")
    files = AvaFiles(
        frames=str(root / "ava/frames"),
        train_groundtruth=str(train_csv),
        val_groundtruth=str(ann / "ava_val_v2.2.csv"),
        labelmap=str(ann / "ava_action_list_v2.2_for_activitynet_2019.pbtxt"),
        val_proposals=str(ann / "ava_dense_proposals_val.FAIR.recall_93.9.pkl"),
        train_exclusions=str(excluded),
        val_exclusions=str(ann / "ava_val_excluded_timestamps_v2.2.csv"),
    )
    clip = from_dict(
        AvaClipConfig,
        {"num_frames": 4, "frame_step": 2, "train_scale": [32, 40], "crop_size": 32, "test_size": 32},
        "clip",
    )
    sets = ava_datasets(files, clip, num_classes=80, seed=0)
    assert sets.train.keys == keyframes[1:] and sets.train.train and not sets.val.train
    assert sets.val_exclusions == read_ava_exclusions(files.val_exclusions)
    assert len(sets.val_groundtruth) == len(read_ava_csv(files.val_groundtruth))
    item = sets.train[0]
    assert item["video"].shape[-3:] == (4, 32, 32) and item["labels"].shape[1] == 80
    assert sets.val[0]["labels"].sum() == 0  # proposals carry no labels


def test_detection_on_an_encoder_with_nan_weights_stops_naming_the_step_and_publishes_nothing(tmp_path):
    from vjepa.infra.runtime import NonFiniteLossError

    torch.manual_seed(0)
    enc = build_encoder(TINY).eval()
    with torch.no_grad():
        enc.blocks[0].norm1.weight.fill_(float("nan"))
    val = Squares(8, seed=1)
    cfg = from_dict(
        DetectConfig,
        {
            "out_layers": [1],
            "epochs": 1,
            "batch_size": 8,
            "eval_classes": [1, 3, 80],
            "precision": "fp32",
            "device": "cpu",
        },
    )
    with pytest.raises(NonFiniteLossError, match=r"non-finite features from the frozen encoder at step 1 \(epoch 1\)"):
        run_detection(cfg, enc, Squares(16, 0), val, val.groundtruth(), tmp_path)
    assert not (tmp_path / "metrics.json").exists()
