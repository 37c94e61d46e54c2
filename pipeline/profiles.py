"""Profiles: profiles/<name>.yaml holds either a complete params file (no `base`: the default
profile, copied verbatim so its comments stay) or `base: <other profile>` plus only the keys that
differ from it. `python -m pipeline profile NAME` resolves the chain, validates the result and
writes it to params.yaml, the complete file DVC reads (`dvc params diff`, `dvc exp run -S` work
on it as on any params file).

Merging: mappings merge key by key; lists and scalars are replaced; a mapping tagged `!replace`
replaces the base's mapping whole (e.g. a smaller ablation grid).

Profiles keep their results apart: dvc.yaml writes metrics/<profile>/ and reports/<profile>/, and
a switch keeps each profile's dvc.lock under .dvc/tmp/profile-locks/<profile>.lock (DVC's own
untracked scratch folder): the lock of the profile being left is saved there and the lock of the
one selected is put back (none yet: no dvc.lock, so its first `dvc repro` runs, or reuses DVC's
run cache). Switching to smoke, running and switching back thus leaves params.yaml, dvc.lock,
metrics/default/ and reports/default/ as committed. The profile being left is read so that a
broken params.yaml still names it (active_profile); a lock whose profile cannot be told is never
dropped: the switch refuses instead.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
from pathlib import Path

import yaml

from pipeline.config import SECTIONS, Params, ParamsLoader, check_profile_name, from_mapping, read_yaml
from vjepa.config import ConfigError, to_dict

ROOT = Path(__file__).resolve().parent.parent
LOCKS = Path(".dvc") / "tmp" / "profile-locks"
PROFILE_LINE = re.compile(r"^profile:[ \t]*['\"]?([^'\"\s#]*)", re.MULTILINE)  # params.yaml's top-level key, unparsed


class Replace(dict):
    """A mapping that replaces the base's mapping instead of merging into it (YAML tag `!replace`)."""


class _Loader(ParamsLoader):
    """The params loader (duplicate keys refused) plus the `!replace` tag."""


_Loader.add_constructor("!replace", lambda loader, node: Replace(loader.construct_mapping(node, deep=True)))


def available(root: Path = ROOT) -> list[str]:
    return sorted(p.stem for p in (root / "profiles").glob("*.yaml"))


def profile_file(name: str, root: Path = ROOT) -> Path:
    """profiles/<name>.yaml for a name listed in profiles/ (no paths: `../dvc` is refused)."""
    check_profile_name(name)
    names = available(root)
    if name not in names:
        raise ConfigError(f"no profile '{name}' in {root / 'profiles'}; available: {names}")
    return root / "profiles" / f"{name}.yaml"


def _overlay(base: dict, override: dict) -> dict:
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, Replace):
            out[k] = dict(v)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _overlay(out[k], v)
        else:
            out[k] = v
    return out


def _plain(v):
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def _read_profile(path: Path) -> dict:
    return read_yaml(path, _Loader)


def resolve(name: str, root: Path = ROOT, _seen: tuple[str, ...] = ()) -> dict:
    """The complete params mapping of a profile: its base chain resolved, its overrides on top."""
    if name in _seen:
        raise ConfigError(f"profiles: base chain loops: {' -> '.join((*_seen, name))}")
    data = _read_profile(profile_file(name, root))
    base = data.pop("base", None)
    if base is not None:
        data = _overlay(resolve(str(base), root, (*_seen, name)), data)
    data["profile"] = name
    return _plain(data)


def _defaults(resolved: dict) -> dict:
    """The sections a profile may leave out (they have defaults) but that dvc.yaml names as params:
    DVC refuses a params file without them, so they are written out with their default values."""
    fields = {f.name: f for f in dataclasses.fields(Params)}
    out = {}
    for name in SECTIONS:
        f = fields[name]
        if (
            name in resolved
            or name == "sources"
            or f.default_factory is dataclasses.MISSING
            and f.default is dataclasses.MISSING
        ):
            continue
        value = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        out[name] = to_dict(value) if dataclasses.is_dataclass(value) else value
    return out


def params_text(name: str, root: Path = ROOT) -> str:
    """The params.yaml of profile `name`, validated: a complete profile verbatim (comments kept),
    an override profile resolved; either with the default of every section it leaves out."""
    resolved = resolve(name, root)
    src = profile_file(name, root)
    complete = "base" not in _read_profile(src)
    if not complete:
        resolved.pop("sources", None)  # a base's list names the base's paths: derived anew below
    P = from_mapping(resolved, f"profiles/{name}.yaml (resolved)")
    missing = {**_defaults(resolved), **({} if "sources" in resolved else {"sources": P.derived_sources()})}
    if complete:
        text = src.read_text()
        if missing:
            text += "\n# Sections this profile leaves out, at their defaults (dvc.yaml names them):\n" + yaml.safe_dump(
                missing, sort_keys=False, width=120
            )
        return text
    return (
        f"# Generated by `python -m pipeline profile {name}` from profiles/{name}.yaml and its bases.\n"
        f"# Edit the profile, not this file.\n" + yaml.safe_dump({**resolved, **missing}, sort_keys=False, width=120)
    )


def active_profile(root: Path = ROOT) -> tuple[str | None, str]:
    """(name, where it was read) of the profile that params.yaml and dvc.lock belong to, read so
    that a broken params.yaml still names it: params.yaml's `profile` key (parsed, or its top-level
    `profile:` line when the file does not parse), else the one profile dvc.lock's stages recorded.
    (None, why) when none of them holds a valid profile name."""
    params, lock = root / "params.yaml", root / "dvc.lock"
    found = []
    if params.is_file():
        try:
            found.append((read_yaml(params).get("profile"), "params.yaml"))
        except ConfigError:
            line = PROFILE_LINE.search(params.read_text(errors="replace"))
            found.append((line and line.group(1), "the `profile:` line of params.yaml, which does not load"))
    if lock.is_file():
        found.append((_lock_profile(lock), "the params that dvc.lock recorded"))
    for name, where in found:
        try:
            return check_profile_name(name), where
        except ConfigError:
            continue
    return None, "neither params.yaml nor dvc.lock names a valid profile"


def _lock_profile(lock: Path) -> str | None:
    """The `profile` param every stage of a dvc.lock ran with, when they agree (None otherwise)."""
    try:
        stages = yaml.safe_load(lock.read_text()).get("stages") or {}
        names = {s["params"]["params.yaml"]["profile"] for s in stages.values()}
    except (yaml.YAMLError, AttributeError, KeyError, TypeError):
        return None
    return names.pop() if len(names) == 1 else None


def _copy_atomic(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def switch_lock(old: str | None, new: str, root: Path = ROOT, why: str = "") -> None:
    """Save dvc.lock as profile `old`'s and put profile `new`'s back (or none). A dvc.lock whose
    profile is unknown (`old` None) is never dropped: the switch refuses and changes nothing."""
    if old == new:
        return
    lock, store = root / "dvc.lock", root / LOCKS
    if lock.exists():
        if old is None:
            raise ConfigError(
                f"{lock}: cannot tell which profile it belongs to ({why}), so switching would lose "
                "it; nothing was changed. Put the profile's name on params.yaml's `profile:` line, "
                "or move dvc.lock away yourself, and switch again"
            )
        store.mkdir(parents=True, exist_ok=True)
        _copy_atomic(lock, store / f"{check_profile_name(old)}.lock")
    saved = store / f"{new}.lock"
    if saved.exists():
        _copy_atomic(saved, lock)
    else:
        lock.unlink(missing_ok=True)  # saved above: the new profile has not run yet


def use_profile(name: str, root: Path = ROOT) -> Path:
    """Make profile `name` active: params.yaml resolved from it, dvc.lock switched to its own.
    Returns the profile file it read."""
    text = params_text(name, root)  # an unknown name or an invalid profile fails before anything is written
    old, where = active_profile(root)
    if old is not None and where != "params.yaml" and old != name:
        print(f"dvc.lock is saved as the '{old}' profile's: that name is read from {where}", flush=True)
    switch_lock(old, name, root, where)
    dst = root / "params.yaml"
    tmp = dst.with_suffix(".yaml.tmp")
    tmp.write_text(text)
    os.replace(tmp, dst)
    return profile_file(name, root)
