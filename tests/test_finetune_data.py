"""Finetuning data: VideoMAE's multi-view test sampling (K400 spread windows, SSv2 TSN segments),
TSN training frames, repeated augmentation, and the Table 8 training augmentation staying the same
through every frame of a clip."""

import numpy as np
import pytest
import torch

from vjepa.infra.config import ConfigError, from_dict
from vjepa.data import ClipSampling, VideoDataset, clip_indices
from vjepa.data.small_suite import write_video
from vjepa.data.sampling import spread_indices, tsn_indices
from vjepa.data.transforms import RepeatedAugment, finetune_train_transform, to_clip_tensor
from vjepa.train.finetune import build_datasets
from vjepa.infra.configs import FinetuneConfig


def test_spread_views_take_consecutive_subsampled_frames_from_first_to_last_window():
    # 300 frames at step 4: 75 sampled frames, 59 spare; starts int(s * 59 / 4) = 0, 14, 29, 44, 59
    views = clip_indices(300, ClipSampling(method="spread", num_segments=5, random=False))
    assert [int(v[0]) for v in views] == [0, 56, 116, 176, 236]
    assert all(np.array_equal(np.diff(v), np.full(15, 4)) for v in views)
    assert views[-1][-1] == 296  # the last view ends on the last sampled frame
    # a short video: the sampled frames are padded with the last one; every view is the same
    short = spread_indices(40, 16, 4, 5)
    assert short[0].tolist() == [0, 4, 8, 12, 16, 20, 24, 28, 32, 36] + [36] * 6
    assert all(np.array_equal(v, short[0]) for v in short)
    assert spread_indices(300, 16, 4, 1)[0][0] == 29 * 4  # one view: the centre window


def test_tsn_test_views_are_segment_starts_then_midpoints_as_videomae_ssv2():
    for n in (45, 50, 121, 7):
        tick = n / 16
        starts = [int(tick * x) for x in range(16)]
        mids = [int(tick / 2.0 + tick * x) for x in range(16)]
        videomae = sorted(mids + starts)  # its test loader: both lists sorted, view v = every other from v
        views = clip_indices(n, ClipSampling(method="tsn", num_frames=16, num_segments=2, random=False))
        assert [v.tolist() for v in views] == [videomae[0::2], videomae[1::2]]


def test_tsn_training_takes_one_random_frame_inside_each_segment():
    rng = np.random.default_rng(0)
    picked = set()
    for _ in range(50):
        (idx,) = clip_indices(50, ClipSampling(method="tsn", num_frames=16), rng)
        seg = np.arange(16) * 3  # 50 // 16 = 3 frames per segment
        assert np.all((idx >= seg) & (idx < seg + 3))
        picked.add(tuple(idx.tolist()))
    assert len(picked) == 50
    short = tsn_indices(10, 16, 1, np.random.default_rng(1), random=True)[0]  # fewer frames than segments
    assert len(short) == 16 and np.all(np.diff(short) >= 0) and short.max() < 10


def test_spread_sampling_is_for_evaluation_only():
    with pytest.raises(ConfigError, match="random: false"):
        from_dict(ClipSampling, {"method": "spread"}, "data.clip")
    with pytest.raises(ConfigError, match="method: must be one of"):
        from_dict(ClipSampling, {"method": "uniform"}, "data.clip")


def _static_clip(T=4, h=40, w=48, seed=0):
    img = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return np.repeat(img[None], T, axis=0)


def test_finetune_augmentation_is_the_same_on_every_frame_and_erases_one_box_through_the_clip():
    clip = _static_clip()
    no_erase = finetune_train_transform(32, reprob=0.0)  # RandAugment, crop, flip, colour jitter
    outs = [no_erase(clip, np.random.default_rng(s)) for s in range(12)]
    for out in outs:
        assert out.shape == (1, 3, 4, 32, 32)
        assert all(torch.equal(out[0, :, t], out[0, :, 0]) for t in range(4))
    assert len({round(o.sum().item(), 3) for o in outs}) == 12
    erase = finetune_train_transform(32, reprob=1.0)
    for s in range(6):
        a, b = erase(clip, np.random.default_rng(s)), no_erase(clip, np.random.default_rng(s))
        assert torch.equal(erase(clip, np.random.default_rng(s)), a)  # reproducible from the rng
        erased = (a != b)[0]  # [C, T, H, W]
        if not erased.any():  # the box draw itself may fail (timm tries 10 times)
            continue
        assert all(torch.equal(erased[:, t], erased[:, 0]) for t in range(4))
        assert not torch.equal(a[0, :, 0][erased[:, 0]], a[0, :, 1][erased[:, 1]])  # fresh noise per frame


def test_repeated_augmentation_stacks_independent_views_of_the_same_frames():
    tf = RepeatedAugment(finetune_train_transform(32, reprob=0.0), num_sample=2)
    out = tf(_static_clip(), np.random.default_rng(0))
    assert out.shape == (2, 3, 4, 32, 32) and not torch.equal(out[0], out[1])
    assert torch.equal(out, tf(_static_clip(), np.random.default_rng(0)))


@pytest.fixture(scope="module")
def counting_videos(tmp_path_factory):
    """Two 120-frame 32x32 videos whose frame t is flat grey 2*t, so decoded values name the frame."""
    root = tmp_path_factory.mktemp("ft_videos")
    frames = np.repeat((np.arange(120, dtype=np.uint8) * 2)[:, None, None, None], 32, 1).repeat(32, 2).repeat(3, 3)
    paths = []
    for k in range(2):
        write_video(root / f"v{k}.mp4", frames, fps=10)
        paths.append(str(root / f"v{k}.mp4"))
    return paths


def _raw(frames, rng=None):
    return to_clip_tensor(frames).unsqueeze(0)


def test_test_items_hold_every_view_and_follow_the_sampling(counting_videos):
    for cfg in (
        ClipSampling(num_frames=8, num_segments=5, method="spread", random=False),
        ClipSampling(num_frames=8, num_segments=2, method="tsn", random=False),
    ):
        item = VideoDataset([(counting_videos[0], 0)], cfg, _raw)[0]
        assert item["video"].shape == (cfg.num_segments, 1, 3, 8, 32, 32)
        decoded = (item["video"][:, 0].mean(dim=(1, 3, 4)) * 255 / 2).round().long()  # [S, T] frame numbers
        expect = np.stack(clip_indices(120, cfg))
        assert np.abs(decoded.numpy() - expect).max() <= 1  # lossy codec: within one grey step


def test_build_datasets_gives_num_sample_training_views_and_segments_x_crops_test_views(counting_videos):
    cfg = from_dict(
        FinetuneConfig,
        dict(
            num_classes=2,
            num_frames=8,
            test_num_segment=2,
            model=dict(size="tiny", img_size=32, num_frames=8, patch_size=8, embed_dim=48, depth=1, num_heads=3),
        ),
        "finetune",
    )
    entries = [(p, k) for k, p in enumerate(counting_videos)]
    train, val = build_datasets(cfg, entries, entries)
    assert train[0]["video"].shape == (1, 2, 3, 8, 32, 32)
    assert val[1]["video"].shape == (2, 3, 3, 8, 32, 32) and val[1]["label"] == 1
