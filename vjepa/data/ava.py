"""AVA v2.2 readers (and writers, for the small suite and tests): ground-truth CSV, label map
(pbtxt), excluded timestamps, person-box proposals (pickle or CSV, with a score threshold), and
the 30 fps frame folders with 1 Hz keyframes.

Conventions of the AVA v2.2 release files: boxes are normalised [0, 1] corners (x1, y1, x2, y2); action
ids are 1-based; keyframe keys are (video_id, second); the frames are the video cut from second
900, decoded at 30 fps and numbered from 1, so the keyframe of second `sec` is the 0-based frame
index (sec - 900) * 30 in the ordered frame list. A malformed row raises AnnotationError naming
the file and 1-based line.
"""

from __future__ import annotations

import csv
import importlib
import io
import os
import pickle
import re
from pathlib import Path
from typing import Collection, Mapping

import numpy as np
import pandas as pd

from vjepa.data.readers import AnnotationError, int_field, nonblank_lines, open_text, read_text
from vjepa.infra.runtime import confined

AVA_FPS = 30
AVA_START_SEC = 900
AVA_CSV_COLUMNS = ["video_id", "timestamp", "x1", "y1", "x2", "y2", "action_id", "person_id"]


def _float(text: str, path, line: int, what: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise AnnotationError(path, line, f"{what} must be a number, got {text!r}") from None
    if not np.isfinite(v):
        raise AnnotationError(path, line, f"{what} must be finite, got {text!r}")
    return v


def _box(row: list[str], path, line: int) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (_float(v, path, line, k) for v, k in zip(row, ("x1", "y1", "x2", "y2")))
    if not (0.0 <= x1 <= x2 <= 1.0 and 0.0 <= y1 <= y2 <= 1.0):
        raise AnnotationError(
            path,
            line,
            f"box ({x1}, {y1}, {x2}, {y2}) is not normalised corners with 0 <= x1 <= x2 <= 1 and 0 <= y1 <= y2 <= 1",
        )
    return x1, y1, x2, y2


def _video_id(text: str, path, line: int) -> str:
    if not text or any(c.isspace() or c == "," for c in text):
        raise AnnotationError(path, line, f"bad video id {text!r}")
    return text


def _csv_rows(path):
    with open_text(path) as f:
        reader = csv.reader(f)
        for row in reader:
            if not row or not "".join(row).strip():
                raise AnnotationError(path, reader.line_num, "blank line")
            yield reader.line_num, [c.strip() for c in row]


# ---------------------------------------------------------------------------------------------
# Label map


def read_ava_labelmap(path: str | os.PathLike) -> dict[int, str]:
    """{id: name}, in file order, from either layout AVA ships:
    `item { name: "..." id: N }` (the ActivityNet 2018/2019 evaluation lists) or
    `label { name: "..." label_id: N label_type: ... }` (ava_action_list_v2.x.pbtxt). An id without a
    preceding name, a duplicate id or an unknown line is an error naming the line."""
    out: dict[int, str] = {}
    name = None
    for i, raw in nonblank_lines(path):
        line = raw.strip()
        if line.startswith("#") or line in ("}", "{"):
            continue
        if line.replace(" ", "") in ("item{", "label{"):
            name = None
            continue
        key, _, val = line.partition(":")
        key, val = key.strip(), val.strip()
        if key == "name":
            if len(val) < 2 or val[0] != '"' or val[-1] != '"':
                raise AnnotationError(path, i, f"name must be a quoted string, got {val!r}")
            name = val[1:-1]
        elif key in ("id", "label_id"):
            k = int_field(val, path, i, key)
            if name is None:
                raise AnnotationError(path, i, f"{key} {k} has no name before it in its block")
            if k in out:
                raise AnnotationError(path, i, f"id {k} appears twice")
            if k < 1:
                raise AnnotationError(path, i, f"ids are 1-based, got {k}")
            out[k] = name
            name = None
        elif key == "label_type":
            continue
        else:
            raise AnnotationError(
                path,
                i,
                f"unexpected line {raw!r} (expected item {{ or label {{, name:, id:, label_id:, label_type:, }}}})",
            )
    if not out:
        raise AnnotationError(path, None, "the label map has no items")
    return out


def write_ava_labelmap(labels: Mapping[int, str], path: str | os.PathLike) -> Path:
    """Write {id: name} as an AVA pbtxt label map."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f'item {{\n  name: "{n}"\n  id: {k}\n}}\n' for k, n in labels.items()))
    return path


# ---------------------------------------------------------------------------------------------
# Ground truth, exclusions, proposals


def _read_ava_csv_rows(path, allowed) -> list:
    """The row-by-row reader: the rules of a ground-truth row, each error naming its line (the
    reference for the vectorised reader below, and the way it names a bad line)."""
    rows = []
    for i, row in _csv_rows(path):
        if len(row) not in (7, 8):
            raise AnnotationError(
                path,
                i,
                f"expected 8 columns (video_id,timestamp,x1,y1,x2,y2,action_id,person_id), got {len(row)}: {row}",
            )
        vid = _video_id(row[0], path, i)
        sec = int_field(row[1], path, i, "timestamp")
        box = _box(row[2:6], path, i)
        if not row[6]:
            raise AnnotationError(path, i, "empty action_id (a proposals CSV? use read_ava_proposals)")
        act = int_field(row[6], path, i, "action_id")
        if act < 1 or (allowed is not None and act not in allowed):
            raise AnnotationError(path, i, f"unknown label: action_id {act}")
        pid = int_field(row[7], path, i, "person_id") if len(row) == 8 else -1
        rows.append((vid, sec, *box, act, pid))
    return rows


_AVA_DTYPES = {
    "video_id": str,
    "timestamp": "int64",
    "action_id": "int64",
    "person_id": "int64",
    "x1": "float64",
    "y1": "float64",
    "x2": "float64",
    "y2": "float64",
}


def read_ava_csv(path: str | os.PathLike, action_ids: Collection[int] | None = None) -> pd.DataFrame:
    """Ground-truth CSV rows `video_id, timestamp, x1, y1, x2, y2, action_id, person_id` (no header;
    person_id may be absent: -1) -> DataFrame with those columns (timestamp, action_id, person_id
    int64). With `action_ids`, an action outside them is an unknown label.

    Parsed by pandas' C reader and checked on whole columns; when a check fails (or a row lacks
    person_id), the row-by-row reader re-reads the file to name the first bad line."""
    allowed = set(action_ids) if action_ids is not None else None
    text = read_text(path)
    if not text.strip():
        return pd.DataFrame([], columns=AVA_CSV_COLUMNS).astype(_AVA_DTYPES)

    def slow() -> pd.DataFrame:
        rows = _read_ava_csv_rows(path, allowed)
        return pd.DataFrame(rows, columns=AVA_CSV_COLUMNS).astype(_AVA_DTYPES)

    try:
        raw = pd.read_csv(
            io.StringIO(text),
            header=None,
            names=AVA_CSV_COLUMNS,
            dtype=str,
            na_filter=False,
            skip_blank_lines=False,
            engine="c",
        )
    except (pd.errors.ParserError, ValueError):
        return slow()  # raises, naming the line
    del text
    if len(raw) and raw.iloc[-1].eq("").all():  # a final empty line that pandas kept
        raw = raw.iloc[:-1]
    cols = {c: raw[c].str.strip() for c in AVA_CSV_COLUMNS}
    integer = r"^[+-]?[0-9]+$"
    ok = cols["video_id"].str.fullmatch(r"[^\s,]+").fillna(False)
    for c in ("timestamp", "action_id"):
        ok &= cols[c].str.fullmatch(integer).fillna(False)
    box = np.stack([pd.to_numeric(cols[c], errors="coerce").to_numpy(float) for c in ("x1", "y1", "x2", "y2")], axis=1)
    ok &= (
        np.isfinite(box).all(axis=1)
        & (box[:, 0] >= 0)
        & (box[:, 0] <= box[:, 2])
        & (box[:, 2] <= 1)
        & (box[:, 1] >= 0)
        & (box[:, 1] <= box[:, 3])
        & (box[:, 3] <= 1)
    )
    ok = ok.to_numpy(bool).copy()
    pid_text = cols["person_id"]
    ok &= (pid_text.str.fullmatch(integer).fillna(False) | (pid_text == "")).to_numpy(bool)
    act = pd.to_numeric(cols["action_id"].where(ok, "1")).to_numpy(np.int64)
    ok &= act >= 1
    if allowed is not None:
        ok &= np.isin(act, np.fromiter(allowed, dtype=np.int64))
    if not ok.all() or (pid_text == "").any():
        return slow()  # names the first bad line; rows without person_id (7 columns) are read there
    out = pd.DataFrame(
        {
            "video_id": cols["video_id"],
            "timestamp": pd.to_numeric(cols["timestamp"]).astype("int64"),
            "x1": box[:, 0],
            "y1": box[:, 1],
            "x2": box[:, 2],
            "y2": box[:, 3],
            "action_id": act,
            "person_id": pd.to_numeric(pid_text).astype("int64"),
        }
    )
    return out.reset_index(drop=True).astype(_AVA_DTYPES)


def write_ava_csv(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a ground-truth DataFrame in the AVA CSV form (4-digit seconds, 3-decimal boxes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        f"{r.video_id},{r.timestamp:04d},{r.x1:.3f},{r.y1:.3f},{r.x2:.3f},{r.y2:.3f},{r.action_id},{r.person_id}\n"
        for r in df.itertuples(index=False)
    ]
    path.write_text("".join(lines))
    return path


def read_ava_exclusions(path: str | os.PathLike) -> set[tuple[str, int]]:
    """Excluded-timestamps CSV `video_id, timestamp` -> {(video_id, second)}. An empty file is valid."""
    if Path(path).is_file() and Path(path).stat().st_size == 0:
        return set()
    out = set()
    for i, row in _csv_rows(path):
        if len(row) != 2:
            raise AnnotationError(path, i, f"expected 2 columns (video_id,timestamp), got {len(row)}: {row}")
        out.add((_video_id(row[0], path, i), int_field(row[1], path, i, "timestamp")))
    return out


_PICKLE_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("collections", "OrderedDict"),
}


def _latin1_bytes(text, encoding, errors="strict"):
    """`_codecs.encode` as Python 3 pickles bytes under protocol 2 (`encode(str, 'latin1')`), and
    nothing else: any other codec (some decompress, some are costly) is refused."""
    if type(text) is not str or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise pickle.UnpicklingError(
            f"proposals pickle calls _codecs.encode with ({type(text).__name__}, "
            f"{encoding!r}, {errors!r}); only (str, 'latin1') rebuilds bytes; refusing "
            "to load it"
        )
    return text.encode("latin1")


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers of numpy arrays and nothing else: a proposals file must not be
    able to run code when read. Reads the forms the released file may take: protocol 2 as Python 3
    writes it (bytes rebuilt by `_codecs.encode(str, 'latin1')`), Python 2's (byte strings, read as
    latin1, which numpy's array state accepts) and the current protocols."""

    def __init__(self, file):
        super().__init__(file, encoding="latin1")  # Python 2 str -> str; a Python 3 pickle is unaffected

    def find_class(self, module, name):
        if (module, name) == ("_codecs", "encode"):
            return _latin1_bytes
        if (module.replace("numpy._core", "numpy.core"), name) in _PICKLE_ALLOWED or (
            module == "numpy.dtypes" and name.endswith("DType")
        ):
            if module.startswith("numpy.core") and hasattr(np, "_core"):  # pickled by numpy 1.x
                module = module.replace("numpy.core", "numpy._core")
            return getattr(importlib.import_module(module), name)
        raise pickle.UnpicklingError(
            f"proposals pickle refers to {module}.{name}, which is not a numpy array "
            "or plain container; refusing to load it"
        )


def read_ava_proposals(path: str | os.PathLike, score_threshold: float) -> dict[tuple[str, int], np.ndarray]:
    """Person-box proposals -> {(video_id, second): float32 [N, 5] (x1, y1, x2, y2, score)} keeping
    boxes with score >= score_threshold; keyframes left with no box are omitted.

    Accepts mmaction's pickle (dict "vid,%04d" -> [N, 5], or [N, 4] meaning no scores: score 1.0)
    and SlowFast's 8-column CSV `video_id, timestamp, x1, y1, x2, y2, <action, ignored>, score`
    (a box repeated on several rows is kept once)."""
    path = Path(path)
    boxes: dict[tuple[str, int], list] = {}
    if path.suffix in (".pkl", ".pickle"):
        if not path.is_file():
            raise AnnotationError(path, None, "proposals file not found")
        with open(path, "rb") as f:
            try:
                data = _ArrayUnpickler(f).load()
            except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError) as e:
                raise AnnotationError(path, None, f"cannot read proposals pickle: {e}") from None
        if not isinstance(data, dict):
            raise AnnotationError(path, None, f"expected a dict 'video_id,%04d' -> array, got {type(data).__name__}")
        for key, arr in data.items():
            vid, _, sec = str(key).rpartition(",")
            if not vid or not sec.isdigit():
                raise AnnotationError(path, None, f"key {key!r} is not 'video_id,%04d'")
            try:  # strings, sets, ragged lists: numpy's ValueError/TypeError would not name the file
                a = np.asarray(arr, dtype=np.float64)
            except (ValueError, TypeError) as e:
                raise AnnotationError(
                    path,
                    None,
                    f"key {key!r}: expected an [N, 5] or [N, 4] array of numbers, "
                    f"got {type(arr).__name__} {str(arr)[:80]} ({e})",
                ) from None
            if a.ndim != 2 or a.shape[1] not in (4, 5):
                raise AnnotationError(
                    path, None, f"key {key!r}: expected an [N, 5] or [N, 4] array, got shape {a.shape}"
                )
            if a.shape[1] == 4:
                a = np.concatenate([a, np.ones((len(a), 1))], axis=1)
            if (
                not np.isfinite(a).all()
                or (a[:, :4] < 0).any()
                or (a[:, :4] > 1).any()
                or (a[:, 0] > a[:, 2]).any()
                or (a[:, 1] > a[:, 3]).any()
            ):
                raise AnnotationError(path, None, f"key {key!r}: boxes must be finite normalised corners")
            boxes[(vid, int(sec))] = [tuple(r) for r in a]
    else:
        for i, row in _csv_rows(path):
            if len(row) != 8:
                raise AnnotationError(
                    path, i, f"expected 8 columns (video_id,timestamp,x1,y1,x2,y2,action,score), got {len(row)}: {row}"
                )
            key = (_video_id(row[0], path, i), int_field(row[1], path, i, "timestamp"))
            rec = (*_box(row[2:6], path, i), _float(row[7], path, i, "score"))
            per_box = boxes.setdefault(key, {})  # a box repeated on several rows: kept once, best score
            old = per_box.get(rec[:4])
            if old is None or rec[4] > old[4]:
                per_box[rec[:4]] = rec
        boxes = {key: list(per_box.values()) for key, per_box in boxes.items()}
    out = {}
    for key, lst in boxes.items():
        a = np.asarray(lst, dtype=np.float32).reshape(-1, 5)
        a = a[a[:, 4] >= score_threshold]
        if len(a):
            out[key] = a
    return out


def write_ava_proposals(proposals: Mapping[tuple[str, int], np.ndarray], path: str | os.PathLike) -> Path:
    """Write {(vid, sec): [N, 5]} as mmaction's pickle (.pkl) or SlowFast's 8-column CSV (.csv)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".pkl", ".pickle"):
        with open(path, "wb") as f:
            pickle.dump(
                {f"{v},{s:04d}": np.asarray(a, dtype=np.float32) for (v, s), a in proposals.items()}, f, protocol=4
            )
    else:
        path.write_text(
            "".join(
                f"{v},{s:04d},{b[0]:.3f},{b[1]:.3f},{b[2]:.3f},{b[3]:.3f},,{b[4]:.6f}\n"
                for (v, s), a in proposals.items()
                for b in a
            )
        )
    return path


# ---------------------------------------------------------------------------------------------
# Frame folders


def ava_keyframe_index(sec: int, fps: int = AVA_FPS, start_sec: int = AVA_START_SEC) -> int:
    """0-based index of the keyframe of second `sec` in a video's ordered frame list."""
    return (int(sec) - start_sec) * fps


def ava_clip_indices(center: int, num_video_frames: int, num_frames: int = 16, frame_step: int = 4) -> np.ndarray:
    """SlowFast's clip around a keyframe: range(center - L//2, center + L//2, step) with
    L = num_frames * frame_step, clamped to the video; the keyframe is position num_frames // 2."""
    half = num_frames * frame_step // 2
    idx = np.arange(center - half, center + half, frame_step)
    return np.clip(idx, 0, num_video_frames - 1)


_SLOWFAST = re.compile(r"^(?P<vid>.+)_(?P<n>\d{6})\.jpg$")
_MMACTION = re.compile(r"^img_(?P<n>\d{5})\.jpg$")


class AvaFrameFolder:
    """Frames of AVA videos at 30 fps under `root/<video_id>/`, in SlowFast's layout
    `<video_id>_%06d.jpg` or mmaction's `img_%05d.jpg`, numbered from 1 without gaps."""

    def __init__(self, root: str | os.PathLike, fps: int = AVA_FPS, start_sec: int = AVA_START_SEC):
        self.root, self.fps, self.start_sec = Path(root), fps, start_sec
        self._cache: dict[str, list[str]] = {}

    def frame_paths(self, video_id: str) -> list[str]:
        """The ordered frame files of one video (listed once per process)."""
        if video_id not in self._cache:
            # the id comes from an annotation file: its folder must be one under root (names only,
            # as frame folders may be links to other disks)
            folder = confined(video_id, self.root, f"AVA video id (frames under {self.root})", follow_links=False)
            self._cache[video_id] = _list_frames(str(folder), video_id)
        return self._cache[video_id]

    def keyframe_index(self, sec: int) -> int:
        return ava_keyframe_index(sec, self.fps, self.start_sec)

    def clip_indices(self, video_id: str, sec: int, num_frames: int = 16, frame_step: int = 4) -> np.ndarray:
        n = len(self.frame_paths(video_id))
        center = self.keyframe_index(sec)
        if not 0 <= center < n:
            raise IndexError(
                f"{self.root / video_id}: keyframe of second {sec} is frame {center + 1}, but the folder has {n} frames"
            )
        return ava_clip_indices(center, n, num_frames, frame_step)

    def load_clip(self, video_id: str, sec: int, num_frames: int = 16, frame_step: int = 4) -> np.ndarray:
        """uint8 [T, H, W, 3] clip centred on the keyframe of second `sec`."""
        from PIL import Image

        paths = self.frame_paths(video_id)
        frames = []
        for k in self.clip_indices(video_id, sec, num_frames, frame_step):
            with Image.open(paths[k]) as im:
                frames.append(np.asarray(im.convert("RGB")))
        return np.stack(frames)


def _list_frames(folder: str, video_id: str) -> list[str]:
    if not os.path.isdir(folder):
        raise AnnotationError(folder, None, "frame folder not found")
    numbered = {}
    for fn in os.listdir(folder):
        m = _SLOWFAST.match(fn)
        if m and m.group("vid") == video_id:
            numbered[int(m.group("n"))] = fn
            continue
        m = _MMACTION.match(fn)
        if m:
            numbered[int(m.group("n"))] = fn
    if not numbered:
        raise AnnotationError(folder, None, f"no frames named {video_id}_%06d.jpg or img_%05d.jpg")
    n = len(numbered)
    if sorted(numbered) != list(range(1, n + 1)):
        missing = min(set(range(1, max(numbered) + 1)) - set(numbered))
        raise AnnotationError(folder, None, f"frames must be numbered 1..N without gaps; frame {missing} is missing")
    return [os.path.join(folder, numbered[k]) for k in range(1, n + 1)]
