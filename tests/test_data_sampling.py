"""Clip-index semantics of the official loadvideo_decord (spec 4.6): linspace windows, partitions
for multi-clip sampling, padding by repeating the last frame, the overlapping eval windows, and
frame steps from a clip duration."""

import numpy as np
import pytest

from vjepa.infra.config import ConfigError, from_dict
from vjepa.data.sampling import ClipSampling, clip_indices, clip_window

SPEC_EXAMPLE = [0, 4, 8, 12, 17, 21, 25, 29, 34, 38, 42, 46, 51, 55, 59, 63]


def test_clip_at_frame_zero_matches_the_spec_example():
    assert clip_window(0, 64, 16).tolist() == SPEC_EXAMPLE
    # the official deterministic window is the partition's first; a 64-frame video has only that one
    assert clip_indices(100, ClipSampling(random=False, eval_window="start"))[0].tolist() == SPEC_EXAMPLE
    assert clip_indices(64, ClipSampling(random=False))[0].tolist() == SPEC_EXAMPLE


def test_random_training_windows_stay_inside_the_video_and_vary():
    cfg = ClipSampling()
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(200):
        (idx,) = clip_indices(300, cfg, rng)
        start = idx[0]
        assert idx.tolist() == (clip_window(start, 64, 16)).tolist()
        # end ~ randint(64, 300) exclusive, so start in [0, 235]
        assert 0 <= start <= 300 - 1 - 64 and idx[-1] <= 298
        starts.add(int(start))
    assert len(starts) > 100


def test_eval_window_is_centred_in_each_partition_and_deterministic():
    cfg = ClipSampling(num_segments=2, random=False)
    a, b = clip_indices(300, cfg)
    # partitions of 150 frames; centred 64-frame window starts at (150 - 64) // 2 = 43
    assert a.tolist() == (np.array(SPEC_EXAMPLE) + 43).tolist()
    assert b.tolist() == (np.array(SPEC_EXAMPLE) + 43 + 150).tolist()
    assert [x.tolist() for x in clip_indices(300, cfg)] == [a.tolist(), b.tolist()]


def test_multi_clip_segments_take_one_window_per_partition():
    cfg = ClipSampling(num_segments=8)
    rng = np.random.default_rng(1)
    clips = clip_indices(8 * 100, cfg, rng)
    assert len(clips) == 8
    for i, c in enumerate(clips):
        assert c.shape == (16,) and i * 100 <= c.min() and c.max() < (i + 1) * 100


def test_short_partitions_are_padded_with_their_last_frame():
    # a 40-frame partition with step 4: linspace(0, 40, 10) then 6 copies of frame 39
    (idx,) = clip_indices(40, ClipSampling(random=False))
    assert idx.tolist() == [0, 4, 8, 13, 17, 22, 26, 31, 35, 39] + [39] * 6
    # 2 segments of a 50-frame video: partitions of 25, 6 points each, offset by 25
    a, b = clip_indices(50, ClipSampling(num_segments=2, random=False))
    assert a.tolist() == [0, 5, 10, 15, 20, 24] + [24] * 10
    assert b.tolist() == [25, 30, 35, 40, 45, 49] + [49] * 10


def test_overlapping_eval_windows_spread_over_the_video():
    # official eval (allow_clip_overlap): 8 segments of a 300-frame video; partitions (37) are shorter
    # than a clip (64), so windows of 63 frames start every (300 - 64) // 7 = 33 frames
    clips = clip_indices(300, ClipSampling(num_segments=8, allow_overlap=True))
    first = [0, 4, 9, 13, 18, 22, 27, 31, 36, 40, 45, 49, 54, 58, 62, 62]
    assert clips[0].tolist() == first
    assert [c[0] for c in clips] == [33 * i for i in range(8)]
    assert all((c - c[0]).tolist() == first for c in clips)


def test_frame_step_from_clip_duration_and_fps():
    cfg = ClipSampling(num_frames=8, clip_duration=2.0, random=False, eval_window="start")
    # 2 s at 30 fps over 8 frames: step int(2 * 30 / 8) = 7, window 56 frames
    (idx,) = clip_indices(200, cfg, fps=30.0)
    assert idx.tolist() == clip_window(0, 56, 8).tolist() == [0, 8, 16, 24, 32, 40, 48, 55]
    with pytest.raises(ValueError, match="fewer than 8 frames"):
        clip_indices(200, ClipSampling(num_frames=8, clip_duration=0.1), np.random.default_rng(0), fps=30.0)
    with pytest.raises(ValueError, match="frame rate"):
        clip_indices(200, cfg)


def test_config_validation_names_the_key():
    assert from_dict(ClipSampling, {"num_frames": 8, "num_segments": 2}).num_segments == 2
    with pytest.raises(ConfigError, match="data.clip.frame_step"):
        from_dict(ClipSampling, {"frame_step": "4"}, "data.clip")
    with pytest.raises(ConfigError, match="eval_window"):
        from_dict(ClipSampling, {"eval_window": "middle"}, "data.clip")
    with pytest.raises(ValueError, match="fewer than the 3 segments"):
        clip_indices(2, ClipSampling(num_segments=3))
