"""Cached outputs are deterministic: `dvc repro -f` of a stage on the same inputs writes a
byte-identical output folder, so its DVC hash stays and nothing downstream re-runs. Wall time, rates
and memory go to the stage's metrics file (not cached) and MLflow, never into its `outs`."""

from pathlib import Path

import yaml
from conftest import checkout_copy, dvc

from pipeline.profiles import use_profile


def out_hash(repo: Path, stage: str, out: str) -> str:
    """The md5 dvc.lock records for output `out` of `stage`."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"][stage]
    return next(o["md5"] for o in lock["outs"] if o["path"] == out)


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_pretrain_forced_to_rerun_on_the_same_inputs_keeps_its_output_hash(tmp_path):
    repo = checkout_copy(tmp_path / "checkout")
    use_profile("smoke", repo)
    dvc(repo, "repro", "pretrain@0")
    out = "runs/pretrain/seed0"
    first, files = out_hash(repo, "pretrain@0", out), tree_bytes(repo / out)
    assert {"checkpoint.pth.tar", "metrics.jsonl"} <= set(files)
    dvc(repo, "repro", "-f", "-s", "pretrain@0")
    again = tree_bytes(repo / out)
    assert sorted(again) == sorted(files)
    assert [name for name in files if files[name] != again[name]] == []
    assert out_hash(repo, "pretrain@0", out) == first
