"""V-JEPA 2's data recipe: sampling by frames per second, frames per clip set per dataset (a batch
grouped by clip length, each group with its own masks and, per 'group', its own mask token), and
images listed among the videos as still clips."""

import struct
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from test_data_video import encode, texture  # noqa: E402
from test_pretrain import MovingSquares, read_metrics, tiny_config  # noqa: E402

from vjepa.data import ClipSampling, ImageDataset, MixtureDataset, VideoDataset  # noqa: E402
from vjepa.data.sampling import clip_indices, frame_step_for  # noqa: E402
from vjepa.data.transforms import pretrain_transform  # noqa: E402
from vjepa.data.video import decode_clips  # noqa: E402
from vjepa.infra.config import ConfigError, FieldError  # noqa: E402

ROPE = {"pos_encoding": "rope3d", "mask_token_per": "group"}


# -- sampling by frames per second ------------------------------------------------------------------


@pytest.mark.parametrize("source, step", [(29.97, 7), (30.0, 7), (25.0, 6), (12.0, 3), (8.0, 2), (4.0, 1)])
def test_fps_sets_the_step_to_the_source_rate_rounded_up_floor_divided(source, step):
    assert frame_step_for(ClipSampling(num_frames=16, fps=4), source) == step  # vjepa2 loadvideo_decord


def test_fps_refuses_a_slower_video_and_a_second_way_to_set_the_step():
    with pytest.raises(ValueError, match="runs at 3 fps, slower than the 4 fps asked for"):
        frame_step_for(ClipSampling(fps=4), 3.0)
    with pytest.raises(FieldError, match="set fps or clip_duration, not both"):
        ClipSampling(fps=4, clip_duration=2.0).validate()
    with pytest.raises(FieldError, match="must be positive frames per second"):
        ClipSampling(fps=0).validate()


def test_a_real_video_is_cut_at_its_own_rate(tmp_path):
    path = encode(tmp_path / "v12.mp4", texture(60, 32, 48), fps=12)
    cfg = ClipSampling(num_frames=4, fps=4, random=False)
    decoded = decode_clips(str(path), cfg)
    want = clip_indices(60, ClipSampling(num_frames=4, frame_step=3, random=False))  # 12 fps // 4 fps
    assert [i.tolist() for i in decoded.indices] == [w.tolist() for w in want]
    assert decoded.frames.shape == (4, 32, 48, 3)


def test_a_checkpoint_of_fps_sampled_data_records_the_rate_and_its_processor_uses_it(tmp_path):
    import vjepa
    from vjepa.infra.checkpoint import load
    from vjepa.train.pretrain import pretrain

    class ByRate(MovingSquares):
        clip = ClipSampling(num_frames=4, fps=4)

    pretrain(tiny_config(optim={"iterations": 1, "warmup_iterations": 0}), ByRate(4), tmp_path / "run")
    ck = load(tmp_path / "run" / "latest.pth.tar")
    assert ck["preprocessing"]["fps"] == 4 and ck["preprocessing"]["frame_step"] is None
    proc = vjepa.load_processor(tmp_path / "run" / "latest.pth.tar")
    video = encode(tmp_path / "v12.mp4", texture(60, 32, 48), fps=12)
    want = decode_clips(str(video), ClipSampling(num_frames=4, frame_step=3, random=False)).frames
    assert proc.fps == 4 and np.array_equal(proc.read(video), want)
    assert vjepa.load_processor(tmp_path / "run" / "latest.pth.tar", frame_step=2).fps is None  # asked for a step


# -- images as still clips among the videos -----------------------------------------------------------


def _image(path: Path, seed: int = 0) -> str:
    from PIL import Image

    Image.fromarray(texture(1, 40, 56, seed=seed)[0]).save(path)
    return str(path)


def test_an_image_in_a_video_list_is_the_image_repeated_to_the_clip_then_augmented_as_one(tmp_path):
    video = str(encode(tmp_path / "v.mp4", texture(30, 40, 56)))
    jpg, png = _image(tmp_path / "a.JPG", 1), _image(tmp_path / "b.png", 2)
    transform = pretrain_transform(32)
    ds = VideoDataset([(video, 0), (jpg, 1), (png, 2)], ClipSampling(num_frames=4, frame_step=2), transform, seed=3)
    for i in (1, 2):
        item = ds[(i, 0)]
        assert item["video"].shape == (1, 1, 3, 4, 32, 32) and item["label"] == i
        clip = item["video"][0, 0]
        assert all(torch.equal(clip[:, t], clip[:, 0]) for t in range(4))  # a still clip
        # V-JEPA 2's get_item_image: the image repeated to 4 frames, then transformed as one clip
        from PIL import Image

        frames = np.repeat(np.asarray(Image.open(ds.entries[i][0]).convert("RGB"))[None], 4, axis=0)
        assert torch.equal(item["video"][0], transform(frames, rng=np.random.default_rng([3, 0, i])))
        # and the image dataset's still clip of the same draw
        assert torch.equal(item["video"], ImageDataset(ds.entries, transform, still_frames=4, seed=3)[(i, 0)]["video"])
    assert ds[(0, 0)]["video"].shape == (1, 1, 3, 4, 32, 32)
    assert not torch.equal(ds[(1, 0)]["video"], ds[(1, 1)]["video"])  # augmented anew each epoch


def _bomb(path: Path) -> str:
    """A small PNG whose header declares 100000 x 100000 pixels (a decompression bomb)."""
    raw = bytearray(Path(_image(path)).read_bytes())
    ihdr = raw.index(b"IHDR")
    raw[ihdr + 4 : ihdr + 12] = struct.pack(">II", 100_000, 100_000)
    raw[ihdr + 17 : ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(raw[ihdr : ihdr + 17])))
    path.write_bytes(bytes(raw))
    return str(path)


@pytest.mark.parametrize("make", ["truncated", "empty", "bomb", "not an image"])
def test_a_broken_or_hostile_image_is_skipped_and_named(tmp_path, make):
    from vjepa.data import collate

    path = tmp_path / "x.png"
    if make == "bomb":
        _bomb(path)
    else:
        data = Path(_image(path)).read_bytes()
        path.write_bytes({"truncated": data[: len(data) // 3], "empty": b"", "not an image": b"GIF89a" * 40}[make])
    ds = VideoDataset([(str(path), 0)], ClipSampling(num_frames=4), pretrain_transform(32), seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        item = ds[(0, 0)]
    assert item is None and any(str(path) in str(w.message) for w in caught)
    assert collate([item])["skipped"] == [str(path)]


# -- frames per clip per dataset: a batch grouped by clip length ----------------------------------------


def _groups_config(**over):
    return tiny_config(clip_lengths=[4, 8], model={**ROPE, "num_mask_tokens": 2}, **over)


def _two_lengths(n: int = 8) -> MixtureDataset:
    return MixtureDataset([MovingSquares(n, frames=4), MovingSquares(n, frames=8)])


def test_a_micro_batch_is_grouped_by_clip_length_with_each_groups_own_masks():
    from vjepa.jepa.masks import MaskCollator
    from vjepa.train.pretrain import MicroBatches

    cfg = _groups_config()
    key = (3, 1, 0, [(0, 5), (9, 6), (2, 7), (12, 8)])  # items 0, 2 of 4 frames; 9, 12 of 8 frames
    four, eight = MicroBatches(_two_lengths(), cfg)[key]["groups"]
    assert (four.index, eight.index) == (0, 1)
    assert four.clips.shape == (2, 3, 4, 32, 32) and eight.clips.shape == (2, 3, 8, 32, 32)
    for g, frames in ((four, 4), (eight, 8)):
        ctx, tgt = MaskCollator(cfg.masks, (frames // 2, 4, 4), seed=cfg.seed, rank=1, group=g.index)(2, 3)
        assert all(torch.equal(a, b) for a, b in zip(g.context_masks + g.target_masks, ctx + tgt))
    assert max(int(t.max()) for t in eight.target_masks) >= 4 * 4 * 2  # the 8-frame grid's later tokens


def test_the_loss_is_the_mean_over_every_group_and_mask_and_each_group_trains_its_own_mask_token():
    from vjepa.infra.distributed import DistEnv
    from vjepa.jepa.step import jepa_loss
    from vjepa.train.pretrain import MicroBatches, build_state

    cfg = _groups_config()
    state = build_state(cfg, DistEnv())
    four, eight = MicroBatches(_two_lengths(), cfg)[(0, 0, 0, [(0, 1), (1, 2), (8, 3), (9, 4)])]["groups"]
    tokens = state.predictor.mask_tokens
    with torch.no_grad():
        tokens[0].fill_(0.5)
        tokens[1].fill_(-0.5)  # told apart: the groups' predictions depend on which token they use
    both, a, b = (jepa_loss(state.context_path, state.target_encoder, g) for g in ([four, eight], [four], [eight]))
    assert both.loss.item() == pytest.approx((a.loss.item() + b.loss.item()) / 2, rel=1e-6)
    assert [x.item() for x in both.per_mask] == pytest.approx(
        [(x.item() + y.item()) / 2 for x, y in zip(a.per_mask, b.per_mask)], rel=1e-6
    )
    assert both.target_pooled.shape == (4, cfg.model.embed_dim)
    a.loss.backward()
    assert tokens[0].grad is not None and tokens[1].grad is None  # 4-frame clips: token 0 only
    state.optimizer.zero_grad(set_to_none=True)
    b.loss.backward()
    assert tokens[0].grad is None and tokens[1].grad.abs().sum() > 0


def test_the_released_numbering_gives_the_first_length_present_token_0():
    from vjepa.infra.distributed import DistEnv
    from vjepa.jepa.step import jepa_loss
    from vjepa.train.pretrain import MicroBatches, build_state

    only_eight = (0, 0, 0, [(8, 1), (9, 2)])  # a micro-batch of 8-frame clips alone
    (ours,) = MicroBatches(_two_lengths(), _groups_config())[only_eight]["groups"]
    cfg = _groups_config(group_token="present")
    (released,) = MicroBatches(_two_lengths(), cfg)[only_eight]["groups"]
    assert (ours.index, ours.token) == (1, 1) and (released.index, released.token) == (1, 0)
    both = MicroBatches(_two_lengths(), cfg)[(0, 0, 0, [(0, 1), (8, 2)])]["groups"]
    assert [(g.index, g.token) for g in both] == [(0, 0), (1, 1)]  # both present: the same numbering
    state = build_state(cfg, DistEnv())
    jepa_loss(state.context_path, state.target_encoder, [released]).loss.backward()
    tokens = state.predictor.mask_tokens
    assert tokens[0].grad.abs().sum() > 0 and tokens[1].grad is None


def test_pretraining_over_two_clip_lengths_logs_each_groups_clips_and_resumes_exactly(tmp_path):
    from vjepa.infra.checkpoint import load
    from vjepa.train.pretrain import pretrain

    cfg = _groups_config(optim={"iterations": 4, "warmup_iterations": 1}, batch_size=4, checkpoint_every=2)
    pretrain(cfg, _two_lengths(), tmp_path / "full")
    rows = read_metrics(tmp_path / "full")
    assert all(r["clips_4f"] + r["clips_8f"] == 4 for r in rows) and {r["clips_8f"] for r in rows} != {0}
    first = load(tmp_path / "full" / "latest.pth.tar")
    assert first["config"]["clip_lengths"] == [4, 8]
    # killed during step 3 (its checkpoint of step 2 kept), then resumed: the same weights

    def kill(metrics, step):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pretrain(cfg, _two_lengths(), tmp_path / "cut", log_fn=kill)
    assert load(tmp_path / "cut" / "latest.pth.tar")["step"] == 2
    pretrain(cfg, _two_lengths(), tmp_path / "cut")
    again = load(tmp_path / "cut" / "latest.pth.tar")
    for part in ("encoder", "predictor", "target_encoder"):
        assert all(torch.equal(v, again[part][k]) for k, v in first[part].items()), part


def test_clip_lengths_the_run_does_not_take_are_refused_naming_them():
    from vjepa.train.pretrain import MicroBatches

    with pytest.raises(ConfigError, match=r"pretrain.clip_lengths: \[4, 8\]: a sin-cos model takes clips of its"):
        tiny_config(clip_lengths=[4, 8]).validate()
    with pytest.raises(
        ConfigError, match="pretrain.clip_lengths: frame counts must be multiples of model.tubelet_size 2"
    ):
        tiny_config(clip_lengths=[4, 5], model={"pos_encoding": "rope3d"}).validate()
    with pytest.raises(ValueError, match=r"clips of \[8\] frames in a batch; the run takes clips of \[4\] frames"):
        MicroBatches(_two_lengths(), tiny_config())[(0, 0, 0, [(0, 1), (8, 2)])]


# -- the pipeline: dataset_fpcs and fps in pretrain.data ---------------------------------------------------


def test_dataset_fpcs_become_the_runs_clip_lengths_and_are_checked_against_the_model():
    from conftest import with_sources
    from test_params import params_with, refused

    from pipeline.config import from_mapping

    def per_source(p, fpcs, **model):
        p["model"].update(pos_encoding="rope3d", mask_token_per="group", num_mask_tokens=1, **model)
        p["pretrain"]["data"].update(dataset_fpcs=fpcs, fps=4, num_frames=max(fpcs))

    sources = len(params_with(lambda p: None)["pretrain"]["data"]["sources"])
    fpcs = [4] + [8] * (sources - 1)
    params = from_mapping(params_with(lambda p: per_source(p, fpcs, num_frames=8)))
    assert params.pretrain_config(0).clip_lengths == [4, 8] and params.pretrain.data.fps == 4
    assert params.pretrain_config(0).groups == [4, 8]
    refused(
        lambda p: per_source(p, fpcs, num_frames=4),
        "params.yaml: pretrain.data.dataset_fpcs: at most 8 frames, but model.num_frames is 4",
    )
    with pytest.raises(ConfigError, match=f"pretrain.data.dataset_fpcs: 1 frame counts for {sources} sources"):
        from_mapping(params_with(lambda p: per_source(p, [8], num_frames=8)))
    # an error in the lengths names the key the user sets
    refused(
        lambda p: (per_source(p, fpcs, num_frames=8), p["model"].update(pos_encoding="sincos")),
        "params.yaml: pretrain.data.dataset_fpcs: [4, 8]: a sin-cos model takes clips of its model.num_frames (8) "
        "only; clips of several lengths need model.pos_encoding: rope3d",
    )
    # the ablations' own lists, and a cooldown's own clip length, leave the per-source lengths behind
    assert params.ablation_data(next(iter(params.ablations.points))).dataset_fpcs == fpcs  # inherited with the lists

    def own_lists(p):
        per_source(p, fpcs, num_frames=8)
        p["ablations"]["data"] = {"sources": p["pretrain"]["data"]["sources"][:1]}

    params = from_mapping(with_sources(params_with(own_lists)))
    point = next(iter(params.ablations.points))
    assert params.ablation_data(point).dataset_fpcs is None and params.pretrain_config(0, point).clip_lengths is None
    over = params_with(lambda p: (per_source(p, fpcs, num_frames=8), p.update(cooldown={"data": {"num_frames": 8}})))
    assert from_mapping(over).cooldown_data().dataset_fpcs is None


def test_a_run_of_other_clip_lengths_does_not_resume_it(tmp_path):
    from vjepa.infra.runtime import CheckpointError
    from vjepa.train.pretrain import pretrain

    pretrain(_groups_config(optim={"iterations": 1, "warmup_iterations": 0}), _two_lengths(), tmp_path)
    # a checkpoint from before `group_token` resumes as the per-length numbering it used
    ck = torch.load(tmp_path / "latest.pth.tar", weights_only=False)
    del ck["config"]["group_token"]
    torch.save(ck, tmp_path / "latest.pth.tar")
    pretrain(_groups_config(optim={"iterations": 2, "warmup_iterations": 0}), _two_lengths(), tmp_path)
    with pytest.raises(CheckpointError, match="group_token"):
        pretrain(_groups_config(optim={"iterations": 3}, group_token="present"), _two_lengths(), tmp_path)
    with pytest.raises(CheckpointError, match="clip_lengths"):
        swapped = tiny_config(clip_lengths=[8, 4], model={**ROPE, "num_mask_tokens": 2}, optim={"iterations": 2})
        pretrain(swapped, _two_lengths(), tmp_path)  # the lengths' masks and tokens would change places


@pytest.mark.parametrize("finish_on_device", [False, True])
def test_a_mixture_of_videos_and_images_with_their_own_clip_lengths_pretrains(tmp_path, finish_on_device):
    """pretrain.data as the vjepa2 profiles can set it: a video list of 8-frame clips and an image list
    of 4-frame still clips, weighted, sampled at 4 fps, through the stage's dataset and the loop (with
    finish_on_device, as the paper profiles run: boxes cut in a worker process, finished in the loop)."""
    from conftest import with_sources
    from test_params import params_with

    from pipeline.config import from_mapping
    from pipeline.stages.pretraining import pretrain_dataset
    from vjepa.train.pretrain import pretrain

    videos, images = tmp_path / "videos.csv", tmp_path / "images.csv"
    videos.write_text(
        "".join(f"{encode(tmp_path / f'v{i}.mp4', texture(40, 40, 56, seed=i), fps=12)} {i}\n" for i in range(3))
    )
    images.write_text("".join(f"{_image(tmp_path / f'i{i}.jpg', seed=i)} {i}\n" for i in range(3)))

    def edit(p):
        p["model"].update(pos_encoding="rope3d", mask_token_per="group", num_mask_tokens=2, num_frames=8)
        p["pretrain"]["data"] = {
            "sources": [str(videos), str(images)],
            "weights": [0.75, 0.25],
            "fps": 4,
            "dataset_fpcs": [8, 4],
            "num_frames": 8,
            "finish_on_device": finish_on_device,
        }
        p["pretrain"]["train"].update(batch_size=4, num_workers=int(finish_on_device))
        p["pretrain"]["train"]["optim"].update(iterations=3, warmup_iterations=1)

    params = from_mapping(with_sources(params_with(edit)))
    cfg = params.pretrain_config(0)
    data = pretrain_dataset(params, cfg, 0)
    frames = [len(x.box) if finish_on_device else x.shape[-3] for x in (data[(0, 0)]["video"], data[(3, 0)]["video"])]
    assert frames == [8, 4]
    assert data.datasets[0].clip.fps == 4 and data.weights == [0.75, 0.25]
    summary = pretrain(cfg, data, tmp_path / "run")
    rows = read_metrics(tmp_path / "run")
    assert summary["steps"] == 3 and summary["skipped_videos"] == 0
    assert sum(r["clips_8f"] for r in rows) > sum(r["clips_4f"] for r in rows) > 0  # 3 : 1 by weight
