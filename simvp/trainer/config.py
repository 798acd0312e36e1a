"""What a training run takes and gives: `TrainConfig`, the `WindowData` protocol, `TrainResult`, `Prediction`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

from ..config import SCHEDULES

if TYPE_CHECKING:  # plain data: importable without torch
    import torch

OPTIMIZERS = ("adam", "adamw")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@runtime_checkable
class WindowData(Protocol):
    """Samples (windows) addressed by number; batches come back ready for the model.

    Optional, used when present: ``epoch_order(seed, epoch) -> LongTensor``, the data's own training shuffle
    (a function of its arguments only), and ``batches(index_batches) -> iterator of (x, y)``, the same as
    ``batch`` for each, assembled ahead of use."""

    def __len__(self) -> int:
        """Number of samples."""

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`index`: 1-D LongTensor (CPU) of sample numbers -> ``x (B, T_in, C_in, H, W)``,
        ``y (B, T_out, C_out, H, W)``: float32, normalized, on the training device."""


def _opt(default: Any, help: str, internal: bool = False) -> Any:
    """A field whose metadata holds its help text and whether a command line should offer it."""
    return field(default=default, metadata={"help": help, "internal": internal})


@dataclass
class TrainConfig:
    """Everything that decides a training run (plain data; `to_dict` goes into checkpoints)."""

    epochs: int = _opt(50, "passes over the training data")
    batch_size: int = _opt(16, "samples per step and process (global batch: batch_size x processes)")
    lr: float = _opt(1e-3, "peak (onecycle) or base (cosine, constant) learning rate")
    optimizer: str = _opt("adam", "adam | adamw")
    weight_decay: float = _opt(0.0, "weight decay on all parameters (as OpenSTL)")
    schedule: str = _opt("cosine", "cosine (with warm-up) | onecycle | constant")
    warmup_epochs: float = _opt(0.0, "cosine: epochs of linear warm-up from warmup_lr")
    min_lr: float = _opt(1e-6, "cosine: final learning rate")
    warmup_lr: float = _opt(1e-5, "cosine: learning rate at step 0 when warming up")
    final_div_factor: float = _opt(1e4, "onecycle: final lr = lr / 25 / final_div_factor")
    seed: int = _opt(42, "fixes the shuffle, dropout and drop path (and, via seed_everything, the initial weights)")
    deterministic: bool = _opt(False, "deterministic kernels (torch.use_deterministic_algorithms)")
    device: str = _opt("auto", "auto | cpu | cuda | cuda:N")
    amp: bool = _opt(True, "bf16 autocast on CUDA (the CPU always trains in fp32)")
    channels_last: bool = _opt(True, "channels-last memory format (CUDA only)")
    compile: bool = _opt(False, "torch.compile the model (the DDP wrapper under torchrun)")
    compile_mode: str = _opt("default", "torch.compile mode: default | reduce-overhead (CUDA graphs: small models, "
                                        "small batches) | max-autotune")
    tf32: bool = _opt(True, "TensorFloat-32 matmuls and convolutions for fp32 work on CUDA")
    patience: int | None = _opt(None, "early stopping: epochs without a better validation loss")
    grad_clip: float | None = _opt(None, "maximum global gradient norm")
    tau_weight: float = _opt(0.1, "weight of TAU's differential divergence loss (translator tau)")
    max_steps_per_epoch: int | None = _opt(None, "cap on steps per epoch, for quick runs")
    eval_batch_size: int | None = _opt(None, "validation batch size (default: 4 x batch_size; no gradients are kept)")
    log_every: int = _opt(50, "steps between progress lines when not on a terminal")
    recipe: str | None = _opt(None, "the preset whose recipe this config follows, for the record", internal=True)

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
        need(self.compile_mode in COMPILE_MODES,
             f"compile_mode {self.compile_mode!r} is not one of {list(COMPILE_MODES)}")
        need(self.patience is None or self.patience >= 1, f"patience must be >= 1, got {self.patience}")
        need(self.grad_clip is None or self.grad_clip > 0, f"grad_clip must be > 0, got {self.grad_clip}")
        need(self.tau_weight >= 0, f"tau_weight must be >= 0, got {self.tau_weight}")
        need(self.max_steps_per_epoch is None or self.max_steps_per_epoch >= 1,
             f"max_steps_per_epoch must be >= 1, got {self.max_steps_per_epoch}")
        need(self.eval_batch_size is None or self.eval_batch_size >= 1,
             f"eval_batch_size must be >= 1, got {self.eval_batch_size}")
        need(self.log_every >= 1, f"log_every must be >= 1, got {self.log_every}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def validation_batch(self) -> int:
        return self.eval_batch_size or 4 * self.batch_size


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
