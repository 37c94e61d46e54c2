"""Heavy libraries are imported where they are used, not at import: every stage process (and a
pretraining run) loads pipeline.config first, and torchvision.ops alone pulls in torch._dynamo."""

import subprocess
import sys

import pytest

HEAVY = ("torchvision", "timm", "PIL", "mlflow", "prefect", "dvc", "matplotlib", "av", "decord")


@pytest.mark.parametrize(
    "module, also_absent",
    [
        ("vjepa.models", ("pandas", "pyarrow")),
        ("vjepa.train.pretrain", ("pandas", "pyarrow")),
        ("vjepa.jepa.masks", ("pandas", "pyarrow")),
        ("vjepa.evals.probe", ()),
        ("vjepa.evals.detect", ()),
        ("pipeline.config", ()),
        ("pipeline.stages", ()),
    ],
)
def test_importing_a_module_loads_no_heavy_library_it_does_not_use_yet(module, also_absent):
    code = f"import sys, {module}; print(' '.join(sorted(sys.modules)))"
    loaded = set(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    )
    assert not {m for m in HEAVY + also_absent if m in loaded}, (
        f"{module} imports {sorted(loaded & set(HEAVY + also_absent))}"
    )
