"""Feature extraction on a real encoded video (H.264, 333x187, a minute long, variable frame rate):
the windows and their times are the ones the stride asks for, each window's feature equals the
encoder run by hand on frames the test decodes itself, and undecodable files are skipped and listed."""

import math
import warnings
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
import torch
from test_hub import SMALL, by_hand, write_official

from vjepa.data.transforms import eval_transform
from vjepa.extract import ExtractConfig, extract, extract_video, main, window_indices, window_starts
from vjepa.models.probes import AttentiveClassifier, official_probe_state

W, H = 333, 187


@pytest.fixture(scope="module")
def vfr_video(tmp_path_factory):
    """62+ s of H.264 at 333x187 (4:4:4, as 4:2:0 needs even sizes) whose frames are 100 to 300 ms
    apart at random; returns (path, presentation times in s, every frame as decoded by PyAV)."""
    path = tmp_path_factory.mktemp("video") / "walk.mp4"
    rng = np.random.default_rng(0)
    gaps = rng.integers(100, 301, 320)
    pts = np.concatenate([[0], np.cumsum(gaps[:-1])])  # milliseconds
    yy, xx = np.mgrid[0:H, 0:W]
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=5)
        s.width, s.height, s.pix_fmt = W, H, "yuv444p"
        s.codec_context.time_base = Fraction(1, 1000)
        s.options = {"crf": "28", "preset": "ultrafast", "g": "30", "threads": "1"}
        for i, t in enumerate(pts):
            img = np.stack([(xx + 3 * i) % 256, (2 * yy + 5 * i) % 256, ((xx + yy) // 2 + 7 * i) % 256], -1)
            frame = av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24")
            frame.pts, frame.time_base = int(t), Fraction(1, 1000)
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    with av.open(str(path)) as c:
        decoded = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert pts[-1] > 60_000 and len(decoded) == len(pts) and decoded[0].shape == (H, W, 3)
    return str(path), pts / 1000.0, np.stack(decoded)


@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ck") / "small.pth.tar"
    write_official(path, SMALL)
    return path


def hand_features(encoder, frames, starts, frame_step=2):
    """The encoder run by hand on each window: 4 frames frame_step apart, the 1-view eval transform."""
    tf = eval_transform(32, 1)
    clips = torch.stack([tf(frames[s + frame_step * np.arange(4)])[0] for s in starts])
    with torch.no_grad():
        return encoder(clips)


def test_windows_in_frames_have_the_expected_starts_times_and_features(vfr_video, small_file):
    path, times, frames = vfr_video
    enc = by_hand(small_file, SMALL)
    cfg = ExtractConfig(frame_step=2, stride=40, batch_size=3, device="cpu")
    feats, table = extract_video(path, enc, cfg)
    n, span = len(times), 4 * 2
    starts = np.arange(0, n - span + 1, 40)
    assert len(starts) == 8 and table["start_frame"].tolist() == starts.tolist()
    assert np.allclose(table["start_s"], times[starts], atol=1e-4)
    assert np.allclose(table["end_s"], times[starts + 6], atol=1e-4)
    tokens = hand_features(enc, frames, starts)
    assert feats.shape == (8, 48)
    assert np.allclose(feats, tokens.mean(1).numpy(), atol=1e-5)
    all_tokens, _ = extract_video(path, enc, ExtractConfig(frame_step=2, stride=40, pooling="tokens", device="cpu"))
    assert all_tokens.shape == (8, 32, 48) and np.allclose(all_tokens, tokens.numpy(), atol=1e-5)


def test_a_stride_in_seconds_follows_the_variable_frame_times(vfr_video, small_file):
    path, times, frames = vfr_video
    enc = by_hand(small_file, SMALL)
    feats, table = extract_video(
        path, enc, ExtractConfig(frame_step=2, stride=10.0, stride_unit="seconds", device="cpu")
    )
    last = len(times) - 8
    want = [int(np.argmax(times >= 10.0 * k)) for k in range(7) if (times >= 10.0 * k).any()]
    want = [s for s in want if s <= last]
    assert len(want) == 7 and table["start_frame"].tolist() == want
    assert np.all(table["start_s"].to_numpy() >= 10.0 * np.arange(7) - 1e-6)
    assert np.all(table["start_s"].to_numpy() - 10.0 * np.arange(7) < 0.301)  # within one frame gap
    assert np.allclose(feats, hand_features(enc, frames, want).mean(1).numpy(), atol=1e-5)


def test_a_list_is_extracted_in_one_pass_with_bad_files_skipped_and_listed(vfr_video, small_file, tmp_path):
    path, times, frames = vfr_video
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("not a video\n")
    listing = tmp_path / "videos.txt"
    listing.write_text(f"{path} 3\n{tmp_path / 'empty.mp4'}\n\n# a comment\n{tmp_path / 'text.mp4'}\n{path}\n")
    out = tmp_path / "feats"
    summary = main(
        [
            str(listing),
            "--checkpoint",
            str(small_file),
            "--out",
            str(out),
            "--num-frames",
            "4",
            "--num-heads",
            "3",
            "--frame-step",
            "2",
            "--stride",
            "150",
            "--format",
            "npz",
            "--device",
            "cpu",
        ]
    )
    assert summary["videos"] == 1 and [p for p, _ in summary["skipped"]] == [
        path,
        str(tmp_path / "empty.mp4"),
        str(tmp_path / "text.mp4"),
    ]
    skipped = (out / "skipped.txt").read_text().splitlines()
    assert skipped[0] == f"{path}\tgiven twice; extracted once"
    assert len(skipped) == 3 and all(
        any(w in line for w in ("cannot open", "cannot decode", "no video")) for line in skipped[1:]
    )
    index = pd.read_csv(out / "windows.csv")
    name = f"{Path(path).parent.name}/walk"  # relative to the folder common to every input, the bad ones too
    assert index["name"].tolist() == [name] * 3
    assert index["start_frame"].tolist() == [0, 150, 300]
    npz = np.load(out / "features.npz")
    enc = by_hand(small_file, SMALL)
    want = hand_features(enc, frames, [0, 150, 300]).mean(1).numpy()
    assert np.allclose(npz[name], want, atol=1e-5)


def test_probe_pooling_gives_the_attentive_pooler_feature_and_bf16_stays_close(vfr_video, small_file, tmp_path):
    path, times, frames = vfr_video
    enc = by_hand(small_file, SMALL)
    torch.manual_seed(3)
    probe = AttentiveClassifier(48, 7, num_heads=3).eval()
    torch.save({"classifier": official_probe_state(probe)}, tmp_path / "probe.pth.tar")
    from vjepa.hub import load_probe

    cfg = ExtractConfig(frame_step=2, stride=100, pooling="probe", device="cpu")
    feats, table = extract_video(path, enc, cfg, probe=load_probe(tmp_path / "probe.pth.tar", 3))
    with torch.no_grad():
        want = probe.pooler(hand_features(enc, frames, table["start_frame"].tolist())).squeeze(1).numpy()
    assert feats.shape == (4, 48) and np.allclose(feats, want, atol=1e-5)
    out = extract([path], enc, ExtractConfig(frame_step=2, stride=100, precision="bf16", device="cpu"), tmp_path / "bf")
    bf16 = np.load(tmp_path / "bf" / "walk.npy")
    fp32 = hand_features(enc, frames, table["start_frame"].tolist()).mean(1).numpy()
    assert out["windows"] == 4 and bf16.dtype == np.float32 and bf16.shape == (4, 48)
    assert np.abs(bf16 - fp32).max() < 0.05 * np.abs(fp32).max() and not np.array_equal(bf16, fp32)


def test_a_video_shorter_than_a_window_gives_one_window_repeating_its_last_frame():
    times = np.array([0.0, 0.04, 0.2, 0.21, 0.5])
    assert window_starts(times, span=8, stride=2).tolist() == [0]
    assert window_indices(0, 4, 2, 5).tolist() == [0, 2, 4, 4]
    # seconds: the first frame at or after each multiple of the stride, never the same frame twice
    times = np.array([0.0, 0.1, 0.9, 1.0, 1.05, 2.6, 2.7, 2.8, 2.9, 3.0])
    assert window_starts(times, span=2, stride=0.5, unit="seconds").tolist() == [0, 2, 3, 5]


def _extract_cli(small_file, out, *inputs, extra=()):
    return main(
        [
            *map(str, inputs),
            "--checkpoint",
            str(small_file),
            "--out",
            str(out),
            "--num-frames",
            "4",
            "--num-heads",
            "3",
            "--frame-step",
            "2",
            "--stride",
            "150",
            "--device",
            "cpu",
            *extra,
        ]
    )


def test_same_named_videos_in_two_folders_get_outputs_named_by_their_relative_paths(vfr_video, small_file, tmp_path):
    import shutil

    path = vfr_video[0]
    for rel in ("a/clip.mp4", "b/clip.mp4", "clip_1.mp4", "a/deeper/clip.webm", "a/clip.webm", "a/notes.txt"):
        (tmp_path / "in" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, tmp_path / "in" / rel)
    out = tmp_path / "feats"
    summary = _extract_cli(
        small_file,
        out,
        tmp_path / "in" / "a",
        tmp_path / "in" / "b" / "clip.mp4",
        tmp_path / "in" / "clip_1.mp4",
        extra=("--ext", ".mp4,.webm"),
    )
    index = pd.read_csv(out / "windows.csv")
    assert sorted(set(index["file"])) == [
        "a/clip.mp4.npy",
        "a/clip.webm.npy",
        "a/deeper/clip.npy",
        "b/clip.npy",
        "clip_1.npy",
    ]
    assert summary["videos"] == 5 and summary["skipped"] == []
    assert all((out / f).is_file() for f in set(index["file"]))


def test_extract_never_overwrites_an_existing_output(vfr_video, small_file, tmp_path):
    out = tmp_path / "feats"
    out.mkdir()
    (out / "walk.npy").write_bytes(b"precious")
    with pytest.raises(SystemExit) as e:
        _extract_cli(small_file, out, vfr_video[0])
    assert e.value.code == 2 and (out / "walk.npy").read_bytes() == b"precious"


def test_a_fifo_is_skipped_unread_and_a_run_where_nothing_was_extracted_exits_non_zero(small_file, tmp_path, capsys):
    import os

    os.mkfifo(tmp_path / "pipe.mp4")  # opening it for reading would block forever
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(SystemExit) as e:
        _extract_cli(small_file, tmp_path / "feats", tmp_path / "pipe.mp4", tmp_path / "empty.mp4")
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert f"skipped {tmp_path / 'pipe.mp4'}: not a regular file" in err
    assert "error: no video was extracted (2 skipped, listed above)" in err


def test_an_empty_folder_extracts_nothing_and_exits_non_zero(small_file, tmp_path, capsys):
    (tmp_path / "videos").mkdir()
    with pytest.raises(SystemExit) as e:
        _extract_cli(small_file, tmp_path / "feats", tmp_path / "videos")
    assert e.value.code == 1 and "a folder with no .mp4" in capsys.readouterr().err


def test_window_times_are_rounded_to_the_stream_time_base(vfr_video, small_file):
    path, times, _ = vfr_video
    _, table = extract_video(path, by_hand(small_file, SMALL), ExtractConfig(frame_step=2, stride=40, device="cpu"))
    starts = table["start_frame"].to_numpy()
    # the stream counts milliseconds: times have at most three decimals and equal the encoded ones
    assert np.array_equal(table["start_s"].to_numpy(), np.round(times[starts], 3))
    assert all(len(repr(t).split(".")[1]) <= 3 for t in table["start_s"])


def test_a_clip_size_the_encoder_cannot_tokenise_is_refused_before_any_video_is_read(small_file, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        _extract_cli(small_file, tmp_path / "feats", tmp_path / "missing.mp4", extra=("--img-size", "30"))
    assert e.value.code == 2
    assert "img_size 30: the encoder cuts frames into 8px patches" in capsys.readouterr().err
    assert not (tmp_path / "feats").exists()


def test_the_clip_comes_from_the_checkpoint_record_and_an_override_or_a_missing_record_warns():
    from vjepa.extract import clip_options

    defaults = {"frame_step": 4, "num_frames": None, "img_size": None}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert clip_options({}, {"frame_step": 2, "num_frames": 8, "img_size": 24}, defaults, "ck") == {
            "frame_step": 2,
            "num_frames": 8,
            "img_size": 24,
        }
    with pytest.warns(UserWarning, match=r"frame_step 4 overrides the 2 the encoder was trained with \(ck\)"):
        assert clip_options({"frame_step": 4}, {"frame_step": 2}, defaults, "ck")["frame_step"] == 4
    with pytest.warns(UserWarning, match=r"ck does not record the frame_step its encoder was trained with; using 4"):
        assert clip_options({}, {}, defaults, "ck") == {"frame_step": 4, "num_frames": None, "img_size": None}


def test_every_command_line_option_is_documented():
    from vjepa.extract import parser

    actions = [a for a in parser()._actions if a.dest != "help"]
    assert len(actions) == 19 and [a.dest for a in actions if not a.help] == []


def test_a_checkpoint_that_records_its_clip_sets_frames_step_and_size_without_options(vfr_video, tmp_path):
    from test_hub import official_state

    from vjepa.extract import recorded_clip

    ck = official_state(SMALL, fill="randn")
    ck["target_encoder"] = ck["encoder"]
    ck["config"] = {"model": {"num_frames": 4, "img_size": 32}, "data": {"frame_step": 3}}
    torch.save(ck, tmp_path / "ours.pth.tar")
    assert recorded_clip(tmp_path / "ours.pth.tar") == {"num_frames": 4, "img_size": 32, "frame_step": 3}
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        main(
            [
                vfr_video[0],
                "--checkpoint",
                str(tmp_path / "ours.pth.tar"),
                "--out",
                str(tmp_path / "f"),
                "--num-heads",
                "3",
                "--stride",
                "150",
                "--device",
                "cpu",
            ]
        )
    index = pd.read_csv(tmp_path / "f" / "windows.csv")
    assert (index["end_frame"] - index["start_frame"]).tolist() == [9, 9, 9]  # 4 frames, 3 apart


def test_a_checkpoint_trained_at_a_frame_rate_cuts_each_video_at_it_unless_a_step_is_asked_for(vfr_video, tmp_path):
    from test_hub import official_state

    from vjepa.data.video import VideoFile
    from vjepa.extract import recorded_clip

    ck = official_state(SMALL, fill="randn")
    ck["target_encoder"] = ck["encoder"]
    ck["preprocessing"] = {"num_frames": 4, "img_size": 32, "frame_step": None, "fps": 2}  # V-JEPA 2's sampling
    torch.save(ck, tmp_path / "ours.pth.tar")
    assert recorded_clip(tmp_path / "ours.pth.tar") == {"num_frames": 4, "img_size": 32, "fps": 2}
    step = math.ceil(VideoFile(vfr_video[0]).fps) // 2
    base = [vfr_video[0], "--checkpoint", str(tmp_path / "ours.pth.tar"), "--num-heads", "3", "--device", "cpu"]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the recorded fps needs no frame step: no warning
        main([*base, "--out", str(tmp_path / "f"), "--stride", "150"])
    index = pd.read_csv(tmp_path / "f" / "windows.csv")
    assert step >= 2 and (index["end_frame"] - index["start_frame"]).tolist() == [3 * step] * len(index)
    main([*base, "--out", str(tmp_path / "g"), "--stride", "150", "--frame-step", "3"])
    index = pd.read_csv(tmp_path / "g" / "windows.csv")
    assert (index["end_frame"] - index["start_frame"]).tolist() == [9] * len(index)
