"""Data-parallel probes and detection under torchrun (2 CPU processes, gloo) against one process
with the same global batch: each process takes its slice of every global batch and the gradients
are summed, weighted by each slice's share, so weights, losses and predictions agree up to float
summation order. The sets are sized so the last global batch leaves the second process empty.

Run as a script under torchrun, this file is the worker of the test.
"""

import json
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from vjepa.infra.checkpoint import load
from vjepa.infra.runtime import CheckpointError

sys.path.insert(0, str(Path(__file__).parent))
from conftest import run_torchrun  # noqa: E402
from test_detect import Squares  # noqa: E402
from test_probe import TINY, Bands, fast_cfg, tiny_encoder  # noqa: E402

# 45 clips at 7 per process: 3 global batches of 14, then 3 clips, all on rank 0
PROBE_RUNS = {"plain": {}, "cached": {"cache_features": True}}
PROBE_BATCH, DETECT_BATCH = 7, 4
# Gradients summed in another order carry last-bit differences, which AdamW's normalised update
# scales up where a gradient is near zero: measured max |diff| on the weights after 12 steps, 7e-9
# (linear probes), 3.6e-6 (attentive, lr 1e-3) and 4.1e-5 (attentive, lr 1e-2), against 4e-3 to 0.14
# for one process at the per-process batch (the negative control below).
ATOL, RTOL = 2e-4, 1e-4
LOSS_TOL = 1e-6


def probe_cfg(batch_size: int, **kw):
    # the linear probe without BatchNorm: batch statistics over one process's slice are not the
    # statistics over the global batch (as with DDP without SyncBatchNorm)
    return fast_cfg(batch_size=batch_size, kinds=["attentive", "linear"], linear_norm="none", **kw)


def detect_cfg(batch_size: int):
    from vjepa.infra.config import from_dict
    from vjepa.infra.configs import DetectConfig

    return from_dict(
        DetectConfig,
        {
            "out_layers": [1, 2],
            "epochs": 2,
            "batch_size": batch_size,
            "lr": 3e-3,
            "warmup_epochs": 1,
            "eval_classes": [1, 3, 80],
            "precision": "fp32",
            "device": "cpu",
            "dropout": 0.0,  # each process draws its own dropout; without it the runs are comparable
        },
    )


def detection_sets():
    return Squares(26, seed=0), Squares(11, seed=1)  # 26 = 3 x 8 + 2: rank 1 empty at the end


def _worker(out_root: str) -> None:
    """One torchrun process: every 2-process run, sharing one process group."""
    import torch.distributed as dist
    from vjepa.evals.detect import run_detection
    from vjepa.models import build_encoder
    from vjepa.evals.probe import run_probe

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    for name, kw in PROBE_RUNS.items():
        run_probe(probe_cfg(PROBE_BATCH, **kw), tiny_encoder(), Bands(45), Bands(21, seed=1), Path(out_root) / name)
    torch.manual_seed(0)
    train, val = detection_sets()
    m = run_detection(
        detect_cfg(DETECT_BATCH), build_encoder(TINY), train, val, val.groundtruth(), Path(out_root) / "d"
    )
    (Path(out_root) / f"detect_rank{dist.get_rank()}.json").write_text(json.dumps(m["train_loss"]))
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory):
    return run_torchrun(__file__, tmp_path_factory.mktemp("ddp_eval"))


@pytest.mark.parametrize("name", sorted(PROBE_RUNS))
def test_two_process_probes_match_one_process_with_the_same_global_batch(name, two_process_runs, tmp_path):
    from vjepa.evals.probe import run_probe

    torch.set_num_threads(1)
    one = run_probe(
        probe_cfg(2 * PROBE_BATCH, **PROBE_RUNS[name]), tiny_encoder(), Bands(45), Bands(21, seed=1), tmp_path
    )
    ddp_dir = two_process_runs / name
    ddp = json.loads((ddp_dir / "metrics.json").read_text())
    assert ddp["num_train"] == one["num_train"] == 45 and ddp["num_val"] == one["num_val"] == 21
    for probe, m in one["probes"].items():
        assert ddp["probes"][probe]["train_loss"] == pytest.approx(m["train_loss"], abs=LOSS_TOL), probe
        assert ddp["probes"][probe]["top1"] == m["top1"] and ddp["probes"][probe]["train_top1"] == m["train_top1"]
        a, b = load(ddp_dir / "probes" / f"{probe}.pth.tar"), load(tmp_path / "probes" / f"{probe}.pth.tar")
        assert a["world_size"] == 2 and b["world_size"] == 1 and a["batch_size"] * 2 == b["batch_size"]
        for k, v in b["classifier"].items():
            torch.testing.assert_close(a["classifier"][k], v, atol=ATOL, rtol=RTOL, msg=f"{probe}.{k}")
    # the evaluation blocks are gathered in rank order: the predictions read as one process writes them
    pa, pb = pd.read_csv(ddp_dir / "predictions.csv"), pd.read_csv(tmp_path / "predictions.csv")
    assert pa[["probe", "index", "path", "label", "predicted"]].equals(
        pb[["probe", "index", "path", "label", "predicted"]]
    )


def test_negative_control_one_process_at_the_per_process_batch_is_far_from_the_two_process_run(
    two_process_runs, tmp_path
):
    from vjepa.evals.probe import run_probe

    torch.set_num_threads(1)
    run_probe(probe_cfg(PROBE_BATCH), tiny_encoder(), Bands(45), Bands(21, seed=1), tmp_path)
    for f in (two_process_runs / "plain" / "probes").glob("*.pth.tar"):
        a, b = load(f)["classifier"], load(tmp_path / "probes" / f.name)["classifier"]
        assert max(float((a[k] - b[k]).abs().max()) for k in a) > 10 * ATOL, f.name


def test_a_probe_state_of_two_processes_does_not_resume_in_one(two_process_runs, tmp_path):
    from vjepa.evals.probe import run_probe

    (tmp_path / "probe_state.pt").write_bytes((two_process_runs / "plain" / "probe_state.pt").read_bytes())
    with pytest.raises(CheckpointError, match="processes 2 -> 1"):
        run_probe(probe_cfg(PROBE_BATCH), tiny_encoder(), Bands(45), Bands(21, seed=1), tmp_path)


def test_two_process_detection_matches_one_process_with_the_same_global_batch(two_process_runs, tmp_path):
    from vjepa.evals.detect import run_detection
    from vjepa.models import build_encoder

    torch.set_num_threads(1)
    torch.manual_seed(0)
    train, val = detection_sets()
    one = run_detection(detect_cfg(2 * DETECT_BATCH), build_encoder(TINY), train, val, val.groundtruth(), tmp_path)
    ddp = json.loads((two_process_runs / "d" / "metrics.json").read_text())
    rank1 = json.loads((two_process_runs / "detect_rank1.json").read_text())
    assert not (two_process_runs / "d" / "detect_rank1").exists()
    assert ddp["train_loss"] == pytest.approx(one["train_loss"], abs=LOSS_TOL)
    assert rank1 == pytest.approx(ddp["train_loss"], rel=1e-12)  # every process reports the global loss
    assert ddp["mAP"] == pytest.approx(one["mAP"], abs=1e-6) and ddp["num_detections"] == one["num_detections"]
    a, b = load(two_process_runs / "d" / "head.pt"), load(tmp_path / "head.pt")
    for k, v in b["head"].items():
        torch.testing.assert_close(a["head"][k], v, atol=ATOL, rtol=RTOL, msg=k)
    assert load(two_process_runs / "d" / "detect_state.pt")["world_size"] == 2


if __name__ == "__main__":
    _worker(sys.argv[1])
