"""Read and check each dataset once: `prepare` validates a task's annotations and writes a compact
index (one Parquet file per task: split, path, label), and later stages load that index in
seconds instead of re-reading and re-checking the release files.

The index records the task spec and the size and content hash of every annotation file (for an
ImageFolder tree: the names of its class folders; files added inside them are not seen), and
loading refuses an index whose task spec or sources changed since (re-run prepare), so a stale
index is never used silently. Hashing reads each annotation file once (about a second per GB);
modification times would be cheaper but change when data is copied to another machine.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vjepa.data.checks import check_sample
from vjepa.data.readers import AnnotationError, Entries
from vjepa.data.sources import read_task
from vjepa.infra.configs import TaskData
from vjepa.infra.runtime import source_stamp
from vjepa.infra.configs import IndexConfig

INDEX_VERSION = 1
_SPLITS = ("train", "val")


def index_path(index_dir: str | os.PathLike, name: str) -> Path:
    return Path(index_dir) / f"{name}.parquet"


def _stamps(task: TaskData) -> dict:
    files = [f for src in (task.train, task.val) for f in (src.path, src.labels) if f]
    return {str(f): source_stamp(str(f)) for f in dict.fromkeys(files)}


def read_checked_task(task: TaskData, config: IndexConfig) -> tuple[Entries, Entries, dict[str, int]]:
    """read_task, with every listed file checked (config.check_files) or a sample of each split's."""
    train, val, classes = read_task(task, check_files=config.check_files, progress=config.progress)
    if not config.check_files and task.train.format != "image_folder":  # a folder listing: its files exist
        for split, entries in (("train", train), ("val", val)):
            check_sample(entries.paths, getattr(task, split).path, config.sample_files)
    return train, val, classes


def write_task_index(
    name: str, task: TaskData, index_dir: str | os.PathLike, config: IndexConfig | None = None
) -> dict:
    """Read and check `task` (every entry; files too with config.check_files) and write
    <index_dir>/<name>.parquet atomically. Returns a summary (counts, classes, seconds, bytes)."""
    config = config or IndexConfig()
    t0 = time.perf_counter()
    train, val, classes = read_checked_task(task, config)
    seconds = time.perf_counter() - t0
    meta = {
        "version": INDEX_VERSION,
        "name": name,
        "task": {s: asdict(getattr(task, s)) for s in _SPLITS},
        "classes": classes,
        "sources": _stamps(task),
        "checked_files": config.check_files,
    }
    table = pa.table(
        {
            "split": pa.array(np.repeat(np.array([0, 1], dtype=np.int8), [len(train), len(val)])),
            "path": pa.concat_arrays([train.paths, val.paths]),
            "label": pa.array(np.concatenate([train.labels, val.labels])),
        }
    ).replace_schema_metadata({"vjepa_index": json.dumps(meta)})
    out = index_path(index_dir, name)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, out)
    return {
        "train": len(train),
        "val": len(val),
        "classes": len(classes),
        "read_seconds": round(seconds, 3),
        "index_bytes": out.stat().st_size,
        "checked_files": config.check_files,
    }


def load_task_index(name: str, task: TaskData, index_dir: str | os.PathLike) -> tuple[Entries, Entries, dict[str, int]]:
    """(train, val, classes) from the index `prepare` wrote, in the same label space read_task
    gives. An index written for another task spec, or whose annotation files changed since, is an
    error asking to re-run prepare."""
    path = index_path(index_dir, name)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no index for task {name!r}; run the prepare stage first")
    table = pq.read_table(path)
    meta = json.loads((table.schema.metadata or {}).get(b"vjepa_index", b"{}"))
    if meta.get("version") != INDEX_VERSION:
        raise AnnotationError(path, None, f"index version {meta.get('version')} is not {INDEX_VERSION}; re-run prepare")
    spec = {s: asdict(getattr(task, s)) for s in _SPLITS}
    if meta["task"] != spec:
        raise AnnotationError(path, None, f"index was written for task spec {meta['task']}, now {spec}; re-run prepare")
    try:
        now = _stamps(task)
    except FileNotFoundError as e:
        raise AnnotationError(e.filename, None, "annotation file of an indexed task is gone; re-run prepare") from None
    changed = [f for f, st in now.items() if meta["sources"].get(f) != st]
    if changed:
        raise AnnotationError(
            path, None, f"annotation files changed since the index was written: {changed[:3]}; re-run prepare"
        )
    split = table.column("split").to_numpy()
    paths, labels = table.column("path").combine_chunks(), table.column("label").to_numpy()
    n_train = int((split == 0).sum())
    if not (split[:n_train] == 0).all():
        raise AnnotationError(path, None, "index rows are not train then val; re-run prepare")
    train = Entries(paths.slice(0, n_train), labels[:n_train])
    val = Entries(paths.slice(n_train), labels[n_train:])
    return train, val, {str(k): int(v) for k, v in meta["classes"].items()}
