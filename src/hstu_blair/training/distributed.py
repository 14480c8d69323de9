"""torch.distributed setup for runs launched with ``torchrun`` (NCCL on GPUs, gloo on CPU).

Teardown order matters (:func:`teardown_distributed`): every rank first waits at a barrier (no
rank leaves while another still runs a collective), then the objects holding the process group
(the DDP wrapper and its reducer, often kept alive by reference cycles) are collected, then the
group is destroyed, all while the interpreter is fully alive. A group whose gloo worker threads
are still alive at interpreter shutdown can abort the process (``terminate called without an
active exception``, SIGABRT).
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup_distributed(device: str) -> DistInfo:
    """Join the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1); otherwise a no-op.

    The backend is NCCL for CUDA devices and gloo for CPU.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank)


def teardown_distributed(info: DistInfo, wait_for_peers: bool = True) -> None:
    """Leave the process group cleanly (see the module docstring); a no-op outside ``torchrun``.

    Args:
        info: this process's rank information.
        wait_for_peers: barrier before destroying (skip it on an error path, where a peer may be
            gone and the barrier would only time out).
    """
    if not (info.enabled and dist.is_initialized()):
        return
    if wait_for_peers:
        dist.barrier()
    gc.collect()  # the DDP reducer keeps the group's C++ object (and its threads) alive until collected
    dist.destroy_process_group()
    gc.collect()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def broadcast_from_main(value: object, info: DistInfo) -> object:
    """``value`` as the main rank has it, on every rank (any picklable object)."""
    if not info.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_concat(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Concatenate a 1-D tensor of any length from every rank (rank order) on every rank."""
    if not info.enabled:
        return values
    chunks = [None] * info.world_size
    dist.all_gather_object(chunks, values.cpu())
    return torch.cat([c for c in chunks if c is not None])


def mean_across(value: float, info: DistInfo) -> float:
    """Average of a scalar over ranks."""
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item()) / info.world_size
