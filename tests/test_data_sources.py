"""Task data specs: each real format read through one typed spec, train and val in one label space."""

import pytest

from vjepa.infra.config import ConfigError, from_dict
from vjepa.data.readers import AnnotationError
from vjepa.data.sources import read_task
from vjepa.infra.configs import TaskData


def spec(root, fmt, train, val, **extra):
    return {
        "train": {"format": fmt, "path": str(root / train), **extra.get("train_extra", {})},
        "val": {"format": fmt, "path": str(root / val), **extra.get("val_extra", {})},
    }


def test_every_format_of_the_small_suite_reads_into_one_label_space(tiny_suite):
    root, summary = tiny_suite
    labels = str(root / "ssv2/something-something-v2-labels.json")
    tasks = {
        "k400": spec(
            root,
            "kinetics",
            "k400/annotations/train.csv",
            "k400/annotations/validate.csv",
            train_extra={"root": str(root / "k400/videos/train")},
            val_extra={"root": str(root / "k400/videos/val")},
        ),
        "ssv2": spec(
            root,
            "ssv2",
            "ssv2/something-something-v2-train.json",
            "ssv2/something-something-v2-validation.json",
            train_extra={"labels": labels, "root": str(root / "ssv2/videos")},
            val_extra={"labels": labels, "root": str(root / "ssv2/videos")},
        ),
        "ssv2_list": spec(root, "list", "ssv2/train.csv", "ssv2/val.csv"),
        "in1k": spec(root, "image_folder", "in1k/train", "in1k/val"),
        "inat21": spec(root, "inat", "inat21/train.json", "inat21/val.json"),
    }
    sizes = {}
    for name, s in tasks.items():
        train, val, classes = read_task(from_dict(TaskData, s, name))
        sizes[name] = (len(train), len(val))
        assert all(0 <= y < len(classes) for _, y in train + val)
    assert sizes["k400"] == (120, 4) and sizes["ssv2"] == (8, 4) == sizes["ssv2_list"]
    assert sizes["in1k"] == (80, 10) and sizes["inat21"] == (120, 6)
    # the SSv2 JSON and the list file give the same labels for the same videos
    a, _, _ = read_task(from_dict(TaskData, tasks["ssv2"]))
    b, _, _ = read_task(from_dict(TaskData, tasks["ssv2_list"]))
    assert sorted((p.split("/")[-1], y) for p, y in a) == sorted((p.split("/")[-1], y) for p, y in b)


def test_a_val_class_missing_from_training_is_an_error_naming_the_folder(tmp_path):
    for split, classes in (("train", ["cat"]), ("val", ["cat", "dog"])):
        for c in classes:
            (tmp_path / split / c).mkdir(parents=True)
            (tmp_path / split / c / "a.jpg").write_bytes(b"x")
    with pytest.raises(AnnotationError, match=r"val.*\['dog'\] are not in the training classes"):
        read_task(from_dict(TaskData, spec(tmp_path, "image_folder", "train", "val")))


def test_specs_are_validated_at_the_edge():
    with pytest.raises(ConfigError, match="k400.train.format: must be one of"):
        from_dict(TaskData, {"train": {"format": "csv", "path": "x"}, "val": {"format": "list", "path": "y"}}, "k400")
    with pytest.raises(ConfigError, match="needs `labels`"):
        from_dict(TaskData, {"train": {"format": "ssv2", "path": "x"}, "val": {"format": "ssv2", "path": "y"}})


def test_a_list_val_label_unseen_in_training_is_an_error_unless_num_classes_is_set(tmp_path):
    (tmp_path / "train.csv").write_text("/v/a.mp4 0\n/v/b.mp4 2\n")
    (tmp_path / "val.csv").write_text("/v/c.mp4 0\n/v/d.mp4 1\n/v/e.mp4 2\n")
    s = spec(tmp_path, "list", "train.csv", "val.csv")
    s["train"]["path"], s["val"]["path"] = str(tmp_path / "train.csv"), str(tmp_path / "val.csv")
    with pytest.raises(AnnotationError, match="label 1 never occurs in the training list") as e:
        read_task(from_dict(TaskData, s), check_files=False)
    assert e.value.path == str(tmp_path / "val.csv") and e.value.line == 2
    (tmp_path / "val.csv").write_text("/v/c.mp4 0\n/v/e.mp4 3\n")  # beyond the training maximum too
    with pytest.raises(AnnotationError, match="label 3 never occurs") as e:
        read_task(from_dict(TaskData, s), check_files=False)
    assert e.value.line == 2
    s["train"]["num_classes"] = s["val"]["num_classes"] = 5  # an explicit label space allows it
    train, val, classes = read_task(from_dict(TaskData, s), check_files=False)
    assert len(classes) == 5 and list(val.labels) == [0, 3]
    s["val"]["num_classes"] = 3
    with pytest.raises(ConfigError, match="same `num_classes`"):
        from_dict(TaskData, s)
    s["val"]["num_classes"] = 5
    (tmp_path / "val.csv").write_text("/v/c.mp4 0\n/v/e.mp4 5\n")
    with pytest.raises(AnnotationError, match="unknown label 5") as e:
        read_task(from_dict(TaskData, s), check_files=False)
    assert e.value.line == 2
