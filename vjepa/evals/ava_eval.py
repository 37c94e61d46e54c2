"""Frame-level AVA mAP at IoU 0.5, as the ActivityNet / SlowFast evaluator computes it.

Per keyframe ("image") and class, detections are matched greedily **in the order they are given**:
each takes its highest-IoU ground-truth box of that class (the first one on ties) and is a true
positive if that IoU >= 0.5 and the box is still free; otherwise it is a false positive. Invalid
detection boxes (x1 >= x2 or y1 >= y2) are dropped first; a degenerate ground-truth box (zero
width or height) stays, counts, and has IoU 0 with everything (its area is 0 and the detection's
is positive, so the union is never 0). Per class, Pascal VOC all-point AP over the scores of all
keyframes, ranked by the reference's reversed argsort (so tied scores rank as there: the scores
are concatenated in the reference's order, keyframes by first appearance, rows in input order); a
class without ground truth gets NaN and is left out of the mean (nanmean over ascending ids).
Equal to SlowFast's `ava_evaluation` to 1e-12 (tests/test_ava_eval.py pins an independent copy of
that algorithm on random inputs with every corner case).

Two ways to feed detections, which give different numbers:
- the API path (`frame_map`): every detection, in the given order (SlowFast's in-training eval:
  for each proposal box, one row per evaluation class);
- the command-line path (`official_top_k` then `frame_map`): per keyframe only the 50
  highest-scoring rows across classes, sorted by descending score.

Tables are pandas DataFrames with columns video_id, timestamp (int second), x1, y1, x2, y2
(normalised), action_id (1-based), plus score for detections.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from vjepa.infra.configs import AVA_EVAL_CLASS_IDS
from vjepa.infra.runtime import atomic_file

BOX = ["x1", "y1", "x2", "y2"]
DETECTION_COLUMNS = ["video_id", "timestamp", *BOX, "action_id", "score"]
KEY = ["video_id", "timestamp"]


def _check_columns(df: pd.DataFrame, cols: list[str], what: str) -> pd.DataFrame:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{what} table lacks columns {missing}; it has {list(df.columns)}")
    out = df[cols].reset_index(drop=True).copy()
    out["timestamp"] = out["timestamp"].astype(int)
    out["action_id"] = out["action_id"].astype(int)
    return out


def _drop_keys(df: pd.DataFrame, exclusions: Iterable[tuple[str, int]] | None) -> pd.DataFrame:
    if not exclusions:
        return df
    excluded = {(str(v), int(s)) for v, s in exclusions}
    keep = [(v, s) not in excluded for v, s in zip(df["video_id"], df["timestamp"])]
    return df[np.asarray(keep, dtype=bool)].reset_index(drop=True)


def average_precision(scores: np.ndarray, tp: np.ndarray, num_gt: int) -> float:
    """Pascal VOC (2010+) all-point AP: precision made non-increasing from the right, summed where
    recall changes. NaN without ground truth, 0 with ground truth but no detections."""
    if num_gt == 0:
        return float("nan")
    if len(scores) == 0:
        return 0.0
    # descending as the reference sorts: numpy's default (unstable) argsort, reversed; an identical
    # score array in the identical order gives the identical permutation, ties included
    order = np.argsort(scores)[::-1]
    tp = np.asarray(tp, dtype=int)[order]
    cum_tp, cum_fp = np.cumsum(tp), np.cumsum(1 - tp)
    precision = np.concatenate([[0.0], cum_tp.astype(float) / (cum_tp + cum_fp), [0.0]])
    recall = np.concatenate([[0.0], cum_tp.astype(float) / num_gt, [1.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    changed = np.where(recall[1:] != recall[:-1])[0] + 1
    return float(np.sum((recall[changed] - recall[changed - 1]) * precision[changed]))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise IoU of boxes [n, 4] (x1, y1, x2, y2), continuous coordinates (no +1)."""
    iw = np.maximum(0.0, np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]))
    ih = np.maximum(0.0, np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]))
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area_a + area_b - inter)


def match_detections(groundtruth: pd.DataFrame, detections: pd.DataFrame, iou_threshold: float = 0.5) -> np.ndarray:
    """True-positive flag for each detection row, with greedy matching in row order per (keyframe, class).

    A detection takes its best-IoU ground-truth box (first on ties); it is a TP iff that IoU >= the
    threshold and no earlier detection of the same keyframe and class took the same box, i.e. it is
    the first such candidate for that box."""
    det = detections.reset_index(drop=True).assign(det_id=lambda d: np.arange(len(d)))
    gt = groundtruth.reset_index(drop=True).assign(gt_id=lambda d: np.arange(len(d)))
    pairs = det[["det_id", *KEY, "action_id", *BOX]].merge(
        gt[["gt_id", *KEY, "action_id", *BOX]], on=[*KEY, "action_id"], suffixes=("", "_gt")
    )
    tp = np.zeros(len(det), dtype=bool)
    if pairs.empty:
        return tp
    pairs = pairs.sort_values(["det_id", "gt_id"], kind="stable").reset_index(drop=True)
    pairs["iou"] = box_iou(pairs[BOX].to_numpy(float), pairs[[b + "_gt" for b in BOX]].to_numpy(float))
    best = pairs.loc[pairs.groupby("det_id", sort=True)["iou"].idxmax()]  # first GT on ties
    cand = best[best["iou"] >= iou_threshold]  # in det_id order
    first = ~cand["gt_id"].duplicated(keep="first")
    tp[cand.loc[first, "det_id"].to_numpy()] = True
    return tp


def frame_map(
    groundtruth: pd.DataFrame,
    detections: pd.DataFrame,
    class_ids: Iterable[int] = AVA_EVAL_CLASS_IDS,
    exclusions: Iterable[tuple[str, int]] | None = None,
    iou_threshold: float = 0.5,
    labelmap: Mapping[int, str] | None = None,
    keyframes: Iterable[tuple[str, int]] | None = None,
) -> dict:
    """Frame-level mAP@IoU over `class_ids`, detections matched in the given order (the API path).

    Rows of other classes and of excluded keyframes are ignored; detections on keyframes without
    ground truth are false positives. `keyframes`, when given, lists the evaluated keyframes and
    detections elsewhere are ignored (the 2020 command-line tool, whose ground-truth file lists
    empty keyframes instead of an exclusions file). Returns {"mAP", "per_class": {id: AP or NaN},
    "num_gt": {id: count}, and "per_class_name" when a labelmap is given}."""
    class_ids = [int(c) for c in class_ids]
    gt = _check_columns(groundtruth, [*KEY, *BOX, "action_id"], "ground-truth")
    det = _check_columns(detections, DETECTION_COLUMNS, "detection")
    g = gt[BOX].to_numpy(float)
    bad = ~(np.isfinite(g).all(axis=1) & (g[:, 0] <= g[:, 2]) & (g[:, 1] <= g[:, 3]))
    if bad.any():
        r = gt.iloc[int(np.flatnonzero(bad)[0])]
        raise ValueError(
            f"ground-truth box {tuple(r[BOX])} of {r.video_id},{r.timestamp} is not finite corners with "
            "x1 <= x2 and y1 <= y2"
        )
    if not np.isfinite(det[[*BOX, "score"]].to_numpy(float)).all():
        raise ValueError("detection boxes and scores must be finite")
    gt = _drop_keys(gt[gt["action_id"].isin(class_ids)], exclusions)
    det = _drop_keys(det[det["action_id"].isin(class_ids)], exclusions)
    if keyframes is not None:
        allowed = {(str(v), int(t)) for v, t in keyframes}
        det = det[np.array([k in allowed for k in zip(det["video_id"], det["timestamp"])], dtype=bool)]
    # The reference adds keyframes in order of first appearance among the rows it reads (its
    # reader keeps evaluated classes only) and drops invalid boxes inside each keyframe afterwards,
    # so the keyframe order is taken before that drop. It matters only for tied scores.
    det = det.assign(_key_rank=det.groupby(KEY, sort=False).ngroup().to_numpy(), _row=np.arange(len(det)))
    det = det[(det["x1"] < det["x2"]) & (det["y1"] < det["y2"])].reset_index(drop=True)

    det["tp"] = match_detections(gt, det, iou_threshold)
    # Per class: keyframes in that order, rows in input order within each keyframe, which is how
    # the reference concatenates them before its (unstable) argsort of the scores.
    det = det.iloc[np.lexsort((det["_row"].to_numpy(), det["_key_rank"].to_numpy()))]
    num_gt = gt["action_id"].value_counts()
    per_class, counts = {}, {}
    for c in class_ids:
        sel = det[det["action_id"] == c]
        counts[c] = int(num_gt.get(c, 0))
        per_class[c] = average_precision(sel["score"].to_numpy(np.float64), sel["tp"].to_numpy(bool), counts[c])
    aps = np.array([per_class[c] for c in sorted(per_class)], dtype=float)  # the reference's class-index order
    mean = float(np.nanmean(aps)) if np.isfinite(aps).any() else float("nan")
    out = {"mAP": mean, "per_class": per_class, "num_gt": counts}
    if labelmap is not None:
        out["per_class_name"] = {labelmap.get(c, str(c)): ap for c, ap in per_class.items()}
    return out


def official_top_k(
    detections: pd.DataFrame, class_ids: Iterable[int] = AVA_EVAL_CLASS_IDS, top_k: int = 50
) -> pd.DataFrame:
    """The official command-line reader: keep evaluation-class rows, then per keyframe the `top_k`
    highest scores across classes, sorted by descending score (keyframes in order of first
    appearance). Rows tied at the cut are kept in input order; the reference's heap may pick
    another of them."""
    det = _check_columns(detections, DETECTION_COLUMNS, "detection")
    det = det[det["action_id"].isin([int(c) for c in class_ids])]
    rank = det.groupby(KEY, sort=False).ngroup().to_numpy()
    order = np.lexsort((np.arange(len(det)), -det["score"].to_numpy(float), rank))  # stable within ties
    det = det.iloc[order]
    return det[det.groupby(KEY, sort=False).cumcount() < top_k].reset_index(drop=True)


def write_detections_csv(detections: pd.DataFrame, path: str | os.PathLike) -> Path:
    """The official detection CSV (no header): video_id, %04d second, x1, y1, x2, y2, action_id, score.
    Written atomically (runtime.atomic_file), so a crash never leaves half a file."""
    det = _check_columns(detections, DETECTION_COLUMNS, "detection")
    det["timestamp"] = det["timestamp"].map("{:04d}".format)
    with atomic_file(path) as f:
        det.to_csv(f, header=False, index=False, float_format="%.9g")
    return Path(path)


def read_detections_csv(path: str | os.PathLike) -> pd.DataFrame:
    """Read a detection CSV written by `write_detections_csv` (or any 8-column AVA result file)."""
    try:
        df = pd.read_csv(path, header=None, names=DETECTION_COLUMNS, dtype={"video_id": str})
    except pd.errors.EmptyDataError:
        return pd.DataFrame(columns=DETECTION_COLUMNS)
    if df.isna().any().any():
        bad = int(np.where(df.isna().any(axis=1))[0][0]) + 1
        raise ValueError(f"{path}: line {bad} does not have the 8 columns {DETECTION_COLUMNS}")
    return df
