"""Data-parallel training under torchrun (torch.distributed): one code path for 1 and N processes.

    torchrun --standalone --nproc-per-node 2 -m training zero_dce_pp --config cpu      # 2 CPU processes (gloo)
    torchrun --nnodes 2 --node-rank R --master-addr HOST --nproc-per-node 8 -m training dln --config gpu  # NCCL

Every process builds the same global batch of a step from (seed, step) and makes only its shard of it
(training.data.CropBatches.set_shard); gradients are averaged over the processes before the gradient-norm clip
and the optimizer step, so N processes take the same steps as one process with the same global batch (the
losses are means over the batch; batch-coupled terms, e.g. the relativistic GAN losses' batch means and
BatchNorm statistics, see only the process's shard). Rank 0 alone writes checkpoints, CSVs, figures, weights
and the card, and broadcasts a resumed state, so resuming works with another world size and without a shared
folder.

Why gradients are averaged here rather than by DistributedDataParallel: the GAN tasks step two optimizers per
training step, with backward passes through both networks (the discriminator's loss reaches the generator's
output, the generator's loss the frozen discriminators); averaging exactly the parameters of the optimizer about
to step, once per update, in one flat all-reduce, is correct for every task without DDP's per-forward
bookkeeping (find_unused_parameters, no_sync). The cost: no overlap of communication with the backward pass,
which matters little for these small networks.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, batch: int, what: str = "batch") -> slice:
        """This process's items of a global batch of `batch` items (equal shards: the mean of the shard
        means is the global mean)."""
        if batch % self.size:
            raise SystemExit(f"the {what} of {batch} does not split evenly over {self.size} processes; "
                             f"choose --batch as a multiple of the process count")
        n = batch // self.size
        return slice(self.rank * n, (self.rank + 1) * n)


def init(device: str = "auto") -> World:
    """Joins the process group when launched by torchrun (WORLD_SIZE > 1): NCCL for CUDA, gloo for CPU.
    A single process (plain `python -m training`) needs no process group."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return World(dist.get_rank(), dist.get_world_size(), local)


def current() -> World:
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def finish() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def average_gradients(params: list[torch.Tensor], world: World) -> None:
    """Every parameter's .grad replaced by its mean over the processes, in one flat all-reduce."""
    if world.size == 1 or not params:
        return
    grads = [p.grad for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world.size
    for g, part in zip(grads, flat.split([g.numel() for g in grads])):
        g.copy_(part.view_as(g))


def average_numbers(values: dict[str, float], world: World) -> dict[str, float]:
    """The logged numbers of a step (each process's shard losses) averaged over the processes."""
    if world.size == 1 or not values:
        return values
    t = torch.tensor([float(v) for v in values.values()], dtype=torch.float64)
    dist.all_reduce(t)
    return dict(zip(values, (t / world.size).tolist()))


def broadcast(obj, world: World):
    """rank 0's object on every process (pickled; for checkpoint states and decisions)."""
    if world.size == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(world: World) -> None:
    if world.size > 1:
        dist.barrier()
