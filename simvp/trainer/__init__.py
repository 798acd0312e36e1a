"""Training engine for SimVP: one loop, plain-data config, checkpoints every epoch, exact resume.

    config = TrainConfig(epochs=10, lr=5e-4, seed=1)
    seed_everything(config.seed)        # before building the model: the seed fixes its initial weights
    model = SimVP(SimVPConfig(in_shape=(4, 2, 32, 32), hid_S=32))
    result = train(model, train_data, val_data, config, "runs/x", meta={...}, resume=True)
    model = model_from_checkpoint(result.best_path)

The data are any objects with ``len(data)`` and ``data.batch(index) -> (x, y)`` (`WindowData`, optionally with
their own shuffle and batch assembly ahead of use); the
trainer knows nothing of files or data sets. With ``resume=True`` a killed run continues from
``last.pt`` (weights, optimizer, scheduler, progress) and on the CPU in deterministic mode ends
bitwise where an uninterrupted run ends.

Distributed: under ``torchrun`` (``WORLD_SIZE > 1``) the model is wrapped in DDP, each rank takes its
slice of every global batch of the shared epoch permutation (so every rank runs the same number of
steps), losses are all-reduced and only rank 0 writes files.

Modules: `config` (what a run takes and gives), `loop` (the loop, evaluation, prediction),
`distributed` (device and process group), `resume` (checkpoints and resumption), `progress`
(progress lines and run files).
"""

from ..checkpoint import CheckpointError
from .config import Prediction, TrainConfig, TrainResult, WindowData
from .distributed import DeviceError, resolve_device
from .loop import (
    build_optimizer, derive_seed, epoch_order, epoch_permutation, evaluate, iter_batches, predict, seed_everything, tau_weight_for,
    train, training_loss,
)
from .resume import TRAJECTORY_FIELDS

__all__ = [
    "TRAJECTORY_FIELDS", "WindowData", "TrainConfig", "TrainResult", "Prediction", "train", "evaluate",
    "predict", "training_loss", "tau_weight_for", "epoch_permutation", "epoch_order", "iter_batches", "derive_seed", "seed_everything",
    "build_optimizer", "resolve_device", "DeviceError", "CheckpointError",
]
