"""Loaded at start-up by every Python process of a test that puts this folder first on PYTHONPATH:
the GPU machine lacks the orchestration, so importing dvc, mlflow or prefect fails here as it would
there, and at exit the process writes the top-level modules it imported, with the distributions
that provide them, to GPU_IMAGE_IMPORT_LOG/<pid>.json for the test to compare with the image."""

import atexit
import importlib.abc
import json
import os
import sys
import sysconfig

BLOCKED = ("dvc", "mlflow", "prefect")


class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(
                f"No module named '{name}' (the GPU machine has no {name.split('.')[0]})", name=name
            )
        return None


sys.meta_path.insert(0, _Block())


def _top_level(file):
    """The importable top-level name a file lies under (pandas for .../site-packages/pandas/_libs/x.so,
    which may be registered under another name), by the sys.path entry holding it."""
    real = os.path.realpath(file)
    for entry in sorted((os.path.realpath(p) for p in sys.path if p), key=len, reverse=True):
        if real.startswith(entry + os.sep):
            return os.path.relpath(real, entry).split(os.sep)[0].split(".")[0]
    return None


def _write_log():
    from importlib.metadata import packages_distributions

    dists = packages_distributions()
    stdlib = {os.path.realpath(sysconfig.get_paths()[k]) for k in ("stdlib", "platstdlib")}
    mods = {}
    for name, mod in list(sys.modules.items()):
        if "." in name or name.startswith("__") or name in sys.stdlib_module_names:
            continue
        file = getattr(mod, "__file__", None)
        if not file or os.path.dirname(os.path.realpath(file)) in stdlib:
            continue  # built in, made by an extension (Cython's), or the interpreter's own (_sysconfigdata)
        mods[name] = {"file": file, "dists": dists.get(_top_level(file) or name, [])}
    path = os.path.join(os.environ["GPU_IMAGE_IMPORT_LOG"], f"{os.getpid()}.json")
    with open(path, "w") as f:
        json.dump({"argv": sys.argv, "modules": mods}, f)


if os.environ.get("GPU_IMAGE_IMPORT_LOG"):
    atexit.register(_write_log)
