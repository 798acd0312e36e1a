"""Checkpoints of a run and its exact resumption.

After every epoch rank 0 writes ``best.pt`` (when the validation loss improved) and then ``last.pt``:
weights, optimizer, scheduler, RNG states and the progress (`state`). Resuming loads ``last.pt``
after checking, in this order, that it belongs to this run: the same metadata (data and model),
the same trajectory settings (`TRAJECTORY_FIELDS`), the same number of processes and samples.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ..checkpoint import CheckpointError, load_checkpoint, save_checkpoint, set_rng_state
from .config import TrainConfig
from .distributed import _Context, broadcast

# Config fields that shape the trajectory: a resumed run must use the values it started with.
TRAJECTORY_FIELDS = (
    "epochs", "batch_size", "lr", "optimizer", "weight_decay", "schedule", "warmup_epochs",
    "min_lr", "warmup_lr", "final_div_factor", "seed", "grad_clip", "tau_weight",
    "max_steps_per_epoch",
)
# Caller metadata keys that may change between a killed run and its resumption (any other
# difference, e.g. in the normalization statistics, refuses the resume).
META_KEYS_FREE_ON_RESUME = ("simcast_version", "store_path")
# Progress entries that must match: the same processes stepping through the same samples.
RUN_SHAPE = ("world_size", "train_samples", "steps_per_epoch")


def _check_resumable(ckpt: Mapping[str, Any], config: TrainConfig, meta: Mapping[str, Any],
                     state: Mapping[str, Any]) -> None:
    """Refuse (`CheckpointError`) a ``last.pt`` of other data, another model or other settings."""
    where, saved_meta, saved_state = ckpt["path"], ckpt["meta"], ckpt["state"]
    ignored = {"train_config", *META_KEYS_FREE_ON_RESUME}
    keys = sorted(k for k in set(saved_meta) | set(meta) if k not in ignored
                  and saved_meta.get(k) != meta.get(k))
    if keys:
        raise CheckpointError(f"{where}: cannot resume: the run in {Path(where).parent} was trained on other "
                              f"data or another model (differs in: {', '.join(keys)}); use a new run folder")
    saved_config = saved_meta.get("train_config", {})
    changed = [f"{k}={saved_config.get(k)!r}->{getattr(config, k)!r}" for k in TRAJECTORY_FIELDS
               if saved_config.get(k) != json.loads(json.dumps(getattr(config, k)))]
    if changed:
        raise CheckpointError(f"{where}: cannot resume with a different training config "
                              f"({', '.join(changed)}); use the same settings or a new run folder")
    for key in RUN_SHAPE:
        if saved_state.get(key) != state[key]:
            raise CheckpointError(f"{where}: cannot resume: the run had {key}={saved_state.get(key)}, "
                                  f"this one has {state[key]}")


def load_last(run_dir: Path, resume: bool, config: TrainConfig, meta: Mapping[str, Any],
              state: Mapping[str, Any], ctx: _Context) -> dict[str, Any] | None:
    """The checked ``last.pt`` to resume from, on every rank (None: start fresh).

    Rank 0 reads it and hands it (or its error) to the others. Without `resume` a folder that
    holds ``last.pt`` is refused (`FileExistsError`).
    """
    last_path = run_dir / "last.pt"
    loaded: Any = None
    if ctx.main:
        try:
            if last_path.exists() and not resume:
                raise FileExistsError(f"{run_dir}: holds a previous run (last.pt); resume it or use a "
                                      f"new run folder")
            if resume and last_path.exists():
                loaded = load_checkpoint(last_path)
                _check_resumable(loaded, config, meta, state)
        except Exception as exc:  # noqa: BLE001 - every rank re-raises it below
            loaded = exc
    loaded = broadcast(loaded, ctx)
    if isinstance(loaded, BaseException):
        raise loaded
    return loaded


def restore(loaded: Mapping[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
            state: dict[str, Any], ctx: _Context) -> None:
    """Weights, optimizer, scheduler, progress and (single process) the RNG states of ``last.pt``."""
    model.load_state_dict(loaded["model"])
    optimizer.load_state_dict(loaded["optimizer"])
    scheduler.load_state_dict(loaded["scheduler"])
    if ctx.world_size == 1 and loaded.get("rng"):
        set_rng_state(loaded["rng"])
    state.update(loaded["state"])


def save_epoch(run_dir: Path, improved: bool, model: nn.Module, optimizer: torch.optim.Optimizer,
               scheduler: Any, state: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
    """Best first: a kill between the two writes is redone from the previous ``last.pt``."""
    if improved:
        save_checkpoint(run_dir / "best.pt", model, optimizer, scheduler, state=state, meta=meta)
    save_checkpoint(run_dir / "last.pt", model, optimizer, scheduler, state=state, meta=meta)
