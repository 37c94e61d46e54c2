"""Released probes evaluated as they are (`probe.tasks.<task>.evaluate_only`): the probe stage, on
real encoded videos and official-layout encoder and probe files, reproduces the accuracy and the
predictions that the test computes by hand with the official K400 protocol (8 segments x 3 views,
overlapping clips), writes them where a trained probe's go, and the report labels the row."""

import json
from fractions import Fraction

import av
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import with_sources
from test_hub import SMALL, by_hand, write_official

from pipeline import stages
from pipeline.profiles import resolve
from pipeline.report import section_frozen
from vjepa.infra.config import ConfigError, to_dict
from vjepa.data import ClipSampling, clip_indices
from vjepa.data.transforms import eval_transform
from vjepa.models.probes import AttentiveClassifier, official_probe_state


def write_video(path, label, frames=20, size=(40, 56), seed=0):
    """A clip whose bright band sits in the label's third of the frame, over noise (H.264 4:4:4)."""
    rng = np.random.default_rng(seed)
    h, w = size
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(25))
        s.width, s.height, s.pix_fmt = w, h, "yuv444p"
        s.options = {"crf": "20", "preset": "ultrafast", "threads": "1"}
        for t in range(frames):
            img = rng.integers(0, 80, (h, w, 3)).astype(np.uint8)
            img[label * h // 3 : (label + 1) * h // 3, (2 * t) % w :] = 230
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def decode(path):
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


@pytest.fixture
def released_task(tmp_path, monkeypatch, tiny_suite):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VJEPA_MLFLOW", "0")
    labels = [0, 1, 2, 0]
    for split in ("train", "val"):
        lines = []
        for i, k in enumerate(labels):
            write_video(tmp_path / f"{split}{i}.mp4", k, frames=20 + 3 * i, seed=i + (10 if split == "val" else 0))
            lines.append(f"{tmp_path / f'{split}{i}.mp4'} {k}\n")
        (tmp_path / f"{split}.txt").write_text("".join(lines))
    write_official(tmp_path / "encoder.pth.tar", SMALL)
    torch.manual_seed(4)
    probe = AttentiveClassifier(48, 3, num_heads=3).eval()
    torch.save({"classifier": official_probe_state(probe), "opt": None, "epoch": 20}, tmp_path / "k400-probe.pth.tar")
    params = resolve("smoke")  # a complete params tree; the test sets what it needs on top
    params.update(
        {
            "profile": "test",
            "seeds": [0],
            "model": to_dict(SMALL),
            "prepare": None,
            "tasks": {
                "k400": {"train": {"format": "list", "path": "train.txt"}, "val": {"format": "list", "path": "val.txt"}}
            },
        }
    )
    params["probe"] = {
        "encoder": {},
        "defaults": {"precision": "fp32", "batch_size": 4, "num_heads": None, "device": "cpu"},
        "tasks": {
            "k400": {
                "data": "k400",
                "num_frames": 4,
                "frame_step": 2,
                "segments": [1],
                "evaluate_only": {"probe": "k400-probe.pth.tar", "encoder": "encoder.pth.tar"},
            }
        },
    }
    params["pretrain"]["data"]["num_frames"] = SMALL.num_frames
    params["finetune"]["tasks"] = {}
    params["learn"].update({"motion": "k400", "appearance": "k400"})
    params["ablations"].update({"task": "k400", "points": {}})
    suite, _ = tiny_suite  # what prepare also checks on a real-data profile: pretraining lists and AVA files
    params["pretrain"]["data"]["sources"] = [str(tmp_path / "train.txt")]
    params["detect"]["data"] = {
        k: v.replace("data/prepared", str(suite)) if isinstance(v, str) else v
        for k, v in params["detect"]["data"].items()
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(with_sources(params)))
    stages.run("prepare", "params.yaml")  # a real-data profile: the tasks are read once, into an index
    return tmp_path, probe, labels


def test_a_released_probe_reproduces_the_hand_computed_accuracy_with_the_official_protocol(released_task):
    root, probe, labels = released_task
    metrics = stages.run("probe", "params.yaml", "k400")

    # by hand: 8 segments of overlapping clips, 3 crops each, tokens of the segments concatenated,
    # the probe on each crop, softmax averaged over the crops
    enc, tf = by_hand(root / "encoder.pth.tar", SMALL), eval_transform(32, 3)
    sampling = ClipSampling(num_frames=4, frame_step=2, num_segments=8, random=False, allow_overlap=True)
    predicted, top_probs = [], []
    for i in range(len(labels)):
        frames = decode(root / f"val{i}.mp4")
        clips = torch.stack([tf(frames[idx]) for idx in clip_indices(len(frames), sampling)])  # [8, 3, C, T, H, W]
        with torch.no_grad():
            tokens = enc(clips.flatten(0, 1)).unflatten(0, (8, 3))  # [8, 3, N, D]
            per_view = [torch.cat(list(tokens[:, v]))[None] for v in range(3)]  # [1, 8N, D] each
            probs = torch.stack([probe(t).softmax(-1) for t in per_view]).mean(0)
        predicted.append(int(probs.argmax()))
        top_probs.append(probs.sort(descending=True).values[0].tolist())
    accuracy = 100.0 * np.mean(np.array(predicted) == np.array(labels))

    assert metrics["top1"] == pytest.approx(accuracy) and metrics["released_probe"] == "k400-probe.pth.tar"
    run = metrics["runs"]["segments8"]
    assert run["segments"] == 8 and run["views"] == 3 and run["num_val"] == 4 and run["epochs"] == 0
    preds = pd.read_csv(root / "runs" / "probe" / "k400" / "segments8" / "predictions.csv").sort_values("index")
    assert preds["predicted"].tolist() == predicted and preds["label"].tolist() == labels
    written = [[float(x) for x in row.split()] for row in preds["top5_prob"]]  # 5 decimals in the file
    assert np.allclose(written, top_probs, atol=6e-6)
    assert json.loads((root / "metrics" / "test" / "probe" / "k400.json").read_text())["top1"] == pytest.approx(
        accuracy
    )
    table = section_frozen({"k400": metrics}, None, "test")
    assert f"| K400 | released probe, evaluated here: k400 | – | {accuracy:.1f} |" in table
    assert "| SSv2 | ours: ssv2 | – | – |" in table  # a task without results: a dash, not a number


def test_a_probe_of_another_label_space_or_an_unknown_protocol_is_refused(released_task):
    root, _, _ = released_task
    torch.save({"classifier": official_probe_state(AttentiveClassifier(48, 5, num_heads=3))}, root / "p5.pth.tar")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["probe"]["tasks"]["k400"]["evaluate_only"]["probe"] = "p5.pth.tar"
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(Exception, match="to 5 classes; the task has 3 classes"):
        stages.run("probe", "params.yaml", "k400")
    params["probe"]["tasks"]["mine"] = {**params["probe"]["tasks"]["k400"]}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError, match="task 'mine' has no official protocol.*set segments and views"):
        stages.run("probe", "params.yaml", "mine")
