"""vjepa: the science of the V-JEPA reproduction (models, masks, data, training, evaluation).

Free of DVC, Prefect and MLflow: it takes typed configs and paths and returns results.
"""
__version__ = "0.1.0"
