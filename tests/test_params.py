"""The typed params tree: every mistake of a new user named by its real key path at load, one merge
per config for `check` and the stages alike, and profiles as overrides of the base they name."""

import copy
import re

import pytest
import yaml

from pipeline import profiles
from pipeline.__main__ import main
from pipeline.config import from_mapping, load
from vjepa.infra.config import ConfigError

SMOKE = profiles.resolve("smoke")


def params_with(edit):
    data = copy.deepcopy(SMOKE)
    edit(data)
    return data


def refused(edit, message):
    with pytest.raises(ConfigError) as e:
        from_mapping(params_with(edit))
    assert str(e.value) == message
    return e


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda p: p.update(seedz=[0]), "params.yaml: seedz: unknown key; did you mean seeds?"),
        (
            lambda p: p["pretrain"].update(mlflow_evry=5),
            "params.yaml: pretrain.mlflow_evry: unknown key; did you mean mlflow_every?",
        ),
        (lambda p: p["probe"].update(defautls={}), "params.yaml: probe.defautls: unknown key; did you mean defaults?"),
        (
            lambda p: p["pretrain"]["train"].update(batch_sise=4),
            "params.yaml: pretrain.train.batch_sise: unknown key; did you mean batch_size?",
        ),
        (
            lambda p: p["pretrain"]["train"]["optim"].update(warmup_iteration=1),
            "params.yaml: pretrain.train.optim.warmup_iteration: unknown key; did you mean warmup_iterations?",
        ),
        (
            lambda p: p["masks"][1].update(num_block=2),
            "params.yaml: masks[1].num_block: unknown key; did you mean num_blocks?",
        ),
        (
            lambda p: (
                p["probe"]["tasks"]["k400"]["probe"].update(epoch=3)
                if "probe" in p["probe"]["tasks"]["k400"]
                else p["probe"]["tasks"]["k400"].update(probe={"epoch": 3})
            ),
            "params.yaml: probe.tasks.k400.probe.epoch: unknown key; did you mean epochs?",
        ),
        (
            lambda p: p["ablations"]["points"]["copy"]["pretrain"].update(optim={"lrr": 1}),
            "params.yaml: ablations.points.copy.pretrain.optim.lrr: unknown key; did you mean lr?",
        ),
        (
            lambda p: p["finetune"]["tasks"]["k400"].update(num_frame=4),
            "params.yaml: finetune.tasks.k400.num_frame: unknown key; did you mean num_frames?",
        ),
    ],
)
def test_an_unknown_key_at_any_depth_is_named_by_its_full_path_with_a_suggestion(edit, message):
    refused(edit, message)


def test_a_key_the_stage_fills_itself_is_refused_in_an_override_section():
    refused(
        lambda p: p["probe"]["defaults"].update(num_classes=10),
        "params.yaml: probe.defaults.num_classes: not a setting here: the stage sets it itself",
    )


@pytest.mark.parametrize(
    "value, expected",
    [
        ("nan", "expected a finite number, got nan"),
        ("inf", "expected a finite number, got inf"),
        (-1e-3, "must be >= 0, got -0.001"),
        ("fast", "expected a number, got 'fast'"),
    ],
)
def test_learning_rates_must_be_finite_and_non_negative(value, expected):
    refused(
        lambda p: p["pretrain"]["train"]["optim"].update(lr=value), f"params.yaml: pretrain.train.optim.lr: {expected}"
    )


def test_a_bad_probe_learning_rate_is_named_with_its_index():
    refused(
        lambda p: p["probe"]["defaults"].update(lrs=[1e-3, -1.0]),
        "params.yaml: probe.defaults.lrs[1]: must be >= 0, got -1.0",
    )


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("embed_dim", 0, "model.embed_dim: must be > 0, got 0"),
        ("depth", -2, "model.depth: must be > 0, got -2"),
        ("patch_size", 0, "model.patch_size: must be > 0, got 0"),
        ("patch_size", 5, "model.patch_size: 5 does not divide img_size 32"),
        ("tubelet_size", 3, "model.tubelet_size: 3 does not divide num_frames 4"),
        ("num_heads", 3, "model.num_heads: 3 heads do not divide the encoder width 32"),
    ],
)
def test_model_sizes_are_positive_and_patches_tile_the_clip(key, value, message):
    refused(lambda p: p["model"].update({key: value}), f"params.yaml: {message}")


@pytest.mark.parametrize(
    "seeds, message",
    [
        ([], "seeds: needs at least one seed"),
        ([0, 0], "seeds: must be distinct, got [0, 0]"),
        (["a"], "seeds[0]: expected an integer, got 'a'"),
        (3, "seeds: expected a list, got 3"),
    ],
)
def test_seeds_are_a_non_empty_list_of_distinct_integers(seeds, message):
    refused(lambda p: p.update(seeds=seeds), f"params.yaml: {message}")


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda p: p["finetune"]["defaults"].update(reprob=1.5),
            "finetune.defaults.reprob: must be >= 0 and <= 1, got 1.5",
        ),
        (
            lambda p: p["detect"]["clip"].update(proposal_score_threshold=2),
            "detect.clip.proposal_score_threshold: must be >= 0 and <= 1, got 2.0",
        ),
        (
            lambda p: p["probe"]["tasks"]["ssv2"].update(reprob=-0.1),
            "probe.tasks.ssv2.reprob: must be >= 0 and <= 1, got -0.1",
        ),
        (
            lambda p: p["pretrain"]["train"].update(max_skipped_fraction=2.0),
            "pretrain.train.max_skipped_fraction: must be >= 0 and <= 1, got 2.0",
        ),
    ],
)
def test_probabilities_lie_in_the_unit_interval(edit, message):
    refused(edit, f"params.yaml: {message}")


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda p: p["pretrain"]["train"].update(batch_size=0), "pretrain.train.batch_size: must be >= 1, got 0"),
        (
            lambda p: p["pretrain"]["data"].update(num_frames=8),
            "pretrain.data.num_frames: 8 frames, but model.num_frames is 4",
        ),
        (
            lambda p: p["detect"]["head"].update(out_layers=[1, 9]),
            "detect.head.out_layers: block 9 exceeds the encoder's depth 2",
        ),
        (
            lambda p: p["learn"].update(motion="ssv3"),
            "learn.motion: 'ssv3' is not a key of probe.tasks (k400, ssv2, in1k, places205, inat21)",
        ),
        (
            lambda p: p["probe"]["tasks"]["k400"].update(segments=[]),
            "probe.tasks.k400.segments: needs at least one clip count",
        ),
    ],
)
def test_values_that_would_fail_inside_torch_fail_at_load(edit, message):
    refused(edit, f"params.yaml: {message}")


def test_check_validates_each_ablation_point_as_the_stage_merges_it():
    refused(
        lambda p: p["ablations"]["points"]["copy"]["pretrain"].update(masks=[{"num_blocks": 0}]),
        "params.yaml: ablations.points.copy.pretrain.masks[0].num_blocks: must be >= 1, got 0",
    )
    params = load("profiles/default.yaml")
    cfg = params.pretrain_config(0, "ratio-low")  # the one merge, which the ablate stage calls too
    assert [m.num_blocks for m in cfg.masks] == [1] and cfg.model.num_mask_tokens == 1
    assert cfg.optim.iterations == 150 and cfg.optim.warmup_iterations == 15  # ablations.pretrain
    assert cfg.optim.lr == 1e-3 and cfg.batch_size == 32  # pretrain.train underneath
    assert params.pretrain_config(0, "target-copy").target == "copy"
    assert params.pretrain_config(0).optim.iterations == 300


def test_check_on_the_command_line_names_the_key(tmp_path, capsys):
    bad = params_with(lambda p: p["pretrain"]["train"].update(batch_sise=4))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(bad))
    assert main(["check", "--params", str(tmp_path / "params.yaml")]) == 2
    assert "pretrain.train.batch_sise: unknown key; did you mean batch_size?" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv,line",
    [
        (["probe"], "probe: name a task in {params} (profile smoke); valid: k400, ssv2, in1k, places205, inat21"),
        (
            ["probe", "k999"],
            "probe: no task 'k999' in {params} (profile smoke); valid: k400, ssv2, in1k, places205, inat21",
        ),
        (["ablate", "nope"], "ablate: no grid point 'nope' in {params} (profile smoke); valid: reference, copy"),
        (["pretrain", "7"], "pretrain: no seed '7' in {params} (profile smoke); valid: 0, 1"),
        (["finetune", "x"], "finetune: no task 'x' in {params} (profile smoke); valid: k400, ssv2"),
        (["detect", "x"], "detect takes no key, got 'x'"),
    ],
)
def test_a_stage_key_not_in_the_profile_is_one_line_naming_the_valid_ones_and_no_work_folder_is_made(
    argv, line, tmp_path, capsys, monkeypatch
):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(SMOKE, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    assert main([*argv, "--params", "params.yaml"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {line.format(params='params.yaml')}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # no runs/, no work folder


def test_ctrl_c_in_a_stage_says_that_re_running_resumes_in_one_line(monkeypatch, capsys):
    import pipeline.stages

    def interrupted(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline.stages, "run", interrupted)
    assert main(["pretrain", "1"]) == 130
    err = capsys.readouterr().err.strip()
    assert err == (
        "interrupted: pretrain stopped; re-running it (`python -m pipeline pretrain 1`, or `dvc repro`) "
        "resumes from its last checkpoint"
    )


# ----------------------------------------------------------------------------------------------
# profiles


@pytest.mark.parametrize(
    "name",
    [
        "default",
        "smoke",
        "paper-vitl16",
        "paper-vith16",
        "paper-vith16-384",
        "vjepa2-vitl",
        "vjepa2-vith",
        "vjepa2-vitg",
        "vjepa2-vitg-384",
    ],
)
def test_every_profile_resolves_over_its_base_and_validates(name, tmp_path, capsys):
    assert main(["check", name]) == 0
    assert f"profile {name}: valid" in capsys.readouterr().out
    resolved = profiles.resolve(name)
    assert resolved["profile"] == name
    params = from_mapping(resolved)
    assert params.pretrain_config(params.main_seed).model.img_size == resolved["model"]["img_size"]


def test_the_paper_profiles_differ_only_in_what_the_paper_changes():
    h, h384, l16 = (profiles.resolve(n) for n in ("paper-vith16", "paper-vith16-384", "paper-vitl16"))
    own = yaml.safe_load(open(profiles.profile_file("paper-vith16-384")))
    assert own["base"] == "paper-vith16" and set(own) == {"base", "model", "pretrain", "finetune"}
    assert (h384["model"]["img_size"], h["model"]["img_size"]) == (384, 224)
    assert (h["model"]["size"], l16["model"]["size"]) == ("huge", "large")
    assert h["detect"]["head"]["out_layers"] == [26, 28, 30, 32] and l16["detect"]["head"]["out_layers"] == [
        18,
        20,
        22,
        24,
    ]
    assert {k: v for k, v in h.items() if k not in ("profile", "model", "detect")} == {
        k: v for k, v in l16.items() if k not in ("profile", "model", "detect")
    }


def _tree(tmp_path):
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "default.yaml").write_text((profiles.ROOT / "profiles" / "default.yaml").read_text())
    (tmp_path / "profiles" / "tiny.yaml").write_text(
        "base: default\nseeds: [5]\nablations:\n  points: !replace\n    only: "
        "{tables: ['D'], pretrain: {target: copy}}\n"
    )
    (tmp_path / "params.yaml").write_text(profiles.params_text("default", tmp_path))
    (tmp_path / "dvc.lock").write_text("default lock\n")
    return tmp_path


def test_a_profile_writes_the_resolved_params_and_keeps_each_profiles_lock(tmp_path):
    root = _tree(tmp_path)
    committed = (root / "params.yaml").read_text()
    profiles.use_profile("tiny", root)
    params = yaml.safe_load((root / "params.yaml").read_text())
    assert params["seeds"] == [5] and list(params["ablations"]["points"]) == ["only"]  # replaced, not merged
    assert params["model"] == yaml.safe_load(committed)["model"]  # the base's
    assert not (root / "dvc.lock").exists()  # tiny has not run yet
    (root / "dvc.lock").write_text("tiny lock\n")  # what `dvc repro` would write
    profiles.use_profile("default", root)
    assert (root / "params.yaml").read_text() == committed and (root / "dvc.lock").read_text() == "default lock\n"
    profiles.use_profile("tiny", root)
    assert (root / "dvc.lock").read_text() == "tiny lock\n"


@pytest.mark.parametrize("name", ["../dvc", "nope", "default/../tiny", ""])
def test_profile_accepts_only_the_names_in_profiles_and_writes_nothing_otherwise(tmp_path, name):
    root = _tree(tmp_path)
    before = {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()}
    with pytest.raises(ConfigError, match="no profile"):
        profiles.use_profile(name, root)
    assert {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()} == before


# ----------------------------------------------------------------------------------------------
# params that cannot lie: no duplicate key, a profile is a name, a switch never loses a lock


@pytest.mark.parametrize(
    "text, message",
    [
        ("a: 1\nb:\n  c: 2\n  d: 3\n  c: 4\n", "b.c: key given twice, at line 3 and line 5"),
        ("masks:\n  - {x: 1, x: 2}\n", r"masks\[0\].x: key given twice, at line 2 and line 2"),
        ("base: &b {x: 1}\nover:\n  <<: *b\n  x: 2\n", None),  # a merge's keys may be overridden: not a duplicate
    ],
)
def test_a_duplicate_key_is_an_error_naming_its_path_and_both_lines(tmp_path, text, message):
    from pipeline.config import read_yaml

    path = tmp_path / "params.yaml"
    path.write_text(text)
    if message is None:
        assert read_yaml(path)["over"] == {"x": 2}
        return
    with pytest.raises(ConfigError, match=f"^{path}: {message}$"):
        read_yaml(path)


def test_check_refuses_params_yaml_with_a_key_given_twice(tmp_path, capsys):
    text = (profiles.ROOT / "params.yaml").read_text()
    first = next(i for i, line in enumerate(text.splitlines(), 1) if line.startswith("seeds:"))
    path = tmp_path / "params.yaml"
    path.write_text(text + "seeds: [7]\n")  # plain YAML keeps [7] silently; DVC refuses the file
    assert main(["check", "--params", str(path)]) == 2
    last = len(text.splitlines()) + 1
    assert f"seeds: key given twice, at line {first} and line {last}" in capsys.readouterr().err


def test_a_profile_with_a_key_given_twice_is_refused_and_replace_still_works(tmp_path):
    root = _tree(tmp_path)
    (root / "profiles" / "twice.yaml").write_text("base: default\nseeds: [5]\nmodel: {depth: 2}\nseeds: [6]\n")
    with pytest.raises(ConfigError, match=r"twice.yaml: seeds: key given twice, at line 2 and line 4"):
        profiles.use_profile("twice", root)
    assert list(profiles.resolve("tiny", root)["ablations"]["points"]) == ["only"]  # `!replace` still replaces


@pytest.mark.parametrize("name", ["../../elsewhere", "a/b", "..", ".hidden", "/tmp/x", "a\\b", ""])
def test_the_profile_key_of_params_yaml_is_a_name_never_a_path(name):
    # metrics/<profile>/ and reports/<profile>/ are built from it: `../../elsewhere` wrote outside the repository
    with pytest.raises(
        ConfigError, match="^" + re.escape(f"params.yaml: profile: no profile {name!r}: a profile is named")
    ):
        from_mapping(params_with(lambda p: p.update(profile=name)))


@pytest.mark.parametrize("broken", ["seeds: [9]\n", "seeds: [9\n"])  # a key given twice; not YAML at all
def test_switching_profiles_keeps_the_lock_of_a_broken_params_yaml(tmp_path, broken):
    root = _tree(tmp_path)
    (root / "params.yaml").write_text((root / "params.yaml").read_text() + broken)
    profiles.use_profile("tiny", root)
    assert (root / profiles.LOCKS / "default.lock").read_text() == "default lock\n"
    profiles.use_profile("default", root)
    assert (root / "dvc.lock").read_text() == "default lock\n"


def test_the_profile_of_a_lock_is_read_from_the_lock_when_params_yaml_names_none(tmp_path):
    root = _tree(tmp_path)
    lock = "schema: '2.0'\nstages:\n  masks:\n    params:\n      params.yaml:\n        profile: default\n"
    (root / "dvc.lock").write_text(lock)
    (root / "params.yaml").write_text("seeds: [\n")  # not YAML, and no `profile:` line
    assert profiles.active_profile(root) == ("default", "the params that dvc.lock recorded")
    profiles.use_profile("tiny", root)
    assert (root / profiles.LOCKS / "default.lock").read_text() == lock


def test_a_lock_whose_profile_cannot_be_told_is_never_dropped(tmp_path):
    root = _tree(tmp_path)
    (root / "params.yaml").write_text("profile: ../x\n")
    before = {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()}
    with pytest.raises(ConfigError, match="dvc.lock: cannot tell which profile it belongs to"):
        profiles.use_profile("tiny", root)
    assert {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()} == before


def test_the_profile_command_names_the_profile_file_it_read(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(profiles, "ROOT", _tree(tmp_path))
    assert main(["profile", "tiny"]) == 0
    assert capsys.readouterr().out.startswith("params.yaml <- profiles/tiny.yaml: now `dvc repro` runs the 'tiny'")


def test_probe_defaults_may_set_max_skipped_fraction_and_an_out_of_range_value_is_named():
    params = from_mapping(params_with(lambda p: p["probe"]["defaults"].update(max_skipped_fraction=0.05)))
    assert params.probe_config("k400", 5, 1, 0).max_skipped_fraction == 0.05
    with pytest.raises(ConfigError, match=r"probe\.defaults\.max_skipped_fraction: must be >= 0 and <= 1, got 5"):
        from_mapping(params_with(lambda p: p["probe"]["defaults"].update(max_skipped_fraction=5)))
