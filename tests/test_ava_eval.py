"""Frame-level AVA mAP@0.5 on hand-worked cases: perfect detections, a duplicate, a miss, a class
without ground truth, input-order matching, invalid boxes, exclusions, the top-50 cut, the CSV."""

import math

import numpy as np
import pandas as pd
import pytest

from vjepa.evals.ava_eval import average_precision, frame_map, official_top_k, read_detections_csv, write_detections_csv

A = (0.1, 0.1, 0.4, 0.5)
B = (0.5, 0.2, 0.9, 0.9)
A_SHIFTED = (0.12, 0.1, 0.42, 0.5)  # IoU with A = 0.28 / 0.32 = 0.875


def gt(*rows):
    return pd.DataFrame(
        [(v, s, *box, c) for v, s, box, c in rows],
        columns=["video_id", "timestamp", "x1", "y1", "x2", "y2", "action_id"],
    )


def det(*rows):
    return pd.DataFrame(
        [(v, s, *box, c, p) for v, s, box, c, p in rows],
        columns=["video_id", "timestamp", "x1", "y1", "x2", "y2", "action_id", "score"],
    )


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
    d = det(
        ("v", 902, (0.4, 0.1, 0.1, 0.5), 1, 0.99), ("v", 902, A, 1, 0.9), ("v", 903, B, 1, 0.95), ("v", 904, B, 1, 0.5)
    )
    # 903 has no GT: its detection is a FP; the inverted box is dropped, not counted.
    # Ranked FP, TP, TP: precision 0, 1/2, 2/3 at recall 0, 1/2, 1 -> interpolated 2/3 at both steps
    assert frame_map(g, d, [1])["per_class"][1] == pytest.approx(2 / 3)
    assert frame_map(g, d, [1], exclusions={("v", 903)})["per_class"][1] == 1.0
    assert frame_map(g, d, [1], keyframes={("v", 902), ("v", 904)})["per_class"][1] == 1.0
    assert frame_map(g, d, [1], exclusions={("v", 904)})["per_class"][1] == 0.5  # its GT goes too


def test_the_command_line_path_keeps_the_top_50_per_keyframe_across_classes():
    g = gt(("v", 902, A, 1), ("v", 903, A, 1))
    rows = [("v", 902, B, 3, 0.5 + i / 100) for i in range(50)]  # 50 higher-scored rows of class 3
    rows += [("v", 902, A, 1, 0.4), ("v", 902, A, 7, 0.99), ("v", 903, A, 1, 0.2)]  # class 7 is not evaluated
    d = det(*rows)
    cut = official_top_k(d, [1, 3])
    assert len(cut) == 51 and (cut[cut.timestamp == 902].score.diff().dropna() < 0).all()
    assert not ((cut.timestamp == 902) & (cut.action_id == 1)).any()  # the 51st at 902 was cut
    assert frame_map(g, cut, [1, 3])["per_class"][1] == 0.5  # only 903's TP is left
    assert frame_map(g, d, [1, 3])["per_class"][1] == 1.0  # API path keeps everything


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


# ---------------------------------------------------------------------------------------------
# Against an independent, straightforward copy of the reference algorithm (SlowFast's
# ava_evaluation: per-keyframe greedy matching in input order, VOC all-point AP per class over the
# reversed numpy argsort of the scores, nanmean over classes with ground truth).


def _reference_map(gt_rows, det_rows, class_ids, excluded, thr=0.5):
    wl = set(class_ids)
    gts, dets = {}, {}
    for v, s, x1, y1, x2, y2, c in gt_rows:
        if c in wl:
            gts.setdefault(f"{v},{s:04d}", []).append(((y1, x1, y2, x2), c))
    for v, s, x1, y1, x2, y2, c, p in det_rows:
        if c in wl:
            dets.setdefault(f"{v},{s:04d}", []).append(((y1, x1, y2, x2), c, p))
    excl = {f"{v},{s:04d}" for v, s in excluded}
    num_gt = {c: 0 for c in wl}
    for key, rows in gts.items():
        if key not in excl:
            for _, c in rows:
                num_gt[c] += 1
    scores = {c: [] for c in wl}
    tps = {c: [] for c in wl}
    for key, rows in dets.items():
        if key in excl:
            continue
        rows = [r for r in rows if r[0][0] < r[0][2] and r[0][1] < r[0][3]]  # invalid boxes out
        g_all = gts.get(key, []) if key not in excl else []
        for c in sorted(wl):
            g = [b for b, cc in g_all if cc == c]
            taken = [False] * len(g)
            for b, cc, p in rows:
                if cc != c:
                    continue
                tp = False
                if g:
                    ious = []
                    for h in g:
                        ih = max(0.0, min(b[2], h[2]) - max(b[0], h[0]))
                        iw = max(0.0, min(b[3], h[3]) - max(b[1], h[1]))
                        inter = ih * iw
                        union = (b[2] - b[0]) * (b[3] - b[1]) + (h[2] - h[0]) * (h[3] - h[1]) - inter
                        ious.append(inter / union)
                    j = int(np.argmax(ious))
                    if ious[j] >= thr and not taken[j]:
                        tp, taken[j] = True, True
                scores[c].append(p)
                tps[c].append(tp)
    aps = []
    for c in sorted(wl):
        if num_gt[c] == 0:
            aps.append(float("nan"))
            continue
        order = np.argsort(np.array(scores[c], dtype=float))[::-1]
        prec, rec, n_tp = [], [], 0
        for k, i in enumerate(order, 1):
            n_tp += tps[c][i]
            prec.append(n_tp / k)
            rec.append(n_tp / num_gt[c])
        rec, prec = [0.0] + rec + [1.0], [0.0] + prec + [0.0]
        for i in range(len(prec) - 2, -1, -1):
            prec[i] = max(prec[i], prec[i + 1])
        aps.append(sum((rec[i] - rec[i - 1]) * prec[i] for i in range(1, len(rec)) if rec[i] != rec[i - 1]))
    return aps


def _random_case(rng):
    """GT and detections with every corner case present: degenerate and inverted detection boxes,
    degenerate GT boxes, duplicated boxes (GT and detections), tied scores, keyframes without GT
    and keyframes without detections, a class without GT, a class not evaluated, excluded keyframes,
    interleaved keyframes."""
    grid = np.round(np.linspace(0, 1, 6), 1)  # coarse coordinates: equal corners and duplicates are common

    def box():
        x = np.sort(rng.choice(grid, 2))
        y = np.sort(rng.choice(grid, 2))
        return float(x[0]), float(y[0]), float(x[1]), float(y[1])

    keys = [(f"v{v}", 902 + s) for v in range(rng.integers(1, 3)) for s in range(rng.integers(2, 6))]
    gt_rows, det_rows = [], []
    for v, s in keys[:-1]:  # the last keyframe has no GT
        for _ in range(rng.integers(1, 5)):
            b, c = box(), int(rng.choice([1, 3, 7]))
            gt_rows.append((v, s, *b, c))
            if rng.random() < 0.2:
                gt_rows.append((v, s, *b, c))  # duplicated GT box
    v0, s0 = keys[0]
    gt_rows.append((v0, s0, 0.2, 0.2, 0.2, 0.6, 1))  # degenerate GT (x1 == x2): counts, never matched
    for v, s in keys[1:]:  # the first keyframe has no detections
        for _ in range(rng.integers(1, 7)):
            same = [r for r in gt_rows if (r[0], r[1]) == (v, s)]
            if same and rng.random() < 0.6:  # near a GT box
                r = same[rng.integers(len(same))]
                b = tuple(float(np.clip(x + rng.normal(0, 0.03), 0, 1)) for x in r[2:6])
                c = r[6] if rng.random() < 0.8 else int(rng.choice([1, 3, 5, 7]))
            else:
                b, c = box(), int(rng.choice([1, 3, 5, 7]))
            p = float(rng.choice([0.3, 0.5, 0.9])) if rng.random() < 0.5 else float(rng.random())  # ties
            det_rows.append((v, s, *b, c, p))
            if rng.random() < 0.25:
                det_rows.append((v, s, *b, c, p))  # duplicated detection, same score
    v1, s1 = keys[-1]
    det_rows += [
        (v1, s1, 0.3, 0.1, 0.3, 0.5, 1, 0.5),
        (v1, s1, 0.1, 0.4, 0.6, 0.4, 3, 0.9),  # degenerate
        (v1, s1, 0.6, 0.1, 0.2, 0.5, 1, 0.8),
    ]  # inverted
    det_rows = [det_rows[i] for i in rng.permutation(len(det_rows))]  # keyframes interleaved
    excluded = {keys[int(i)] for i in rng.choice(len(keys), size=rng.integers(0, 2), replace=False)}
    return gt_rows, det_rows, excluded


def test_frame_map_equals_the_reference_algorithm_on_random_inputs_with_every_corner_case():
    class_ids = [1, 3, 5]  # 5 has no GT; 7 is present but not evaluated
    compared = ties = 0
    for seed in [*range(36), 40, 55, 64, 74]:  # the last four: where a wrong tie order once showed
        gt_rows, det_rows, excluded = _random_case(np.random.default_rng(seed))
        g = pd.DataFrame(gt_rows, columns=["video_id", "timestamp", "x1", "y1", "x2", "y2", "action_id"])
        d = pd.DataFrame(det_rows, columns=["video_id", "timestamp", "x1", "y1", "x2", "y2", "action_id", "score"])
        out = frame_map(g, d, class_ids, exclusions=excluded)
        want = _reference_map(gt_rows, det_rows, class_ids, excluded)
        got = [out["per_class"][c] for c in class_ids]
        assert np.allclose(got, want, rtol=0, atol=1e-12, equal_nan=True), (seed, got, want)
        assert math.isnan(out["per_class"][5])
        want_map = np.nanmean(want) if not all(math.isnan(a) for a in want) else float("nan")
        assert (math.isnan(out["mAP"]) and math.isnan(want_map)) or abs(out["mAP"] - want_map) <= 1e-12
        compared += 1
        ties += d.duplicated(["score"]).any()
    assert compared == 40 and ties > 25  # tied scores were exercised, not just possible


def test_tied_scores_rank_as_the_reference_argsort_ranks_them():
    # One GT, a TP and an FP with the same score: the reversed argsort decides which comes first,
    # and the AP is 1 or 1/2 accordingly. Both orders of the input give the reference's answer.
    g = gt(("v", 902, A, 1))
    for rows in ([("v", 902, A, 1, 0.5), ("v", 902, B, 1, 0.5)], [("v", 902, B, 1, 0.5), ("v", 902, A, 1, 0.5)]):
        want = _reference_map([("v", 902, *A, 1)], [(v, s, *b, c, p) for v, s, b, c, p in rows], [1], set())[0]
        assert frame_map(g, det(*rows), [1])["per_class"][1] == want
        assert want in (1.0, 0.5)
    # keyframe order is that of first appearance before invalid boxes are dropped: 903 comes first here
    rows = [("v", 903, (0.5, 0.1, 0.4, 0.5), 1, 0.5), ("v", 902, B, 1, 0.5), ("v", 903, A, 1, 0.5)]
    g = gt(("v", 903, A, 1))
    want = _reference_map([("v", 903, *A, 1)], [(v, s, *b, c, p) for v, s, b, c, p in rows], [1], set())[0]
    assert frame_map(g, det(*rows), [1])["per_class"][1] == want


def test_a_degenerate_ground_truth_box_counts_but_is_never_matched():
    g = gt(("v", 902, A, 1), ("v", 902, (0.3, 0.3, 0.3, 0.8), 1))  # zero width
    d = det(("v", 902, A, 1, 0.9), ("v", 902, (0.3, 0.3, 0.3, 0.8), 1, 0.8), ("v", 902, (0.29, 0.3, 0.31, 0.8), 1, 0.7))
    out = frame_map(g, d, [1])
    assert out["num_gt"][1] == 2 and out["per_class"][1] == 0.5  # the degenerate detection dropped, the thin one an FP
    with pytest.raises(ValueError, match="x1 <= x2"):
        frame_map(gt(("v", 902, (0.5, 0.1, 0.4, 0.5), 1)), d, [1])
