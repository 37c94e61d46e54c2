"""The DVC stages, one module each: `run(params, key)` reads its typed section of `Params`, calls one
`vjepa` function, writes its outputs and a metrics JSON, and logs the same to MLflow.

Each module imports only what its stage runs, so dvc.yaml lists exactly those files as the
stage's deps (tests/test_dvc_deps.py derives them from the imports and checks). The command line
(`python -m pipeline <stage> [key]`) imports one stage module, never all of them.
"""

from __future__ import annotations

import importlib

STAGES = (
    "source",
    "prepare",
    "masks",
    "pretrain",
    "cooldown",
    "probe",
    "detect",
    "learn",
    "ablate",
    "finetune",
    "report",
)


def stage_keys(params, stage: str) -> tuple[str, list[str], bool] | None:
    """(what the key is, the valid keys, whether it may be left out) of a stage that takes a
    foreach key, as dvc.yaml lists them; None for a stage that takes none."""
    if stage in ("pretrain", "learn"):
        return "seed", [str(s) for s in params.seeds], True
    if stage == "cooldown":
        return "seed", [str(s) for s in params.cooldown.seeds], False
    if stage == "probe":
        return "task", list(params.probe.tasks), False
    if stage == "finetune":
        return "task", list(params.finetune.tasks), False
    if stage == "ablate":
        return "grid point", list(params.ablations.points), False
    if stage == "source":
        return "release file", list(params.sources or {}), False
    return None


def check_key(params, stage: str, key: str | None, params_path: str = "params.yaml") -> None:
    """Refuse, in one line naming the valid keys, a key the stage does not have in this profile,
    before the stage makes any work folder."""
    from vjepa.infra.config import ConfigError

    spec = stage_keys(params, stage)
    if spec is None:
        if key is not None:
            raise ConfigError(f"{stage} takes no key, got '{key}'")
        return
    what, valid, optional = spec
    if key is None and optional:
        return
    if key not in valid:
        got = f"no {what} '{key}'" if key is not None else f"name a {what}"
        raise ConfigError(
            f"{stage}: {got} in {params_path} (profile {params.profile}); valid: {', '.join(valid) or 'none'}"
        )


def run(stage: str, params_path: str = "params.yaml", key: str | None = None):
    """Load and validate the params once, check the foreach key, then run one stage."""
    from pipeline.config import load

    params = load(params_path)
    check_key(params, stage, key, params_path)
    module = importlib.import_module(f"pipeline.stages.{stage}")
    return module.run(params, key, params_path)
