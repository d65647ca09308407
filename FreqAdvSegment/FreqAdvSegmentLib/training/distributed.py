"""Many processes, one model: torchrun / PyTorch DDP helpers.

Under ``torchrun --nproc_per_node N`` (or any launcher that sets RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR and MASTER_PORT) :func:`init_distributed` joins the process group: NCCL with one GPU
per process on CUDA machines, gloo on the CPU. Without those variables everything runs as a
single process and every helper here is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from ..job.inference import resolve_device


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: rank, world size, its device, and whether it writes files."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        """Only rank 0 writes files and prints progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_distributed() -> bool:
    """True when a launcher (torchrun) started several processes."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: str = "auto") -> DistContext:
    """Join the process group when launched by torchrun; pick this process's device.

    ``device`` ("auto", "cpu", "cuda") is the kind; under DDP on CUDA each process takes
    ``cuda:LOCAL_RANK``.
    """
    base = resolve_device(device)
    if not launched_distributed() and not (dist.is_available() and dist.is_initialized()):
        return DistContext(device=base)
    if not dist.is_available():
        raise RuntimeError("this PyTorch build has no torch.distributed; run a single process")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if base.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPU(s) are visible; "
                "start at most one process per GPU (torchrun --nproc_per_node)"
            )
        base = torch.device("cuda", local_rank)
        torch.cuda.set_device(base)
    created = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if base.type == "cuda" else "gloo")
        created = True
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, base, created)


def cleanup(ctx: DistContext) -> None:
    """Leave the process group if :func:`init_distributed` joined it."""
    if ctx.initialized_here and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def all_gather_objects(ctx: DistContext, obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank."""
    if not ctx.distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(ctx: DistContext, obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def any_rank(ctx: DistContext, flag: bool) -> bool:
    """True on every rank if ``flag`` is true on any (e.g. "stop now"), so all ranks agree."""
    if not ctx.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=ctx.device if ctx.device.type == "cuda" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The network inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
