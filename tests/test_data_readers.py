"""Annotation readers on good and bad files: `path label` lists, the Kinetics release CSV, the SSv2
JSON files, ImageFolder trees and the iNat21 JSON. Every error names the file and 1-based line."""

import json
import os

import pytest

from vjepa.data.readers import (
    AnnotationError,
    read_image_folder,
    read_inat_json,
    read_kinetics_csv,
    read_path_label_list,
    read_ssv2,
    read_ssv2_labels,
    write_path_label_list,
)


def _touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _raises(fn, path, line, match):
    with pytest.raises(AnnotationError, match=match) as e:
        fn()
    assert e.value.path == str(path) and e.value.line == line
    assert str(e.value).startswith(f"{path}:{line}:" if line else f"{path}:")


def test_path_label_list_resolves_relative_paths_and_keeps_absolute(tmp_path):
    a = _touch(tmp_path / "videos" / "a.mp4")
    b = _touch(tmp_path / "elsewhere" / "b.mp4")
    lst = tmp_path / "lists" / "train.csv"
    lst.parent.mkdir()
    lst.write_text(f"../videos/a.mp4 3\n{b} 0\n\n")  # trailing blank line allowed
    assert read_path_label_list(lst) == [(str(a), 3), (str(b), 0)]
    # writing and reading back gives the same entries; relative paths are written
    write_path_label_list([(str(a), 3), (str(b), 0)], tmp_path / "out" / "l.csv")
    assert (tmp_path / "out" / "l.csv").read_text().splitlines()[0] == "../videos/a.mp4 3"
    assert read_path_label_list(tmp_path / "out" / "l.csv") == [(str(a), 3), (str(b), 0)]


@pytest.mark.parametrize(
    "line2, match",
    [
        ("my video.mp4 1", "3 fields"),  # a path with spaces, unquoted
        ("b.mp4  1", "3 fields"),  # double space
        ("b.mp4\t1", "tab"),
        ("b.mp4 one", "label must be an integer"),
        ("b.mp4 7", "unknown label 7"),
        ("missing.mp4 1", "listed file not found"),
        ("", "blank line"),
    ],
)
def test_path_label_list_errors_name_file_and_line(tmp_path, line2, match):
    _touch(tmp_path / "a.mp4")
    _touch(tmp_path / "b.mp4")
    lst = tmp_path / "train.csv"
    lst.write_text(f"a.mp4 0\n{line2}\na.mp4 2\n")
    _raises(lambda: read_path_label_list(lst, num_classes=5), lst, 2, match)


def test_path_label_list_missing_or_empty_file(tmp_path):
    _raises(lambda: read_path_label_list(tmp_path / "nope.csv"), tmp_path / "nope.csv", None, "not found")
    (tmp_path / "empty.csv").write_text("\n")
    _raises(lambda: read_path_label_list(tmp_path / "empty.csv"), tmp_path / "empty.csv", None, "no entries")
    with pytest.raises(ValueError, match="whitespace"):
        write_path_label_list([("a\nb.mp4", 0)], tmp_path / "x.csv")  # spaces are quoted; newlines cannot be


KINETICS = (
    "label,youtube_id,time_start,time_end,split\n"
    "air drumming,--nQbRBEz2s,104,114,train\n"
    "abseiling,-3B32lodo2M,59,69,train\n"
    "air drumming,0D__H4bA4gE,7,17,train\n"
)


def test_kinetics_csv_alphabetical_classes_and_conventional_paths(tmp_path):
    csv = tmp_path / "train.csv"
    csv.write_text(KINETICS)
    for rel in (
        "air drumming/--nQbRBEz2s_000104_000114.mp4",
        "abseiling/-3B32lodo2M_000059_000069.mp4",
        "air drumming/0D__H4bA4gE_000007_000017.mp4",
    ):
        _touch(tmp_path / "videos" / rel)
    entries, classes = read_kinetics_csv(csv, tmp_path / "videos")
    assert classes == {"abseiling": 0, "air drumming": 1}
    assert [l for _, l in entries] == [1, 0, 1]
    assert entries[0][0] == str(tmp_path / "videos" / "air drumming" / "--nQbRBEz2s_000104_000114.mp4")
    # the validation file is read with the training map; the is_cc column of the CVDF release is accepted
    val = tmp_path / "validate.csv"
    val.write_text("label,youtube_id,time_start,time_end,split,is_cc\nabseiling,x1,1,11,val,0\n")
    e, c = read_kinetics_csv(
        val, classes=classes, path_format="{label_underscored}/{youtube_id}.mp4", check_files=False
    )
    assert c == classes and e == [(str(tmp_path / "abseiling" / "x1.mp4"), 0)]


@pytest.mark.parametrize(
    "row, match",
    [
        ("abseiling,x1,1,11", "expected 5 columns"),
        ("abseiling,x1,one,11,train", "time_start must be an integer"),
        ("juggling fire,x1,1,11,train", "unknown label 'juggling fire'"),
        (",x1,1,11,train", "empty label"),
        ("abseiling,zz,1,11,train", "clip not found"),
    ],
)
def test_kinetics_csv_errors_name_file_and_line(tmp_path, row, match):
    csv = tmp_path / "validate.csv"
    csv.write_text("label,youtube_id,time_start,time_end,split\n" + row + "\n")
    classes = {"abseiling": 0, "air drumming": 1}
    _raises(lambda: read_kinetics_csv(csv, tmp_path, classes=classes), csv, 2, match)
    csv.write_text("youtube_id,time_start,time_end,split\nx1,1,11,test\n")
    _raises(lambda: read_kinetics_csv(csv), csv, 1, "expected header")


def _ssv2_files(tmp_path, items):
    labels = tmp_path / "something-something-v2-labels.json"
    labels.write_text(json.dumps({"Holding something": "1", "Moving something up": "0"}, indent=1))
    split = tmp_path / "something-something-v2-train.json"
    split.write_text(json.dumps(items, indent=1))
    return labels, split


def test_ssv2_json_template_lookup(tmp_path):
    items = [
        {"id": "78687", "label": "holding potato", "template": "Holding [something]", "placeholders": ["potato"]},
        {"id": "42326", "label": "moving pen up", "template": "Moving [something] up", "placeholders": ["pen"]},
    ]
    labels, split = _ssv2_files(tmp_path, items)
    _touch(tmp_path / "v" / "78687.webm")
    _touch(tmp_path / "v" / "42326.webm")
    assert read_ssv2_labels(labels) == {"Holding something": 1, "Moving something up": 0}
    entries, classes = read_ssv2(split, labels, tmp_path / "v")
    assert entries == [(str(tmp_path / "v" / "78687.webm"), 1), (str(tmp_path / "v" / "42326.webm"), 0)]


def test_ssv2_json_errors_name_the_entry_line(tmp_path):
    items = [
        {"id": "1", "label": "a", "template": "Holding [something]", "placeholders": []},
        {"id": "2", "label": "b", "template": "Dropping [something]", "placeholders": []},
    ]
    labels, split = _ssv2_files(tmp_path, items)
    # json.dumps(indent=1): '[' on line 1, entry 0 starts at line 2 and takes 6 lines, entry 1 at line 8
    _raises(lambda: read_ssv2(split, labels, check_files=False), split, 8, "unknown label")
    items[1] = {"id": "2"}
    labels, split = _ssv2_files(tmp_path, items)
    _raises(lambda: read_ssv2(split, labels, check_files=False), split, 8, "needs 'id' and 'template'")
    split.write_text('[\n {"id": "1", "template": "Holding [something]"},\n {"id": "2" "template": 1}\n]')
    _raises(lambda: read_ssv2(split, labels, check_files=False), split, 3, "malformed JSON")
    split.write_text('[{"id": "1", "template": "Holding [something]"}]')
    _raises(lambda: read_ssv2(split, labels), split, 1, "video not found")
    labels.write_text('{\n "Holding something": "0",\n "Moving something up": "0"\n}')
    _raises(lambda: read_ssv2_labels(labels), labels, 3, "used twice")


def test_image_folder_and_its_errors(tmp_path):
    for rel in ("train/n02/b.JPEG", "train/n01/a.jpg", "train/n01/sub/c.png", "train/n01/.DS_Store"):
        _touch(tmp_path / rel)
    entries, classes = read_image_folder(tmp_path / "train")
    assert classes == {"n01": 0, "n02": 1}
    assert [(os.path.relpath(p, tmp_path), l) for p, l in entries] == [
        ("train/n01/a.jpg", 0),
        ("train/n01/sub/c.png", 0),
        ("train/n02/b.JPEG", 1),
    ]
    _touch(tmp_path / "train" / "n02" / "notes.txt")
    _raises(
        lambda: read_image_folder(tmp_path / "train"), tmp_path / "train" / "n02" / "notes.txt", None, "not an image"
    )
    (tmp_path / "train" / "n02" / "notes.txt").unlink()
    (tmp_path / "train" / "n03").mkdir()
    _raises(lambda: read_image_folder(tmp_path / "train"), tmp_path / "train" / "n03", None, "no images")


def _inat(tmp_path, anns):
    data = {
        "images": [
            {"id": 10, "file_name": "train/00001_b/x.jpg", "width": 8, "height": 8},
            {"id": 11, "file_name": "train/00000_a/y.jpg", "width": 8, "height": 8},
        ],
        "annotations": anns,
        "categories": [{"id": 7, "name": "Lumbricus terrestris"}, {"id": 3, "name": "Apis mellifera"}],
    }
    p = tmp_path / "train.json"
    p.write_text(json.dumps(data, indent=1))
    return p


def test_inat_json_reads_labels_in_category_id_order(tmp_path):
    _touch(tmp_path / "train/00001_b/x.jpg")
    _touch(tmp_path / "train/00000_a/y.jpg")
    p = _inat(tmp_path, [{"id": 1, "image_id": 10, "category_id": 7}, {"id": 2, "image_id": 11, "category_id": 3}])
    entries, classes = read_inat_json(p)
    assert classes == {"Apis mellifera": 0, "Lumbricus terrestris": 1}
    assert entries == [(str(tmp_path / "train/00001_b/x.jpg"), 1), (str(tmp_path / "train/00000_a/y.jpg"), 0)]


def test_inat_json_errors_name_the_line(tmp_path):
    text_line = lambda p, needle: next(i for i, l in enumerate(p.read_text().splitlines(), 1) if needle in l) - 1
    p = _inat(tmp_path, [{"id": 1, "image_id": 10, "category_id": 7}, {"id": 2, "image_id": 11, "category_id": 99}])
    _raises(lambda: read_inat_json(p, check_files=False), p, text_line(p, '"id": 2,'), "unknown label")
    p = _inat(tmp_path, [{"id": 1, "image_id": 10, "category_id": 7}, {"id": 2, "image_id": 12, "category_id": 3}])
    _raises(lambda: read_inat_json(p, check_files=False), p, text_line(p, '"id": 2,'), "unknown image id 12")
    p = _inat(tmp_path, [{"id": 1, "image_id": 10, "category_id": 7}])
    _raises(lambda: read_inat_json(p, check_files=False), p, text_line(p, '"id": 11,'), "no annotation")
    p = _inat(tmp_path, [{"id": 1, "image_id": 10, "category_id": 7}, {"id": 2, "image_id": 11, "category_id": 3}])
    _raises(lambda: read_inat_json(p), p, text_line(p, '"id": 10,'), "image not found")


# ---------------------------------------------------------------------------------------------
# Encodings: UTF-8 only (the error names the line), a byte-order mark ignored, in every format


def test_a_file_that_is_not_utf8_is_an_error_naming_its_line(tmp_path):
    lst = tmp_path / "train.csv"
    lst.write_bytes("a.mp4 0\nb.mp4 1\nc\xe9.mp4 2\n".encode("latin-1"))  # é in Latin-1 on line 3
    _raises(lambda: read_path_label_list(lst, check_files=False), lst, 3, "not valid UTF-8")
    csv = tmp_path / "k.csv"
    csv.write_bytes(
        ("label,youtube_id,time_start,time_end,split\nabseiling,x1,1,11,train\ncaf\xe9 sitting,x2,1,11,train\n").encode(
            "latin-1"
        )
    )
    _raises(lambda: read_kinetics_csv(csv, check_files=False), csv, 3, "not valid UTF-8")
    js = tmp_path / "labels.json"
    js.write_bytes('{\n "Holding something": "0",\n "Caf\xe9 something": "1"\n}'.encode("latin-1"))
    _raises(lambda: read_ssv2_labels(js), js, 3, "not valid UTF-8")


def test_a_byte_order_mark_is_ignored(tmp_path):
    _touch(tmp_path / "a.mp4")
    lst = tmp_path / "train.csv"
    lst.write_bytes(b"\xef\xbb\xbfa.mp4 3\n")
    assert read_path_label_list(lst) == [(str(tmp_path / "a.mp4"), 3)]
    csv = tmp_path / "k.csv"
    csv.write_bytes(b"\xef\xbb\xbf" + KINETICS.encode())
    entries, classes = read_kinetics_csv(csv, check_files=False)
    assert classes == {"abseiling": 0, "air drumming": 1} and len(entries) == 3
    labels, split = _ssv2_files(tmp_path, [{"id": "7", "template": "Holding [something]"}])
    for p in (labels, split):
        p.write_bytes(b"\xef\xbb\xbf" + p.read_bytes())
    assert read_ssv2(split, labels, check_files=False)[0] == [(str(tmp_path / "7.webm"), 1)]
    # the mark does not shift line numbers
    lst.write_bytes(b"\xef\xbb\xbfa.mp4 3\na.mp4 x\n")
    _raises(lambda: read_path_label_list(lst), lst, 2, "label must be an integer")


def test_inat_json_on_one_line_names_line_one_and_the_entry(tmp_path):
    p = tmp_path / "train.json"
    p.write_text(
        json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2}], "annotations": [], "categories": []})
    )
    _raises(lambda: read_inat_json(p, check_files=False), p, 1, "image needs integer 'id'")


def test_entries_are_compact_arrays_that_index_like_a_list(tmp_path):
    lst = tmp_path / "train.csv"
    lst.write_text("".join(f"/v/{k}.mp4 {k % 7}\n" for k in range(1000)))
    e = read_path_label_list(lst, check_files=False)
    assert len(e) == 1000 and e[3] == ("/v/3.mp4", 3) and e[-1] == ("/v/999.mp4", 999 % 7)
    # no Python object per entry: the path bytes, one 8-byte offset and one 4-byte label each
    assert (
        e.labels.dtype.name == "int32"
        and e.nbytes <= sum(len(f"/v/{k}.mp4") for k in range(1000)) + 8 * 1001 + 4 * 1000
    )
    assert list(e[10:12]) == [("/v/10.mp4", 3), ("/v/11.mp4", 4)] and (e[:2] + e[2:4]) == e[:4]


def test_the_same_file_listed_twice_with_two_labels_is_refused_naming_both_lines(tmp_path):
    lst = tmp_path / "train.txt"
    lst.write_text("a.mp4 0\nb.mp4 1\nc.mp4 1\nb.mp4 2\n")
    _raises(
        lambda: read_path_label_list(lst, check_files=False),
        lst,
        4,
        rf"{tmp_path / 'b.mp4'} is listed twice with two labels: 1 \(line 2\) and 2 \(line 4\)$",
    )
    lst.write_text("a.mp4 0\nb.mp4 1\nb.mp4 1\n")  # a deliberate repeat with one label is allowed
    assert [l for _, l in read_path_label_list(lst, check_files=False)] == [0, 1, 1]
    csv = tmp_path / "train.csv"
    csv.write_text(
        "label,youtube_id,time_start,time_end,split\nabseiling,x1,1,11,train\nabseiling,x2,1,11,train\n"
        "air drumming,x1,1,11,train\n"
    )
    _raises(
        lambda: read_kinetics_csv(csv, tmp_path, path_format="{youtube_id}.mp4", check_files=False),
        csv,
        4,
        r"x1\.mp4 is listed twice with two labels: 0 \(line 2\) and 1 \(line 4\)",
    )


def test_names_an_annotation_file_gives_under_a_data_root_must_stay_under_it(tmp_path):
    csv = tmp_path / "train.csv"
    csv.write_text("label,youtube_id,time_start,time_end,split\nabseiling,x1,1,11,train\n../../etc,x2,1,11,train\n")
    _raises(
        lambda: read_kinetics_csv(csv, tmp_path / "videos", check_files=False),
        csv,
        3,
        r"clip \(under .*videos\) '\.\./\.\./etc/x2_000001_000011\.mp4' leads outside",
    )
    items = [
        {"id": "1", "label": "a", "template": "Holding [something]", "placeholders": []},
        {"id": "../../x", "label": "b", "template": "Holding [something]", "placeholders": []},
    ]
    labels, split = _ssv2_files(tmp_path, items)
    with pytest.raises(AnnotationError, match=r"video \(under .*\) '\.\./\.\./x\.webm' leads outside"):
        read_ssv2(split, labels, tmp_path / "v", check_files=False)
    p = _inat(tmp_path, [{"id": 1, "image_id": 10, "category_id": 7}, {"id": 2, "image_id": 11, "category_id": 3}])
    p.write_text(p.read_text().replace("train/00000_a/y.jpg", "/etc/passwd"))
    with pytest.raises(AnnotationError, match=r"image \(under .*\) '/etc/passwd' is absolute"):
        read_inat_json(p, check_files=False)
    # names that only look odd stay: a '..' inside a name, and '..' that comes back under the root
    p.write_text(p.read_text().replace("/etc/passwd", "train/a..b/../00000_a/y.jpg"))
    assert read_inat_json(p, check_files=False)[0][1][0] == str(tmp_path / "train/00000_a/y.jpg")
