"""What the training runs share (pretraining, probes, finetuning, detection): autocast by precision
name, seeded RNG forks, the resume-compatibility check, atomic writes whose failures name the file
and the cause, and a metrics log that survives a torn last line.

Written here rather than taken from a library: the standard library has no atomic replace-write,
and the error wording (full path plus ENOSPC/EROFS) is what a user needs on a full disk.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import random
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterable, Iterator, Mapping

import numpy as np
import torch

# precision name -> autocast dtype (None: plain fp32); the one spelling every config uses
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def use_foreach(device: torch.device | str) -> bool:
    """Whether AdamW and the EMA run torch's foreach kernels: on a GPU (one launch per group of
    tensors), not on the CPU, where the per-parameter loop is the faster of the two (AdamW 13 against
    24 ms per step at ViT-tiny size, measured here); both give the same bits (tests pin it)."""
    return torch.device(device).type == "cuda"


def autocast_for(device: torch.device, precision: str) -> Callable[[], ContextManager]:
    """A factory of autocast contexts for `precision` on `device` (disabled for fp32)."""
    dtype = PRECISIONS[precision]
    return lambda: torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


@contextmanager
def seeded(seed: int, device: torch.device | None = None) -> Iterator[None]:
    """Python, numpy and torch RNGs seeded with `seed` inside, restored after: torch's CPU state
    always, and a CUDA `device`'s state too (None or a CPU device: the CPU state only)."""
    py, npy = random.getstate(), np.random.get_state()
    devices = [device.index or 0] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(npy)


def mix_seed(*parts: int) -> int:
    """The one seed-mixing rule of the project: a 63-bit seed hashed from integer parts (a run's seed,
    a step, a rank...), so nearby parts give unrelated streams."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> 1)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The torch generator that shuffles epoch `epoch` of a run seeded with `seed` (resumable per epoch)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


class NonFiniteLossError(FloatingPointError):
    """A loss or the features a head trains on became NaN or infinite. Raised before the optimizer
    step, so no weight is touched, and before anything is written, so nothing is published."""


def require_finite(values: Any, what: str, *optimizers: torch.optim.Optimizer) -> None:
    """The non-finite guard every training loop shares (pretraining, probes, detection,
    finetuning): when `values` (a number, a list of numbers or a tensor) hold a NaN or an infinity,
    clear the optimizers' gradients and raise NonFiniteLossError("non-finite <what>")."""
    if isinstance(values, torch.Tensor):
        ok = bool(torch.isfinite(values.detach()).all())
    else:
        ok = all(math.isfinite(float(v)) for v in (values if isinstance(values, (list, tuple)) else [values]))
    if not ok:
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        raise NonFiniteLossError(f"non-finite {what}")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, unsafe, of the wrong layout, or written by another config."""


def check_resume(
    saved_config: Mapping,
    config: Mapping,
    path: str | os.PathLike,
    *,
    keys: Iterable[str] | None = None,
    ignore: Iterable[str] = (),
    extra: Mapping[str, tuple[Any, Any]] | None = None,
) -> list[str]:
    """The one rule for resuming from `path`, a state written by a run of `saved_config`: the keys that
    fix what the run computes must be equal, else CheckpointError names each (old -> new value).
    `keys`: only these must match (in this order; default every key but `ignore`, sorted); `extra`:
    more values that must match, name -> (saved, now), such as the process count. Returns the keys
    that differ but are allowed to (settings that do not change results), for the caller to report."""
    differs = sorted(k for k in set(saved_config) | set(config) if saved_config.get(k) != config.get(k))
    ignore = set(ignore)
    fixed = [k for k in keys if k in differs] if keys is not None else [k for k in differs if k not in ignore]
    detail = [f"{k}: {saved_config.get(k)!r} -> {config.get(k)!r}" for k in fixed]
    detail += [f"{name} {old} -> {new}" for name, (old, new) in (extra or {}).items() if old != new]
    if detail:
        raise CheckpointError(
            f"cannot resume from {path}: the run's config changed ({', '.join(detail)}); "
            "use a new out_dir, or delete the state, or restore the config"
        )
    return [k for k in differs if k not in fixed]


class PathEscapeError(ValueError):
    """A path that came from outside (a flow run, a checkpoint, an annotation file, a profile)
    points outside the folder it belongs to."""


def confined(path: str | os.PathLike, root: str | os.PathLike, what: str = "path", follow_links: bool = True) -> Path:
    """`path` (relative to `root`) joined under it, refused with PathEscapeError naming it when it is
    absolute or leads out of `root`: by `..`, or (follow_links) by a symlink inside `root` that
    points out. Without follow_links the check is on the name alone, for data trees whose folders
    may be links to other disks."""
    if Path(path).is_absolute():
        raise PathEscapeError(f"{what} {str(path)!r} is absolute; it must be relative to {root}")
    if follow_links:
        base = Path(root).resolve()
        full = (base / path).resolve()
    else:
        base = Path(os.path.abspath(root))
        full = Path(os.path.normpath(base / path))
    if full != base and base not in full.parents:
        raise PathEscapeError(f"{what} {str(path)!r} leads outside {base} (to {full})")
    return full


class WriteError(OSError):
    """A file could not be written: the message names the full path and the cause (ENOSPC, EROFS, ...)."""


def _describe(path: Path, e: OSError) -> WriteError:
    code = errno.errorcode.get(e.errno, "?") if e.errno else type(e).__name__
    return WriteError(e.errno, f"cannot write {path.resolve()}: {code} ({e.strerror or e})")


@contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w") -> Iterator[Any]:
    """Open a temporary file beside `path`; on a clean exit it is flushed, fsynced and renamed over
    `path`, so a crash never leaves a half-written file there. A failed write raises WriteError."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise _describe(path, e) from e
    try:
        # mkstemp creates the file 0600; a file written in place would get 0666 less the umask,
        # and that is what other users (a shared results folder, a DVC cache) expect to read
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        _discard(tmp)
        raise _describe(path, e) from e
    except BaseException:
        _discard(tmp)
        raise


def _umask() -> int:
    """The process umask (read by setting it, so set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _discard(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except OSError:
        pass


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_file(path) as f:
        f.write(text)
    return Path(path)


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """JSON, indented and key-sorted (the metrics files' format), written atomically."""
    return write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def source_stamp(path: str) -> str | list[str]:
    """What identifies an annotation source: a file's size and content hash; an ImageFolder root's
    class folder names (hashing every image of a dataset would take hours)."""
    if os.path.isdir(path):  # an ImageFolder root: its class folders
        with os.scandir(path) as it:
            return sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))
    h, size = hashlib.blake2b(digest_size=16), 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
            size += len(chunk)
    return f"{size}:{h.hexdigest()}"


# Wall clock, throughput and memory differ between two runs on the same inputs: a run reports them
# (its return value, hence a stage's metrics file and MLflow) but never writes them into its output
# folder, whose bytes (and DVC hash) must depend on the inputs alone.
TIMINGS = frozenset(
    {"seconds", "wall_s", "clips_per_s", "train_clips_per_s", "peak_memory_mb", "read_seconds", "build_seconds"}
)


def without_timings(data: Any) -> Any:
    """`data` with the TIMINGS keys dropped at every depth: what a run may write to its output folder."""
    if isinstance(data, Mapping):
        return {k: without_timings(v) for k, v in data.items() if k not in TIMINGS}
    if isinstance(data, (list, tuple)):
        return [without_timings(v) for v in data]
    return data


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def _jsonl(path: Path, keep: Callable[[dict], bool]) -> list[tuple[dict, str]]:
    lines = path.read_text().splitlines()
    rows = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            if i == len(lines) - 1:
                warnings.warn(
                    f"{path}: dropped a partial last line ({len(line)} characters: {e.msg}); "
                    "the run resumes from its checkpoint",
                    stacklevel=3,
                )
                break
            raise ValueError(f"{path}:{i + 1}: not a JSON line ({e.msg})") from None
        if keep(row):
            rows.append((row, line))
    return rows


class JsonlLog:
    """Append-only JSON lines (one per step); opened for a resume at `resume_step`, it keeps only the
    rows up to that step (later ones will be logged again) and drops a torn last line."""

    def __init__(self, path: str | os.PathLike, resume_step: int = 0):
        self.path = Path(path)
        if self.path.exists():
            rows = _jsonl(self.path, lambda row: row["step"] <= resume_step)
            write_text(self.path, "".join(line + "\n" for _, line in rows))

    def write(self, row: dict) -> None:
        try:
            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")
        except OSError as e:
            raise _describe(self.path, e) from e
