"""Micro-batches built from the keys of ShardedBatchSampler (vjepa.infra.distributed), for a DataLoader
with batch_size=None: how the training loops (pretraining, finetuning) read their data."""

from __future__ import annotations

import torch

from vjepa.infra.runtime import seeded


def identity(x):
    """The DataLoader's collate_fn for batches that KeyedBatches already collated (a named function:
    worker processes pickle it)."""
    return x


class KeyedBatches(torch.utils.data.Dataset):
    """One collated micro-batch per sampler key (step, shard, epoch, [(index, item seed), ...]), built
    inside a DataLoader worker when num_workers > 0: each item is drawn with the python, numpy and
    torch RNGs seeded by its item seed (then the caller's RNG states are put back), so augmentations
    are a function of the data position alone, which exact resume needs."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def item(self, index: int, seed: int):
        with seeded(seed):
            return self.dataset[index]

    def items(self, key) -> list:
        """The micro-batch's items, uncollated (None for a file that could not be read)."""
        step, shard, epoch, keys = key
        if hasattr(self.dataset, "set_epoch"):  # datasets with their own seeded draws key them by epoch
            self.dataset.set_epoch(epoch)
        return [self.item(i, s) for i, s in keys]

    def __getitem__(self, key) -> dict:
        from vjepa.data import collate  # the data layer (pandas, decoders) loads only for the loop

        return {**collate(self.items(key)), "step": key[0], "shard": key[1]}
