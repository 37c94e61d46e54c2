import os

import pytest
import torch

# Quiet, offline, reproducible test runs: no telemetry, no writes to the home folder.
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


# A tiny small-suite (every real format), built once per test session for tests that read it.
TINY_SUITE = dict(k400_train=120, k400_val=4, k400_frames=16, ssv2_train=8, ssv2_val=4, ssv2_frames=8, in1k_train=80,
                  in1k_val=10, inat_train=120, inat_val=6, places_train=4, places_val=2, ava_train_videos=1,
                  ava_val_videos=1, ava_keyframes=2, footage_size=32, footage_chunk_frames=48)


@pytest.fixture(scope="session")
def tiny_suite(tmp_path_factory):
    from vjepa.config import from_dict
    from vjepa.data.small_suite import SmallSuiteConfig, build_small_suite
    root = tmp_path_factory.mktemp("tiny_suite") / "data"
    summary = build_small_suite(from_dict(SmallSuiteConfig, TINY_SUITE, "data"), root)
    return root, summary
