"""Typed configs: build a dataclass from a plain dict (a params.yaml section), checking keys, types
and ranges at the edge so a typo or a bad value fails with the key's full path instead of deep
inside a run.

Paths are the real paths of the keys: `pretrain.train.optim.lr`, `masks[1].num_blocks`. Unknown
keys get a did-you-mean (difflib). A config's `validate()` may raise `FieldError(key, message)` (or
use `check_range`), and the error then names that field under the config's path.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A config section has an unknown key, a missing key or a value of the wrong type or range."""


class FieldError(ValueError):
    """Raised by a config's validate(): `key` (a field name, or `a.b`, `lrs[1]`) is at fault."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def join(where: str, key: str) -> str:
    """The path of `key` under `where` (`a` + `b` -> `a.b`; `a` + `[1]` -> `a[1]`)."""
    if not where:
        return key
    return f"{where}{key}" if key.startswith("[") else f"{where}.{key}"


def unknown_key(where: str, key: Any, allowed: typing.Iterable[str]) -> ConfigError:
    """The error for an unknown key, with the closest allowed name when one is close."""
    close = difflib.get_close_matches(str(key), [str(a) for a in allowed], n=1)
    hint = f"; did you mean {close[0]}?" if close else f"; allowed: {sorted(str(a) for a in allowed)}"
    return ConfigError(f"{join(where, str(key))}: unknown key{hint}")


@dataclasses.dataclass(frozen=True)
class Partial:
    """Annotation marker (`Annotated[dict, Partial(Cfg)]`): a mapping of overrides of `Cfg`'s fields
    (nested dataclass fields partial too), each key and value checked like `Cfg`'s own."""

    cls: type
    exclude: tuple[str, ...] = ()
    extra: tuple[tuple[str, Any], ...] = ()  # (name, type) of keys allowed beside cls's fields


def plain(v: Any) -> Any:
    """Plain data (for YAML, JSON, logging, comparing): dataclasses as dicts, tuples as lists, dict
    and list subclasses as dicts and lists, recursively."""
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    return v


def _check_partial(value: Any, spec: Partial, where: str) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping of {spec.cls.__name__} keys, got {value!r}")
    hints = {**typing.get_type_hints(spec.cls, include_extras=True), **dict(spec.extra)}
    allowed = [f.name for f in dataclasses.fields(spec.cls) if f.init and f.name not in spec.exclude]
    allowed += [name for name, _ in spec.extra]
    out = {}
    for k, v in value.items():
        if k in spec.exclude:
            raise ConfigError(f"{join(where, str(k))}: not a setting here: the stage sets it itself")
        if k not in allowed:
            raise unknown_key(where, k, allowed)
        tp = hints[k]
        if dataclasses.is_dataclass(tp) and isinstance(v, dict):
            out[k] = _check_partial(v, Partial(tp), join(where, k))
        else:
            out[k] = plain(_check(v, tp, join(where, k)))
    return out


def _check(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin is typing.Annotated:
        partial = next((a for a in args[1:] if isinstance(a, Partial)), None)
        return _check_partial(value, partial, where) if partial else _check(value, args[0], where)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arm in args:
            try:
                return _check(value, arm, where)
            except ConfigError as e:
                errors.append(e)
        # a mapping given for an optional config: report what is wrong inside it, not "matches none"
        inner = [e for e, arm in zip(errors, args) if dataclasses.is_dataclass(arm) and isinstance(value, dict)]
        if inner:
            raise inner[0]
        raise ConfigError(f"{where}: {value!r} matches none of {tp}")
    if tp is type(None):
        if value is not None:
            raise ConfigError(f"{where}: expected null, got {value!r}")
        return None
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
            return tuple(_check(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        out = [_check(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        kt, vt = args or (Any, Any)
        return {_check(k, kt, where): _check(v, vt, join(where, str(k))) for k, v in value.items()}
    if tp is float:
        if isinstance(value, str):  # PyYAML (YAML 1.1) reads 1e-3 as a string; accept exactly that spelling
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):  # no setting of ours means nan or inf; null says "none"
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict | None, where: str = "") -> T:
    """Build dataclass `cls` from `data`; unknown keys, missing required keys, wrong types and
    out-of-range values raise ConfigError naming the key's path (prefixed by `where`)."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for k in data:
        if k not in fields:
            raise unknown_key(where, k, fields)
    kwargs = {}
    for name, f in fields.items():
        key = join(where, name)
        if name in data:
            kwargs[name] = _check(data[name], hints[name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{key}: required key is missing")
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        try:
            validate()
        except ConfigError:
            raise
        except FieldError as e:
            raise ConfigError(f"{join(where, e.key) or cls.__name__}: {e}") from None
        except ValueError as e:
            raise ConfigError(f"{where or cls.__name__}: {e}") from None
    return obj


def check_range(
    obj: Any, *names: str, ge: float | None = None, gt: float | None = None, le: float | None = None
) -> None:
    """FieldError for the first named field (or item of a list field) outside the bounds; None passes."""
    for name in names:
        value = getattr(obj, name)
        items = (
            [(name, value)]
            if not isinstance(value, (list, tuple))
            else [(f"{name}[{i}]", v) for i, v in enumerate(value)]
        )
        for key, v in items:
            if v is None:
                continue
            if (ge is not None and v < ge) or (gt is not None and v <= gt) or (le is not None and v > le):
                bounds = " and ".join(
                    s
                    for s in (
                        ge is not None and f">= {ge}",
                        gt is not None and f"> {gt}",
                        le is not None and f"<= {le}",
                    )
                    if s
                )
                raise FieldError(key, f"must be {bounds}, got {v!r}")


def to_dict(obj: Any) -> dict:
    """A config (dataclass) as a plain dict (`plain`), e.g. for logging or YAML."""
    if not (dataclasses.is_dataclass(obj) and not isinstance(obj, type)):
        raise TypeError(f"to_dict takes a dataclass instance, got {type(obj).__name__}")
    return plain(obj)
