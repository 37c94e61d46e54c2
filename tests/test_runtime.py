"""The shared run engine: one resume rule and one seeded RNG fork for every training run."""

import random

import numpy as np
import pytest
import torch

from vjepa.infra.runtime import CheckpointError
from vjepa.infra.runtime import check_resume, epoch_generator, seeded


def test_check_resume_names_each_differing_key_and_returns_the_allowed_ones():
    saved, now = {"lr": 0.1, "seed": 1, "device": "cpu"}, {"lr": 0.2, "seed": 1, "device": "cuda"}
    with pytest.raises(
        CheckpointError, match=r"s\.pt: the run's config changed \(device: 'cpu' -> 'cuda', lr: 0\.1 -> 0\.2\)"
    ):
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
    assert (
        torch.randperm(10, generator=epoch_generator(3, 1)).tolist()
        == torch.randperm(10, generator=torch.Generator().manual_seed(3 * 1_000_003 + 1)).tolist()
    )


def test_atomic_writes_take_the_process_umask_not_0600(tmp_path):
    import os
    import stat

    from vjepa.infra.runtime import write_json

    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        os.umask(0o077)
        write_json(tmp_path / "b.json", {"x": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.json").stat().st_mode) == 0o600
