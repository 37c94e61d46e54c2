"""Clip transforms: one crop/flip/augmentation/erasing box for every frame of a clip, evaluation
views (centre crop, 3 crops along the long side), normalisation, and reproducibility from an rng."""

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vjepa.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ClipAutoAugment,
    ClipColorJitter,
    ClipRandAugment,
    ClipRandomErasing,
    eval_transform,
    normalize,
    pretrain_transform,
    probe_train_transform,
    random_resized_box,
    resize,
    to_clip_tensor,
    TrainClipTransform,
)
from vjepa.infra.configs import RAND_AUGMENT


def _static_clip(T=4, h=40, w=48, seed=0):
    """A textured frame repeated T times: any per-frame difference in the output is the transform's."""
    img = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return np.repeat(img[None], T, axis=0)


def _frames_identical(x: torch.Tensor) -> bool:  # x [..., T, H, W]
    return all(torch.equal(x[..., t, :, :], x[..., 0, :, :]) for t in range(x.shape[-3]))


def test_rand_augment_applies_the_same_ops_to_every_frame_and_leaves_global_rngs_alone():
    aug = ClipRandAugment(RAND_AUGMENT, img_size=48)
    clip = _static_clip()
    random.seed(123)
    np.random.seed(123)
    changed = 0
    for seed in range(12):
        out = aug(clip, np.random.default_rng(seed))
        assert out.shape == clip.shape and out.dtype == np.uint8
        assert all(np.array_equal(out[t], out[0]) for t in range(len(out)))
        changed += not np.array_equal(out[0], clip[0])
        # reproducible from the rng
        assert np.array_equal(out, aug(clip, np.random.default_rng(seed)))
    assert changed >= 8  # 4 ops at p = 0.5 each: almost every clip is altered
    # the caller's global random streams continue as if nothing had happened
    r, n = random.random(), np.random.random()
    random.seed(123)
    np.random.seed(123)
    assert (r, n) == (random.random(), np.random.random())


def test_auto_augment_original_is_clip_consistent():
    aug = ClipAutoAugment("original", img_size=48)
    for seed in range(5):
        out = aug(_static_clip(T=3), np.random.default_rng(seed))
        assert all(np.array_equal(out[t], out[0]) for t in range(3))


def test_random_erasing_uses_one_box_through_all_frames_with_fresh_noise():
    erase = ClipRandomErasing(probability=1.0, mode="pixel", max_count=1)
    clip = torch.zeros(3, 5, 32, 32)
    out = erase(clip.clone(), np.random.default_rng(3))
    mask = out != 0  # [C, T, H, W]
    assert mask.any()
    for t in range(5):
        assert torch.equal(mask[:, t], mask[:, 0])  # same box in every frame and channel
    box = mask[0, 0].nonzero()
    h, w = box[:, 0].max() - box[:, 0].min() + 1, box[:, 1].max() - box[:, 1].min() + 1
    assert mask[0, 0].sum() == h * w  # a rectangle
    assert not torch.equal(out[:, 0][mask[:, 0]], out[:, 1][mask[:, 1]])  # per-frame noise
    assert torch.equal(ClipRandomErasing(probability=0.0)(clip.clone()), clip)


def test_colour_jitter_draws_one_set_of_factors_per_clip():
    clip = to_clip_tensor(_static_clip(T=4))
    out = ClipColorJitter(0.4, 0.4, 0.4)(clip, np.random.default_rng(0))
    assert not torch.equal(out, clip) and _frames_identical(out)


@pytest.mark.parametrize(
    "make", [lambda: pretrain_transform(32), lambda: probe_train_transform(32, auto_augment=RAND_AUGMENT, reprob=0.25)]
)
def test_training_transforms_crop_and_flip_every_frame_alike(make):
    tf = make()
    clip = _static_clip(T=4)
    outs = [tf(clip, np.random.default_rng(s)) for s in range(20)]
    for out in outs:
        assert out.shape == (1, 3, 4, 32, 32) and out.dtype == torch.float32
        assert _frames_identical(out[0]) or tf.erase is not None  # erasing noise differs per frame
    assert len({o.sum().item() for o in outs}) > 15  # crops differ from clip to clip
    assert torch.equal(tf(clip, np.random.default_rng(7)), tf(clip, np.random.default_rng(7)))


def test_pretraining_flip_happens_about_half_the_time():
    ramp = np.repeat(np.tile(np.arange(32, dtype=np.uint8)[None, :, None] * 8, (32, 1, 3))[None], 2, axis=0)
    tf = pretrain_transform(32, scale=(1.0, 1.0), ratio=(1.0, 1.0))  # full frame: only the flip varies
    flips = [bool(tf(ramp, np.random.default_rng(s))[0, 0, 0, 0, 0] > 0) for s in range(200)]
    assert 70 < sum(flips) < 130


def test_random_resized_box_respects_scale_and_ratio():
    rng = np.random.default_rng(0)
    for _ in range(200):
        top, left, h, w = random_resized_box(100, 200, (0.3, 1.0), (0.75, 1.33), rng)
        assert 0 <= top and top + h <= 100 and 0 <= left and left + w <= 200
        assert 0.3 * 20000 * 0.9 <= h * w <= 20000 and 0.7 <= w / h <= 1.4
    # an impossible request falls back to the centre crop
    assert random_resized_box(10, 100, (0.99, 1.0), (1.0, 1.0), rng) == (0, 45, 10, 10)


def test_normalisation_uses_imagenet_statistics():
    frame = np.array(IMAGENET_MEAN) * 255
    clip = to_clip_tensor(np.broadcast_to(frame, (2, 4, 4, 3)).round().astype(np.uint8))
    assert normalize(clip).abs().max() < 0.01
    white = normalize(torch.ones(3, 1, 1, 1)).flatten()
    assert torch.allclose(white, torch.tensor([(1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]))


def test_normalisation_writes_a_contiguous_clip_with_the_bits_of_the_broadcast_formula():
    # normalize writes a contiguous clip whatever it is given (a crop view of a larger clip, as the
    # eval views are; channels innermost in memory; flipped copies), which the batch's stack copies
    # several times faster, and must give the bits of (x - mean) / std computed on that input
    frames = np.random.default_rng(3).integers(0, 256, (4, 30, 26, 3), dtype=np.uint8)
    clip = to_clip_tensor(frames)
    inner = clip.permute(1, 2, 3, 0).contiguous().permute(3, 0, 1, 2)  # same values, channels innermost
    view = clip[..., 3:20, 2:18]
    assert clip.is_contiguous() and not inner.is_contiguous() and not view.is_contiguous()
    m, s = torch.tensor(IMAGENET_MEAN).view(-1, 1, 1, 1), torch.tensor(IMAGENET_STD).view(-1, 1, 1, 1)
    for x in (clip, inner, inner.flip(-1), view, view.flip(-1)):
        got = normalize(x)
        assert got.is_contiguous() and torch.equal(got, (x - m) / s)
        # mirrored in the same pass: the bits of flipping first
        got = normalize(x, flip=True)
        assert got.is_contiguous() and torch.equal(got, (x.flip(-1) - m) / s)
    own = clip.clone()
    assert normalize(own, out=own) is own and torch.equal(own, (clip - m) / s)  # in place
    out = pretrain_transform(24)(frames, rng=np.random.default_rng(0))
    assert out.is_contiguous()


def test_resize_is_each_plane_resized_alone_whatever_the_frames_or_the_thread_count():
    # every [H, W] plane comes out bit for bit as that plane resized on its own: with 1 thread (a
    # loader worker) and 2, antialiased or not, up and down, for any subset of the frames (the
    # extractor transforms a batch's frames once and picks each window's from them). The layouts
    # we did not take round differently, within 2 float32 ulps of 1 (2.4e-7): frames as the batch
    # with channels innermost (our earlier layout) with 1 thread, and the official [C, T] layout
    # (frames as channels) when it vectorises across frames.
    frames = np.random.default_rng(5).integers(0, 256, (30, 96, 128, 3), dtype=np.uint8)
    clip = to_clip_tensor(frames)
    assert clip.is_contiguous()
    threads = torch.get_num_threads()

    def alone(plane, size, antialias):
        return F.interpolate(
            plane.contiguous()[None, None], size=size, mode="bilinear", align_corners=False, antialias=antialias
        )[0, 0]

    try:
        for antialias in (False, True):
            for size in ((36, 48), (112, 112)):
                planes = torch.stack(
                    [torch.stack([alone(clip[c, t], size, antialias) for t in range(30)]) for c in range(3)]
                )
                for n in (1, 2):
                    torch.set_num_threads(n)
                    for x in (clip, clip.permute(1, 2, 3, 0).contiguous().permute(3, 0, 1, 2)):  # channels innermost
                        got = resize(x, size, antialias)
                        assert got.is_contiguous() and torch.equal(got, planes), (antialias, size, n)
                    assert torch.equal(resize(clip[:, 7:11], size, antialias), planes[:, 7:11])
                    for other in (
                        F.interpolate(
                            clip.transpose(0, 1), size=size, mode="bilinear", align_corners=False, antialias=antialias
                        ).transpose(0, 1),
                        F.interpolate(clip, size=size, mode="bilinear", align_corners=False, antialias=antialias),
                    ):
                        torch.testing.assert_close(other, planes, atol=2.4e-7, rtol=0)
    finally:
        torch.set_num_threads(threads)


def test_eval_views_one_centre_crop_or_three_crops_along_the_long_side():
    h, w = 16, 40
    col = np.tile((np.arange(w, dtype=np.uint8) * 6)[None, :, None], (h, 1, 3))
    clip = np.repeat(col[None], 3, axis=0)
    three = eval_transform(16, num_views=3)(clip)
    assert three.shape == (3, 3, 3, 16, 16)
    # short side already 16: no resize; crops start at 0, 12, 24 along the width ((40 - 16) // 2 = 12)
    ref = normalize(to_clip_tensor(clip))
    for k, left in enumerate((0, 12, 24)):
        assert torch.allclose(three[k], ref[..., left : left + 16])
    one = eval_transform(16, num_views=1)(clip)  # short side to int(16 * 256 / 224) = 18, centre crop
    assert one.shape == (1, 3, 3, 16, 16)
    tall = eval_transform(16, num_views=3)(np.transpose(clip, (0, 2, 1, 3)))  # crops along the height
    assert torch.allclose(tall[1], ref.transpose(-1, -2)[..., 12:28, :])


def test_the_transform_finished_elsewhere_equals_the_cpu_transform_bit_for_bit():
    # the loader worker may stop after crop() (uint8 box + flip draw) and hand the rest to the
    # consumer's device; on the CPU that is the same operations in the same order as before the
    # split: the independent composition below, bit-identical, for both flip draws
    frames = np.random.default_rng(0).integers(0, 256, (6, 40, 52, 3), dtype=np.uint8)
    tf = pretrain_transform(24)
    flips = set()
    for seed in range(6):
        want = tf(frames, rng=np.random.default_rng(seed))
        r = np.random.default_rng(seed)
        crop, flip = tf.crop(frames, r)
        assert crop.base is not None and crop.dtype == np.uint8  # a view of the decoded frames: no copy
        assert torch.equal(tf.finish(crop, flip, "cpu"), want)
        r = np.random.default_rng(seed)
        top, left, h, w = random_resized_box(40, 52, tf.scale, tf.ratio, r)
        ref = resize(to_clip_tensor(frames[:, top : top + h, left : left + w]), (24, 24))
        ref = ref.flip(-1) if r.random() < 0.5 else ref
        assert torch.equal(normalize(ref).unsqueeze(0), want)
        flips.add(flip)
        if torch.cuda.is_available():  # on a GPU the kernels differ: float rounding only
            torch.testing.assert_close(
                tf.finish(torch.from_numpy(np.ascontiguousarray(crop)), flip, "cuda").cpu(), want, atol=1e-5, rtol=0
            )
    assert flips == {True, False}


@pytest.mark.parametrize("size, width", [(224, 340), (384, 456)])
def test_the_pretraining_transform_at_kinetics_sizes_has_the_bits_of_convert_resize_flip_normalise(size, width):
    # the transform normalises in place and mirrors while normalising: at the sizes a real run has
    # (a 340x256 or 456x256 video to 224 or 384 px, widths whose vector tails differ), the bits of
    # the plain composition of torch operations, for boxes of every shape the draws give
    frames = np.random.default_rng(size).integers(0, 256, (3, 256, width, 3), dtype=np.uint8)
    tf = pretrain_transform(size)
    m, s = torch.tensor(IMAGENET_MEAN).view(-1, 1, 1, 1), torch.tensor(IMAGENET_STD).view(-1, 1, 1, 1)
    flips = set()
    for seed in range(8):
        r = np.random.default_rng(seed)
        top, left, h, w = random_resized_box(256, width, tf.scale, tf.ratio, r)
        x = frames[:, top : top + h, left : left + w]
        x = torch.from_numpy(np.ascontiguousarray(x)).permute(3, 0, 1, 2).float() / 255
        x = F.interpolate(x.reshape(-1, 1, h, w), size=(size, size), mode="bilinear", align_corners=False)
        x = x.view(3, -1, size, size)
        flip = r.random() < 0.5
        want = ((x.flip(-1) if flip else x) - m) / s
        assert torch.equal(tf(frames, rng=np.random.default_rng(seed)), want.unsqueeze(0)), seed
        flips.add(flip)
    assert flips == {True, False}


def test_a_batch_of_unfinished_clips_finishes_to_the_stacked_worker_transform():
    # boxes of different sizes in one flat uint8 buffer; finished, the batch is the worker
    # transform's clips stacked, bit for bit on the CPU (float rounding on a GPU)
    from vjepa.data.transforms import UnfinishedClip, UnfinishedClips

    rng = np.random.default_rng(1)
    videos = [rng.integers(0, 256, (4, 30 + 7 * k, 44 - 3 * k, 3), dtype=np.uint8) for k in range(5)]
    worker, deferred = pretrain_transform(16), pretrain_transform(16, finish_on_device=True)
    want = torch.cat([worker(v, rng=np.random.default_rng(k)) for k, v in enumerate(videos)])
    clips = [deferred(v, rng=np.random.default_rng(k)) for k, v in enumerate(videos)]
    assert all(isinstance(c, UnfinishedClip) for c in clips) and len({c.box.shape for c in clips}) > 1
    batch = UnfinishedClips.collate(clips)
    assert len(batch) == 5 and batch.num_frames == 4 and batch.data.numel() == sum(c.box.size for c in clips)
    assert torch.equal(batch.finish("cpu"), want)
    if torch.cuda.is_available():
        torch.testing.assert_close(batch.pin_memory().finish("cuda").cpu(), want, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="finished differently"):
        UnfinishedClips.collate(clips[:2] + [pretrain_transform(24, finish_on_device=True)(videos[0])])
    with pytest.raises(ValueError, match="plain transform"):
        TrainClipTransform(16, auto_augment=RAND_AUGMENT, finish_on_device=True)
