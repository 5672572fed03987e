"""Data-parallel helpers. Every collective is guarded, so a single CPU process needs no process group."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

__all__ = ["is_distributed", "rank", "world_size", "is_main", "init_from_env", "all_reduce_mean", "device_for"]


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    return rank() == 0


def init_from_env(device: torch.device) -> bool:
    """Join the process group that ``torchrun`` describes in the environment: nccl for a GPU ``device``, else gloo.

    Returns True when running with more than one process.
    """
    if is_distributed():
        return world_size() > 1
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return True


def device_for(requested: str = "auto") -> torch.device:
    """``"auto"``: this process's GPU under torchrun when there is one, else the CPU.

    Raises:
        ValueError: a GPU was asked for and none is visible, or torchrun started more processes on this machine
            than it has GPUs.
    """
    if requested != "auto":
        device = torch.device(requested)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device={requested!r} was asked for, but torch sees no GPU here; use 'auto' or 'cpu'")
        return device
    if not torch.cuda.is_available():
        return torch.device("cpu")
    local_rank, gpus = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
    if local_rank >= gpus:
        raise ValueError(
            f"this is process {local_rank} of torchrun on a machine with {gpus} GPU(s); start at most {gpus} "
            "processes per node (--nproc_per_node) or train on the CPU with TrainConfig(device='cpu')"
        )
    return torch.device("cuda", local_rank)


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean of ``value`` over processes (the value itself in one process)."""
    if not is_distributed():
        return value
    value = value.clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / world_size()
