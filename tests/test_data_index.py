"""Read and check once: prepare's task index loads back the entries and classes read_task gives,
and refuses a stale index (annotation file or task spec changed); the prepare stage of a
real-data profile writes it and the later stages' loader reads it."""

import json
import os
import shutil

import pytest
import yaml
from conftest import with_sources

from vjepa.infra.config import from_dict
from vjepa.data.index import index_path, load_task_index, write_task_index
from vjepa.infra.configs import IndexConfig
from vjepa.data.readers import AnnotationError, Entries
from vjepa.data.sources import read_task
from vjepa.infra.configs import TaskData


def _tasks(root):
    return {
        "k400": {
            "train": {
                "format": "kinetics",
                "path": str(root / "k400/annotations/train.csv"),
                "root": str(root / "k400/videos/train"),
            },
            "val": {
                "format": "kinetics",
                "path": str(root / "k400/annotations/validate.csv"),
                "root": str(root / "k400/videos/val"),
            },
        },
        "inat21": {
            "train": {"format": "inat", "path": str(root / "inat21/train.json")},
            "val": {"format": "inat", "path": str(root / "inat21/val.json")},
        },
        "in1k": {
            "train": {"format": "image_folder", "path": str(root / "in1k/train")},
            "val": {"format": "image_folder", "path": str(root / "in1k/val")},
        },
        "ssv2_list": {
            "train": {"format": "list", "path": str(root / "ssv2/train.csv")},
            "val": {"format": "list", "path": str(root / "ssv2/val.csv")},
        },
    }


def test_the_index_loads_back_what_read_task_reads(tiny_suite, tmp_path):
    root, _ = tiny_suite
    for name, spec in _tasks(root).items():
        task = from_dict(TaskData, spec, name)
        summary = write_task_index(name, task, tmp_path, IndexConfig(check_files=True, progress=False))
        train, val, classes = load_task_index(name, task, tmp_path)
        want_train, want_val, want_classes = read_task(task)
        assert isinstance(train, Entries) and train == want_train and val == want_val and classes == want_classes
        assert (summary["train"], summary["val"], summary["classes"]) == (len(want_train), len(want_val), len(classes))
        assert len(train) > 0 and len(val) > 0


def test_a_stale_index_is_refused(tiny_suite, tmp_path):
    root, _ = tiny_suite
    data = tmp_path / "inat21"
    shutil.copytree(root / "inat21", data)
    spec = {
        "train": {"format": "inat", "path": str(data / "train.json")},
        "val": {"format": "inat", "path": str(data / "val.json")},
    }
    task = from_dict(TaskData, spec, "inat21")
    write_task_index("inat21", task, tmp_path / "index")
    assert len(load_task_index("inat21", task, tmp_path / "index")[0]) == 120
    other = from_dict(TaskData, {**spec, "val": {**spec["val"], "root": str(data)}}, "inat21")
    with pytest.raises(AnnotationError, match="task spec"):
        load_task_index("inat21", other, tmp_path / "index")
    meta = json.loads((data / "val.json").read_text())
    meta["images"] = meta["images"][:-1]
    meta["annotations"] = meta["annotations"][:-1]
    (data / "val.json").write_text(json.dumps(meta))
    with pytest.raises(AnnotationError, match="changed since the index was written"):
        load_task_index("inat21", task, tmp_path / "index")
    with pytest.raises(FileNotFoundError, match="run the prepare stage"):
        load_task_index("k400", task, tmp_path / "index")


def test_prepare_of_a_real_data_profile_writes_the_index_that_probe_loads(tiny_suite, tmp_path, monkeypatch):
    from pipeline import stages

    root, _ = tiny_suite
    params = yaml.safe_load(open(os.path.join(os.path.dirname(__file__), "..", "params.yaml")))
    keep = ("k400", "inat21")
    params.update(
        prepare=None,
        tasks={k: v for k, v in _tasks(root).items() if k in keep},
        index={"check_files": True, "progress": False},
    )
    params["probe"]["tasks"] = {k: {**v, "data": k} for k, v in params["probe"]["tasks"].items() if k in keep}
    params["finetune"]["tasks"] = {}
    params["learn"].update(motion="k400", appearance="k400")
    params["ablations"].update(task="k400")

    def moved(path):  # the default profile's paths under data/prepared, in the tiny suite instead
        return path.replace("data/prepared", str(root)) if isinstance(path, str) else path

    params["pretrain"]["data"]["sources"] = [moved(p) for p in params["pretrain"]["data"]["sources"]]
    params["detect"]["data"] = {k: moved(v) for k, v in params["detect"]["data"].items()}
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VJEPA_MLFLOW", "0")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(with_sources(params)))
    metrics = stages.run("prepare", "params.yaml")
    assert metrics["tasks"]["k400"]["train"] == 120 and metrics["tasks"]["inat21"]["val"] == 6
    assert index_path("data/prepared/index", "k400").is_file()
    from pipeline.config import load
    from pipeline.stages.common import task_entries

    train, val, classes = task_entries(load("params.yaml"), "inat21")
    assert (len(train), len(val)) == (120, 6) and train == read_task(from_dict(TaskData, params["tasks"]["inat21"]))[0]
