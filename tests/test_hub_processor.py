"""A pretrained encoder as easy as a Hugging Face model (issue 32): every pretraining checkpoint
carries its preprocessing, load_encoder + load_processor turn a video file or a decoded clip into
features with no other argument, a hub entry loads any checkpoint of ours, released names describe
a mismatching file as it is, and the library works with DVC, MLflow and Prefect unimportable."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_evaluate_only import write_video
from test_pretrain import MovingSquares, tiny_config

import vjepa
from vjepa import hub
from vjepa.infra.checkpoint import import_official, load
from vjepa.infra.runtime import CheckpointError
from vjepa.data import ClipSampling, read_clips
from vjepa.data.transforms import IMAGENET_MEAN, IMAGENET_STD, EvalClipTransform
from vjepa.models import build_encoder
from vjepa.train.pretrain import pretrain

ROOT = Path(__file__).resolve().parent.parent


class SampledSquares(MovingSquares):
    """MovingSquares that says how its clips were cut, as a VideoDataset does."""

    clip = ClipSampling(num_frames=4, frame_step=3)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A real pretraining checkpoint of a model unlike the default profile's (32 px, 4 frames, 3 heads)."""
    out = tmp_path_factory.mktemp("pretrain")
    cfg = tiny_config(optim={"iterations": 2, "warmup_iterations": 1})
    pretrain(cfg, SampledSquares(4), out)
    return out / "latest.pth.tar", cfg


def test_a_pretraining_checkpoint_carries_its_model_config_and_preprocessing(checkpoint):
    path, cfg = checkpoint
    ck = load(path)
    assert ck["preprocessing"] == {
        "img_size": 32,
        "num_frames": 4,
        "frame_step": 3,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
    }
    assert ck["config"]["model"]["num_heads"] == 3 and "target_encoder" in ck and "encoder" in ck  # official keys stay


def test_encoder_and_processor_turn_a_video_file_and_a_clip_into_the_hand_computed_features(checkpoint, tmp_path):
    path, cfg = checkpoint
    video = tmp_path / "v.mp4"
    write_video(video, 1, frames=30, size=(40, 56))
    enc, proc = vjepa.load_encoder(path), vjepa.load_processor(path)
    assert (proc.img_size, proc.num_frames, proc.frame_step) == (32, 4, 3)
    # by hand: the model built from its config, the checkpoint's frame step and the eval view
    ref = build_encoder(cfg.model)
    import_official(path, target_encoder=ref)
    frames, _ = read_clips(str(video), ClipSampling(num_frames=4, frame_step=3, random=False))
    x = EvalClipTransform(32)(frames)
    with torch.no_grad():
        expected = ref.eval()(x)
        assert torch.equal(enc(proc(video)), expected) and expected.shape == (1, 2 * 4 * 4, 48)
        assert torch.equal(enc(proc(frames)), expected)  # a decoded clip, numpy
        assert torch.equal(enc(proc(torch.from_numpy(frames))), expected)  # or torch
    with pytest.raises(ValueError, match=r"expected a clip of 4 RGB frames \[T, H, W, 3\].*\(16, 224, 224, 3\)"):
        proc(np.zeros((16, 224, 224, 3), np.uint8))


def test_the_hub_entry_loads_any_checkpoint_of_ours(checkpoint):
    path, _ = checkpoint
    enc = torch.hub.load(str(ROOT), "vjepa_encoder", checkpoint=str(path), source="local")
    proc = torch.hub.load(str(ROOT), "vjepa_processor", checkpoint=str(path), source="local")
    clip = np.random.default_rng(0).integers(0, 255, (4, 40, 40, 3), dtype=np.uint8)
    with torch.no_grad():
        assert torch.equal(enc(proc(clip)), vjepa.load_encoder(path)(proc(clip)))
    assert enc.num_heads == 3 and enc.grid == (2, 4, 4)


def test_a_released_name_describes_a_mismatching_file_as_it_is(checkpoint):
    path, _ = checkpoint
    with pytest.raises(
        CheckpointError,
        match=r"holds an encoder of width 48, depth 2, 3 heads, 4 frames x 32px, "
        r"tubelets 2x8x8, not the expected width 1024",
    ):
        hub.vjepa_vitl16(checkpoint=str(path))
    with pytest.raises(
        CheckpointError,
        match=r"width 48, depth 2, 3 heads, 4 frames x 32px.*not the expected "
        r"width 64, depth 4, 4 heads, 8 frames x 24px",
    ):
        hub.vjepa_tiny(checkpoint=str(path))


def test_older_checkpoints_and_official_files_still_give_a_processor(checkpoint, tmp_path):
    path, _ = checkpoint
    ck = load(path)
    del ck["preprocessing"]
    old = tmp_path / "old.pth.tar"
    torch.save(ck, old)
    with pytest.raises(CheckpointError, match="records no frame step.*pass frame_step="):
        vjepa.load_processor(old)
    given = vjepa.load_processor(old, frame_step=2)
    assert (given.img_size, given.num_frames, given.frame_step) == (32, 4, 2)
    official = {k: ck[k] for k in ("encoder", "predictor", "target_encoder")}
    torch.save(official, tmp_path / "official.pth.tar")
    # an official-layout file says no frames (16 by default, as every released model): num_frames= does
    proc = vjepa.load_processor(tmp_path / "official.pth.tar", num_frames=4)
    assert (proc.img_size, proc.num_frames, proc.frame_step) == (32, 4, hub.OFFICIAL_FRAME_STEP)


BLOCKER = """
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('dvc', 'mlflow', 'prefect'):
            raise ImportError(f'{name} is blocked: the library must work without the orchestration')
sys.meta_path.insert(0, Blocker())
"""


def test_the_library_loads_models_and_extracts_without_dvc_mlflow_or_prefect(checkpoint):
    path, _ = checkpoint
    code = (
        BLOCKER
        + f"""
import vjepa
enc = vjepa.load_encoder({str(path)!r}); proc = vjepa.load_processor({str(path)!r})
import numpy as np, torch
print(tuple(enc(proc(np.zeros((4, 40, 40, 3), np.uint8))).shape))
for name in ('dvc', 'mlflow', 'prefect'):
    assert name not in sys.modules, name
sys.argv = ['vjepa.extract', '--help']
import runpy
try:
    runpy.run_module('vjepa.extract', run_name='__main__')
except SystemExit as e:
    assert e.code in (0, None), e.code
"""
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "(1, 32, 48)" in out.stdout and "usage:" in out.stdout
    # the blocker does block: the orchestration itself cannot import
    blocked = subprocess.run(
        [sys.executable, "-c", BLOCKER + "import pipeline.tracking, mlflow"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert blocked.returncode != 0 and "mlflow is blocked" in blocked.stderr


def test_extract_with_no_options_but_input_and_output_uses_the_checkpoints_own_clip(checkpoint, tmp_path):
    import warnings

    from vjepa.extract import main

    path, cfg = checkpoint
    video = tmp_path / "v.mp4"
    write_video(video, 1, frames=30, size=(40, 56))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # nothing guessed: frames, step and size are the file's
        main([str(video), "--checkpoint", str(path), "--out", str(tmp_path / "f")])
    feats = np.load(tmp_path / "f" / "v.npy")
    # by hand, the first window: frames 0, 3, 6, 9 (the checkpoint's step 3), the eval view, mean-pooled tokens
    ref = build_encoder(cfg.model)
    import_official(path, target_encoder=ref)
    import av

    with av.open(str(video)) as c:
        every = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    frames = np.stack([every[i] for i in (0, 3, 6, 9)])
    with torch.no_grad():
        expected = ref.eval()(EvalClipTransform(32)(frames)).mean(1)[0].numpy()
    np.testing.assert_allclose(feats[0], expected, rtol=1e-5, atol=1e-6)
