"""scripts/compare_metrics.py: timings are left out, every other value must be equal."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "compare_metrics.py"


def _write(root: Path, rel: str, record: dict) -> None:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_text(json.dumps(record))


def _compare(old: Path, new: Path, *extra: str):
    return subprocess.run([sys.executable, str(SCRIPT), str(old), str(new), *extra], capture_output=True, text=True)


def test_timings_may_move_a_loss_may_not_and_renamed_and_split_files_are_matched(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    _write(old, "pretrain/seed0.json", {"final_loss": 0.25, "wall_s": 500.0, "clips_per_s": 20.0, "runs": [1, 2]})
    _write(old, "ablate/paper.json", {"top1": 40.0, "peak_memory_mb": 900})
    # the new layout: headline at the top, the full record under details/, the point renamed
    _write(new, "pretrain/seed0.json", {"final_loss": 0.25})
    _write(
        new, "details/pretrain/seed0.json", {"final_loss": 0.25, "wall_s": 61.0, "clips_per_s": 90.0, "runs": [1, 2]}
    )
    _write(new, "details/ablate/reference.json", {"top1": 40.0, "peak_memory_mb": 1200})
    same = _compare(old, new, "--rename", "ablate/paper=ablate/reference")
    assert same.returncode == 0 and "4 values compared in 2 files, 0 differ" in same.stdout, same.stdout
    _write(new, "details/pretrain/seed0.json", {"final_loss": 0.2500001, "wall_s": 61.0, "runs": [1, 3]})
    moved = _compare(old, new, "--rename", "ablate/paper=ablate/reference")
    assert moved.returncode == 1
    assert "pretrain/seed0: final_loss: 0.25 -> 0.2500001" in moved.stdout and "runs[1]: 2 -> 3" in moved.stdout
    assert "2 differ" in moved.stdout
