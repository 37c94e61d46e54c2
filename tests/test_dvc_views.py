"""DVC as a comparison tool (issue 32): `dvc metrics show` lists the headline numbers only, and
`dvc plots show` draws every seed's pretraining curves and the ablation comparison."""

import json
import shutil
import subprocess
import sys
from pathlib import Path


from pipeline.plumbing import curves_path, headline_numbers, write_curves

ROOT = Path(__file__).resolve().parent.parent
DVC = [sys.executable, "-m", "dvc"]


def _columns(tree, prefix=""):
    """The column names `dvc metrics show` prints for one file: its flattened keys."""
    if isinstance(tree, dict):
        return set().union(*[_columns(v, f"{prefix}.{k}" if prefix else k) for k, v in tree.items()] or [set()])
    return {prefix}


def _dvc(args, cwd):
    out = subprocess.run([*DVC, *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_dvc_metrics_show_on_the_committed_default_metrics_prints_at_most_40_columns():
    shown = json.loads(_dvc(["metrics", "show", "--json"], ROOT))
    files = next(iter(shown.values()))["data"]  # the workspace
    columns = set().union(*[_columns(f["data"]) for f in files.values()])
    assert "metrics/default/probe/k400.json" in files and "reports/default/verdicts/ablate/target-copy.json" in files
    assert {
        "top1_by_kind.attentive",
        "top1_by_kind.linear",
        "mAP",
        "final_loss",
        "final_target_std",
        "attentive.margin",
        "attentive.verdict",
    } <= columns
    assert not any(c.startswith(("clips.", "per_class", "bytes", "history")) for c in columns)
    assert len(columns) <= 40, sorted(columns)
    assert files["reports/default/verdicts/ablate/target-copy.json"]["data"]["attentive"]["verdict"] == "worse"


def test_metrics_files_hold_the_headline_and_the_details_hold_the_rest():
    details = json.loads((ROOT / "metrics/default/details/detect.json").read_text())
    assert headline_numbers(details) == {"mAP": details["mAP"]}
    assert json.loads((ROOT / "metrics/default/detect.json").read_text()) == {"mAP": details["mAP"]}
    assert "per_class" in details and "clips" in json.loads(
        (ROOT / "metrics/default/details/ablate/reference.json").read_text()
    )


def test_dvc_plots_show_draws_the_pretraining_curves_of_every_seed_and_the_ablation_comparison(tmp_path):
    """The project's dvc.yaml in a scratch repository, with the curves the pretrain stage writes for
    two seeds (from a metrics.jsonl with timings in it) and the report's ablation table."""
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    _dvc(["init", "-q"], tmp_path)
    for seed, scale in ((0, 1.0), (1, 2.0)):
        log = tmp_path / f"seed{seed}.jsonl"
        log.write_text(
            "".join(
                json.dumps(
                    {"step": s, "loss": scale / s, "target_std": 0.1 * s, "lr": 1e-3 * s, "clips_per_s": 123.4 + s}
                )
                + "\n"
                for s in (1, 2, 3)
            )
        )
        out = write_curves(log, tmp_path / curves_path("default", seed))
        assert out.read_text().splitlines()[:2] == ["step,loss,target_std,lr", f"1,{scale!r},0.1,0.001"]
    shutil.copytree(ROOT / "reports/default", tmp_path / "reports/default")
    shown = json.loads(_dvc(["plots", "show", "--json"], tmp_path))
    assert not shown.get("errors"), shown.get("errors")
    plots = shown["data"]
    for seed in (0, 1):
        (plot,) = plots[f"metrics/default/curves/pretrain/seed{seed}.csv"]
        rows = plot["content"]["data"]["values"]
        assert sorted({r["field"] for r in rows}) == ["loss", "lr", "target_std"] and len(rows) == 9, rows[:3]
    (bars,) = plots["ablation comparison (default)"]
    values = bars["content"]["data"]["values"]
    assert {v["point_probe"] for v in values} >= {"reference (attentive)", "target-copy (attentive)"}
    _dvc(["plots", "show", "-o", str(tmp_path / "page")], tmp_path)
    page = (tmp_path / "page" / "index.html").read_text()
    assert "seed0.csv" in page and "seed1.csv" in page and "ablation comparison" in page
