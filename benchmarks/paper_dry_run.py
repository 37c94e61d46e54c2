"""The paper dry run by hand: a paper profile shrunk to CPU size (tests/test_paper_profiles.py's
test profile: only data paths and compute changed) run with `dvc repro` over the release-format
tree (tests/release_tree.py) in a copy of this checkout, then each stage's wall time, read from
when its outputs were written (so DVC's own work between stages is counted in the stage after it).

    python benchmarks/paper_dry_run.py paper-vitl16 [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from conftest import checkout_copy  # noqa: E402
from release_tree import build_release_tree  # noqa: E402
from test_paper_profiles import _with_test_profile  # noqa: E402


def stage_outputs(repo: Path, profile: str) -> dict[str, Path]:
    """{stage: the metrics or stamp file it writes last}."""
    out = {f"source@{p.stem}": p for p in (repo / "data/sources").rglob("*.json")}
    metrics = repo / "metrics" / profile
    for p in metrics.rglob("*.json"):
        rel = p.relative_to(metrics)
        if rel.parts[0] in ("details", "curves"):
            continue
        name = rel.with_suffix("").as_posix()
        stage = name.replace("/seed", "@").replace("/", "@") if "/" in name else name
        out[stage] = p
    for stage in ("prepare", "masks"):  # their metrics are details only
        out[stage] = metrics / "details" / f"{stage}.json"
    out["report"] = repo / "reports" / profile / "README.md"
    return {k: v for k, v in out.items() if v.exists()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("base", help="paper-vitl16, paper-vith16 or paper-vith16-384")
    ap.add_argument("--keep", help="build in this folder and keep it (default: a temporary one)")
    args = ap.parse_args()
    top = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="paper-dry-run-"))
    top.mkdir(parents=True, exist_ok=True)
    tree = build_release_tree(top / "tree")
    repo = checkout_copy(top / "repo", without=("metrics/", "reports/", "dvc.lock"))
    name = _with_test_profile(repo, args.base, tree)
    env = {
        **os.environ,
        "VJEPA_MLFLOW": "0",
        "DVC_NO_ANALYTICS": "1",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    t0 = time.time()
    done = subprocess.run(["dvc", "repro"], cwd=repo, env=env)
    total = time.time() - t0
    if done.returncode:
        print(f"dvc repro failed after {total:.0f} s (exit {done.returncode}); the copy is in {repo}")
        return done.returncode
    times = sorted((p.stat().st_mtime, s) for s, p in stage_outputs(repo, name).items())
    print(f"\n{args.base} over the release-format tree: {len(times)} stages, dvc repro {total:.0f} s\n")
    print("| stage | wall s |\n| --- | ---: |")
    last = t0
    for t, stage in times:
        print(f"| {stage} | {t - last:.1f} |")
        last = t
    return 0


if __name__ == "__main__":
    sys.exit(main())
