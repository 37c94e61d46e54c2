"""Are two runs of a profile's DAG the same results? Compare two metrics folders value by value.

    python scripts/compare_metrics.py OLD_CHECKOUT/metrics/default NEW_CHECKOUT/metrics/default

Every JSON file under each folder is read and flattened to dotted keys; a stage's file is matched by
its name, looked up first under `details/` (where the full record lives since the headline/details
split) and then at the top (older runs kept everything there), and `--rename OLD=NEW` maps renamed
files (e.g. `ablate/paper=ablate/reference`). Timings, rates and memory vary run to run and are left
out (the keys of vjepa.infra.runtime.TIMINGS, the ones a run keeps out of its cached outputs); every
other number must be equal, bit for bit. Prints each difference and a summary; exits 1 if any value
differs, 0 otherwise. Files or keys present on one side only are listed, not counted as differences.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vjepa.infra.runtime import read_json, without_timings


def flatten(value, prefix: str = ""):
    """(dotted key, leaf) pairs of a JSON value; list items are keyed by their index."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from flatten(v, f"{prefix}[{i}]")
    else:
        yield prefix, value


def records(root: Path) -> dict[str, Path]:
    """Stage name (path under root without .json, details/ stripped) -> the fullest file for it."""
    found: dict[str, Path] = {}
    for path in sorted(root.rglob("*.json")):
        rel = path.relative_to(root).with_suffix("").as_posix()
        name = rel.removeprefix("details/")
        if rel.startswith("details/") or name not in found:
            found[name] = path
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--rename", action="append", default=[], help="OLD=NEW stage file names")
    args = parser.parse_args(argv)
    renames = dict(r.split("=", 1) for r in args.rename)
    old = {renames.get(k, k): v for k, v in records(args.old).items()}
    new = records(args.new)
    compared = differ = 0
    for name in sorted(set(old) | set(new)):
        if name not in old or name not in new:
            print(f"only in {'old' if name in old else 'new'}: {name}")
            continue
        a = dict(flatten(without_timings(read_json(old[name]))))
        b = dict(flatten(without_timings(read_json(new[name]))))
        one_side = sorted(set(a) ^ set(b))
        if one_side:
            print(f"{name}: keys on one side only: {', '.join(one_side[:8])}{' ...' if len(one_side) > 8 else ''}")
        for key in sorted(set(a) & set(b)):
            compared += 1
            if a[key] != b[key]:
                differ += 1
                print(f"{name}: {key}: {a[key]!r} -> {b[key]!r}")
    print(f"{compared} values compared in {len(set(old) & set(new))} files, {differ} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
