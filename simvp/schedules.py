"""Learning-rate schedules, stepped once per optimizer step.

    scheduler = build_scheduler("cosine", optimizer, total_steps=50 * 400, warmup_steps=5 * 400)
    for batch in ...: loss.backward(); optimizer.step(); scheduler.step()

* ``"cosine"``: linear warm-up from `warmup_lr` to the base lr over `warmup_steps`, then a half
  cosine from the base lr down to `min_lr` at `total_steps`. OpenSTL uses timm's
  ``CosineLRScheduler`` stepped per epoch (``lr_min=1e-6, warmup_lr_init=1e-5``); this is the same
  curve evaluated per step, with the cosine starting after the warm-up (timm's ``warmup_prefix``).
* ``"onecycle"``: ``torch.optim.lr_scheduler.OneCycleLR`` with ``max_lr`` = base lr and OpenSTL's
  ``final_div_factor=1e4`` (defaults otherwise: 30 % rising, cosine annealing, beta1 cycling).
* ``"constant"``: the base lr throughout.

Schedules hold no callables in their state (`state_dict()` is plain numbers), so they go into
checkpoints that load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import math

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR

from .config import SCHEDULES



def cosine_lr(step: int, total_steps: int, base_lr: float, warmup_steps: int = 0,
              min_lr: float = 1e-6, warmup_lr: float = 1e-5) -> float:
    """The lr of the cosine-with-warm-up schedule for the optimizer step number `step` (from 0)."""
    min_lr = min(min_lr, base_lr)
    warmup_lr = min(warmup_lr, base_lr)
    if step < warmup_steps:
        return warmup_lr + (base_lr - warmup_lr) * step / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def cosine_with_warmup(optimizer: Optimizer, total_steps: int, warmup_steps: int = 0,
                       min_lr: float = 1e-6, warmup_lr: float = 1e-5) -> LambdaLR:
    """A `LambdaLR` following `cosine_lr` for each parameter group's own base lr."""
    if total_steps < 1 or not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"need total_steps >= 1 and 0 <= warmup_steps <= total_steps, "
                         f"got total_steps={total_steps}, warmup_steps={warmup_steps}")

    def factor_for(base_lr: float):
        def factor(step: int) -> float:
            if base_lr == 0:
                return 0.0
            return cosine_lr(step, total_steps, base_lr, warmup_steps, min_lr, warmup_lr) / base_lr
        return factor

    return LambdaLR(optimizer, [factor_for(group["lr"]) for group in optimizer.param_groups])


def one_cycle(optimizer: Optimizer, total_steps: int, max_lr: float | None = None,
              final_div_factor: float = 1e4, pct_start: float = 0.3) -> OneCycleLR:
    """`OneCycleLR` peaking at `max_lr` (default: the optimizer's lr)."""
    if total_steps < 2:
        raise ValueError(f"the one-cycle schedule needs at least 2 steps, got {total_steps}")
    max_lr = optimizer.param_groups[0]["lr"] if max_lr is None else max_lr
    return OneCycleLR(optimizer, max_lr=max_lr, total_steps=total_steps, pct_start=pct_start,
                      final_div_factor=final_div_factor)


def constant(optimizer: Optimizer) -> LambdaLR:
    return LambdaLR(optimizer, lambda step: 1.0)


def build_scheduler(name: str, optimizer: Optimizer, total_steps: int, warmup_steps: int = 0,
                    min_lr: float = 1e-6, warmup_lr: float = 1e-5,
                    final_div_factor: float = 1e4) -> LRScheduler:
    """The named schedule (one of `SCHEDULES`) over `total_steps` optimizer steps."""
    if name == "cosine":
        return cosine_with_warmup(optimizer, total_steps, warmup_steps, min_lr, warmup_lr)
    if name == "onecycle":
        return one_cycle(optimizer, total_steps, final_div_factor=final_div_factor)
    if name == "constant":
        return constant(optimizer)
    raise ValueError(f"unknown schedule {name!r}; expected one of {list(SCHEDULES)}")


def lr_curve(name: str, total_steps: int, lr: float, **kwargs) -> list[float]:
    """The lr used at each of `total_steps` optimizer steps (for plots and tests)."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    scheduler = build_scheduler(name, optimizer, total_steps, **kwargs)
    curve = []
    for _ in range(total_steps):
        curve.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return curve
