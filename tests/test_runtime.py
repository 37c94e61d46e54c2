"""The shared run engine: one resume rule and one seeded RNG fork for every training run."""
import random

import numpy as np
import pytest
import torch

from vjepa.checkpoint import CheckpointError
from vjepa.runtime import check_resume, epoch_generator, seeded


def test_check_resume_names_each_differing_key_and_returns_the_allowed_ones():
    saved, now = {"lr": 0.1, "seed": 1, "device": "cpu"}, {"lr": 0.2, "seed": 1, "device": "cuda"}
    with pytest.raises(CheckpointError, match=r"s\.pt: the run's config changed \(device: 'cpu' -> 'cuda', lr: 0\.1 -> 0\.2\)"):
        check_resume(saved, now, "s.pt")
    assert check_resume(saved, {**now, "lr": 0.1}, "s.pt", ignore=["device"]) == ["device"]
    assert check_resume(saved, now, "s.pt", keys=["seed"]) == ["device", "lr"]
    with pytest.raises(CheckpointError, match=r"processes 1 -> 2"):
        check_resume(saved, saved, "s.pt", extra={"processes": (1, 2)})


def test_seeded_draws_depend_only_on_the_seed_and_restore_the_outer_streams():
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    with seeded(5):
        a = (random.random(), np.random.rand(), torch.rand(1).item())
    outer = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    expect_outer = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    assert a == (random.random(), np.random.rand(), torch.rand(1).item())
    assert outer == expect_outer
    assert torch.randperm(10, generator=epoch_generator(3, 1)).tolist() == \
        torch.randperm(10, generator=torch.Generator().manual_seed(3 * 1_000_003 + 1)).tolist()
