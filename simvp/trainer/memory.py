"""A device that runs out of memory: one error that says which batch size failed and what to try.

`torch.OutOfMemoryError` (CUDA's, and the CPU allocator's) raised inside `out_of_memory_at(...)` becomes
`DeviceOutOfMemory`, which the front ends turn into one line. Anything else passes through untouched.
"""

from __future__ import annotations

import contextlib

import torch


class DeviceOutOfMemory(RuntimeError):
    """The model's device ran out of memory in `phase` ("a training step", "validation", ...) at `batch_size`."""

    def __init__(self, device: torch.device | str, phase: str, batch_size: int, amp: bool):
        self.device = str(device)
        self.phase = phase
        self.batch_size = batch_size
        self.amp = amp
        super().__init__(f"{self.device} ran out of memory in {phase} at batch size {batch_size}")

    @property
    def smaller_batch(self) -> int:
        return max(1, self.batch_size // 2)


@contextlib.contextmanager
def out_of_memory_at(device: torch.device, phase: str, batch_size: int, amp: bool):
    """Turn an out-of-memory error inside into `DeviceOutOfMemory` (and free the cached blocks)."""
    try:
        yield
    except torch.OutOfMemoryError as error:
        if torch.device(device).type == "cuda":
            torch.cuda.empty_cache()
        raise DeviceOutOfMemory(device, phase, batch_size, amp) from error
