"""Data parallelism over processes with torch.distributed (``torchrun --nproc_per_node N``).

Every process draws the same global batch (same seed, same shuffle generator) and takes its own
contiguous slice of it; each scales its loss by its share of the global batch, so the summed
gradients (one all-reduce per tensor) are the gradient of the global batch's mean loss, as one
process computes it. Parameters stay identical on all processes; only rank 0 evaluates, writes
checkpoints and logs. Backend: gloo on the CPU, nccl on CUDA.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .metrics import Tally
from ..data.batch import Batch


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def active(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_size() -> int:
    """Processes torchrun started (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def setup(device: torch.device) -> World:
    """Join the process group torchrun describes in the environment; a single process otherwise."""
    size = launched_size()
    if size <= 1:
        return World()
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return World(dist.get_rank(), dist.get_world_size())


def local_device(device: torch.device) -> torch.device:
    """Each process its own GPU (LOCAL_RANK) where torchrun runs several on one machine."""
    if device.type == "cuda" and launched_size() > 1 and device.index is None:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def shard(batch: Batch, world: World) -> tuple[Batch, float]:
    """This process's contiguous slice of a global batch, and its share of the batch's samples."""
    total = batch.x.shape[1]
    bounds = [total * r // world.size for r in range(world.size + 1)]
    lo, hi = bounds[world.rank], bounds[world.rank + 1]
    per_step = batch.target.dim() == 2  # [T, B] labels per step, else [B]
    target = batch.target[:, lo:hi] if per_step else batch.target[lo:hi]
    annotated = batch.annotated[:, lo:hi] if batch.annotated is not None else None
    return Batch(batch.x[:, lo:hi], target, annotated), (hi - lo) / total


def all_sum(values: torch.Tensor) -> torch.Tensor:
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def sum_gradients(model: torch.nn.Module) -> None:
    """Sum each parameter's gradient over the processes (a process without samples adds zeros)."""
    for p in model.parameters():
        if p.requires_grad:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            all_sum(p.grad)


def sum_tally(tally: Tally) -> Tally:
    """Training metrics over all processes' slices (each counted the samples it saw)."""
    fields = ("correct", "total", "correct_annotated", "total_annotated", "spikes", "samples", "loss_sum")
    summed = all_sum(torch.tensor([float(getattr(tally, f)) for f in fields], dtype=torch.float64))
    values = {f: (v.item() if f in ("spikes", "loss_sum") else int(v.item())) for f, v in zip(fields, summed)}
    return Tally(**values, steps=tally.steps)


def barrier(world: World) -> None:
    if world.active:
        dist.barrier()


def shutdown(wait: bool = True) -> None:
    """Leave the process group. Every process must, before it exits: a gloo group still alive at
    interpreter teardown aborts the process ("terminate called without an active exception",
    SIGABRT) when its worker threads are destroyed, which fails the whole torchrun job."""
    if dist.is_initialized():
        if wait:  # after a normal run rank 0 may still be evaluating; after an error, no waiting
            dist.barrier()
        dist.destroy_process_group()
