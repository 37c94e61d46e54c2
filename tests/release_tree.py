"""A small dataset tree in each dataset's layout *as downloaded* (not as our readers happen to
accept it), for the tests: a few classes and a handful of entries per split, tiny real-format
media. `build_release_tree(root)` writes it and returns the paths, ready to put into params;
`python tests/release_tree.py OUT` writes one and prints that dict as JSON.

Layouts (under root):
  kinetics400/  the release CSVs annotations/{train,validate}.csv (label,youtube_id,time_start,time_end,split)
                and clips in class folders whose names hold spaces:
                videos/{train,val}/<label>/<ytid>_<t0:06d>_<t1:06d>.mp4
  k400_cvdf/    CVDF's re-release: annotations/{train,val}.csv with the `is_cc` column, flat train/ val/ folders
  k400_mmaction/ mmaction2's download: the same release CSVs, class folders with underscores videos_{train,val}/
  ssv2/         20bn-something-something-v2/<id>.webm (VP9, 12 fps),
                something-something-v2-{labels,train,validation}.json
  imagenet/     ImageFolder train/<wnid>/<wnid>_<n>.JPEG and val/<wnid>/ILSVRC2012_val_<n>.JPEG (re-foldered)
  places205/    V-JEPA's ImageFolder conversion 121517/pytorch/{train,val}/<class>/gsun_<hex>.jpg
  iNaturalist-2021/ {train,val}.json (COCO-like, null location fields), images {train,val}/<image_dir_name>/<uuid>.jpg
  ava/          frames/<vid>/<vid>_%06d.jpg at 30 fps from second 900 and SlowFast's frame_lists/{train,val}.csv;
                annotations/: ground truth with non-evaluated actions, the 80-class and 60-class pbtxt,
                excluded timestamps (val's empty), FAIR proposals ava_dense_proposals_{split}.FAIR.recall_93.9.pkl
                as Python 3 writes protocol 2; the same under proposals_python2/ (a Python 2 pickle) and
                proposals_current/ (pickle.HIGHEST_PROTOCOL)
  howto100m/    a few H.264 clips
  videomix2m/   `path label` lists k710_train.csv, ssv2_train.csv, howto100m.csv with absolute paths; K400's
                class folders hold spaces, so those paths are double-quoted (the form pandas reads too)
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import struct
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from vjepa.data.ava import write_ava_csv, write_ava_labelmap
from vjepa.infra.configs import AVA_EVAL_CLASS_IDS
from vjepa.data.readers import write_path_label_list
from vjepa.data.small_suite import _youtube_id, write_image, write_video

K400_CLASSES = ("abseiling", "air drumming", "arm wrestling")
K400_FPS = 30
SSV2_TEMPLATES = (
    "Putting [something] on [something]",
    "Pushing [something] from left to right",
    "Moving [something] up",
)
SSV2_FPS = 12
IN1K_WNIDS = ("n01440764", "n01443537", "n01484850")
PLACES_CLASSES = ("abbey", "airport_terminal", "alley")
INAT_SPECIES = (
    ("Animalia", "Annelida", "Clitellata", "Haplotaxida", "Lumbricidae", "Lumbricus", "terrestris", "Common Earthworm"),
    ("Animalia", "Arthropoda", "Insecta", "Lepidoptera", "Nymphalidae", "Vanessa", "atalanta", "Red Admiral"),
    ("Plantae", "Tracheophyta", "Magnoliopsida", "Asterales", "Asteraceae", "Bellis", "perennis", "Common Daisy"),
)
TRAIN_PER_CLASS, VAL_PER_CLASS = 2, 1
AVA_VIDEOS = {"train": 2, "val": 2}
AVA_KEYFRAMES = (902, 903)
AVA_PROPOSAL_FORMS = ("protocol2", "python2", "current")
# AVA v2.2's 80 action names (ava_action_list_v2.2.pbtxt); ids not in AVA_EVAL_CLASS_IDS are not evaluated
AVA_ACTIONS = (
    "bend/bow (at the waist)",
    "crawl",
    "crouch/kneel",
    "dance",
    "fall down",
    "get up",
    "jump/leap",
    "lie/sleep",
    "martial art",
    "run/jog",
    "sit",
    "stand",
    "swim",
    "walk",
    "answer phone",
    "brush teeth",
    "carry/hold (an object)",
    "catch (an object)",
    "chop",
    "climb (e.g., a mountain)",
    "clink glass",
    "close (e.g., a door, a box)",
    "cook",
    "cut",
    "dig",
    "dress/put on clothing",
    "drink",
    "drive (e.g., a car, a truck)",
    "eat",
    "enter",
    "exit",
    "extract",
    "fishing",
    "hit (an object)",
    "kick (an object)",
    "lift/pick up",
    "listen (e.g., to music)",
    "open (e.g., a window, a car door)",
    "paint",
    "play board game",
    "play musical instrument",
    "play with pets",
    "point to (an object)",
    "press",
    "pull (an object)",
    "push (an object)",
    "put down",
    "read",
    "ride (e.g., a bike, a car, a horse)",
    "row boat",
    "sail boat",
    "shoot",
    "shovel",
    "smoke",
    "stir",
    "take a photo",
    "text on/look at a cellphone",
    "throw",
    "touch (an object)",
    "turn (e.g., a screwdriver)",
    "watch (e.g., TV)",
    "work on a computer",
    "write",
    "fight/hit (a person)",
    "give/serve (an object) to (a person)",
    "grab (a person)",
    "hand clap",
    "hand shake",
    "hand wave",
    "hug (a person)",
    "kick (a person)",
    "kiss (a person)",
    "lift (a person)",
    "listen to (a person)",
    "play with kids",
    "push (another person)",
    "sing to (e.g., self, a person, a group)",
    "take (an object) from (a person)",
    "talk to (e.g., self, a person, a group)",
    "watch (a person)",
)


def _frames(rng: np.random.Generator, n: int, size: tuple[int, int]) -> np.ndarray:
    """uint8 [n, H, W, 3]: a drifting colour gradient with a bright square moving across it
    (smooth content, so the encoders are fast and the files small)."""
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    colour = rng.uniform(40, 200, 3).astype(np.float32)
    drift, (vx, vy) = rng.uniform(1, 4), rng.uniform(-6, 6, 2)
    out = np.empty((n, h, w, 3), np.uint8)
    side = max(4, min(w, h) // 5)
    x0, y0 = rng.uniform(0, w - side), rng.uniform(0, h - side)
    for t in range(n):
        g = (x + y + drift * t) / (w + h)
        out[t] = np.clip(colour * (0.5 + g[..., None]), 0, 255)
        px, py = int(x0 + vx * t) % (w - side), int(y0 + vy * t) % (h - side)
        out[t, py : py + side, px : px + side] = 250
    return out


def _link(src: Path, dst: Path) -> None:
    """The same clip in a second layout: a hard link where the file system allows, else a copy."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _per_class(classes) -> dict[str, list[int]]:
    """Class index of each entry of each split (train: TRAIN_PER_CLASS per class, val: VAL_PER_CLASS)."""
    return {
        "train": [k for k in range(len(classes)) for _ in range(TRAIN_PER_CLASS)],
        "val": [k for k in range(len(classes)) for _ in range(VAL_PER_CLASS)],
    }


def _kinetics(root: Path, rng, frames: int, size) -> tuple[dict, list]:
    """The three Kinetics layouts over the same clips; returns their task specs and the train clips."""
    orig, cvdf, mma = root / "kinetics400", root / "k400_cvdf", root / "k400_mmaction"
    specs, train_clips = {"class_folders": {}, "cvdf": {}, "underscored": {}}, []
    for split, labels in _per_class(K400_CLASSES).items():
        rows = []
        for k in labels:
            label, yid = K400_CLASSES[k], _youtube_id(rng)
            t0 = int(rng.integers(0, 300))
            t1 = t0 + 10
            name = f"{yid}_{t0:06d}_{t1:06d}.mp4"
            clip = orig / "videos" / split / label / name
            write_video(clip, _frames(rng, frames, size), K400_FPS)
            _link(clip, cvdf / split / name)
            _link(clip, mma / f"videos_{split}" / label.replace(" ", "_") / name)
            rows.append((label, yid, t0, t1, split))
            if split == "train":
                train_clips.append((str(clip), k))
        table = pd.DataFrame(rows, columns=["label", "youtube_id", "time_start", "time_end", "split"])
        release = "train.csv" if split == "train" else "validate.csv"
        for base in (orig, mma):
            (base / "annotations").mkdir(parents=True, exist_ok=True)
            table.to_csv(base / "annotations" / release, index=False)
        (cvdf / "annotations").mkdir(parents=True, exist_ok=True)
        table.assign(is_cc=(np.arange(len(table)) % 2).astype(int)).to_csv(
            cvdf / "annotations" / f"{split}.csv", index=False
        )
        specs["class_folders"][split] = {
            "format": "kinetics",
            "path": str(orig / "annotations" / release),
            "root": str(orig / "videos" / split),
        }
        specs["cvdf"][split] = {
            "format": "kinetics",
            "path": str(cvdf / "annotations" / f"{split}.csv"),
            "root": str(cvdf / split),
            "path_format": "flat",
        }
        specs["underscored"][split] = {
            "format": "kinetics",
            "path": str(mma / "annotations" / release),
            "root": str(mma / f"videos_{split}"),
            "path_format": "class_folders_underscored",
        }
    return specs, train_clips


def _ssv2(root: Path, rng, frames: int, size) -> tuple[dict, list]:
    base = root / "ssv2"
    videos = base / "20bn-something-something-v2"
    classes = [t.replace("[", "").replace("]", "") for t in SSV2_TEMPLATES]
    ids = {c: str(k) for k, c in zip((2, 0, 1), classes)}  # string ids, not in file order (as released)
    base.mkdir(parents=True, exist_ok=True)
    (base / "something-something-v2-labels.json").write_text(json.dumps(ids, indent=1))
    spec, train_clips, next_id = {}, [], 78687
    for split, labels in _per_class(SSV2_TEMPLATES).items():
        items = []
        for k in labels:
            vid = str(next_id)
            next_id += 1
            write_video(videos / f"{vid}.webm", _frames(rng, frames, size), SSV2_FPS, "libvpx-vp9")
            things = ["a pen", "a table"][: SSV2_TEMPLATES[k].count("[something]")]
            text = SSV2_TEMPLATES[k]
            for thing in things:
                text = text.replace("[something]", thing, 1)
            items.append(
                {"id": vid, "label": text[0].lower() + text[1:], "template": SSV2_TEMPLATES[k], "placeholders": things}
            )
            if split == "train":
                train_clips.append((str(videos / f"{vid}.webm"), int(ids[classes[k]])))
        name = "train" if split == "train" else "validation"
        (base / f"something-something-v2-{name}.json").write_text(json.dumps(items, indent=1))
        spec[split] = {
            "format": "ssv2",
            "path": str(base / f"something-something-v2-{name}.json"),
            "root": str(videos),
            "labels": str(base / "something-something-v2-labels.json"),
        }
    return spec, train_clips


def _images(root: Path, rng, size) -> dict:
    """IN1K and Places205 ImageFolders and the iNat21 JSON; their task specs."""
    specs = {}
    in1k = root / "imagenet" / "imagenet_full_size" / "061417"
    places = root / "places205" / "121517" / "pytorch"
    n = 0
    for split, labels in _per_class(IN1K_WNIDS).items():
        for k in labels:
            n += 1
            wnid = IN1K_WNIDS[k]
            name = f"{wnid}_{10026 + n}.JPEG" if split == "train" else f"ILSVRC2012_val_{n:08d}.JPEG"
            write_image(in1k / split / wnid / name, _frames(rng, 1, size)[0])
            write_image(
                places / split / PLACES_CLASSES[k] / f"gsun_{rng.bytes(16).hex()}.jpg", _frames(rng, 1, size)[0]
            )
    specs["in1k"] = {s: {"format": "image_folder", "path": str(in1k / s)} for s in ("train", "val")}
    specs["places205"] = {s: {"format": "image_folder", "path": str(places / s)} for s in ("train", "val")}

    inat = root / "iNaturalist-2021"
    keys = ("kingdom", "phylum", "class", "order", "family", "genus", "specific_epithet")
    cats = [
        {
            "id": c,
            "name": f"{sp[5]} {sp[6]}",
            "common_name": sp[7],
            "supercategory": sp[0],
            **dict(zip(keys, sp[:7])),
            "image_dir_name": f"{c:05d}_{'_'.join(sp[:7])}",
        }
        for c, sp in enumerate(INAT_SPECIES)
    ]
    image_id = 0
    for split, labels in _per_class(INAT_SPECIES).items():
        images, anns = [], []
        for k in labels:
            image_id += 1
            rel = f"{split}/{cats[k]['image_dir_name']}/{rng.bytes(16).hex()}.jpg"
            write_image(inat / rel, _frames(rng, 1, size)[0])
            located = image_id % 2 == 0  # many real images carry no location: null fields
            images.append(
                {
                    "id": image_id,
                    "width": size[0],
                    "height": size[1],
                    "file_name": rel,
                    "license": 1,
                    "rights_holder": "someone",
                    "date": "2019-06-01 12:00:00+00:00",
                    "latitude": 47.5 if located else None,
                    "longitude": 8.5 if located else None,
                    "location_uncertainty": 30 if located else None,
                }
            )
            anns.append({"id": image_id, "image_id": image_id, "category_id": cats[k]["id"]})
        inat.mkdir(parents=True, exist_ok=True)
        (inat / f"{split}.json").write_text(
            json.dumps(
                {
                    "info": {"year": 2021, "version": "1.0", "description": "a release-format stand-in"},
                    "images": images,
                    "categories": cats,
                    "annotations": anns,
                    "licenses": [
                        {"id": 1, "name": "Attribution License", "url": "http://creativecommons.org/licenses/by/4.0/"}
                    ],
                }
            )
        )
    specs["inat21"] = {
        s: {"format": "inat", "path": str(inat / f"{s}.json"), "root": str(inat)} for s in ("train", "val")
    }
    return specs


def _full_action_list(path: Path) -> None:
    """ava_action_list_v2.2.pbtxt: all 80 classes in the `label { label_id label_type }` layout."""
    kind = lambda k: "PERSON_MOVEMENT" if k <= 14 else "OBJECT_MANIPULATION" if k <= 63 else "PERSON_INTERACTION"
    path.write_text(
        "".join(
            f'label {{\n  name: "{n}"\n  label_id: {k}\n  label_type: {kind(k)}\n}}\n'
            for k, n in enumerate(AVA_ACTIONS, 1)
        )
    )


def _py2_pickle(proposals: dict[str, np.ndarray]) -> bytes:
    """The bytes Python 2.7's pickle (protocol 2) writes for {str: float32 ndarray} with numpy 1.x,
    less the memo opcodes: keys and array data are Python 2 byte strings, which Python 3 reads only
    with encoding="latin1". (Checked once against Python 2.7.18 pickling stand-ins that reduce as
    numpy 1.x's arrays and dtypes do: the same opcodes after pickletools.optimize for one key; with
    more, Python 2 also refers back to the globals it wrote before, which loads the same.)"""

    def pystr(b: bytes) -> bytes:  # a Python 2 str: SHORT_BINSTRING or BINSTRING
        return (b"U" + bytes([len(b)]) if len(b) < 256 else b"T" + struct.pack("<i", len(b))) + b

    def ints(values) -> bytes:  # a tuple of ints: TUPLE1..3, else MARK ... TUPLE
        body = b"".join(
            b"K" + bytes([d]) if d < 256 else b"M" + struct.pack("<H", d) if d < 65536 else b"J" + struct.pack("<i", d)
            for d in values
        )
        return body + b"\x85\x86\x87"[len(values) - 1 : len(values)] if 1 <= len(values) <= 3 else b"(" + body + b"t"

    items = []
    for key, arr in proposals.items():
        a = np.ascontiguousarray(arr, dtype="<f4")
        items.append(
            pystr(key.encode("ascii"))
            + b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85"
            + pystr(b"b")
            + b"\x87R"
            + b"(K\x01"
            + ints(a.shape)  # state: version, shape,
            + b"cnumpy\ndtype\n"
            + pystr(b"f4")
            + b"K\x00K\x01\x87R(K\x03"
            + pystr(b"<")
            + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"  # dtype('<f4') and its state,
            + b"\x89"
            + pystr(a.tobytes())
            + b"tb"
        )  # not Fortran order, the raw data; BUILD
    batches = [items[i : i + 1000] for i in range(0, len(items), 1000)]  # SETITEM, or MARK ... SETITEMS per 1000
    body = b"".join(b[0] + b"s" if len(b) == 1 else b"(" + b"".join(b) + b"u" for b in batches)
    return b"\x80\x02}" + body + b"."  # PROTO 2, EMPTY_DICT, ..., STOP


def _write_proposals(props: dict[str, np.ndarray], path: Path, form: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if form == "python2":
        path.write_bytes(_py2_pickle(props))
        return
    with open(path, "wb") as f:  # protocol 2 from Python 3 reduces bytes through _codecs.encode
        pickle.dump(props, f, protocol=2 if form == "protocol2" else pickle.HIGHEST_PROTOCOL)


def _ava(root: Path, rng, size) -> tuple[dict, dict]:
    """AVA v2.2 in SlowFast's layout; returns the detection files (AvaFiles fields) and extras."""
    base = root / "ava"
    ann = base / "annotations"
    ann.mkdir(parents=True, exist_ok=True)
    n_frames = (AVA_KEYFRAMES[-1] + 1 - 900) * 30  # from second 900 through one second after the last keyframe
    non_eval = [k for k in range(1, 81) if k not in AVA_EVAL_CLASS_IDS]
    counts, files = {}, {}
    for split, n_videos in AVA_VIDEOS.items():
        gt, props, frame_list = [], {}, ["original_vido_id video_id frame_id path labels\n"]
        for v in range(n_videos):
            vid = _youtube_id(rng)
            for t, frame in enumerate(_frames(rng, n_frames, size)):
                write_image(base / "frames" / vid / f"{vid}_{t + 1:06d}.jpg", frame)
                frame_list.append(f'{vid} {v} {t} {vid}/{vid}_{t + 1:06d}.jpg ""\n')
            for sec in AVA_KEYFRAMES:
                boxes = []
                for person in range(2):
                    x1, y1 = rng.uniform(0.0, 0.45, 2)
                    box = (round(x1, 3), round(y1, 3), round(x1 + 0.4, 3), round(y1 + 0.5, 3))
                    boxes.append(box)
                    actions = [12 if person == 0 else 11, 79, non_eval[(v + sec + person) % len(non_eval)]]
                    gt += [(vid, sec, *box, a, person) for a in actions]
                cand = [[*b, s] for b, s in zip(boxes, (0.99, 0.93))] + [[0.5, 0.1, 0.9, 0.6, 0.3]]
                props[f"{vid},{sec:04d}"] = np.asarray(cand, np.float32)
        counts[split] = {
            "videos": n_videos,
            "keyframes": n_videos * len(AVA_KEYFRAMES),
            "rows": len(gt),
            "frames_per_video": n_frames,
        }
        write_ava_csv(
            pd.DataFrame(gt, columns=["video_id", "timestamp", "x1", "y1", "x2", "y2", "action_id", "person_id"]),
            ann / f"ava_{split}_v2.2.csv",
        )
        (base / "frame_lists").mkdir(exist_ok=True)
        (base / "frame_lists" / f"{split}.csv").write_text("".join(frame_list))
        name = f"ava_dense_proposals_{split}.FAIR.recall_93.9.pkl"
        files[f"{split}_proposals"] = {
            form: str((ann if form == "protocol2" else base / f"proposals_{form}") / name)
            for form in AVA_PROPOSAL_FORMS
        }
        for form, p in files[f"{split}_proposals"].items():
            _write_proposals(props, Path(p), form)
        counts[split]["proposal_keys"] = len(props)
        if split == "train":  # one excluded keyframe in train; the val file is empty
            first = gt[0]
            (ann / f"ava_{split}_excluded_timestamps_v2.2.csv").write_text(f"{first[0]},{first[1]:04d}\n")
        else:
            (ann / f"ava_{split}_excluded_timestamps_v2.2.csv").write_bytes(b"")
    write_ava_labelmap(
        {k: AVA_ACTIONS[k - 1] for k in AVA_EVAL_CLASS_IDS}, ann / "ava_action_list_v2.2_for_activitynet_2019.pbtxt"
    )
    _full_action_list(ann / "ava_action_list_v2.2.pbtxt")
    detect = {
        "frames": str(base / "frames"),
        "train_groundtruth": str(ann / "ava_train_v2.2.csv"),
        "val_groundtruth": str(ann / "ava_val_v2.2.csv"),
        "labelmap": str(ann / "ava_action_list_v2.2_for_activitynet_2019.pbtxt"),
        "val_proposals": files["val_proposals"]["protocol2"],
        "train_exclusions": str(ann / "ava_train_excluded_timestamps_v2.2.csv"),
        "val_exclusions": str(ann / "ava_val_excluded_timestamps_v2.2.csv"),
    }
    extra = {
        "proposals": {s: files[f"{s}_proposals"] for s in AVA_VIDEOS},
        "labelmap_all": str(ann / "ava_action_list_v2.2.pbtxt"),
        "frame_lists": {s: str(base / "frame_lists" / f"{s}.csv") for s in AVA_VIDEOS},
        "counts": counts,
    }
    return detect, extra


def build_release_tree(root: Path, *, frames: int = 32, size: tuple[int, int] = (340, 256), seed: int = 0) -> dict:
    """Write the tree under `root` (created; must be empty) and return its paths: `tasks` (SplitSource
    dicts per task; K400 in its class-folder layout, `kinetics_layouts` holds all three),
    `detect` (AvaFiles fields), `ava` (the proposals in each form, the other AVA files),
    `pretrain_sources` (the VideoMix2M lists) and `counts` (entries written per split).
    `frames` per clip; `size` (width, height) of every video, image and AVA frame."""
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} is not empty; the release tree is written into a fresh folder")
    root.mkdir(parents=True, exist_ok=True)
    root = root.resolve()
    rng = np.random.default_rng(seed)
    kinetics, k400_train = _kinetics(root, rng, frames, size)
    ssv2, ssv2_train = _ssv2(root, rng, frames, size)
    tasks = {"k400": kinetics["class_folders"], "ssv2": ssv2, **_images(root, rng, size)}
    detect, ava = _ava(root, rng, size)
    howto = []
    for k in range(2):
        clip = root / "howto100m" / f"{_youtube_id(rng)}.mp4"
        write_video(clip, _frames(rng, frames, size), K400_FPS)
        howto.append((str(clip), 0))
    lists = root / "videomix2m"
    sources = {
        "k710": write_path_label_list(k400_train, lists / "k710_train.csv", relative=False),
        "ssv2": write_path_label_list(ssv2_train, lists / "ssv2_train.csv", relative=False),
        "howto100m": write_path_label_list(howto, lists / "howto100m.csv", relative=False),
    }
    classes = {
        "k400": K400_CLASSES,
        "ssv2": SSV2_TEMPLATES,
        "in1k": IN1K_WNIDS,
        "places205": PLACES_CLASSES,
        "inat21": INAT_SPECIES,
    }
    counts = {
        **{task: {s: len(v) for s, v in _per_class(classes[task]).items()} for task in tasks},
        "ava": ava.pop("counts"),
        "pretrain": {"k710": len(k400_train), "ssv2": len(ssv2_train), "howto100m": len(howto)},
    }
    return {
        "root": str(root),
        "tasks": tasks,
        "kinetics_layouts": kinetics,
        "detect": detect,
        "ava": ava,
        "pretrain_sources": [str(p) for p in sources.values()],
        "counts": counts,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="an empty or new folder")
    parser.add_argument("--frames", type=int, default=32, help="frames per clip")
    parser.add_argument("--size", default="340x256", help="WIDTHxHEIGHT of videos, images and AVA frames")
    args = parser.parse_args(argv)
    w, h = (int(v) for v in args.size.lower().split("x"))
    json.dump(build_release_tree(args.out, frames=args.frames, size=(w, h)), sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
