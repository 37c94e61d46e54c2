"""Every video either decoded right or skipped and counted, on real files this test encodes with PyAV:
zero bytes, truncated at several points (mp4 with its index first or last, Matroska), damaged
packets, a wrong extension, a width decord 0.6 cannot copy (decoded by the PyAV fallback and
counted), decord and PyAV giving the same bytes (B-frames, skipped non-reference frames), the frame
cache's byte budget, and pretraining over a micro-batch of only broken files under one process and
under two (gloo, torchrun).

Run as a script under torchrun, this file is the worker of the two-process test.
"""

import json
import os
import subprocess
import sys
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from vjepa.data import ClipSampling, SkipCounter, VideoDataset, VideoDecodeError, collate, decode_clips
from vjepa.data.transforms import to_clip_tensor
from vjepa.data.video import FrameCache, video_info

sys.path.insert(0, str(Path(__file__).parent))


def encode(path: Path, frames: np.ndarray, fps: int = 25, options: dict | None = None, container_options=None) -> Path:
    """H.264 with x264's defaults unless told (B-frames, b-pyramid: non-reference frames to skip)."""
    import av

    with av.open(str(path), "w", options=container_options or {}) as c:
        s = c.add_stream("libx264", rate=Fraction(fps))
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        s.options = {"preset": "veryfast", "crf": "20", "threads": "1", **(options or {})}
        for t, f in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            frame.pts = t
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def texture(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """n frames of a smooth random texture sliding by a pixel per frame (compresses like footage)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h + n, w + n, 3), dtype=np.uint8)
    base = (base.astype(np.uint16) + np.roll(base, 1, 0) + np.roll(base, 1, 1) + np.roll(base, 1, (0, 1))) // 4
    return np.stack([base[t : t + h, t : t + w] for t in range(n)]).astype(np.uint8)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("broken")
    frames = texture(90, 64, 80)
    out = {
        "mp4": encode(root / "good.mp4", frames),  # index (moov) last
        "faststart": encode(root / "fast.mp4", frames, container_options={"movflags": "+faststart"}),
        "mkv": encode(root / "good.mkv", frames),
        "narrow": encode(root / "narrow.mp4", texture(40, 32, 24, seed=1)),  # width 24: decord fails
    }
    (root / "zero.mp4").write_bytes(b"")
    out["zero"] = root / "zero.mp4"
    (root / "text.mp4").write_text("not a video\n" * 200)
    out["text"] = root / "text.mp4"
    out["wrong_ext"] = root / "really_mp4.avi"
    out["wrong_ext"].write_bytes(out["mp4"].read_bytes())
    return {k: str(v) for k, v in out.items()}


CLIP = ClipSampling(num_frames=8, frame_step=3, num_segments=2, random=False)


def test_pyav_and_decord_give_the_same_bytes_with_b_frames_and_skipped_reference_free_frames(files):
    # the PyAV backend seeks to the keyframe and skips frames nothing refers to; the clip's bytes
    # must equal decord's (which decodes everything) at random clip positions
    cfg = ClipSampling(num_frames=8, frame_step=4, random=True)
    rng = lambda k: np.random.default_rng(k)  # noqa: E731
    for name in ("mp4", "mkv", "faststart"):
        for k in range(4):
            a = decode_clips(files[name], cfg, rng(k), backend="decord")
            b = decode_clips(files[name], cfg, rng(k), backend="pyav")
            assert a.fallback is None and b.fallback is None
            assert [i.tolist() for i in a.indices] == [i.tolist() for i in b.indices]
            assert a.frames.shape == (8, 64, 80, 3) and np.array_equal(a.frames, b.frames), (name, k)
    assert video_info(files["mp4"]) == (90, 25.0, (64, 80))


def test_skip_mode_keys_packets_by_pts_else_dts_and_decodes_what_it_cannot_place():
    # the one rule the pyav backend and the benchmark's decode floor skip frames by
    from types import SimpleNamespace as P

    from vjepa.data.video import skip_mode

    want = {300, 400}
    assert skip_mode(P(pts=300, dts=100, size=9), want) == "DEFAULT"  # a frame of the clip
    assert skip_mode(P(pts=200, dts=300, size=9), want) == "NONREF"  # pts decides, not dts
    assert skip_mode(P(pts=None, dts=400, size=9), want) == "DEFAULT"  # no pts: its dts places it
    assert skip_mode(P(pts=None, dts=500, size=9), want) == "NONREF"
    assert skip_mode(P(pts=None, dts=None, size=9), want) == "DEFAULT"  # cannot be placed: decoded
    assert skip_mode(P(pts=500, dts=500, size=0), want) == "DEFAULT"  # the flush packet


@pytest.mark.parametrize(
    "codec, pix_fmt, ext, width, height",
    [
        ("libx264", "yuvj420p", "mp4", 64, 48),  # full range, as phones and MJPEG-derived files
        ("libx264", "yuv444p", "mkv", 50, 38),  # no chroma subsampling, a width not a multiple of 4
        ("libx264", "yuv420p10le", "mkv", 48, 32),  # 10 bits
        ("mpeg4", "yuv420p", "avi", 64, 48),
        ("libvpx-vp9", "yuv420p", "webm", 66, 34),
        ("mjpeg", "yuvj422p", "avi", 48, 36),
    ],
)
def test_pyav_frames_are_the_bytes_of_pyavs_own_rgb_conversion_for_other_codecs_and_pixel_formats(
    tmp_path, codec, pix_fmt, ext, width, height
):
    # the pyav backend converts a clip's frames with one single-threaded converter instead of
    # frame.to_ndarray(format="rgb24") (a new one per frame): the same bytes for every frame
    import av

    from vjepa.data.video import _decode_av, with_index

    path = str(tmp_path / f"clip.{ext}")
    with av.open(path, "w") as c:
        s = c.add_stream(codec, rate=Fraction(25))
        s.width, s.height, s.pix_fmt = width, height, pix_fmt
        for t, f in enumerate(texture(30, height, width)):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24").reformat(format=pix_fmt)
            frame.pts = t
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    with av.open(path) as c:
        assert c.streams.video[0].codec_context.pix_fmt == pix_fmt
        want = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    frames = np.array([0, 3, 7, 8, 20, 29, 7])  # any order, repeats allowed
    got = with_index(path, 1, lambda c, s, ix: _decode_av(c, s, ix, frames, path))
    assert want.shape == (30, height, width, 3) and np.array_equal(got, want[frames])


def test_the_two_backends_decode_every_small_suite_pretraining_video_to_the_same_bytes(tiny_suite):
    # pyav is the default backend, decord the official one: the choice must not change results
    from vjepa.data import read_path_label_list

    root, _ = tiny_suite
    paths = sorted(
        {p for src in ("k710", "ssv2", "howto100m") for p, _ in read_path_label_list(root / "pretrain" / f"{src}.csv")}
    )
    assert len(paths) >= 10
    for path in paths:
        a, b = FrameCache(2**28).get(path, 1, "decord"), FrameCache(2**28).get(path, 1, "pyav")
        assert a[0].shape[0] > 0 and np.array_equal(a[0], b[0]) and a[1] == b[1], path


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_zero_byte_and_non_video_files_are_refused(files, backend):
    for name in ("zero", "text"):
        with pytest.raises(VideoDecodeError, match=Path(files[name]).name):
            decode_clips(files[name], CLIP, backend=backend)


@pytest.mark.parametrize("backend", ["decord", "pyav"])
@pytest.mark.parametrize("name", ["mp4", "faststart", "mkv"])
def test_a_truncated_file_is_refused_or_decoded_exactly_never_with_wrong_pixels(files, backend, name, tmp_path):
    data = Path(files[name]).read_bytes()
    whole = decode_clips(files[name], CLIP, backend=backend).frames
    refused = []
    for frac in (0.1, 0.35, 0.6, 0.85, 0.97, 0.999):
        cut = tmp_path / f"cut{frac}{Path(files[name]).suffix}"
        cut.write_bytes(data[: int(len(data) * frac)])
        try:
            got = decode_clips(str(cut), CLIP, backend=backend).frames
        except VideoDecodeError as e:
            assert cut.name in str(e)
            refused.append(frac)
            continue
        assert np.array_equal(got, whole), frac  # whatever is accepted is the right picture
    # each of these containers declares its length (a frame count or a duration): every cut into the
    # frames is refused; the last 0.1% (the end of the index, tags) leaves every frame whole
    assert refused[:5] == [0.1, 0.35, 0.6, 0.85, 0.97]


def test_damaged_packets_inside_the_clip_are_refused_by_pyav(files, tmp_path):
    import av

    with av.open(files["faststart"]) as c:  # packets of frames 30 to 60 in the file
        s = c.streams.video[0]
        spots = [(p.pos, p.size) for p in c.demux(s) if p.size and 30 * 512 <= p.pts <= 60 * 512 and p.size > 64]
    data = bytearray(Path(files["faststart"]).read_bytes())
    rng = np.random.default_rng(3)
    for pos, size in spots[::3]:
        data[pos + 8 : pos + size] = rng.integers(0, 256, size - 8, dtype=np.uint8).tobytes()
    bad = tmp_path / "damaged.mp4"
    bad.write_bytes(bytes(data))
    cfg = ClipSampling(num_frames=8, frame_step=4, random=False)  # the centre window: frames 29-60
    with pytest.raises(VideoDecodeError, match="damaged.mp4: (decoder error|damaged)"):
        decode_clips(str(bad), cfg, backend="pyav")
    start = ClipSampling(num_frames=4, frame_step=4, random=False, eval_window="start")  # frames 0-12: intact
    assert np.array_equal(
        decode_clips(str(bad), start, backend="pyav").frames,
        decode_clips(files["faststart"], start, backend="pyav").frames,
    )


def test_a_wrong_extension_does_not_matter(files):
    for backend in ("decord", "pyav"):
        assert np.array_equal(
            decode_clips(files["wrong_ext"], CLIP, backend=backend).frames,
            decode_clips(files["mp4"], CLIP, backend=backend).frames,
        )


def test_a_width_decord_cannot_copy_is_decoded_by_pyav_and_counted(files):
    got = decode_clips(files["narrow"], ClipSampling(num_frames=4, frame_step=2, random=False), backend="decord")
    assert got.frames.shape == (4, 32, 24, 3) and "24 pixels wide" in got.fallback
    ref = decode_clips(files["narrow"], ClipSampling(num_frames=4, frame_step=2, random=False), backend="pyav")
    assert ref.fallback is None and np.array_equal(got.frames, ref.frames)
    # through a DataLoader with workers: the batch names it under "fallback", the counter counts it once
    entries = [(files["narrow"], 0), (files["mp4"], 1), (files["zero"], 2), (files["narrow"], 0)]
    ds = VideoDataset(
        entries,
        ClipSampling(num_frames=4, frame_step=2),
        lambda f, rng=None: to_clip_tensor(f[:, :16, :16])[None],
        seed=0,
        video_backend="decord",
    )
    counter = SkipCounter(len(ds), max_fraction=0.5)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batches = list(loader)
    for b in batches:
        counter.update(b["skipped"], b["fallback"])
    assert [b["fallback"] for b in batches] == [[files["narrow"]], [files["narrow"]]]
    assert counter.metrics() == {
        "skipped_videos": 1,
        "skipped_fraction": 0.25,
        "fallback_videos": 1,
        "declared_over_videos": 0,
    }


def test_the_frame_cache_never_exceeds_its_budget(files):
    one = 90 * 64 * 80 * 3  # bytes of one decoded 90-frame 64x80 video
    cache = FrameCache(int(1.5 * one))
    cfg = ClipSampling(num_frames=4, frame_step=3)
    for name in ("mp4", "mkv", "faststart", "mp4"):
        plain = decode_clips(files[name], cfg, np.random.default_rng(1))
        cached = decode_clips(files[name], cfg, np.random.default_rng(1), cache=cache)
        assert np.array_equal(plain.frames, cached.frames)  # decoded per clip when it does not fit
        assert cache.bytes <= cache.max_bytes
    assert sorted(cache.videos) == [files["mp4"]] and cache.bytes == one
    assert sorted(cache.too_big) == sorted([files["mkv"], files["faststart"]])


# ----------------------------------------------------------------------------------------------
# Pretraining over a micro-batch whose every clip is broken


def _tiny(**over):
    from test_pretrain import tiny_config

    return tiny_config(**over)


def _dataset(root: Path, world_size: int, finish_on_device: bool = False) -> tuple[VideoDataset, list[str]]:
    """8 real videos of 4+ frames at 32 px; the two that shard 0 draws at iteration 1 are broken
    (zero bytes, truncated), so that micro-batch has no clip."""
    from vjepa.data.transforms import pretrain_transform
    from vjepa.infra.distributed import DistEnv, ShardedBatchSampler

    root.mkdir(parents=True, exist_ok=True)
    sampler = ShardedBatchSampler(8, 2, 1, DistEnv(rank=0, world_size=world_size), 7, 3)
    bad = {i for i, _ in sampler.micro_batch(1, 0)}
    paths = []
    for i in range(8):
        p = root / f"v{i}.mp4"
        if not p.exists():
            encode(p, texture(24, 40, 48, seed=i))
            if i in bad:
                data = p.read_bytes()
                p.write_bytes(b"" if i == min(bad) else data[: len(data) // 3])
        paths.append(str(p))
    ds = VideoDataset(
        [(p, 0) for p in paths],
        ClipSampling(num_frames=4, frame_step=2),
        pretrain_transform(32, finish_on_device=finish_on_device),
        seed=7,
    )
    return ds, sorted(paths[i] for i in bad)


def _empty_steps(world_size: int, bad: list[str], paths_of) -> list[int]:
    """1-based steps at which some process draws a micro-batch of only broken files."""
    from vjepa.infra.distributed import DistEnv, ShardedBatchSampler

    out = []
    for step in range(3):
        for rank in range(world_size):
            sampler = ShardedBatchSampler(8, 2, 1, DistEnv(rank=rank, world_size=world_size), 7, 3)
            if all(paths_of[i] in bad for i, _ in sampler.micro_batch(step, rank)) and step + 1 not in out:
                out.append(step + 1)
    return out


def _config():
    return _tiny(optim={"iterations": 3, "warmup_iterations": 1}, checkpoint_every=3, max_skipped_fraction=0.5)


def _worker(out: str) -> None:
    import torch.distributed as dist
    from vjepa.train.pretrain import pretrain

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    if dist.get_rank() == 0:  # one writer; the other waits for the files
        _dataset(Path(out) / "videos", 2)
    dist.barrier()
    ds, _ = _dataset(Path(out) / "videos", 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = pretrain(_config(), ds, Path(out) / "run")
    (Path(out) / f"summary{dist.get_rank()}.json").write_text(json.dumps(summary))
    dist.destroy_process_group()


def read_steps(run: Path) -> list[int]:
    return [json.loads(l)["step"] for l in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_micro_batch_of_only_broken_files_is_skipped_and_counted_in_one_process(tmp_path):
    from vjepa.train.pretrain import pretrain

    ds, bad = _dataset(tmp_path / "videos", 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = pretrain(_config(), ds, tmp_path / "run")
    assert _empty_steps(1, bad, [p for p, _ in ds.entries]) == [2]
    assert summary["empty_steps"] == 1 and summary["skipped_videos"] == 2 and summary["steps"] == 3
    assert read_steps(tmp_path / "run") == [1, 3]  # step 2 had no clip: no update, not logged
    from vjepa.infra.checkpoint import load

    assert load(tmp_path / "run" / "latest.pth.tar")["skipped"] == bad


def test_finishing_the_transform_in_the_training_process_trains_bit_identically(tmp_path):
    # finish_on_device: a DataLoader worker decodes and cuts each clip's box (uint8, one shared
    # buffer per batch); the training process converts, resizes, flips and normalises. On the CPU
    # that is the same numbers: the same losses and weights, with the broken files skipped alike
    from vjepa.infra.checkpoint import load
    from vjepa.data.transforms import UnfinishedClips
    from vjepa.train.pretrain import MicroBatches, pretrain

    runs = {}
    for finish in (False, True):
        ds, bad = _dataset(tmp_path / "videos", 1, finish_on_device=finish)
        cfg = _config()
        cfg.num_workers = 1  # a real worker process: the boxes cross in shared memory
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            summary = pretrain(cfg, ds, tmp_path / f"run{finish}")
        assert summary["empty_steps"] == 1 and summary["skipped_videos"] == 2
        runs[finish] = load(tmp_path / f"run{finish}" / "latest.pth.tar")
        runs[finish]["log"] = (tmp_path / f"run{finish}" / "metrics.jsonl").read_text().splitlines()
    (group,) = MicroBatches(ds, cfg)[(0, 0, 0, [(0, 1), (3, 2)])]["groups"]
    assert isinstance(group.clips, UnfinishedClips) and group.clips.data.dtype == torch.uint8
    assert len(group.clips) == 2 and group.clips.finish().shape == (2, 3, 4, 32, 32)
    assert runs[False]["log"] == runs[True]["log"]  # the curve holds no timing, so the lines are equal as written
    for key in ("encoder", "predictor", "target_encoder"):
        a, b = runs[False][key], runs[True][key]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_micro_batch_of_only_broken_files_keeps_two_processes_in_lockstep(tmp_path):
    # rank 0's micro-batch at step 2 has no clip; rank 1's has two: both skip the step (DDP's
    # gradient exchange needs every process), count it, and finish the run together
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        __file__,
        str(tmp_path),
    ]
    repo = str(Path(__file__).resolve().parents[1])  # a script's imports start from tests/: name this checkout
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ds, bad = _dataset(tmp_path / "videos", 2)
    empty = _empty_steps(2, bad, [p for p, _ in ds.entries])
    assert 2 in empty and 1 not in empty  # step 2 by construction (and maybe step 3, a new epoch's order)
    s0, s1 = (json.loads((tmp_path / f"summary{r}.json").read_text()) for r in (0, 1))
    for s in (s0, s1):
        assert s["empty_steps"] == len(empty) and s["skipped_videos"] == 2 and s["steps"] == 3 and s["world_size"] == 2
    assert read_steps(tmp_path / "run") == [k for k in (1, 2, 3) if k not in empty]


if __name__ == "__main__":
    _worker(sys.argv[1])


def _declare_more_frames(src: Path, dst: Path, k: int = 1) -> Path:
    """An mp4 (index last) whose last k samples are cut to 0 bytes: its sample table still declares
    every frame, k more than the demuxer delivers, as some muxers write (OpenCV's box.mp4 sample: one)."""
    import struct

    data = bytearray(src.read_bytes())
    at = data.rindex(b"stsz")  # 'stsz', version+flags, sample_size, count, sizes...
    uniform, count = struct.unpack(">II", data[at + 8 : at + 16])
    assert uniform == 0 and count > k
    for j in range(count - k, count):
        struct.pack_into(">I", data, at + 16 + 4 * j, 0)
    dst.write_bytes(bytes(data))
    return dst


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_a_container_declaring_one_frame_more_than_it_holds_is_read_and_counted_while_two_short_is_refused(
    files, backend, tmp_path
):
    short = _declare_more_frames(Path(files["mp4"]), tmp_path / "one_over.mp4")
    assert video_info(str(short))[0] == 89  # of 90 declared
    clip = ClipSampling(num_frames=8, frame_step=2, random=False)
    got = decode_clips(str(short), clip, backend=backend)
    assert got.declared_over == 1 and got.frames.shape == (8, 64, 80, 3)
    ds = VideoDataset(
        [(str(short), 0), (files["mp4"], 1)], clip, lambda f, rng=None: to_clip_tensor(f)[None], video_backend=backend
    )
    batch = collate([ds[0], ds[1]])
    counter = SkipCounter(2, 0.0)
    counter.update(batch["skipped"], batch["fallback"], batch["declared_over"])
    assert batch["declared_over"] == [str(short)]
    assert counter.metrics()["declared_over_videos"] == 1 and counter.metrics()["skipped_videos"] == 0
    two = _declare_more_frames(Path(files["mp4"]), tmp_path / "two_over.mp4", k=2)
    with pytest.raises(VideoDecodeError, match=r"truncated: the container declares 90 frames, 88 are in the file"):
        decode_clips(str(two), clip, backend=backend)
