"""Annotation readers at the paper's dataset sizes: read time and peak memory per format at 1x and
4x the real size, and the 4x/1x ratios (linear reading gives about 4), in one run.

Writes synthetic annotation files in each real layout (no media files; existence checks off) into
a temporary folder, then reads each in a fresh subprocess so that its peak resident memory
(getrusage maxrss) is the reader's own:

  kinetics      Kinetics-400 train CSV, 240,000 rows
  ssv2          Something-Something-v2 train JSON (pretty-printed), 168,913 entries + labels JSON
  inat_oneline  iNat21 train JSON on one line, 2,686,843 images, 10,000 categories (all fields)
  inat_pretty   the same pretty-printed
  image_folder  an ImageFolder tree, 1,281,167 empty files in 1,000 folders (IN1K; 4x covers
                Places205's ~2.4M)
  ava           AVA v2.2 ground-truth CSV, 800,000 rows
  list          a `path label` list of 2,000,000 lines (VideoMix2M's size)

    python benchmarks/bench_scale.py                       # everything, 1x and 4x
    python benchmarks/bench_scale.py --formats ssv2,list --fraction 0.1
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FULL = {
    "kinetics": 240_000,
    "ssv2": 168_913,
    "inat_oneline": 2_686_843,
    "inat_pretty": 2_686_843,
    "image_folder": 1_281_167,
    "ava": 800_000,
    "list": 2_000_000,
}
_ID = string.ascii_letters + string.digits + "-_"


def _yid(rng: random.Random) -> str:
    return "".join(rng.choices(_ID, k=11))


# ---------------------------------------------------------------------------------------------
# Writers (real layouts, synthetic entries)


def write_kinetics(d: Path, n: int) -> dict:
    rng = random.Random(0)
    classes = [f"class {k} doing things" for k in range(400)]
    with open(d / "train.csv", "w") as f:
        f.write("label,youtube_id,time_start,time_end,split\n")
        for _ in range(n):
            t0 = rng.randrange(0, 300)
            f.write(f"{rng.choice(classes)},{_yid(rng)},{t0},{t0 + 10},train\n")
    return {"path": str(d / "train.csv")}


def write_ssv2(d: Path, n: int) -> dict:
    rng = random.Random(0)
    templates = [f"Putting [something] onto [something] {k}" for k in range(174)]
    (d / "labels.json").write_text(
        json.dumps({t.replace("[", "").replace("]", ""): str(k) for k, t in enumerate(templates)}, indent=4)
    )
    with open(d / "train.json", "w") as f:
        f.write("[\n")
        for k in range(n):
            t = rng.choice(templates)
            item = {
                "id": str(k + 1),
                "label": t.replace("[something]", "a pen"),
                "template": t,
                "placeholders": ["a pen", "a book"],
            }
            f.write(("" if k == 0 else ",\n") + json.dumps(item, indent=4))
        f.write("\n]\n")
    return {"path": str(d / "train.json"), "labels": str(d / "labels.json")}


def write_inat(d: Path, n: int, pretty: bool) -> dict:
    rng = random.Random(0)
    ncat = 10_000
    dump = (lambda o: json.dumps(o, indent=2)) if pretty else (lambda o: json.dumps(o, separators=(",", ":")))
    sep = ",\n" if pretty else ","
    cats = [
        {
            "id": k,
            "name": f"Genus{k} species{k}",
            "common_name": f"Common {k}",
            "supercategory": "Plants",
            "kingdom": "Plantae",
            "phylum": "Tracheophyta",
            "class": "Magnoliopsida",
            "order": "Asterales",
            "family": "Asteraceae",
            "genus": f"Genus{k}",
            "specific_epithet": f"species{k}",
            "image_dir_name": f"{k:05d}_Plantae_Tracheophyta_Magnoliopsida_Asterales_Asteraceae_Genus{k}_species{k}",
        }
        for k in range(ncat)
    ]
    with open(d / "train.json", "w") as f:
        f.write('{"info":' + dump({"year": 2021, "version": 2, "description": "iNat2021 (synthetic)"}) + sep)
        f.write('"images":[')
        for k in range(n):
            c = cats[k % ncat]
            im = {
                "id": k,
                "width": 500,
                "height": 375,
                "file_name": f"train/{c['image_dir_name']}/{k:08x}-4c1e-4a4f-9b0e-{rng.getrandbits(48):012x}.jpg",
                "license": 1,
                "rights_holder": f"user{k % 997}",
                "date": "2019-06-01 12:00:00+00:00",
                "latitude": round(rng.uniform(-60, 60), 5),
                "longitude": round(rng.uniform(-180, 180), 5),
                "location_uncertainty": rng.randrange(1, 1000),
            }
            f.write(("" if k == 0 else sep) + dump(im))
        f.write('],"categories":[' + sep.join(dump(c) for c in cats) + '],"annotations":[')
        for k in range(n):
            f.write(("" if k == 0 else sep) + dump({"id": k, "image_id": k, "category_id": k % ncat}))
        f.write('],"licenses":[{"id":1,"name":"CC BY-NC","url":"http://creativecommons.org/licenses/by-nc/4.0/"}]}\n')
    return {"path": str(d / "train.json")}


def write_image_folder(d: Path, n: int) -> dict:
    root = d / "train"
    per, extra = divmod(n, 1000)
    flags = os.O_CREAT | os.O_WRONLY
    for c in range(1000):
        folder = root / f"n{c:08d}"
        folder.mkdir(parents=True)
        base = str(folder)
        for k in range(per + (c < extra)):
            os.close(os.open(f"{base}/n{c:08d}_{k}.JPEG", flags, 0o644))
    return {"path": str(root)}


def write_ava(d: Path, n: int) -> dict:
    rng = random.Random(0)
    vids = [_yid(rng) for _ in range(235)]
    with open(d / "ava_train_v2.2.csv", "w") as f:
        for k in range(n):
            x1, y1 = rng.random() * 0.5, rng.random() * 0.5
            f.write(
                f"{vids[k % 235]},{902 + (k // 235) % 897:04d},{x1:.3f},{y1:.3f},{x1 + 0.4:.3f},{y1 + 0.4:.3f},"
                f"{rng.randrange(1, 81)},{k % 13}\n"
            )
    return {"path": str(d / "ava_train_v2.2.csv")}


def write_list(d: Path, n: int) -> dict:
    rng = random.Random(0)
    with open(d / "train.csv", "w") as f:
        for _ in range(n):
            f.write(
                f"/datasets/k710/videos_320/{_yid(rng)}_{rng.randrange(0, 300):06d}_000010.mp4 {rng.randrange(710)}\n"
            )
    return {"path": str(d / "train.csv")}


WRITERS = {
    "kinetics": write_kinetics,
    "ssv2": write_ssv2,
    "inat_oneline": lambda d, n: write_inat(d, n, False),
    "inat_pretty": lambda d, n: write_inat(d, n, True),
    "image_folder": write_image_folder,
    "ava": write_ava,
    "list": write_list,
}


# ---------------------------------------------------------------------------------------------
# Reader (run in a fresh subprocess)


def read_once(fmt: str, files: dict) -> dict:
    from vjepa.data.ava import read_ava_csv
    from vjepa.data.readers import read_image_folder, read_inat_json, read_kinetics_csv, read_path_label_list, read_ssv2

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    c0 = time.process_time()  # CPU time of this process (all its threads): less sensitive to other load
    t0 = time.perf_counter()
    if fmt == "kinetics":
        out, _ = read_kinetics_csv(files["path"], check_files=False)
    elif fmt == "ssv2":
        out, _ = read_ssv2(files["path"], files["labels"], check_files=False)
    elif fmt.startswith("inat"):
        out, _ = read_inat_json(files["path"], check_files=False)
    elif fmt == "image_folder":
        out, _ = read_image_folder(files["path"])
    elif fmt == "ava":
        out = read_ava_csv(files["path"])
    else:
        out = read_path_label_list(files["path"], check_files=False)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    held = int(out.memory_usage(deep=True).sum()) if hasattr(out, "memory_usage") else out.nbytes
    return {
        "entries": len(out),
        "seconds": seconds,
        "cpu": cpu,
        "peak_mb": peak / 1024,
        "base_mb": base / 1024,
        "held_mb": held / 2**20,
    }


def run_worker(fmt: str, files: dict) -> dict:
    cmd = [sys.executable, __file__, "--worker", fmt, "--files", json.dumps(files)]
    repo = str(Path(__file__).resolve().parents[1])  # this checkout's vjepa, not an installed copy
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))}
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=repo, env=env)
    if res.returncode:
        raise RuntimeError(f"{fmt}: the reader failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--formats", default=",".join(FULL))
    ap.add_argument("--fraction", type=float, default=1.0, help="of the real sizes (1x); 4x is four times that")
    ap.add_argument("--multipliers", default="1,4")
    ap.add_argument("--tmp", default=None, help="folder for the files (default: a temp folder, removed after)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--files", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(read_once(args.worker, json.loads(args.files))))
        return
    mults = [int(m) for m in args.multipliers.split(",")]
    tmp = Path(args.tmp or tempfile.mkdtemp(prefix="bench_scale_"))
    rows = []
    try:
        for fmt in args.formats.split(","):
            res = {}
            for m in mults:
                d = tmp / f"{fmt}_{m}x"
                d.mkdir(parents=True, exist_ok=True)
                n = max(1000, int(FULL[fmt] * args.fraction * m))
                t0 = time.perf_counter()
                files = WRITERS[fmt](d, n)
                size = sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
                print(
                    f"[{fmt} {m}x] wrote {n:,} entries ({size / 2**20:.0f} MB) in {time.perf_counter() - t0:.0f} s",
                    flush=True,
                )
                res[m] = run_worker(fmt, files)
                res[m]["n"], res[m]["file_mb"] = n, size / 2**20
                r = res[m]
                print(
                    f"[{fmt} {m}x] read {r['entries']:,} in {r['seconds']:.2f} s ({r['cpu']:.2f} s CPU), peak RSS "
                    f"{r['peak_mb']:.0f} MB "
                    f"(after imports {r['base_mb']:.0f} MB), result holds {r['held_mb']:.0f} MB",
                    flush=True,
                )
                shutil.rmtree(d)
            rows.append((fmt, res))
    finally:
        if args.tmp is None:
            shutil.rmtree(tmp, ignore_errors=True)
    lo, hi = mults[0], mults[-1]
    print(
        f"\n| format | entries {lo}x | file {lo}x | read {lo}x | peak RSS {lo}x | held {lo}x | entries {hi}x | "
        f"read {hi}x | peak RSS {hi}x | time {hi}x/{lo}x | CPU {hi}x/{lo}x | peak {hi}x/{lo}x |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for fmt, res in rows:
        a, b = res[lo], res[hi]
        grow = lambda k: (b[k] - b["base_mb"]) / max(a[k] - a["base_mb"], 1e-9)
        print(
            f"| {fmt} | {a['entries']:,} | {a['file_mb']:.0f} MB | {a['seconds']:.2f} s | {a['peak_mb']:.0f} MB | "
            f"{a['held_mb']:.0f} MB | {b['entries']:,} | {b['seconds']:.2f} s | {b['peak_mb']:.0f} MB | "
            f"{b['seconds'] / a['seconds']:.2f} | {b['cpu'] / a['cpu']:.2f} | {grow('peak_mb'):.2f} |"
        )
    print(
        "\nread = wall time; CPU = the reader process's CPU time (all threads), the steadier figure on a "
        "shared machine. peak RSS includes the interpreter and imports (about the 'after imports' figure); "
        "the peak ratio is "
        "of the reader's own growth (peak minus that); 'held' is the memory of the returned entries."
    )


if __name__ == "__main__":
    main()
