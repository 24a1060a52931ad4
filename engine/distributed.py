"""One `compute_init()` for every launch: a plain process, one GPU, or torchrun with many.

Under torchrun (RANK / WORLD_SIZE / LOCAL_RANK in the environment) it joins the default process
group: nccl on CUDA, gloo on CPU. The same training command therefore runs unchanged as
`workbench rm train ...` or `torchrun --nproc_per_node=N -m workbench rm train ...`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_distributed(self) -> bool:
        """Whether this context spans more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, which reads data, writes files and opens the store."""
        return self.rank == 0


def compute_init(device: str = "auto") -> DistContext:
    """Join the process group when launched by torchrun; pick the device."""
    rank = int(os.environ.get("RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        target = torch.device("cuda", local_rank)
        torch.cuda.set_device(target)
    else:
        target = torch.device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if target.type == "cuda" else "gloo")
    return DistContext(rank, world_size, local_rank, target)


def barrier() -> None:
    """Wait for every rank (nothing to do without a process group)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum a few floats over all ranks (a no-op without a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def broadcast_object(value, src: int = 0):
    """Send a picklable object from `src` to every rank."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    box = [value]
    dist.broadcast_object_list(box, src=src)
    return box[0]
