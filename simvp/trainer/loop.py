"""The training loop, and evaluation and prediction with a trained model.

Objective: MSE on the first ``C_out`` channels of the prediction, plus ``tau_weight *
differential_divergence_loss`` for the TAU translator. The validation loss (the only basis for model
selection) is the plain MSE over all validation windows.

Reproducibility: `seed_everything` before building the model fixes its initial weights. Epoch ``e``
shuffles with a generator seeded from ``(seed, e)`` and reseeds torch's global RNG (dropout, drop
path) from ``(seed, e, rank)``, so an epoch's randomness does not depend on how the run got there.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import model_config, to_json, unwrap
from ..schedules import build_scheduler
from ..translators import differential_divergence_loss
from .config import Prediction, TrainConfig, TrainResult, WindowData
from .distributed import _Context, all_reduce_mean, barrier, determinism, setup, sync_buffers, wrap
from .memory import out_of_memory_at
from .progress import Progress, RunFiles
from .resume import load_last, restore, save_epoch

# ---------------------------------------------------------------------------------------------
# seeds, losses, optimizer


def derive_seed(seed: int, *parts: Any) -> int:
    """A 63-bit seed from the run seed and a purpose, e.g. ``derive_seed(42, "shuffle", epoch)``."""
    text = "/".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & (2**63 - 1)


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and every CUDA device) and Python's `random` from ``derive_seed(seed, "init")``.

    Call it before building the model: the seed then fixes the initial weights.
    """
    init = derive_seed(seed, "init")
    torch.manual_seed(init)  # also seeds every CUDA device
    random.seed(init)


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffle of epoch `epoch` (0-based): a function of (seed, epoch) only."""
    generator = torch.Generator().manual_seed(derive_seed(seed, "shuffle", epoch))
    return torch.randperm(n, generator=generator)


def epoch_order(data: WindowData, seed: int, epoch: int) -> torch.Tensor:
    """The data's own shuffle (`data.epoch_order`, e.g. chunk-aware when streaming) or `epoch_permutation`."""
    own = getattr(data, "epoch_order", None)
    return own(seed, epoch) if own is not None else epoch_permutation(len(data), seed, epoch)


def iter_batches(data: WindowData, index_batches) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(x, y) for each index batch: through `data.batches` when it has one (assembly ahead of use), else
    `data.batch` one at a time."""
    index_batches = list(index_batches)
    own = getattr(data, "batches", None)
    return own(index_batches) if own is not None else (data.batch(i) for i in index_batches)


def tau_weight_for(model: nn.Module, config: TrainConfig) -> float:
    """`config.tau_weight` when the model's translator is TAU, else 0."""
    translator = getattr(getattr(unwrap(model), "config", None), "translator", None)
    return float(config.tau_weight) if translator == "tau" else 0.0


def _check_shapes(pred: torch.Tensor, y: torch.Tensor) -> None:
    if (pred.ndim != 5 or y.ndim != 5 or pred.shape[:2] != y.shape[:2]
            or pred.shape[3:] != y.shape[3:] or pred.shape[2] < y.shape[2]):
        raise ValueError(f"model output {tuple(pred.shape)} does not fit the targets "
                         f"{tuple(y.shape)}: expected (B, T_out, >= C_out, H, W)")


def training_loss(pred: torch.Tensor, y: torch.Tensor, tau_weight: float = 0.0
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(objective, mse)``: MSE on the first C_out channels, in fp32, plus
    ``tau_weight * differential_divergence_loss`` when `tau_weight` > 0."""
    _check_shapes(pred, y)
    pred = pred[:, :, : y.shape[2]].float()
    mse = F.mse_loss(pred, y.float())
    if tau_weight > 0:
        return mse + tau_weight * differential_divergence_loss(pred, y.float()), mse
    return mse, mse


def build_optimizer(model: nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """Adam or AdamW over all parameters (weight decay on all, as OpenSTL's default)."""
    kind = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    fused = {"fused": True} if device.type == "cuda" else {}
    return kind(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, **fused)


def _autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


# ---------------------------------------------------------------------------------------------
# evaluation


@torch.no_grad()
def evaluate(model: nn.Module, data: WindowData, batch_size: int = 16,
             device: torch.device | str | None = None, amp: bool = True, *,
             rank: int = 0, world_size: int = 1) -> float:
    """Mean squared error over all samples of `data` (first C_out channels), in eval mode.

    With ``world_size > 1`` each rank evaluates samples ``rank::world_size`` and the sums are
    all-reduced, so every rank returns the same number.
    """
    device = torch.device(device) if device is not None else _model_device(model)
    was_training = model.training
    model.eval()
    sse = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    try:
        with out_of_memory_at(device, "evaluation", batch_size, amp and device.type == "cuda"):
            for x, y in iter_batches(data, torch.arange(rank, len(data), world_size).split(batch_size)):
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                with _autocast(device, amp):
                    pred = model(x)
                _check_shapes(pred, y)
                sse += (pred[:, :, : y.shape[2]].float() - y.float()).pow(2).sum(dtype=torch.float64)
                count += y.numel()
    finally:
        model.train(was_training)
    if world_size > 1:
        totals = torch.stack([sse, torch.tensor(float(count), dtype=torch.float64, device=device)])
        torch.distributed.all_reduce(totals)
        sse, count = totals[0], totals[1].item()
    if count == 0:
        raise ValueError("evaluation data has no samples")
    return (sse / count).item()


@torch.no_grad()
def predict(model: nn.Module, data: WindowData, batch_size: int = 16,
            device: torch.device | str | None = None, amp: bool = True) -> Iterator[Prediction]:
    """Predictions for every sample of `data` in order, batch by batch, in eval mode (bf16 autocast
    on CUDA when `amp`). Yields ``Prediction(index, prediction, target)``; predictions keep the
    first C_out channels and are float32. Longer horizons: ``model.rollout(x, steps)``."""
    device = torch.device(device) if device is not None else _model_device(model)
    model.eval()
    indices = torch.arange(len(data)).split(batch_size)
    for index, (x, y) in zip(indices, iter_batches(data, indices)):
        with out_of_memory_at(device, "prediction", batch_size, amp and device.type == "cuda"):
            with _autocast(device, amp):
                pred = model(x.to(device, non_blocking=True))
        _check_shapes(pred, y)
        yield Prediction(index, pred[:, :, : y.shape[2]].float(), y)


# ---------------------------------------------------------------------------------------------
# the loop


def train(
    model: nn.Module,
    train_data: WindowData,
    val_data: WindowData,
    config: TrainConfig,
    run_dir: str | os.PathLike,
    meta: Mapping[str, Any] | None = None,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train `model` (in place) and write ``best.pt`` / ``last.pt`` / ``metrics.csv`` /
    ``history.json`` to `run_dir`.

    `meta`: JSON-able caller metadata stored in every checkpoint (catalog entry, window spec,
    normalization statistics, version); "model_config" and "train_config" are added.
    `resume`: continue from ``run_dir/last.pt`` when it exists (else start fresh); without it a
    `run_dir` that already holds ``last.pt`` is refused. `log`: receives progress lines instead of
    stderr (and disables the tqdm bar). `on_epoch_end`: called on every rank with each epoch's record.
    On return the model holds the last epoch's weights; the best ones are in ``best.pt``.
    """
    ctx = setup(config.device)
    with determinism(config.deterministic, ctx.device):
        return _train(model, train_data, val_data, config, Path(run_dir), dict(meta or {}),
                      resume, progress, log, on_epoch_end, ctx)


@dataclass
class _Run:
    """What every step of a run uses."""

    config: TrainConfig
    ctx: _Context
    model: nn.Module          # the bare model
    module: nn.Module | None  # what trains: the model, or its DDP / compiled wrapper
    optimizer: torch.optim.Optimizer
    scheduler: Any
    train_data: WindowData
    val_data: WindowData
    steps_per_epoch: int
    amp: bool
    tau_weight: float

    @property
    def global_batch(self) -> int:
        return self.config.batch_size * self.ctx.world_size


def _train(model, train_data, val_data, config: TrainConfig, run_dir: Path, meta: dict,
           resume: bool, progress: bool, log, on_epoch_end, ctx: _Context) -> TrainResult:
    steps_per_epoch = _steps_per_epoch(len(train_data), len(val_data), config, ctx)
    bare = unwrap(model)
    bare.to(ctx.device)
    if ctx.device.type == "cuda" and config.channels_last:
        bare.to(memory_format=torch.channels_last)
    if ctx.device.type == "cuda":  # fp32 work (outside bf16 autocast) on tensor cores, ~1e-3 relative
        torch.backends.cuda.matmul.allow_tf32 = config.tf32
        torch.backends.cudnn.allow_tf32 = config.tf32
    meta = _run_meta(meta, config, bare)
    torch.manual_seed(config.seed)
    optimizer = build_optimizer(bare, config, ctx.device)
    scheduler = build_scheduler(config.schedule, optimizer, steps_per_epoch * config.epochs,
                                warmup_steps=round(config.warmup_epochs * steps_per_epoch),
                                min_lr=config.min_lr, warmup_lr=config.warmup_lr,
                                final_div_factor=config.final_div_factor)
    state: dict[str, Any] = dict(
        epoch=0, step=0, best_val_loss=float("inf"), best_epoch=0, epochs_since_best=0,
        stopped_early=False, history=[], world_size=ctx.world_size, train_samples=len(train_data),
        val_samples=len(val_data), steps_per_epoch=steps_per_epoch,
    )
    loaded = load_last(run_dir, resume, config, meta, state, ctx)
    if loaded is not None:
        restore(loaded, bare, optimizer, scheduler, state, ctx)
    run = _Run(config, ctx, bare, wrap(bare, ctx, config.compile, config.compile_mode), optimizer, scheduler, train_data,
               val_data, steps_per_epoch, config.amp and ctx.device.type == "cuda",
               tau_weight_for(bare, config))

    bar = Progress(progress and ctx.main, log, config.log_every, config.epochs, steps_per_epoch,
                   run.global_batch)
    if loaded is not None:
        bar.note(f"resuming {run_dir / 'last.pt'} after epoch {state['epoch']}/{config.epochs}")
    files = RunFiles(run_dir, tensorboard=state["epoch"] < config.epochs) if ctx.main else None
    try:
        for epoch in range(state["epoch"], config.epochs):
            if state["stopped_early"]:
                break
            t0 = time.perf_counter()
            with out_of_memory_at(ctx.device, "a training step", config.batch_size, run.amp):
                train_loss, train_mse = _train_epoch(run, epoch, state, bar)
            record = _end_epoch(run, epoch, t0, train_loss, train_mse, state)  # its evaluate() reports memory
            if files is not None:
                save_epoch(run_dir, record["best"], bare, optimizer, scheduler, state, meta)
                files.write(state["history"])
            bar.end(record)
            if on_epoch_end is not None:
                on_epoch_end(dict(record))
            if state["stopped_early"]:
                bar.note(f"early stopping: no better validation loss for {config.patience} epochs "
                         f"(best {state['best_val_loss']:.5g} at epoch {state['best_epoch']})")
    finally:
        bar.close()
        if files is not None:
            files.close()
        run.module = None  # an exception's traceback must not keep the DDP wrapper alive
    barrier(ctx)
    return TrainResult(best_path=run_dir / "best.pt", last_path=run_dir / "last.pt",
                       best_epoch=state["best_epoch"], best_val_loss=state["best_val_loss"],
                       history=list(state["history"]), stopped_early=bool(state["stopped_early"]))


def _steps_per_epoch(n_train: int, n_val: int, config: TrainConfig, ctx: _Context) -> int:
    if n_train < config.batch_size * ctx.world_size:
        raise ValueError(f"the training data hold {n_train} samples, fewer than one global batch "
                         f"({config.batch_size} x {ctx.world_size} processes)")
    if n_val < 1:
        raise ValueError("the validation data hold no samples (model selection needs them)")
    steps = n_train // (config.batch_size * ctx.world_size)
    return min(steps, config.max_steps_per_epoch) if config.max_steps_per_epoch else steps


def _run_meta(meta: Mapping[str, Any], config: TrainConfig, model: nn.Module) -> dict[str, Any]:
    """The caller's metadata as stored in checkpoints, with "train_config" and "model_config"."""
    meta = json.loads(to_json({**meta, "train_config": config.to_dict()}, "meta"))
    own = model_config(model)
    if own is not None and meta.setdefault("model_config", own) != own:
        raise ValueError("meta['model_config'] differs from the model's own config")
    return meta


def _train_epoch(run: _Run, epoch: int, state: dict[str, Any], bar: Progress) -> tuple[float, float]:
    """One pass over this rank's share of the epoch's shuffle; the mean training loss and MSE."""
    config, ctx = run.config, run.ctx
    torch.manual_seed(derive_seed(config.seed, "rng", epoch, ctx.rank))
    order = epoch_order(run.train_data, config.seed, epoch)
    starts = [step * run.global_batch + ctx.rank * config.batch_size for step in range(run.steps_per_epoch)]
    batches = iter_batches(run.train_data, [order[s:s + config.batch_size] for s in starts])
    run.module.train()
    bar.start(epoch)
    loss_sum = torch.zeros((), device=ctx.device)
    mse_sum = torch.zeros((), device=ctx.device)
    for step, (x, y) in enumerate(batches):
        loss, mse = _train_step(run, x.to(ctx.device, non_blocking=True), y.to(ctx.device, non_blocking=True))
        loss_sum += loss
        mse_sum += mse
        state["step"] += 1
        bar.update(step + 1, loss.item)
    sums = all_reduce_mean(torch.stack([loss_sum, mse_sum]).double() / run.steps_per_epoch, ctx)
    sync_buffers(run.model, ctx)
    train_loss, train_mse = sums.tolist()
    if not math.isfinite(train_loss):
        raise FloatingPointError(f"training diverged in epoch {epoch + 1}: train loss "
                                 f"{train_loss}; try a lower lr or grad_clip")
    return train_loss, train_mse


def _train_step(run: _Run, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward, backward, optimizer and scheduler step; the (detached) objective and MSE."""
    with _autocast(run.ctx.device, run.amp):
        pred = run.module(x)
    loss, mse = training_loss(pred, y, run.tau_weight)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if run.config.grad_clip:
        nn.utils.clip_grad_norm_(run.model.parameters(), run.config.grad_clip)
    run.optimizer.step()
    run.scheduler.step()
    return loss.detach(), mse.detach()


def _end_epoch(run: _Run, epoch: int, t0: float, train_loss: float, train_mse: float,
               state: dict[str, Any]) -> dict[str, Any]:
    """Validate, update the progress `state` (best, history, early stopping); the epoch's record."""
    config, ctx = run.config, run.ctx
    val_loss = evaluate(run.model, run.val_data, config.validation_batch, ctx.device,
                        run.amp, rank=ctx.rank, world_size=ctx.world_size)
    if not math.isfinite(val_loss):
        raise FloatingPointError(f"validation loss is {val_loss} after epoch {epoch + 1}; "
                                 f"check the validation data for NaN")
    seconds = time.perf_counter() - t0
    improved = val_loss < state["best_val_loss"]
    if improved:
        state.update(best_val_loss=val_loss, best_epoch=epoch + 1, epochs_since_best=0)
    else:
        state["epochs_since_best"] += 1
    record = dict(epoch=epoch + 1, step=state["step"], train_loss=train_loss, train_mse=train_mse,
                  val_loss=val_loss, lr=run.optimizer.param_groups[0]["lr"], seconds=seconds,
                  samples_per_s=run.steps_per_epoch * run.global_batch / max(seconds, 1e-9),
                  best=improved)
    state["history"] = [*state["history"], record]
    state["epoch"] = epoch + 1
    if config.patience is not None and state["epochs_since_best"] >= config.patience:
        state["stopped_early"] = True
    return record
