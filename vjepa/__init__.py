"""vjepa: the science of the V-JEPA reproduction (models, masks, data, training, evaluation).

Free of DVC, Prefect and MLflow: it takes typed configs and paths and returns results.
`vjepa.load_encoder(path_or_name)`, `vjepa.load_processor(path_or_name)` (its preprocessing) and
`vjepa.load_classifier(probe, encoder)` load pretrained models in one line (vjepa.hub; imported on first use, so
`import vjepa` stays light).
"""

__version__ = "0.1.0"

_HUB = ("load_encoder", "load_processor", "load_classifier", "load_probe")


def __getattr__(name):
    if name in _HUB:
        import importlib  # by name: a module that imports only vjepa.<something> never loads the hub (nor

        hub = importlib.import_module("vjepa.hub")  # lists it among its DVC deps, tests/test_dvc_deps.py)
        return getattr(hub, name)
    raise AttributeError(f"module 'vjepa' has no attribute {name!r}")
