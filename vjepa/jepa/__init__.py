"""The method: 3D multi-block masks (masks.py) and the JEPA step (step.py): L1 prediction of the EMA
target encoder's features of masked tokens from the context tokens, and the EMA update."""
