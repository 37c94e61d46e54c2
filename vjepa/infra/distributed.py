"""Data-parallel training on torch.distributed: the process environment torchrun sets up, DDP
wrapping, small collectives, and a resumable sharded sampler.

Launch with torchrun (one node or many), e.g. `torchrun --nproc_per_node 8 ...` or
`torchrun --nnodes 16 --nproc_per_node 8 --rdzv_endpoint host:port ...`; the process group is
initialised from the environment (env://), NCCL on GPUs and gloo on CPU. Without torchrun
everything runs as a single process (rank 0 of 1).

Batch layout. A global batch of G = batch_size x world_size x accumulation_steps clips is cut into
world_size x accumulation_steps *shards* of batch_size clips. Shard k = rank * accumulation_steps +
micro_step gets the k-th slice of the global batch, and its masks are drawn with shard id k. So one
process with accumulation 2 sees exactly the micro-batches and masks that two processes without
accumulation see, and both compute the same update up to float summation order.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, Sampler, Subset

from vjepa.infra.runtime import mix_seed


@dataclass
class DistEnv:
    """Where this process sits: its rank among world_size, its local rank on the node, its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # True when init_distributed created the process group (and should close it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def shard_ids(self, accumulation_steps: int) -> list[int]:
        """Shards this process handles, in micro-step order."""
        return [self.rank * accumulation_steps + m for m in range(accumulation_steps)]


def init_distributed(device: str | None = "auto") -> DistEnv:
    """Read torchrun's RANK / WORLD_SIZE / LOCAL_RANK and join the process group (env://).
    device: 'auto' or None (cuda:LOCAL_RANK when CUDA is available, else cpu), 'cpu' or 'cuda'; a
    single process may also name one GPU ('cuda:1')."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = device or "auto"
    if device.startswith("cuda:") and device[5:].isdigit():
        if world_size > 1:
            raise ValueError(f"device {device!r} names one GPU; under torchrun each process takes its own: use 'cuda'")
        local_rank, device = int(device[5:]), "cuda"
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but CUDA is not available")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    owns = False
    if world_size > 1 and not dist.is_initialized():
        kw = {"device_id": dev} if use_cuda else {}
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", init_method="env://", **kw)
        owns = True
    if dist.is_initialized():
        rank, world_size = dist.get_rank(), dist.get_world_size()
    return DistEnv(rank, world_size, local_rank, dev, owns)


def shutdown(env: DistEnv) -> None:
    """Leave the process group if init_distributed created it."""
    if env.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def wrap_ddp(module: torch.nn.Module, env: DistEnv, find_unused: bool = False) -> torch.nn.Module:
    """DDP over all processes (a no-op for one process). Every trainable parameter is used in each
    step unless `find_unused` says otherwise (V-JEPA 2's mask token of a clip length that a process
    drew no clip of): DDP then searches the graph for the parameters left without a gradient."""
    if not env.distributed:
        return module
    ids = [env.device.index] if env.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=find_unused)


def all_reduce_sum(x: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Sum of a tensor over processes (a copy; the input is left alone)."""
    x = x.detach().clone()
    if env.distributed:
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def gather_objects(obj, env: DistEnv) -> list:
    """Every process's `obj`, in rank order (a collective: all ranks must call it)."""
    if not env.distributed:
        return [obj]
    out = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


@contextmanager
def process_group(device: str | None = "auto"):
    """init_distributed for the length of a `with` block, then shutdown (a group someone else made
    is left open, so a stage can hold one group over several runs)."""
    env = init_distributed(device)
    try:
        yield env
    finally:
        shutdown(env)


def map_blocks(fn: Callable[[Dataset], Any], dataset: Dataset, env: DistEnv) -> list:
    """fn over this process's contiguous block of `dataset`, and every process's result in rank
    order, so the blocks read as the items in their order (evaluation, feature caching); one
    process: [fn(dataset)]. A collective: all ranks must call it."""
    if not env.distributed:
        return [fn(dataset)]
    n = len(dataset)
    block = range(env.rank * n // env.world_size, (env.rank + 1) * n // env.world_size)
    return gather_objects(fn(Subset(dataset, block)), env)


def sharded_batches(order: Sequence[int], batch_size: int, env: DistEnv) -> list[list[int]]:
    """The epoch `order` cut into global batches of batch_size x world_size items, and this process's
    slice of each (rank r: items [r*B, (r+1)*B) of the global batch; may be empty at the end). One
    process gets the batches of `order` as they are."""
    g = batch_size * env.world_size
    r = env.rank * batch_size
    return [list(order[i : i + g][r : r + batch_size]) for i in range(0, len(order), g)]


def all_reduce_grads(params: Iterable[torch.nn.Parameter], env: DistEnv) -> None:
    """Sum the gradients of `params` over processes in one flat collective (a parameter without a
    gradient counts as zeros). The caller weights each process's loss by its share of the global
    batch, so the sum is the gradient of the global mean."""
    if not env.distributed:
        return
    params = [p for p in params if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.flatten() for p in params])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    for p, g in zip(params, flat.split([p.numel() for p in params])):
        p.grad.copy_(g.view_as(p))


def broadcast_buffers(module: torch.nn.Module, env: DistEnv) -> None:
    """Rank 0's buffers (BatchNorm's running statistics) on every process, as DDP keeps them."""
    if env.distributed:
        for b in module.buffers():
            dist.broadcast(b, src=0)


def global_count(n: int, env: DistEnv) -> int:
    """The sum of an integer over processes."""
    return int(all_reduce_sum(torch.tensor([n], device=env.device), env).item()) if env.distributed else n


class ShardedBatchSampler(Sampler):
    """Yields this process's micro-batches as (step, shard, epoch, keys), iteration by iteration
    from `start_step` (0-based iterations), for a DataLoader with batch_size=None.

    The order of each epoch is a permutation seeded by (seed, epoch), or order_fn(epoch) (e.g. a
    weighted draw over a mixture of datasets); an epoch holds
    len(dataset) // G global batches (the remainder is dropped, as DistributedSampler's drop_last).
    Iteration i takes positions [i*G, (i+1)*G) of the running order, and shard k the slice
    [k*B, (k+1)*B) of those. Each key is (dataset index, item seed), the item seed a function of
    (seed, epoch, position), so random augmentations are reproducible whatever the worker count
    and across resumes.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        accumulation_steps: int,
        env: DistEnv,
        seed: int,
        total_steps: int,
        start_step: int = 0,
        order_fn: Callable[[int], Sequence[int]] | None = None,
    ):
        self.n, self.batch_size, self.accum = num_samples, batch_size, accumulation_steps
        self.global_batch = batch_size * env.world_size * accumulation_steps
        self.steps_per_epoch = num_samples // self.global_batch
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"the dataset has {num_samples} clips, fewer than one global batch of {self.global_batch} "
                f"(batch_size {batch_size} x {env.world_size} processes x {accumulation_steps} accumulation steps)"
            )
        self.shards = env.shard_ids(accumulation_steps)
        self.seed, self.total_steps, self.start_step, self.order_fn = seed, total_steps, start_step, order_fn
        self._perm: tuple[int, torch.Tensor] | None = None

    def position(self, step: int) -> dict:
        """Data position before 0-based iteration `step`: epoch and clips consumed in it."""
        return {
            "epoch": step // self.steps_per_epoch,
            "index_in_epoch": (step % self.steps_per_epoch) * self.global_batch,
            "steps_per_epoch": self.steps_per_epoch,
        }

    def order(self, epoch: int) -> torch.Tensor:
        if self._perm is None or self._perm[0] != epoch:
            if self.order_fn is not None:
                order = torch.as_tensor(self.order_fn(epoch), dtype=torch.long)
                if len(order) < self.steps_per_epoch * self.global_batch:
                    raise ValueError(
                        f"order_fn({epoch}) gave {len(order)} indices, fewer than an epoch's "
                        f"{self.steps_per_epoch * self.global_batch}"
                    )
            else:
                order = torch.randperm(self.n, generator=torch.Generator().manual_seed(mix_seed(self.seed, epoch)))
            self._perm = (epoch, order)
        return self._perm[1]

    def micro_batch(self, step: int, shard: int) -> list[tuple[int, int]]:
        """Keys (index, item seed) of shard `shard` at 0-based iteration `step`."""
        epoch, within = divmod(step, self.steps_per_epoch)
        perm = self.order(epoch)
        first = within * self.global_batch + shard * self.batch_size
        return [(int(perm[p]), mix_seed(self.seed, epoch, p)) for p in range(first, first + self.batch_size)]

    def __iter__(self):
        for step in range(self.start_step, self.total_steps):
            for shard in self.shards:
                yield step, shard, step // self.steps_per_epoch, self.micro_batch(step, shard)

    def __len__(self) -> int:
        return (self.total_steps - self.start_step) * len(self.shards)


__all__ = [
    "DistEnv",
    "init_distributed",
    "shutdown",
    "wrap_ddp",
    "all_reduce_sum",
    "gather_objects",
    "barrier",
    "process_group",
    "map_blocks",
    "sharded_batches",
    "all_reduce_grads",
    "broadcast_buffers",
    "global_count",
    "ShardedBatchSampler",
]
