"""What a run shows and leaves besides checkpoints: progress lines, metrics.csv, history.json, TensorBoard."""

from __future__ import annotations

import csv
import io
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from ..checkpoint import atomic_write_text

CSV_FIELDS = ("epoch", "step", "train_loss", "train_mse", "val_loss", "lr", "seconds",
              "samples_per_s", "best")


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


class Progress:
    """A tqdm bar per epoch on a TTY, else a line every `log_every` steps; silent when disabled."""

    def __init__(self, enabled: bool, log: Callable[[str], None] | None, log_every: int,
                 epochs: int, steps_per_epoch: int, global_batch: int):
        self.enabled, self.log_every = enabled, log_every
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.epochs, self.steps, self.global_batch = epochs, steps_per_epoch, global_batch
        self.use_bar = enabled and log is None and sys.stderr.isatty()
        self.bar = None

    def note(self, line: str) -> None:
        """A line of its own (resuming, early stopping), when enabled."""
        if self.enabled:
            self.log(line)

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
        self.close()
        if self.enabled:
            self.log(f"epoch {record['epoch']}/{self.epochs}: train {record['train_loss']:.5g} "
                     f"val {record['val_loss']:.5g}{' (best)' if record['best'] else ''} "
                     f"lr {record['lr']:.3g} {record['seconds']:.1f}s "
                     f"{record['samples_per_s']:.1f} samples/s")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class RunFiles:
    """metrics.csv and history.json (rewritten atomically after every epoch) and, when the
    tensorboard package is installed, TensorBoard scalars under ``tensorboard/``."""

    def __init__(self, run_dir: Path, tensorboard: bool = True):
        self.run_dir = run_dir
        self.writer = _tensorboard(run_dir) if tensorboard else None

    def write(self, history: list[dict[str, Any]]) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(history)
        atomic_write_text(self.run_dir / "metrics.csv", buffer.getvalue())
        atomic_write_text(self.run_dir / "history.json", json.dumps(history, indent=1) + "\n")
        if self.writer is not None and history:
            record = history[-1]
            for key in ("train_loss", "val_loss", "lr", "samples_per_s"):
                self.writer.add_scalar(key, record[key], record["epoch"])
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard is optional
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))
