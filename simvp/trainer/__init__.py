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
`distributed` (device and process group), `memory` (running out of device memory), `resume` (checkpoints and resumption), `progress`
(progress lines and run files).
"""

import importlib

# each name loads its module on first use: `TrainConfig` (plain data) imports without torch
_HOMES = {
    "TRAJECTORY_FIELDS": ".resume",
    "WindowData": ".config",
    "TrainConfig": ".config",
    "TrainResult": ".config",
    "Prediction": ".config",
    "train": ".loop",
    "evaluate": ".loop",
    "predict": ".loop",
    "training_loss": ".loop",
    "tau_weight_for": ".loop",
    "epoch_permutation": ".loop",
    "epoch_order": ".loop",
    "iter_batches": ".loop",
    "derive_seed": ".loop",
    "seed_everything": ".loop",
    "build_optimizer": ".loop",
    "resolve_device": ".distributed",
    "DeviceError": ".distributed",
    "DeviceOutOfMemory": ".memory",
    "CheckpointError": "..errors",
}

__all__ = list(_HOMES)


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
