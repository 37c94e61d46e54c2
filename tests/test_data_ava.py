"""AVA v2.2 readers on good and bad files: label map, ground truth, exclusions, proposals
(pickle and CSV, score threshold), frame folders and keyframe clip indices."""

import pickle

import numpy as np
import pytest
from PIL import Image

from vjepa.data.ava import (
    AvaFrameFolder,
    ava_clip_indices,
    ava_keyframe_index,
    read_ava_csv,
    read_ava_exclusions,
    read_ava_labelmap,
    read_ava_proposals,
    write_ava_csv,
    write_ava_labelmap,
    write_ava_proposals,
)
from vjepa.infra.configs import AVA_EVAL_CLASS_IDS
from vjepa.data.readers import AnnotationError

PBTXT = """item {
  name: "bend/bow (at the waist)"
  id: 1
}
item {
  name: "crawl"
  label_id: 2
  label_type: PERSON_MOVEMENT
}
"""


def test_labelmap_reads_id_and_label_id_items(tmp_path):
    p = tmp_path / "map.pbtxt"
    p.write_text(PBTXT)
    assert read_ava_labelmap(p) == {1: "bend/bow (at the waist)", 2: "crawl"}
    write_ava_labelmap({5: "a b", 7: "c"}, tmp_path / "w.pbtxt")
    assert read_ava_labelmap(tmp_path / "w.pbtxt") == {5: "a b", 7: "c"}
    assert len(AVA_EVAL_CLASS_IDS) == 60 and AVA_EVAL_CLASS_IDS[-1] == 80


def test_labelmap_reads_the_label_block_layout_of_the_full_action_list(tmp_path):
    # ava_action_list_v2.2.pbtxt: `label { name label_id label_type }` blocks (the 2019 eval list uses `item`)
    p = tmp_path / "ava_action_list_v2.2.pbtxt"
    p.write_text(
        'label {\n  name: "bend/bow (at the waist)"\n  label_id: 1\n  label_type: PERSON_MOVEMENT\n}\n'
        'label {\n  name: "answer phone"\n  label_id: 80\n  label_type: OBJECT_MANIPULATION\n}\n'
    )
    assert read_ava_labelmap(p) == {1: "bend/bow (at the waist)", 80: "answer phone"}
    p.write_text(p.read_text().replace("label_id: 80", "label_id: 1"))
    with pytest.raises(AnnotationError, match="twice") as e:
        read_ava_labelmap(p)
    assert e.value.line == 8


@pytest.mark.parametrize(
    "text, line, what",
    [
        (PBTXT.replace("  id: 1", "  id: one"), 3, "integer"),
        (PBTXT.replace('  name: "crawl"\n', ""), 6, "no name"),
        (PBTXT.replace("label_id: 2", "id: 1"), 7, "twice"),
        (PBTXT.replace("label_type", "colour"), 8, "unexpected"),
    ],
)
def test_labelmap_errors_name_file_and_line(tmp_path, text, line, what):
    p = tmp_path / "bad.pbtxt"
    p.write_text(text)
    with pytest.raises(AnnotationError, match=what) as e:
        read_ava_labelmap(p)
    assert e.value.path == str(p) and e.value.line == line and str(e.value).startswith(f"{p}:{line}:")


GT = (
    "-5KQ66BBWC4,0902,0.077,0.151,0.283,0.811,80,1\n"
    "-5KQ66BBWC4,0902,0.077,0.151,0.283,0.811,12,1\n"
    "abc_def,1798,0.0,0.0,1.0,1.0,3,0\n"
)


def test_ground_truth_csv_parses_types_and_round_trips(tmp_path):
    p = tmp_path / "gt.csv"
    p.write_text(GT)
    df = read_ava_csv(p)
    assert list(df.columns) == ["video_id", "timestamp", "x1", "y1", "x2", "y2", "action_id", "person_id"]
    assert df.timestamp.tolist() == [902, 902, 1798] and df.action_id.tolist() == [80, 12, 3]
    assert df.x2.iloc[0] == pytest.approx(0.283) and df.video_id.iloc[0] == "-5KQ66BBWC4"
    assert str(df.timestamp.dtype) == "int64"
    write_ava_csv(df, tmp_path / "gt2.csv")
    assert (tmp_path / "gt2.csv").read_text().splitlines()[0] == "-5KQ66BBWC4,0902,0.077,0.151,0.283,0.811,80,1"
    assert read_ava_csv(tmp_path / "gt2.csv").equals(df)


@pytest.mark.parametrize(
    "bad, what",
    [
        ("v,0902,0.1,0.1,0.2,0.2,3\n", None),  # 7 columns: person_id -1 (accepted)
        ("v,0902,0.1,0.1,0.2\n", "expected 8 columns"),
        ("v,09x2,0.1,0.1,0.2,0.2,3,1\n", "timestamp"),
        ("v,0902,0.3,0.1,0.2,0.2,3,1\n", "normalised"),
        ("v,0902,0.1,0.1,0.2,1.5,3,1\n", "normalised"),
        ("v,0902,0.1,0.1,0.2,0.2,,1\n", "empty action_id"),
        ("v,0902,0.1,0.1,0.2,0.2,81,1\n", "unknown label"),
        ("v w,0902,0.1,0.1,0.2,0.2,3,1\n", "bad video id"),
    ],
)
def test_ground_truth_errors_name_file_and_line(tmp_path, bad, what):
    p = tmp_path / "gt.csv"
    p.write_text(GT + bad)
    if what is None:
        assert read_ava_csv(p, action_ids=range(1, 81)).person_id.tolist()[-1] == -1
        return
    with pytest.raises(AnnotationError, match=what) as e:
        read_ava_csv(p, action_ids=range(1, 81))
    assert e.value.line == 4 and f"{p}:4:" in str(e.value)


def test_exclusions(tmp_path):
    p = tmp_path / "ex.csv"
    p.write_text("vid1,0902\nvid2,1000\n")
    assert read_ava_exclusions(p) == {("vid1", 902), ("vid2", 1000)}
    (tmp_path / "empty.csv").write_text("")
    assert read_ava_exclusions(tmp_path / "empty.csv") == set()
    p.write_text("vid1,0902\nvid2\n")
    with pytest.raises(AnnotationError, match=r"ex.csv:2: expected 2 columns"):
        read_ava_exclusions(p)
    with pytest.raises(AnnotationError, match="not found"):
        read_ava_exclusions(tmp_path / "missing.csv")


def test_proposals_pickle_and_csv_agree_and_threshold(tmp_path):
    props = {
        ("v1", 902): np.array([[0.1, 0.1, 0.5, 0.6, 0.95], [0.2, 0.2, 0.3, 0.3, 0.4]], np.float32),
        ("v1", 903): np.array([[0.0, 0.0, 1.0, 1.0, 0.3]], np.float32),
    }
    write_ava_proposals(props, tmp_path / "p.pkl")
    write_ava_proposals(props, tmp_path / "p.csv")
    for f in ("p.pkl", "p.csv"):
        out = read_ava_proposals(tmp_path / f, score_threshold=0.9)
        assert list(out) == [("v1", 902)]  # 903 has no box >= 0.9
        np.testing.assert_allclose(out[("v1", 902)], [[0.1, 0.1, 0.5, 0.6, 0.95]], atol=1e-6)
        assert out[("v1", 902)].dtype == np.float32
        assert sum(len(a) for a in read_ava_proposals(tmp_path / f, 0.0).values()) == 3
    # SlowFast's CSV repeats a box once per action: kept once, with its best score
    (tmp_path / "dup.csv").write_text("v,0902,0.1,0.1,0.2,0.2,,0.8\nv,0902,0.1,0.1,0.2,0.2,5,0.9\n")
    np.testing.assert_allclose(read_ava_proposals(tmp_path / "dup.csv", 0.5)[("v", 902)], [[0.1, 0.1, 0.2, 0.2, 0.9]])
    # [N, 4] pickles carry no score: every box kept with score 1
    with open(tmp_path / "n4.pkl", "wb") as f:
        pickle.dump({"v,0902": np.array([[0.1, 0.1, 0.2, 0.2]])}, f)
    np.testing.assert_allclose(read_ava_proposals(tmp_path / "n4.pkl", 0.9)[("v", 902)], [[0.1, 0.1, 0.2, 0.2, 1.0]])


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_proposals_errors(tmp_path):
    (tmp_path / "bad.csv").write_text("v,0902,0.1,0.1,0.2,0.2,,0.8\nv,0902,0.1,0.1,0.2,0.2,0.8\n")
    with pytest.raises(AnnotationError, match=r"bad.csv:2: expected 8 columns"):
        read_ava_proposals(tmp_path / "bad.csv", 0.5)
    with open(tmp_path / "evil.pkl", "wb") as f:
        pickle.dump({"v,0902": _Evil()}, f)
    with pytest.raises(AnnotationError, match="refusing"):
        read_ava_proposals(tmp_path / "evil.pkl", 0.5)
    with open(tmp_path / "shape.pkl", "wb") as f:
        pickle.dump({"v,0902": np.zeros((2, 3))}, f)
    with pytest.raises(AnnotationError, match=r"'v,0902'.*shape"):
        read_ava_proposals(tmp_path / "shape.pkl", 0.5)


def _frames(folder, names, size=8):
    folder.mkdir(parents=True)
    for k, n in enumerate(names):
        Image.fromarray(np.full((size, size, 3), k % 256, np.uint8)).save(folder / n, quality=100)


def test_frame_folder_keyframe_and_clip_indices(tmp_path):
    assert ava_keyframe_index(902) == 60 and ava_keyframe_index(900) == 0
    # SlowFast's window: 16 frames at stride 4 around the keyframe, which sits at position 8; clamped
    np.testing.assert_array_equal(ava_clip_indices(60, 1000), np.arange(28, 92, 4))
    np.testing.assert_array_equal(ava_clip_indices(5, 1000)[:3], [0, 0, 0])
    n = 4 * 30  # seconds 900..903
    _frames(tmp_path / "vidA", [f"vidA_{k:06d}.jpg" for k in range(1, n + 1)])
    _frames(tmp_path / "vidB", [f"img_{k:05d}.jpg" for k in range(1, n + 1)])
    frames = AvaFrameFolder(tmp_path)
    for vid in ("vidA", "vidB"):
        paths = frames.frame_paths(vid)
        assert len(paths) == n and paths[0].endswith(("vidA_000001.jpg", "img_00001.jpg"))
        clip = frames.load_clip(vid, 902, num_frames=4, frame_step=2)
        assert clip.shape == (4, 8, 8, 3) and clip.dtype == np.uint8
        # frame k (0-based) was painted with value k; the window is 56, 58, 60 (keyframe), 62
        assert [int(c[0, 0, 0]) for c in clip] == [56, 58, 60, 62]
    with pytest.raises(IndexError, match="second 905"):
        frames.clip_indices("vidA", 905)
    _frames(tmp_path / "gap", ["gap_000001.jpg", "gap_000003.jpg"])
    with pytest.raises(AnnotationError, match="frame 2 is missing"):
        frames.frame_paths("gap")


def test_the_vectorised_ground_truth_reader_equals_the_row_by_row_rules(tmp_path):
    from vjepa.data.ava import AVA_CSV_COLUMNS, _AVA_DTYPES, _read_ava_csv_rows

    rng = np.random.default_rng(0)
    lines = [
        f"vid{k % 7},{902 + k % 50:04d},{x:.3f},{y:.3f},{x + 0.2:.3f},{y + 0.3:.3f},{1 + k % 80},{k % 5}"
        for k, (x, y) in enumerate(rng.random((500, 2)) * 0.5)
    ]
    p = tmp_path / "gt.csv"
    p.write_text("\n".join(lines) + "\n")
    import pandas as pd

    want = pd.DataFrame(_read_ava_csv_rows(p, None), columns=AVA_CSV_COLUMNS).astype(_AVA_DTYPES)
    pd.testing.assert_frame_equal(read_ava_csv(p), want)
    lines[321] = lines[321].replace(",0.", ",1.5", 1)  # x1 > 1 deep in the file
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(AnnotationError, match="not normalised") as e:
        read_ava_csv(p)
    assert e.value.line == 322


@pytest.mark.parametrize(
    "value",
    ["0.1,0.1,0.2,0.2,0.9", {0.1, 0.2}, [[0.1, 0.1, 0.2, 0.2, 0.9], [0.1, 0.2]]],
    ids=["string", "set", "ragged"],
)
def test_proposals_whose_values_are_not_arrays_of_numbers_are_an_error_naming_the_file_and_key(tmp_path, value):
    path = tmp_path / "odd.pkl"
    with open(path, "wb") as f:
        pickle.dump({"v,0902": value}, f)
    with pytest.raises(
        AnnotationError,
        match=rf"^{path}: key 'v,0902': expected an \[N, 5\] or \[N, 4\] array of numbers, "
        rf"got {type(value).__name__} ",
    ):
        read_ava_proposals(path, 0.5)


@pytest.mark.parametrize("video_id", ["../outside", "/etc", "a/../../outside"])
def test_an_ava_video_id_that_leads_out_of_the_frames_folder_is_refused_naming_it(tmp_path, video_id):
    from vjepa.infra.runtime import PathEscapeError

    _frames(tmp_path / "outside", ["outside_000001.jpg"])
    (tmp_path / "frames").mkdir()
    with pytest.raises(PathEscapeError, match=r"AVA video id \(frames under .*frames\) '"):
        AvaFrameFolder(tmp_path / "frames").frame_paths(video_id)


def test_an_ava_frames_folder_linked_to_another_disk_is_still_read(tmp_path):
    _frames(tmp_path / "disk2" / "vid", ["vid_000001.jpg", "vid_000002.jpg"])
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "vid").symlink_to(tmp_path / "disk2" / "vid")
    assert [p.rsplit("/", 1)[1] for p in AvaFrameFolder(tmp_path / "frames").frame_paths("vid")] == [
        "vid_000001.jpg",
        "vid_000002.jpg",
    ]
