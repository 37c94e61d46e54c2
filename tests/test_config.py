"""Typed configs at the edge: key paths in errors, YAML's number spellings."""

from dataclasses import dataclass, field

import pytest
import yaml

from vjepa.infra.config import ConfigError, from_dict, to_dict


@dataclass
class Inner:
    lr: float = 1.0
    steps: int = 1


@dataclass
class Outer:
    inner: Inner = field(default_factory=Inner)
    sizes: tuple[int, int] = (1, 2)
    name: str | None = None


def test_yaml_exponent_floats_are_numbers():
    data = yaml.safe_load("inner: {lr: 1e-3, steps: 5}")
    assert data["inner"]["lr"] == "1e-3"  # PyYAML's YAML 1.1 reading
    cfg = from_dict(Outer, data)
    assert cfg.inner.lr == 0.001 and cfg.inner.steps == 5


def test_errors_name_the_dotted_key():
    with pytest.raises(ConfigError, match=r"probe.inner.lr: expected a number, got 'fast'"):
        from_dict(Outer, {"inner": {"lr": "fast"}}, "probe")
    with pytest.raises(ConfigError, match=r"inner.steps: expected an integer, got 1.5"):
        from_dict(Outer, {"inner": {"steps": 1.5}})
    with pytest.raises(ConfigError, match=r"sizes: expected 2 items"):
        from_dict(Outer, {"sizes": [1, 2, 3]})
    with pytest.raises(ConfigError, match=r"^inner.lrr: unknown key; did you mean lr\?$"):
        from_dict(Outer, {"inner": {"lrr": 1}})
    with pytest.raises(ConfigError, match=r"^inner.zzz: unknown key; allowed: \['lr', 'steps'\]$"):
        from_dict(Outer, {"inner": {"zzz": 1}})


def test_round_trip_to_plain_dict():
    cfg = from_dict(Outer, {"sizes": [3, 4], "name": "x"})
    assert to_dict(cfg) == {"inner": {"lr": 1.0, "steps": 1}, "sizes": [3, 4], "name": "x"}
