"""The paper profiles as shipped, run on data in the datasets' release layouts (tests/release_tree.py)
with only data paths and compute shrunk: every shipped profile is planned by DVC, paper-vitl16's
whole DAG runs end to end through `dvc repro`, and the other two are planned over the same tree."""

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import checkout_copy, dvc, with_sources

from pipeline.profiles import available, use_profile

PAPER = ("paper-vitl16", "paper-vith16", "paper-vith16-384")
VJEPA2 = "vjepa2-vitl"  # its test profile also shrinks the predictor's heads and the cooldown

# What a test profile over a paper profile may change: where the data is, and how much compute a
# 2-core CPU spends (model size, image size, frames, steps, batches, workers, epochs, precision,
# detection's out_layers for the shrunk depth). Nothing of the recipe itself.
ALLOWED = [
    r"base",
    r"tasks\..*\.(path|root|labels)",
    r"(ablations\.)?pretrain\.data\.sources",
    r"ablations\.data\.sources",
    r"detect\.data\..*",
    r"(ablations\.pretrain\.)?model\.(embed_dim|depth|num_heads|img_size|num_frames|pred_depth|pred_embed_dim"
    r"|patch_size|pred_num_heads)",
    r"cooldown\.(model|data)\.num_frames",
    r"cooldown\.train\.(batch_size|accumulation_steps|num_workers|checkpoint_every|precision)",
    r"cooldown\.train\.optim\.iterations",
    r"pretrain\.data\.(num_frames|decode_threads)",
    r"(ablations\.)?pretrain\.train\.(batch_size|accumulation_steps|num_workers|checkpoint_every|precision)",
    r"(ablations\.)?pretrain\.(train\.)?optim\.(iterations|warmup_iterations)",
    r"probe\.defaults\.(epochs|batch_size|num_workers|encoder_chunk|precision)",
    r"probe\.tasks\.\w+\.(num_frames|still_frames)",
    r"ablations\.probe\.epochs",
    r"detect\.clip\.(num_frames|train_scale|crop_size|test_size)",
    r"detect\.head\.(out_layers|epochs|batch_size|num_workers|warmup_epochs|precision)",
    r"finetune\.defaults\.(img_size|batch_size|num_workers|epochs|precision|num_sample|warmup_epochs"
    r"|test_num_crop)",
    r"finetune\.tasks\.\w+\.(num_frames|epochs|test_num_segment)",
]
TINY = {
    "embed_dim": 32,
    "depth": 2,
    "num_heads": 2,
    "img_size": 32,
    "patch_size": 8,
    "num_frames": 4,
    "pred_depth": 1,
    "pred_embed_dim": 16,
}


def shrunk(base: str, tree: dict) -> dict:
    """A test profile over paper profile `base`: the release tree's paths, a CPU's compute."""
    data = {"sources": tree["pretrain_sources"]}
    paths = {
        t: {split: {k: v for k, v in spec.items() if k in ("path", "root", "labels")} for split, spec in splits.items()}
        for t, splits in tree["tasks"].items()
    }  # the formats are the paper profile's own
    return {
        "base": base,
        "tasks": paths,
        "model": TINY,
        "pretrain": {
            "data": {**data, "num_frames": 4},
            "train": {
                "batch_size": 2,
                "accumulation_steps": 1,
                "num_workers": 0,
                "checkpoint_every": 1,
                "precision": "fp32",
                "optim": {"iterations": 2, "warmup_iterations": 1},
            },
        },
        "probe": {
            "defaults": {"epochs": 1, "batch_size": 4, "num_workers": 0, "precision": "fp32"},
            "tasks": {
                "k400": {"num_frames": 4},
                "ssv2": {"num_frames": 4},
                "in1k": {"still_frames": 2},
                "places205": {"still_frames": 2},
                "inat21": {"still_frames": 2},
            },
        },
        "detect": {
            "data": tree["detect"],
            "clip": {"num_frames": 4, "train_scale": [32, 40], "crop_size": 32, "test_size": 32},
            "head": {
                "out_layers": [1, 2],
                "epochs": 1,
                "batch_size": 2,
                "num_workers": 0,
                "warmup_epochs": 0,
                "precision": "fp32",
            },
        },
        "finetune": {
            "defaults": {
                "img_size": 32,
                "batch_size": 2,
                "num_workers": 0,
                "epochs": 1,
                "precision": "fp32",
                "num_sample": 1,
                "warmup_epochs": 0,
                "test_num_crop": 1,
            },
            "tasks": {
                "k400": {"num_frames": 4, "test_num_segment": 2},
                "ssv2": {"num_frames": 4, "test_num_segment": 2},
            },
        },
        "ablations": {
            "data": {"sources": tree["pretrain_sources"][:1]},
            "probe": {"epochs": 1},
            "pretrain": {"model": TINY, "optim": {"iterations": 2, "warmup_iterations": 1}},
        },
    }


# the V-JEPA 2 test profile's ablation points: two of the 25 its profile inherits, as they are (each
# point is one more pretraining; the paper-vitl16 test runs all 25 through the same stage)
VJEPA2_POINTS = ("reference", "t13-d100-s50")


def shrunk_vjepa2(tree: dict) -> dict:
    """The test profile over the V-JEPA 2 profile: the paper profiles' one, with the predictor's heads
    fitting the narrow predictor, a cooldown of 8-frame clips (the first stage's: 4) and two of its
    ablation points."""
    from pipeline.config import Replace
    from pipeline.profiles import resolve

    out = shrunk(VJEPA2, tree)
    out["model"] = {**TINY, "pred_num_heads": 2}
    out["ablations"]["pretrain"]["model"] = out["model"]
    points = resolve(VJEPA2)["ablations"]["points"]
    out["ablations"]["points"] = Replace({k: points[k] for k in VJEPA2_POINTS})
    out["cooldown"] = {
        "model": {"num_frames": 8},
        "data": {"num_frames": 8},
        "train": {"batch_size": 2, "accumulation_steps": 1, "checkpoint_every": 1, "optim": {"iterations": 2}},
    }
    return out


def _dump(profile: dict) -> str:
    """A profile as YAML, a Replace mapping written with its `!replace` tag."""
    from pipeline.config import Replace

    class Dumper(yaml.SafeDumper):
        pass

    Dumper.add_representer(Replace, lambda d, data: d.represent_mapping("!replace", dict(data)))
    return yaml.dump(profile, Dumper=Dumper, sort_keys=False)


def _keys(d: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        out += _keys(v, f"{key}.") if isinstance(v, dict) else [key]
    return out


def _with_test_profile(repo, base: str, tree: dict) -> str:
    name = f"test-{base}"
    profile = shrunk_vjepa2(tree) if base == VJEPA2 else shrunk(base, tree)
    (repo / "profiles" / f"{name}.yaml").write_text(_dump(profile))
    use_profile(name, repo)
    return name


def test_the_test_profiles_change_only_data_paths_and_compute(release_tree):
    from pipeline.profiles import resolve

    for base in (*PAPER, VJEPA2):
        profile = shrunk(base, release_tree) if base != VJEPA2 else shrunk_vjepa2(release_tree)
        points = profile["ablations"].pop("points", None)  # fewer points, each as the profile has it
        assert points is None or points.items() <= resolve(base)["ablations"]["points"].items()
        keys = _keys(profile)
        bad = [k for k in keys if not any(re.fullmatch(p, k) for p in ALLOWED)]
        assert not bad, f"test profile over {base} changes more than data paths and compute: {bad}"
        assert "tasks.k400.train.root" in keys and "model.depth" in keys  # the allowlist is exercised


def plan(repo) -> list[str]:
    """The stages DVC builds from dvc.yaml and params.yaml, each of its params read as `dvc repro`
    reads them first (a key a stage names but the params file lacks fails here, as it did at
    `prepare` for `index`). `dvc repro --dry` itself cannot plan a fresh checkout: it stops at the
    first stage whose upstream output does not exist yet."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    with Repo(str(repo)) as r:
        stages = list(r.index.stages)
        for stage in stages:
            for dep in stage.deps:
                if isinstance(dep, ParamsDependency):
                    dep.get_hash()  # MissingParamsError names the key and the file
        return [s.name for s in stages]


def test_every_shipped_profile_holds_every_param_dvc_yaml_names_and_is_planned(tmp_path):
    repo = checkout_copy(tmp_path / "repo", without=("metrics/", "reports/", "dvc.lock"))
    for name in available(repo):
        use_profile(name, repo)
        assert {"prepare", "pretrain@0", "report"} <= set(plan(repo)), name


@pytest.fixture(scope="module")
def paper_repo(release_tree, tmp_path_factory):
    repo = checkout_copy(tmp_path_factory.mktemp("paper") / "repo", without=("metrics/", "reports/", "dvc.lock"))
    return repo


def test_the_other_paper_profiles_are_planned_over_release_format_data(paper_repo, release_tree):
    for base in PAPER[1:]:
        _with_test_profile(paper_repo, base, release_tree)
        stages = plan(paper_repo)
        assert {"prepare", "pretrain@0", "probe@k400", "detect", "finetune@ssv2", "ablate@t15-3masks", "report"} <= set(
            stages
        ), base


def run_end_to_end(repo, base: str, tree: dict) -> dict:
    name = _with_test_profile(repo, base, tree)
    dvc(repo, "repro", timeout=3600)  # 60 stages: about 10 minutes on a quiet 2-core machine
    return {
        str(p.relative_to(repo / "metrics" / name)): json.loads(p.read_text())
        for p in (repo / "metrics" / name).rglob("*.json")
    }


def test_paper_vitl16_runs_end_to_end_on_release_format_data(paper_repo, release_tree):
    metrics = run_end_to_end(paper_repo, "paper-vitl16", release_tree)
    counts = release_tree["counts"]
    assert metrics["details/prepare.json"]["tasks"]["k400"]["train"] == counts["k400"]["train"]
    for task in ("k400", "ssv2", "in1k", "places205", "inat21"):
        run = metrics[f"details/probe/{task}.json"]["runs"]
        first = next(iter(run.values()))
        assert first["num_train"] == counts[task]["train"] and first.get("skipped_train", 0) == 0, task
    points = yaml.safe_load((paper_repo / "params.yaml").read_text())["ablations"]["points"]
    assert len(points) == 25 and all(f"ablate/{p}.json" in metrics for p in points)
    assert metrics["details/detect.json"]["val_keyframes"] == counts["ava"]["val"]["keyframes"]
    report = (paper_repo / "reports" / "test-paper-vitl16" / "README.md").read_text()
    assert "0.0000M" not in report and "stand-in" not in report.lower()


@pytest.mark.slow
@pytest.mark.parametrize("base", PAPER[1:])
def test_the_other_paper_profiles_run_end_to_end(release_tree, tmp_path, base):
    repo = checkout_copy(tmp_path / "repo", without=("metrics/", "reports/", "dvc.lock"))
    metrics = run_end_to_end(repo, base, release_tree)
    assert metrics["details/probe/k400.json"]["runs"]
    shutil.rmtree(repo)


# -- prepare reads what later stages read: a wrong path fails in seconds, naming the file ----------


def _paper_params(tmp_path, tree: dict, edit=lambda p: None) -> str:
    """params.yaml of the test profile over paper-vitl16 (data paths into the tree), edited."""
    from pipeline.config import merge
    from pipeline.profiles import params_text

    params = merge(
        yaml.safe_load(params_text("paper-vitl16")),
        {k: v for k, v in shrunk("paper-vitl16", tree).items() if k != "base"},
    )
    edit(params)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(with_sources(params), sort_keys=False))
    return str(path)


def _prepare(tmp_path, monkeypatch, tree, edit):
    from pipeline import stages

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VJEPA_MLFLOW", "0")
    return stages.run("prepare", _paper_params(tmp_path, tree, edit))


def test_prepare_of_the_release_tree_checks_every_later_input(tmp_path, monkeypatch, release_tree):
    metrics = _prepare(tmp_path, monkeypatch, release_tree, lambda p: None)
    assert metrics["detect"]["val_keyframes"] == release_tree["counts"]["ava"]["val"]["keyframes"]
    lists = metrics["pretrain_lists"]
    assert [v["entries"] for v in lists.values()] == list(release_tree["counts"]["pretrain"].values())


def test_a_wrong_video_root_fails_at_prepare_naming_the_annotation_file(tmp_path, monkeypatch, release_tree):
    from vjepa.data.readers import AnnotationError

    (tmp_path / "empty").mkdir()
    train_csv = release_tree["tasks"]["k400"]["train"]["path"]
    with pytest.raises(AnnotationError, match=f"{re.escape(train_csv)}: 6 of 6 sampled listed files not found"):
        _prepare(
            tmp_path,
            monkeypatch,
            release_tree,
            lambda p: p["tasks"]["k400"]["train"].update(root=str(tmp_path / "empty")),
        )


def test_a_pretraining_list_naming_missing_files_fails_at_prepare(tmp_path, monkeypatch, release_tree):
    from vjepa.data.readers import AnnotationError

    bad = tmp_path / "k710_moved.csv"
    bad.write_text("".join(f"/nowhere/clip{i}.mp4 {i % 3}\n" for i in range(5)))
    with pytest.raises(AnnotationError, match=f"{re.escape(str(bad))}: 5 of 5 sampled listed files not found"):
        _prepare(tmp_path, monkeypatch, release_tree, lambda p: p["pretrain"]["data"].update(sources=[str(bad)]))


def test_missing_ava_frames_fail_at_prepare(tmp_path, monkeypatch, release_tree):
    from vjepa.data.readers import AnnotationError

    (tmp_path / "frames").mkdir()
    with pytest.raises(AnnotationError, match="frame folder not found"):
        _prepare(
            tmp_path, monkeypatch, release_tree, lambda p: p["detect"]["data"].update(frames=str(tmp_path / "frames"))
        )


def test_an_edited_release_file_shows_in_dvc_status_as_the_stages_that_read_it(paper_repo, release_tree):
    """After the end-to-end run (same module): a VideoMix2M list and an AVA file edited in place."""
    if not (paper_repo / "dvc.lock").exists():
        pytest.skip("needs the end-to-end run of this module first")
    assert "Data and pipelines are up to date" in dvc(paper_repo, "status")
    listed = Path(release_tree["pretrain_sources"][1])
    before = listed.read_text()
    try:
        listed.write_text(before + before.splitlines(keepends=True)[0])  # one more clip in the list (a valid line)
        changed = json.loads(dvc(paper_repo, "status", "--json"))
        assert sorted(changed) == ["source@pretrain-1"]  # its readers follow through its stamp
        dvc(paper_repo, "repro", "source@pretrain-1")
        assert sorted(json.loads(dvc(paper_repo, "status", "--json"))) == ["prepare", "pretrain@0"]
    finally:
        listed.write_text(before)  # the session's tree is shared with other tests


def test_check_gpus_prints_the_papers_global_batch_of_every_training_stage_on_8_gpus(tmp_path):
    """The paper profile's batches are per GPU: on the 8 GPUs it states, every training stage runs one
    process per GPU (relaunched under torchrun) and reaches Tables 5-8's global batch."""
    from pipeline.config import load
    from pipeline.profiles import params_text

    (tmp_path / "params.yaml").write_text(params_text("paper-vitl16"))
    batches = load(tmp_path / "params.yaml").global_batches(8)
    totals = {stage: int(text.rsplit("= ", 1)[1]) for stage, text in batches.items()}
    assert totals["pretrain"] == 3072  # Table 5
    assert {totals[f"probe@{t}"] for t in ("k400", "ssv2", "places205", "inat21")} == {256}  # Table 6
    assert totals["probe@in1k"] == 512
    assert totals["detect"] == 64  # Table 7
    assert totals["finetune@k400"] == totals["finetune@ssv2"] == 64  # Table 8
    assert batches["detect"] == "8 x 8 GPUs x 1 = 64"
    assert all(v == 3072 for k, v in totals.items() if k.startswith("ablate@"))
