"""Profiles: complete params files under profiles/. params.yaml is the active one (the default
CPU profile as committed); `python -m pipeline profile <name>` makes another one active."""
from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def available(root: Path = ROOT) -> list[str]:
    return sorted(p.stem for p in (root / "profiles").glob("*.yaml"))


def use_profile(name: str, root: Path = ROOT) -> Path:
    """Copy profiles/<name>.yaml over params.yaml; DVC then re-runs whatever the change touches."""
    src = root / "profiles" / f"{name}.yaml"
    if not src.is_file():
        raise FileNotFoundError(f"no profile '{name}' in {root / 'profiles'}; available: {available(root)}")
    dst = root / "params.yaml"
    tmp = dst.with_suffix(".yaml.tmp")
    shutil.copyfile(src, tmp)
    tmp.replace(dst)
    return dst
