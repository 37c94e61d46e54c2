"""Training loops: pretraining (pretrain.py, around the JEPA step) and end-to-end finetuning
(finetune.py), with checkpoints, exact resume and data-parallel batches (batches.py)."""
