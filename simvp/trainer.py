"""Training engine for SimVP: one loop, plain-data config, checkpoints every epoch, exact resume.

    config = TrainConfig.from_recipe("taxibj", epochs=10)
    result = train(model, train_data, val_data, config, "runs/taxibj", meta={...}, resume=True)
    model = model_from_checkpoint(result.best_path)

The data are any objects with ``len(data)`` and ``data.batch(index) -> (x, y)`` (`WindowData`); the
trainer knows nothing of files. Objective: MSE on the first ``C_out`` channels of the prediction,
plus ``tau_weight * differential_divergence_loss`` for the TAU translator. The validation loss (the
only basis for model selection) is the plain MSE over all validation windows.

Reproducibility: epoch ``e`` shuffles with a generator seeded from ``(seed, e)`` and reseeds torch's
global RNG (dropout, drop path) from ``(seed, e, rank)``, so an epoch's randomness does not depend on
how the run got there. With ``resume=True`` a killed run continues from ``last.pt`` (weights,
optimizer, scheduler, progress) and on the CPU in deterministic mode ends bitwise where an
uninterrupted run ends.

Distributed: under ``torchrun`` (``WORLD_SIZE > 1``) the process group is initialized (NCCL on CUDA,
gloo on CPU), the model is wrapped in DDP, each rank takes its slice of every global batch of the
shared epoch permutation (so every rank runs the same number of steps), losses are all-reduced and
only rank 0 writes files. A process group started here stays up for later calls and is destroyed
at exit; an existing group is used as it is.
"""

from __future__ import annotations

import atexit
import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, NamedTuple, Protocol, runtime_checkable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .checkpoint import (
    CheckpointError, atomic_write_text, load_checkpoint, save_checkpoint, set_rng_state, to_json,
    unwrap,
)
from .schedules import SCHEDULES, build_scheduler
from .translators import differential_divergence_loss

OPTIMIZERS = ("adam", "adamw")

# Training recipes of the SimVP/OpenSTL papers (OpenSTL configs + its parser defaults: opt "adam",
# weight_decay 0, timm cosine with min_lr 1e-6 and warmup_lr 1e-5, no gradient clipping).
#   configs/weather/t2m_5_625/SimVP_gSTA.py: lr 5e-3, batch 16, sched cosine, warmup_epoch 0
#   configs/taxibj/simvp/SimVP_gSTA.py:      lr 5e-4, batch 16, sched cosine, warmup_epoch 5
#   (epochs: 50 for both, as in the OpenSTL benchmark tables; the configs leave it to the CLI)
RECIPES: dict[str, dict[str, Any]] = {
    "weatherbench-t2m-5.625deg": dict(
        epochs=50, batch_size=16, lr=5e-3, optimizer="adam", weight_decay=0.0, schedule="cosine",
        warmup_epochs=0, min_lr=1e-6, warmup_lr=1e-5,
    ),
    "taxibj": dict(
        epochs=50, batch_size=16, lr=5e-4, optimizer="adam", weight_decay=0.0, schedule="cosine",
        warmup_epochs=5, min_lr=1e-6, warmup_lr=1e-5,
    ),
}

# Config fields that shape the trajectory: a resumed run must use the values it started with.
TRAJECTORY_FIELDS = (
    "epochs", "batch_size", "lr", "optimizer", "weight_decay", "schedule", "warmup_epochs",
    "min_lr", "warmup_lr", "final_div_factor", "seed", "grad_clip", "tau_weight",
    "max_steps_per_epoch",
)
# Caller metadata keys that may change between a killed run and its resumption (any other
# difference, e.g. in the normalization statistics, refuses the resume).
META_KEYS_FREE_ON_RESUME = ("simcast_version", "store_path")


@runtime_checkable
class WindowData(Protocol):
    """Samples (windows) addressed by number; batches come back ready for the model."""

    def __len__(self) -> int:
        """Number of samples."""

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`index`: 1-D LongTensor (CPU) of sample numbers -> ``x (B, T_in, C_in, H, W)``,
        ``y (B, T_out, C_out, H, W)``: float32, normalized, on the training device."""


@dataclass
class TrainConfig:
    """Everything that decides a training run (plain data; `to_dict` goes into checkpoints)."""

    epochs: int = 50
    batch_size: int = 16                # per process; the global batch is batch_size * world size
    lr: float = 1e-3                    # peak / base learning rate
    optimizer: str = "adam"             # "adam" | "adamw"
    weight_decay: float = 0.0
    schedule: str = "cosine"            # "cosine" (with warm-up) | "onecycle" | "constant"
    warmup_epochs: float = 0.0          # cosine only: linear warm-up from warmup_lr
    min_lr: float = 1e-6                # cosine: final lr
    warmup_lr: float = 1e-5             # cosine: lr at step 0 when warming up
    final_div_factor: float = 1e4       # onecycle: final lr = lr / 25 / final_div_factor
    seed: int = 42
    deterministic: bool = False         # torch.use_deterministic_algorithms, cudnn.deterministic
    device: str = "auto"                # "auto" | "cpu" | "cuda" | "cuda:N"
    amp: bool = True                    # bf16 autocast on CUDA; the CPU always trains in fp32
    channels_last: bool = True          # CUDA only
    compile: bool = False               # torch.compile (nn.Module.compile) the model
    patience: int | None = None         # early stopping: epochs without a better val loss
    grad_clip: float | None = None      # max global gradient norm
    tau_weight: float = 0.1             # weight of TAU's differential divergence (translator "tau")
    max_steps_per_epoch: int | None = None   # cap for quick runs
    eval_batch_size: int | None = None  # default: batch_size
    log_every: int = 50                 # steps between progress lines (non-TTY)
    recipe: str | None = None           # the recipe this config came from, for the record

    def __post_init__(self) -> None:
        def need(ok: bool, what: str) -> None:
            if not ok:
                raise ValueError(f"TrainConfig: {what}")

        need(isinstance(self.epochs, int) and self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        need(isinstance(self.batch_size, int) and self.batch_size >= 1,
             f"batch_size must be >= 1, got {self.batch_size}")
        need(self.lr >= 0, f"lr must be >= 0, got {self.lr}")
        need(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        need(self.optimizer in OPTIMIZERS, f"optimizer {self.optimizer!r} is not one of {list(OPTIMIZERS)}")
        need(self.schedule in SCHEDULES, f"schedule {self.schedule!r} is not one of {list(SCHEDULES)}")
        need(0 <= self.warmup_epochs < self.epochs,
             f"warmup_epochs must be in [0, epochs), got {self.warmup_epochs} of {self.epochs}")
        need(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
             f"device must be 'auto', 'cpu' or 'cuda[:N]', got {self.device!r}")
        need(self.patience is None or self.patience >= 1, f"patience must be >= 1, got {self.patience}")
        need(self.grad_clip is None or self.grad_clip > 0, f"grad_clip must be > 0, got {self.grad_clip}")
        need(self.tau_weight >= 0, f"tau_weight must be >= 0, got {self.tau_weight}")
        need(self.max_steps_per_epoch is None or self.max_steps_per_epoch >= 1,
             f"max_steps_per_epoch must be >= 1, got {self.max_steps_per_epoch}")
        need(self.eval_batch_size is None or self.eval_batch_size >= 1,
             f"eval_batch_size must be >= 1, got {self.eval_batch_size}")
        need(self.log_every >= 1, f"log_every must be >= 1, got {self.log_every}")

    @classmethod
    def from_recipe(cls, name: str, **overrides: Any) -> "TrainConfig":
        """The paper's recipe `name` (a key of `RECIPES`) with keyword overrides."""
        if name not in RECIPES:
            raise KeyError(f"unknown recipe {name!r}; expected one of {sorted(RECIPES)}")
        return cls(**{**RECIPES[name], "recipe": name, **overrides})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    best_path: Path
    last_path: Path
    best_epoch: int                 # 1-based
    best_val_loss: float
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False


class Prediction(NamedTuple):
    index: torch.Tensor        # sample numbers (CPU LongTensor)
    prediction: torch.Tensor   # (B, T_out, C_out, H, W) float32, on the model's device
    target: torch.Tensor       # y from data.batch


# ---------------------------------------------------------------------------------------------
# small pieces


def derive_seed(seed: int, *parts: Any) -> int:
    """A 63-bit seed from the run seed and a purpose, e.g. ``derive_seed(42, "shuffle", epoch)``."""
    text = "/".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & (2**63 - 1)


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffle of epoch `epoch` (0-based): a function of (seed, epoch) only."""
    generator = torch.Generator().manual_seed(derive_seed(seed, "shuffle", epoch))
    return torch.randperm(n, generator=generator)


def tau_weight_for(model: nn.Module, config: TrainConfig) -> float:
    """`config.tau_weight` when the model's translator is TAU, else 0."""
    model_config = getattr(unwrap(model), "config", None) or {}
    return float(config.tau_weight) if model_config.get("translator") == "tau" else 0.0


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


def _autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {name!r} requested but CUDA is not available")
        return torch.device(name if ":" in name else f"cuda:{local_rank}")
    return torch.device("cpu")


def build_optimizer(model: nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """Adam or AdamW over all parameters (weight decay on all, as OpenSTL's default)."""
    kind = torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW
    fused = {"fused": True} if device.type == "cuda" else {}
    return kind(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, **fused)


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
        for index in torch.arange(rank, len(data), world_size).split(batch_size):
            x, y = data.batch(index)
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
        dist.all_reduce(totals)
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
    for index in torch.arange(len(data)).split(batch_size):
        x, y = data.batch(index)
        with _autocast(device, amp):
            pred = model(x.to(device, non_blocking=True))
        _check_shapes(pred, y)
        yield Prediction(index, pred[:, :, : y.shape[2]].float(), y)


# ---------------------------------------------------------------------------------------------
# process context: device, distribution, determinism


@dataclass
class _Context:
    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _destroy_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def _setup(config: TrainConfig) -> _Context:
    """Device and process group. A group that `train` starts stays up for later calls in the
    process (destroying and re-creating one under torchrun is racy) and is destroyed at exit."""
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        device = resolve_device(config.device, int(os.environ.get("LOCAL_RANK", rank)))
        if device.type == "cuda":
            torch.cuda.set_device(device)
        return _Context(device, rank, world)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(config.device, int(os.environ.get("LOCAL_RANK", "0")))
    if world <= 1:
        return _Context(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    atexit.register(_destroy_group)
    return _Context(device, dist.get_rank(), dist.get_world_size())


@contextlib.contextmanager
def _determinism(deterministic: bool, device: torch.device):
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


# ---------------------------------------------------------------------------------------------
# progress and run files


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class _Progress:
    """A tqdm bar per epoch on a TTY, else a line every `log_every` steps; silent when disabled."""

    def __init__(self, enabled: bool, log: Callable[[str], None] | None, log_every: int,
                 epochs: int, steps_per_epoch: int, global_batch: int):
        self.enabled, self.log_every = enabled, log_every
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.epochs, self.steps, self.global_batch = epochs, steps_per_epoch, global_batch
        self.use_bar = enabled and log is None and sys.stderr.isatty()
        self.bar = None

    def start(self, epoch: int) -> None:
        self.epoch, self.t0 = epoch, time.perf_counter()
        if self.use_bar:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=self.steps, desc=f"epoch {epoch + 1}/{self.epochs}", unit="step",
                            leave=False, dynamic_ncols=True)

    def update(self, step: int, loss: Callable[[], float]) -> None:
        """`step`: steps done this epoch; `loss` is called (a device sync) only when shown."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(1)
            if step % 10 and step != self.steps:  # refresh the numbers every 10 steps
                return
        elif step % self.log_every and step != self.steps:
            return
        elapsed = time.perf_counter() - self.t0
        rate = step * self.global_batch / max(elapsed, 1e-9)
        left = (self.steps - step) + (self.epochs - self.epoch - 1) * self.steps
        eta = _duration(left * elapsed / step)
        if self.bar is not None:
            self.bar.set_postfix_str(f"loss {loss():.4g} {rate:.1f} samples/s run ETA {eta}")
        else:
            self.log(f"epoch {self.epoch + 1}/{self.epochs} step {step}/{self.steps} "
                     f"loss {loss():.4g} {rate:.1f} samples/s ETA {eta}")

    def end(self, record: Mapping[str, Any]) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.enabled:
            self.log(f"epoch {record['epoch']}/{self.epochs}: train {record['train_loss']:.5g} "
                     f"val {record['val_loss']:.5g}{' (best)' if record['best'] else ''} "
                     f"lr {record['lr']:.3g} {record['seconds']:.1f}s "
                     f"{record['samples_per_s']:.1f} samples/s")


CSV_FIELDS = ("epoch", "step", "train_loss", "train_mse", "val_loss", "lr", "seconds",
              "samples_per_s", "best")


def _write_run_files(run_dir: Path, history: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(run_dir / "metrics.csv", buffer.getvalue())
    atomic_write_text(run_dir / "history.json", json.dumps(history, indent=1) + "\n")


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard is optional
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


# ---------------------------------------------------------------------------------------------
# resume


def _check_resumable(ckpt: Mapping[str, Any], config: TrainConfig, meta: Mapping[str, Any],
                     state: Mapping[str, Any]) -> None:
    where, saved_meta, saved_state = ckpt["path"], ckpt["meta"], ckpt["state"]
    saved_config = saved_meta.get("train_config", {})
    changed = [f"{k}={saved_config.get(k)!r}->{getattr(config, k)!r}" for k in TRAJECTORY_FIELDS
               if saved_config.get(k) != json.loads(json.dumps(getattr(config, k)))]
    if changed:
        raise CheckpointError(f"{where}: cannot resume with a different training config "
                              f"({', '.join(changed)}); use the same settings or a new run folder")
    for key in ("world_size", "train_samples", "steps_per_epoch"):
        if saved_state.get(key) != state[key]:
            raise CheckpointError(f"{where}: cannot resume: the run had {key}={saved_state.get(key)}, "
                                  f"this one has {state[key]}")
    ignored = {"train_config", *META_KEYS_FREE_ON_RESUME}
    keys = sorted(k for k in set(saved_meta) | set(meta) if k not in ignored
                  and saved_meta.get(k) != meta.get(k))
    if keys:
        raise CheckpointError(f"{where}: cannot resume: the metadata differs in {', '.join(keys)} "
                              f"(different data or model?); use a new run folder")


def _broadcast(obj: Any, ctx: _Context) -> Any:
    if ctx.world_size == 1:
        return obj
    box = [obj if ctx.main else None]
    dist.broadcast_object_list(box, src=0, device=ctx.device if ctx.device.type == "cuda" else None)
    return box[0]


def _sync_buffers(model: nn.Module, ctx: _Context) -> None:
    """Rank 0's buffers (BatchNorm running statistics) to every rank."""
    if ctx.world_size > 1:
        for buffer in model.buffers():
            dist.broadcast(buffer.data, src=0)


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
    ctx = _setup(config)
    with _determinism(config.deterministic, ctx.device):
        return _train(model, train_data, val_data, config, Path(run_dir), dict(meta or {}),
                      resume, progress, log, on_epoch_end, ctx)


def _train(model, train_data, val_data, config: TrainConfig, run_dir: Path, meta: dict,
           resume: bool, progress: bool, log, on_epoch_end, ctx: _Context) -> TrainResult:
    device = ctx.device
    n_train, n_val = len(train_data), len(val_data)
    global_batch = config.batch_size * ctx.world_size
    if n_train < global_batch:
        raise ValueError(f"the training data hold {n_train} samples, fewer than one global batch "
                         f"({config.batch_size} x {ctx.world_size} processes)")
    if n_val < 1:
        raise ValueError("the validation data hold no samples (model selection needs them)")
    steps_per_epoch = n_train // global_batch
    if config.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, config.max_steps_per_epoch)
    total_steps = steps_per_epoch * config.epochs
    amp = config.amp and device.type == "cuda"
    eval_batch = config.eval_batch_size or config.batch_size
    tau_weight = tau_weight_for(model, config)

    bare = unwrap(model)
    bare.to(device)
    if device.type == "cuda" and config.channels_last:
        bare.to(memory_format=torch.channels_last)
    meta = json.loads(to_json({**meta, "train_config": config.to_dict()}, "meta"))
    if isinstance(getattr(bare, "config", None), Mapping):
        model_config = json.loads(to_json(bare.config, "model config"))
        if meta.setdefault("model_config", model_config) != model_config:
            raise ValueError("meta['model_config'] differs from the model's own config")
    torch.manual_seed(config.seed)
    optimizer = build_optimizer(bare, config, device)
    scheduler = build_scheduler(config.schedule, optimizer, total_steps,
                                warmup_steps=round(config.warmup_epochs * steps_per_epoch),
                                min_lr=config.min_lr, warmup_lr=config.warmup_lr,
                                final_div_factor=config.final_div_factor)

    run_dir = Path(run_dir)
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    state: dict[str, Any] = dict(
        epoch=0, step=0, best_val_loss=float("inf"), best_epoch=0, epochs_since_best=0,
        stopped_early=False, history=[], world_size=ctx.world_size, train_samples=n_train,
        val_samples=n_val, steps_per_epoch=steps_per_epoch,
    )

    # rank 0 reads last.pt (or decides to start fresh) and hands the result to every rank
    loaded: Any = None
    if ctx.main:
        try:
            if last_path.exists() and not resume:
                raise FileExistsError(f"{run_dir}: holds a previous run (last.pt); pass resume=True "
                                      f"to continue it, or use a new run folder")
            if resume and last_path.exists():
                loaded = load_checkpoint(last_path)
                _check_resumable(loaded, config, meta, state)
        except Exception as exc:  # noqa: BLE001 - every rank re-raises it below
            loaded = exc
    loaded = _broadcast(loaded, ctx)
    if isinstance(loaded, BaseException):
        raise loaded
    if loaded is not None:
        bare.load_state_dict(loaded["model"])
        optimizer.load_state_dict(loaded["optimizer"])
        scheduler.load_state_dict(loaded["scheduler"])
        if ctx.world_size == 1 and loaded.get("rng"):
            set_rng_state(loaded["rng"])
        state.update(loaded["state"])

    if config.compile:
        bare.compile()
    module: nn.Module = bare
    if ctx.world_size > 1:
        module = nn.parallel.DistributedDataParallel(
            bare, device_ids=[device.index] if device.type == "cuda" else None)

    bar = _Progress(progress and ctx.main, log, config.log_every, config.epochs, steps_per_epoch,
                    global_batch)
    if loaded is not None and progress and ctx.main:
        bar.log(f"resuming {last_path} after epoch {state['epoch']}/{config.epochs}")
    writer = _tensorboard(run_dir) if ctx.main and state["epoch"] < config.epochs else None
    try:
        for epoch in range(state["epoch"], config.epochs):
            if state["stopped_early"]:
                break
            t0 = time.perf_counter()
            torch.manual_seed(derive_seed(config.seed, "rng", epoch, ctx.rank))
            order = epoch_permutation(n_train, config.seed, epoch)
            module.train()
            bar.start(epoch)
            loss_sum = torch.zeros((), device=device)
            mse_sum = torch.zeros((), device=device)
            for step in range(steps_per_epoch):
                start = step * global_batch + ctx.rank * config.batch_size
                x, y = train_data.batch(order[start:start + config.batch_size])
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                with _autocast(device, amp):
                    pred = module(x)
                loss, mse = training_loss(pred, y, tau_weight)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip:
                    nn.utils.clip_grad_norm_(bare.parameters(), config.grad_clip)
                optimizer.step()
                scheduler.step()
                loss_sum += loss.detach()
                mse_sum += mse.detach()
                state["step"] += 1
                bar.update(step + 1, lambda: loss.item())

            sums = torch.stack([loss_sum, mse_sum]).double() / steps_per_epoch
            if ctx.world_size > 1:
                dist.all_reduce(sums)
                sums /= ctx.world_size
                _sync_buffers(bare, ctx)
            train_loss, train_mse = sums.tolist()
            if not math.isfinite(train_loss):
                raise FloatingPointError(f"training diverged in epoch {epoch + 1}: train loss "
                                         f"{train_loss}; try a lower lr or grad_clip")
            val_loss = evaluate(bare, val_data, eval_batch, device, amp,
                                rank=ctx.rank, world_size=ctx.world_size)
            if not math.isfinite(val_loss):
                raise FloatingPointError(f"validation loss is {val_loss} after epoch {epoch + 1}; "
                                         f"check the validation data for NaN")
            seconds = time.perf_counter() - t0
            improved = val_loss < state["best_val_loss"]
            if improved:
                state.update(best_val_loss=val_loss, best_epoch=epoch + 1, epochs_since_best=0)
            else:
                state["epochs_since_best"] += 1
            record = dict(epoch=epoch + 1, step=state["step"], train_loss=train_loss,
                          train_mse=train_mse, val_loss=val_loss,
                          lr=optimizer.param_groups[0]["lr"], seconds=seconds,
                          samples_per_s=steps_per_epoch * global_batch / max(seconds, 1e-9),
                          best=improved)
            state["history"] = [*state["history"], record]
            state["epoch"] = epoch + 1
            if config.patience is not None and state["epochs_since_best"] >= config.patience:
                state["stopped_early"] = True

            if ctx.main:  # best first: a kill between the two writes is redone from the old last.pt
                if improved:
                    save_checkpoint(best_path, bare, optimizer, scheduler, state=state, meta=meta)
                save_checkpoint(last_path, bare, optimizer, scheduler, state=state, meta=meta)
                _write_run_files(run_dir, state["history"])
                if writer is not None:
                    for key in ("train_loss", "val_loss", "lr", "samples_per_s"):
                        writer.add_scalar(key, record[key], epoch + 1)
                    writer.flush()
            bar.end(record)
            if on_epoch_end is not None:
                on_epoch_end(dict(record))
            if state["stopped_early"] and progress and ctx.main:
                bar.log(f"early stopping: no better validation loss for {config.patience} epochs "
                        f"(best {state['best_val_loss']:.5g} at epoch {state['best_epoch']})")
    finally:
        if bar.bar is not None:
            bar.bar.close()
        if writer is not None:
            writer.close()
        module = None  # noqa: F841 - an exception's traceback must not keep the DDP wrapper alive
    if ctx.world_size > 1:
        dist.barrier()
    return TrainResult(best_path=best_path, last_path=last_path, best_epoch=state["best_epoch"],
                       best_val_loss=state["best_val_loss"], history=list(state["history"]),
                       stopped_early=bool(state["stopped_early"]))


__all__ = [
    "RECIPES", "TRAJECTORY_FIELDS", "WindowData", "TrainConfig", "TrainResult", "Prediction",
    "train", "evaluate", "predict", "training_loss", "tau_weight_for", "epoch_permutation",
    "derive_seed", "build_optimizer", "resolve_device", "CheckpointError",
]
