"""The datasets as released read as they are: every split of the generated release-format tree
(tests/release_tree.py) indexes with the counts written, and each release quirk reads right:
Kinetics' three clip layouts (`path_format`), VideoMix2M lists whose paths hold spaces, and the
AVA proposals pickle in each form the released file may take, through a loader that runs no code."""

import copy
import json
import os
import pickle

import numpy as np
import pandas as pd
import pytest

from vjepa.infra.config import ConfigError, from_dict
from vjepa.data import TaskData, read_task
from vjepa.data.ava import AvaFrameFolder, read_ava_csv, read_ava_exclusions, read_ava_labelmap, read_ava_proposals
from vjepa.data.index import load_task_index, write_task_index
from vjepa.data.readers import AnnotationError, read_path_label_list, write_path_label_list


def _task(spec: dict, where: str = "tasks.t") -> TaskData:
    return from_dict(TaskData, spec, where)


def test_every_split_of_every_dataset_indexes_with_the_counts_written(release_tree, tmp_path):
    counts = release_tree["counts"]
    tasks = dict(release_tree["tasks"])
    tasks.update({f"k400_{layout}": spec for layout, spec in release_tree["kinetics_layouts"].items()})
    assert len(tasks) == 8  # k400 (class folders), ssv2, in1k, places205, inat21; K400's three layouts
    for name, spec in tasks.items():
        task = _task(spec, f"tasks.{name}")
        summary = write_task_index(name, task, tmp_path)
        written = counts["k400" if name.startswith("k400") else name]
        assert (summary["train"], summary["val"], summary["classes"]) == (written["train"], written["val"], 3), name
        train, val, _ = load_task_index(name, task, tmp_path)
        assert all(os.path.isfile(p) for p in train.path_list() + val.path_list()), name
    for path, n in zip(release_tree["pretrain_sources"], counts["pretrain"].values()):
        assert len(read_path_label_list(path)) == n  # every listed file exists
    detect, ava = release_tree["detect"], counts["ava"]
    assert len(read_ava_labelmap(detect["labelmap"])) == 60
    assert len(read_ava_labelmap(release_tree["ava"]["labelmap_all"])) == 80
    assert len(read_ava_exclusions(detect["train_exclusions"])) == 1
    assert read_ava_exclusions(detect["val_exclusions"]) == set() and os.path.getsize(detect["val_exclusions"]) == 0
    frames = AvaFrameFolder(detect["frames"])
    for split in ("train", "val"):
        gt = read_ava_csv(detect[f"{split}_groundtruth"])
        assert len(gt) == ava[split]["rows"]
        assert gt.groupby(["video_id", "timestamp"]).ngroups == ava[split]["keyframes"]
        assert gt.video_id.nunique() == ava[split]["videos"]
        for vid in gt.video_id.unique():
            assert len(frames.frame_paths(vid)) == ava[split]["frames_per_video"]
            assert frames.load_clip(vid, int(gt.timestamp.max()), 8, 4).shape == (8, 256, 340, 3)
        for form, path in release_tree["ava"]["proposals"][split].items():
            assert len(read_ava_proposals(path, 0.0)) == ava[split]["proposal_keys"], form


def test_ground_truth_keeps_the_actions_that_are_not_evaluated(release_tree):
    gt = pd.concat([read_ava_csv(release_tree["detect"][f"{s}_groundtruth"]) for s in ("train", "val")])
    evaluated = set(read_ava_labelmap(release_tree["detect"]["labelmap"]))
    not_evaluated = set(gt.action_id) - evaluated
    assert not_evaluated and not_evaluated <= set(range(1, 81)) - evaluated


# -- Kinetics: the clip layout is a task setting ---------------------------------------------------


def test_kinetics_path_format_reads_each_release_layout(release_tree):
    layouts = release_tree["kinetics_layouts"]
    read = {layout: read_task(_task(spec)) for layout, spec in layouts.items()}  # files checked
    names = {layout: [[os.path.basename(p) for p in e.path_list()] for e in r[:2]] for layout, r in read.items()}
    labels = {layout: [e.labels.tolist() for e in r[:2]] for layout, r in read.items()}
    assert names["cvdf"] == names["class_folders"] == names["underscored"]
    assert labels["cvdf"] == labels["class_folders"] == labels["underscored"] == [[0, 0, 1, 1, 2, 2], [0, 1, 2]]
    assert read["cvdf"][2] == read["class_folders"][2] == {"abseiling": 0, "air drumming": 1, "arm wrestling": 2}
    train = {layout: r[0].path_list() for layout, r in read.items()}
    assert "/air drumming/" in train["class_folders"][2] and "/air_drumming/" in train["underscored"][2]
    assert os.path.dirname(train["cvdf"][2]) == layouts["cvdf"]["train"]["root"]  # flat
    # the default layout cannot find CVDF's flat files: the setting is what reads them
    default = dict(layouts["cvdf"]["train"], path_format=None)
    with pytest.raises(AnnotationError, match="clip not found: .*/abseiling/"):
        read_task(_task({"train": default, "val": default}))
    # a format string of one's own works as well as a layout name
    own = dict(layouts["cvdf"]["train"], path_format="{youtube_id}_{time_start:06d}_{time_end:06d}.mp4")
    assert read_task(_task({"train": own, "val": own}))[0] == read["cvdf"][0]


@pytest.mark.parametrize(
    "value, match",
    [
        ("cvdf", "unknown Kinetics layout 'cvdf'"),
        ("{youtube_id}_{start}.mp4", "KeyError: 'start'"),
    ],
)
def test_a_bad_kinetics_path_format_names_its_key(release_tree, value, match):
    spec = dict(release_tree["kinetics_layouts"]["cvdf"]["train"], path_format=value)
    with pytest.raises(ConfigError, match=f"tasks.k400.train.path_format: .*{match}"):
        _task({"train": spec, "val": spec}, "tasks.k400")
    ssv2 = dict(release_tree["tasks"]["ssv2"]["train"], path_format="flat")
    with pytest.raises(ConfigError, match="tasks.ssv2.train.path_format: is for the 'kinetics' format"):
        _task({"train": ssv2, "val": ssv2}, "tasks.ssv2")


def test_path_format_is_set_in_params_like_any_task_setting(release_tree):
    from pathlib import Path
    from pipeline.config import from_mapping, read_yaml

    data = read_yaml(Path(__file__).resolve().parent.parent / "params.yaml")
    data["tasks"]["k400"] = copy.deepcopy(release_tree["kinetics_layouts"]["underscored"])
    data["sources"] = None  # the generated list of release files: not under test here
    params = from_mapping(data)
    assert params.tasks["k400"].val.path_format == "class_folders_underscored"
    assert len(read_task(params.tasks["k400"])[1]) == release_tree["counts"]["k400"]["val"]
    data["tasks"]["k400"]["val"] = dict(data["tasks"]["k400"]["val"], pathformat="flat")
    with pytest.raises(ConfigError, match=r"tasks.k400.val.pathformat: unknown key; did you mean path_format\?"):
        from_mapping(data)


# -- VideoMix2M lists: paths with spaces are double-quoted ---------------------------------------------


def test_a_videomix2m_list_names_paths_with_spaces_in_quotes(release_tree):
    k710 = release_tree["pretrain_sources"][0]
    entries = read_path_label_list(k710)
    assert [p for p, _ in entries] == read_task(_task(release_tree["tasks"]["k400"]))[0].path_list()
    assert sum(" " in p for p, _ in entries) == 4  # the "air drumming" and "arm wrestling" clips
    lines = open(k710).read().splitlines()
    assert sum(line.startswith('"') for line in lines) == 4
    # the official loaders' parse (pandas, delimiter " ") reads the same paths and labels
    official = pd.read_csv(k710, header=None, delimiter=" ")
    assert list(zip(official[0], official[1])) == list(entries)


def test_quoted_list_paths_round_trip_and_bad_quoting_names_the_line(tmp_path):
    files = [tmp_path / "air drumming" / "a.mp4", tmp_path / 'say "hi"' / "b.mp4", tmp_path / "c.mp4"]
    for f in files:
        f.parent.mkdir(exist_ok=True)
        f.write_bytes(b"x")
    lst = write_path_label_list([(str(f), k) for k, f in enumerate(files)], tmp_path / "l.csv")
    assert lst.read_text().splitlines() == ['"air drumming/a.mp4" 0', '"say ""hi""/b.mp4" 1', "c.mp4 2"]
    assert read_path_label_list(lst) == [(str(f), k) for k, f in enumerate(files)]
    for bad, match in (
        ('"air drumming/a.mp4 1', "bad quoting|fields"),
        ("air drumming/a.mp4 1", "3 fields"),
        ('"air drumming/a.mp4"  1', "3 fields"),
        ('"c.mp4"\t1', "tab"),
    ):
        lst.write_text(f"c.mp4 2\n{bad}\n")
        with pytest.raises(AnnotationError, match=match) as e:
            read_path_label_list(lst)
        assert e.value.line == 2, bad
    with pytest.raises(ValueError, match="whitespace other than spaces"):
        write_path_label_list([("a\tb.mp4", 0)], tmp_path / "x.csv")


# -- AVA proposals: each released pickle form, and still no code run -----------------------------------


def test_the_proposals_pickle_loads_in_each_released_form(release_tree):
    forms = release_tree["ava"]["proposals"]["val"]
    read = {form: read_ava_proposals(path, 0.9) for form, path in forms.items()}
    assert sorted(read) == ["current", "protocol2", "python2"]
    ref = read["current"]
    assert len(ref) == 4 and all(a.shape == (2, 5) and a.dtype == np.float32 for a in ref.values())
    for form, got in read.items():
        assert got.keys() == ref.keys(), form
        for key in ref:
            np.testing.assert_array_equal(got[key], ref[key])
    # the files are the forms they claim: protocol 2 rebuilds bytes through _codecs.encode, and the
    # Python 2 pickle's byte strings cannot be read as Python 3 reads by default
    assert b"_codecs" in open(forms["protocol2"], "rb").read() and open(forms["protocol2"], "rb").read(2) == b"\x80\x02"
    with open(forms["python2"], "rb") as f, pytest.raises(UnicodeDecodeError, match="'ascii' codec"):
        pickle.load(f)
    assert b"_codecs" not in open(forms["python2"], "rb").read()


class _System:
    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


class _Codec:
    def __reduce__(self):  # a codec other than latin1 through the one function protocol 2 needs
        import _codecs

        return (_codecs.encode, (b"x" * 64, "zlib_codec"))


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_a_proposals_pickle_that_would_run_code_is_refused(tmp_path, protocol):
    marker = tmp_path / "ran"
    payloads = {
        "system": {"v,0902": _System(f"touch {marker}")},
        "codec": {"v,0902": _Codec()},
        "nested": {"v,0902": [np.zeros((1, 5), np.float32), _System(f"touch {marker}")]},
    }
    for name, payload in payloads.items():
        path = tmp_path / f"{name}.pkl"
        with open(path, "wb") as f:
            pickle.dump(payload, f, protocol=protocol)
        with pytest.raises(AnnotationError, match="refusing to load it"):
            read_ava_proposals(path, 0.5)
    # Python 2's spelling of the same call (os.system pickles as posix.system)
    (tmp_path / "py2.pkl").write_bytes(
        b"\x80\x02}U\x06v,0902cposix\nsystem\nU"
        + bytes([len(f"touch {marker}")])
        + f"touch {marker}".encode()
        + b"\x85Rs."
    )
    with pytest.raises(AnnotationError, match="posix.system.*refusing"):
        read_ava_proposals(tmp_path / "py2.pkl", 0.5)
    assert not marker.exists()


def test_the_cli_writes_the_tree_and_prints_its_paths(tmp_path, capsys):
    from release_tree import main

    main([str(tmp_path / "t"), "--frames", "4", "--size", "64x48"])
    tree = json.loads(capsys.readouterr().out)
    assert tree["root"] == str((tmp_path / "t").resolve())
    assert len(read_path_label_list(tree["pretrain_sources"][0])) == tree["counts"]["pretrain"]["k710"] == 6
    with pytest.raises(FileExistsError, match="not empty"):
        main([str(tmp_path / "t")])
