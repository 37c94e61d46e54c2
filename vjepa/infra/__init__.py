"""Infrastructure under the science: the typed config tree (configs.py, config.py), runtime helpers
(runtime.py), checkpoint files (checkpoint.py), data-parallel processes (distributed.py) and the
schedules (schedules.py)."""
