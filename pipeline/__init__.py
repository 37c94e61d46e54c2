"""pipeline: thin orchestration over `vjepa`. One function per DVC stage reads its params section,
calls the science, writes the stage's outputs and metrics JSON, and logs the same to MLflow."""
