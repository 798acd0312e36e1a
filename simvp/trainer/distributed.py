"""The process a run trains in: its device, its place in a process group, deterministic kernels.

Under ``torchrun`` (``WORLD_SIZE > 1``) `setup` starts the process group (NCCL on CUDA, gloo on the
CPU). A group started here stays up for later calls in the process (destroying and re-creating one
under torchrun is racy) and is destroyed at exit; an existing group is used as it is.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


class DeviceError(ValueError):
    """A device this machine does not have (e.g. CUDA without a GPU)."""


@dataclass
class _Context:
    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"`` (this process's local GPU) or ``"cuda:N"``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"device {name!r} requested but CUDA is not available on this machine")
        return torch.device(name if ":" in name else f"cuda:{local_rank}")
    return torch.device("cpu")


def _destroy_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def setup(device_name: str) -> _Context:
    """This process's device, rank and world size, starting the process group under torchrun."""
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        device = resolve_device(device_name, int(os.environ.get("LOCAL_RANK", rank)))
        if device.type == "cuda":
            torch.cuda.set_device(device)
        return _Context(device, rank, world)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_name, int(os.environ.get("LOCAL_RANK", "0")))
    if world <= 1:
        return _Context(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    atexit.register(_destroy_group)
    return _Context(device, dist.get_rank(), dist.get_world_size())


@contextlib.contextmanager
def determinism(deterministic: bool, device: torch.device):
    """Deterministic kernels (or cudnn autotuning when not), restored afterwards."""
    saved = (torch.are_deterministic_algorithms_enabled(),
             torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        # warn_only: a few CUDA backward kernels (replication pad, adaptive pooling) have no
        # deterministic version; they warn instead of stopping the run.
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved[2], saved[3]


def broadcast(obj: Any, ctx: _Context) -> Any:
    """Rank 0's `obj` (any picklable object) on every rank."""
    if ctx.world_size == 1:
        return obj
    box = [obj if ctx.main else None]
    dist.broadcast_object_list(box, src=0, device=ctx.device if ctx.device.type == "cuda" else None)
    return box[0]


def all_reduce_mean(values: torch.Tensor, ctx: _Context) -> torch.Tensor:
    """The mean of `values` over the ranks (in place)."""
    if ctx.world_size > 1:
        dist.all_reduce(values)
        values /= ctx.world_size
    return values


def sync_buffers(model: nn.Module, ctx: _Context) -> None:
    """Rank 0's buffers (BatchNorm running statistics) to every rank."""
    if ctx.world_size > 1:
        for buffer in model.buffers():
            dist.broadcast(buffer.data, src=0)


def wrap(model: nn.Module, ctx: _Context, compile: bool, mode: str = "default") -> nn.Module:
    """The module that trains: DDP around `model` across ranks, then compiled when asked, in `mode`
    (compiling the DDP wrapper lets the compiler overlap the gradient all-reduce with the backward pass)."""
    module = model
    if ctx.world_size > 1:
        module = nn.parallel.DistributedDataParallel(
            model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
    if compile:
        module.compile(mode=mode)
    return module


def barrier(ctx: _Context) -> None:
    if ctx.world_size > 1:
        dist.barrier()
