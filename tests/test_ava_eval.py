"""Frame-level AVA mAP@0.5 on hand-worked cases: perfect detections, a duplicate, a miss, a class
without ground truth, input-order matching, invalid boxes, exclusions, the top-50 cut, the CSV."""
import math

import numpy as np
import pandas as pd
import pytest

from vjepa.ava_eval import (average_precision, frame_map, official_top_k, read_detections_csv,
                            write_detections_csv)

A = (0.1, 0.1, 0.4, 0.5)
B = (0.5, 0.2, 0.9, 0.9)
A_SHIFTED = (0.12, 0.1, 0.42, 0.5)  # IoU with A = 0.28 / 0.32 = 0.875


def gt(*rows):
    return pd.DataFrame([(v, s, *box, c) for v, s, box, c in rows],
                        columns=["video_id", "timestamp", "x1", "y1", "x2", "y2", "action_id"])


def det(*rows):
    return pd.DataFrame([(v, s, *box, c, p) for v, s, box, c, p in rows],
                        columns=["video_id", "timestamp", "x1", "y1", "x2", "y2", "action_id", "score"])


def test_perfect_detections_give_ap_one():
    g = gt(("v", 902, A, 1), ("v", 902, B, 1), ("v", 903, A, 3))
    d = det(("v", 902, A_SHIFTED, 1, 0.9), ("v", 902, B, 1, 0.8), ("v", 903, A, 3, 0.7))
    out = frame_map(g, d, [1, 3])
    assert out["per_class"] == {1: 1.0, 3: 1.0} and out["mAP"] == 1.0 and out["num_gt"] == {1: 2, 3: 1}


def test_a_duplicate_is_a_false_positive():
    # sorted by score: TP (A), FP (A again), TP (B) -> precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1
    g = gt(("v", 902, A, 1), ("v", 902, B, 1))
    d = det(("v", 902, A, 1, 0.9), ("v", 902, A_SHIFTED, 1, 0.8), ("v", 902, B, 1, 0.7))
    assert frame_map(g, d, [1])["per_class"][1] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)


def test_a_miss_caps_recall():
    g = gt(("v", 902, A, 1), ("v", 902, B, 1))
    assert frame_map(g, det(("v", 902, A, 1, 0.9)), [1])["per_class"][1] == 0.5
    assert frame_map(g, det(("v", 902, A, 3, 0.9)), [1, 3])["per_class"][1] == 0.0  # GT but no detections of it


def test_a_class_without_ground_truth_is_nan_and_left_out_of_the_mean():
    g = gt(("v", 902, A, 1), ("v", 902, B, 1))
    d = det(("v", 902, A, 1, 0.9), ("v", 902, B, 3, 0.8))
    out = frame_map(g, d, [1, 3, 5])
    assert out["per_class"][1] == 0.5 * 1 + 0  # recall 1/2 only
    assert math.isnan(out["per_class"][3]) and math.isnan(out["per_class"][5])
    assert out["mAP"] == 0.5
    assert math.isnan(frame_map(g.iloc[:0], d, [1])["mAP"])


def test_matching_follows_the_given_order_not_the_score():
    g = gt(("v", 902, A, 1))
    d = det(("v", 902, A_SHIFTED, 1, 0.3), ("v", 902, A, 1, 0.9))  # the low score comes first and takes A
    # API path: ranked FP (0.9) then TP (0.3) -> AP 1/2; the command-line path sorts first -> AP 1
    assert frame_map(g, d, [1])["per_class"][1] == 0.5
    assert frame_map(g, official_top_k(d, [1]), [1])["per_class"][1] == 1.0


def test_a_detection_takes_its_best_box_even_if_that_one_is_taken():
    g = gt(("v", 902, A, 1), ("v", 902, A_SHIFTED, 1))
    d = det(("v", 902, A, 1, 0.9), ("v", 902, A, 1, 0.8))  # both prefer A; the second is a FP though A_SHIFTED is free
    assert frame_map(g, d, [1])["per_class"][1] == 0.5


def test_invalid_boxes_are_dropped_and_excluded_keyframes_ignored():
    g = gt(("v", 902, A, 1), ("v", 904, B, 1))
    d = det(("v", 902, (0.4, 0.1, 0.1, 0.5), 1, 0.99), ("v", 902, A, 1, 0.9), ("v", 903, B, 1, 0.95),
            ("v", 904, B, 1, 0.5))
    # 903 has no GT: its detection is a FP; the inverted box is dropped, not counted.
    # Ranked FP, TP, TP: precision 0, 1/2, 2/3 at recall 0, 1/2, 1 -> interpolated 2/3 at both steps
    assert frame_map(g, d, [1])["per_class"][1] == pytest.approx(2 / 3)
    assert frame_map(g, d, [1], exclusions={("v", 903)})["per_class"][1] == 1.0
    assert frame_map(g, d, [1], keyframes={("v", 902), ("v", 904)})["per_class"][1] == 1.0
    assert frame_map(g, d, [1], exclusions={("v", 904)})["per_class"][1] == 0.5  # its GT goes too


def test_the_command_line_path_keeps_the_top_50_per_keyframe_across_classes():
    g = gt(("v", 902, A, 1), ("v", 903, A, 1))
    rows = [("v", 902, B, 3, 0.5 + i / 100) for i in range(50)]            # 50 higher-scored rows of class 3
    rows += [("v", 902, A, 1, 0.4), ("v", 902, A, 7, 0.99), ("v", 903, A, 1, 0.2)]  # class 7 is not evaluated
    d = det(*rows)
    cut = official_top_k(d, [1, 3])
    assert len(cut) == 51 and (cut[cut.timestamp == 902].score.diff().dropna() < 0).all()
    assert not ((cut.timestamp == 902) & (cut.action_id == 1)).any()       # the 51st at 902 was cut
    assert frame_map(g, cut, [1, 3])["per_class"][1] == 0.5                # only 903's TP is left
    assert frame_map(g, d, [1, 3])["per_class"][1] == 1.0                  # API path keeps everything


def test_average_precision_is_the_all_point_voc_area():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    tp = np.array([1, 0, 1, 0, 1], dtype=bool)
    # recall steps at 1/4, 2/4, 3/4 with interpolated precision 1, 2/3, 3/5
    assert average_precision(scores, tp, 4) == pytest.approx(0.25 * (1 + 2 / 3 + 3 / 5))
    assert average_precision(scores[:0], tp[:0], 3) == 0.0 and math.isnan(average_precision(scores, tp, 0))


def test_detection_csv_has_the_official_columns_and_reads_back(tmp_path):
    d = det(("-5KQ66BBWC4", 902, A, 80, 0.123456789), ("vid2", 1798, B, 1, 1e-7))
    write_detections_csv(d, tmp_path / "det.csv")
    assert (tmp_path / "det.csv").read_text().splitlines()[0] == "-5KQ66BBWC4,0902,0.1,0.1,0.4,0.5,80,0.123456789"
    back = read_detections_csv(tmp_path / "det.csv")
    pd.testing.assert_frame_equal(back, d)
    (tmp_path / "bad.csv").write_text("v,0902,0.1,0.1,0.2\n")
    with pytest.raises(ValueError, match="line 1"):
        read_detections_csv(tmp_path / "bad.csv")

