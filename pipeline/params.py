"""Reading params.yaml: sections as typed configs, with errors that name the file and key."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import yaml

from vjepa.config import ConfigError, from_dict

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def load_params(path: str | Path = "params.yaml") -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"params file not found: {path.resolve()}")
    with open(path) as f:
        try:
            data = yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return data


def section(params: dict, dotted: str, default: Any = None) -> Any:
    """params['a']['b'] for 'a.b'; KeyError naming the full key if absent and no default."""
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            if default is not None:
                return default
            raise ConfigError(f"params.yaml: missing key '{dotted}'")
        node = node[part]
    return node


def typed(cls: type[T], params: dict, dotted: str) -> T:
    return from_dict(cls, section(params, dotted, {}), f"params.yaml:{dotted}")


def write_json(path: str | Path, data: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return path
