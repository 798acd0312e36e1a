"""Training: a store's windows -> SimVP -> checkpoints in a run folder.

    outcome = pipelines.train.run(TrainSpec.from_catalog("nybike", epochs=3, seed=1))

The run folder holds spec.json (what was asked, enough to rerun it: `simcast train --spec`), best.pt, last.pt,
metrics.csv and history.json. The seed fixes the initial weights, the data order and dropout; with
`deterministic` two runs give bitwise-equal weights, and a killed run resumed with `resume` ends where an
uninterrupted one ends.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

import simvp
from data_catalog import CatalogError
from simvp.checkpoint import CheckpointError, load_checkpoint, model_config, to_json
from simvp.trainer import DeviceOutOfMemory, TrainResult, seed_everything, train
from simvp.trainer.resume import META_KEYS_FREE_ON_RESUME, TRAJECTORY_FIELDS

from . import __version__
from .checkpoints import store_signature
from .errors import InputError, OutputError, SimcastError, UsageError
from .outputs import claim, ensure_writable, mark, owner_kind, write_text_atomic
from .settings import resolve_device
from .specs import TrainSpec
from .store import open_store, reading
from .windows import split_windows


class TrainingDiverged(SimcastError):
    """The loss became NaN or infinite: the settings (learning rate, batch size) do not suit the data."""


class OutOfDeviceMemory(SimcastError):
    """The GPU (or CPU) ran out of memory at the batch size asked for."""


def out_of_memory_line(run_dir: Path, error: DeviceOutOfMemory) -> str:
    """What failed and what to try: half the batch size that failed (the one of this phase), or bf16 autocast."""
    option = "--batch-size" if error.phase == "a training step" else "--eval-batch-size"
    advice = f"try {option} {error.smaller_batch}"
    if not error.amp and error.device.startswith("cuda"):
        advice += " or bf16 autocast (--amp)"
    return f"{run_dir}: {error}; {advice}"


@dataclass
class TrainOutcome:
    run_dir: Path
    best_path: Path
    result: TrainResult
    samples: dict[str, int]


def _main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def check_run_dir(spec: TrainSpec) -> None:
    """Refuse, before any work, a run folder path that holds anything but a new run or the run to resume."""
    run_dir = spec.run_dir
    found = owner_kind(run_dir) if run_dir.exists() else None
    if found == "run" and not spec.resume and (run_dir / "last.pt").exists():
        raise UsageError("run_dir", f"{run_dir} holds a previous run; continue it with --resume, or choose "
                                    "another run folder")
    claim(run_dir, "run")


def prepare_run_dir(spec: TrainSpec) -> None:
    """Create and mark the run folder, once every check has passed (a refused run leaves no folder behind)."""
    check_run_dir(spec)
    fresh = owner_kind(spec.run_dir) != "run"
    ensure_writable(spec.run_dir)
    if fresh:
        mark(spec.run_dir, "run", dataset=spec.dataset)


def _check_resumed_data(spec: TrainSpec, signature: dict) -> None:
    """Resuming another data set's (or another store's) run is refused for that reason, before anything else."""
    last = spec.run_dir / "last.pt"
    if not (spec.resume and last.exists()):
        return
    meta = load_checkpoint(last)["meta"]
    if meta.get("dataset") != spec.dataset:
        raise CheckpointError(f"{last}: this run trained data set {meta.get('dataset')!r}, not {spec.dataset!r}; "
                              "resume it with its own data set, or start a new run")
    trained = meta.get("store", {})
    for key in ("channels", "grid", "time_step", "normalization", "stats"):
        if trained.get(key) != signature.get(key):
            raise CheckpointError(f"{last}: this run trained on a store with other {key.replace('_', ' ')} than "
                                  f"{spec.store} (rebuilt from other data?); start a new run")


def _gib(n: int) -> str:
    return f"{n / 2**30:.3g} GiB"


def available_memory(device) -> int:
    """Bytes free for training on the device: the GPU's free memory, or the machine's available memory."""
    if device.type == "cuda":
        import torch

        return int(torch.cuda.mem_get_info(device)[0])
    import psutil

    return int(psutil.virtual_memory().available)


def check_fits(spec: TrainSpec, config, device) -> None:
    """Refuse, before building it, a model that the device cannot hold for training: the estimate of
    simvp.training_memory (weights, gradients, Adam moments, the activations of one batch) against the memory
    available now. Named as the user gave it: the spec file's field model, the catalog's, or --batch-size."""
    from simvp.model import training_memory

    params, need = training_memory(config, spec.training.batch_size)
    free = available_memory(device)
    if need <= free:
        return
    sizes = ", ".join(f"{k}={getattr(config, k)}" for k in ("hid_S", "hid_T", "N_S", "N_T"))
    problem = (f"a SimVP of {params:.3g} parameters ({sizes}) needs about {_gib(need)} to train with batch size "
               f"{spec.training.batch_size} on {device.type}, more than the {_gib(free)} available")
    if spec.spec_file is not None:
        raise InputError(spec.spec_file, f"field model: {problem}; choose a smaller model or batch size")
    if 16 * params <= free:
        raise UsageError("batch_size", f"{problem}; choose a smaller batch size")
    from .settings import Settings

    origin = Settings.load().catalog().origins.get(spec.dataset, "catalog")
    raise CatalogError(f"{origin}: entry {spec.dataset!r}: field training.model (with preset {spec.preset!r}): "
                       f"{problem}; choose a smaller model")


def _check_resumable(spec: TrainSpec, meta: dict, model) -> None:
    """What the trainer checks before resuming (the same data, model and trajectory settings), checked before
    spec.json is written: a refused resume changes nothing in the run folder."""
    last = spec.run_dir / "last.pt"
    if not (spec.resume and last.exists()):
        return
    saved = load_checkpoint(last)["meta"]
    ours = json.loads(to_json({**meta, "model_config": model_config(model)}, "meta"))
    keys = sorted(k for k in ours if k not in META_KEYS_FREE_ON_RESUME and saved.get(k) != ours[k])
    if keys:
        raise CheckpointError(f"{last}: cannot resume: the run in {spec.run_dir} was trained on other data or "
                              f"another model (differs in: {', '.join(keys)}); use a new run folder")
    before, now = saved.get("train_config", {}), json.loads(json.dumps(spec.training.to_dict()))
    changed = [f"{k}={before.get(k)!r}->{now.get(k)!r}" for k in TRAJECTORY_FIELDS if before.get(k) != now.get(k)]
    if changed:
        raise CheckpointError(f"{last}: cannot resume with a different training config ({', '.join(changed)}); "
                              "use the same settings or a new run folder")


def start_at_fitted_forecast(model, ds, config) -> bool:
    """Set the model's per-lead trend weights to the fitted linear forecast's coefficients (pipelines/scoring:
    least squares on the training split; the same in normalized units, which only shift and scale), so that the
    untrained model is that forecast. Only where the residual lag is one day, the fitted forecast's; the weights
    stay at zero otherwise. A resumed run then loads its own weights over these."""
    import torch

    from .scoring.forecasters import Fitted, StoreFrames
    from .scoring.regions import grid_regions

    step = pd.Timedelta(ds.attrs["time_step"])
    if config.residual_lag is None or config.residual_lag * step != pd.Timedelta(days=1):
        return False
    frames = StoreFrames(ds, np.arange(1, model.out_frames + 1), "cpu")
    a = Fitted(frames, grid_regions(ds).weights).coefficients.mean(axis=1)  # (leads,): one weight per lead
    with torch.no_grad():
        model.trend_weight.copy_(torch.as_tensor(a, dtype=model.trend_weight.dtype))
    return True


def run(spec: TrainSpec, progress: bool = True, log=None) -> TrainOutcome:
    """Train SimVP as the spec says; returns the run folder, the best checkpoint and the training record."""
    device = resolve_device(spec.training.device)
    if _main_process():
        check_run_dir(spec)
    ds = open_store(spec.store)
    if ds.attrs["dataset"] != spec.dataset:
        raise InputError(spec.store, f"holds data set {ds.attrs['dataset']!r}, not {spec.dataset!r}")
    signature = store_signature(ds)
    _check_resumed_data(spec, signature)
    with reading(spec.store):
        windows = split_windows(ds, spec.window, device=device)
    if len(windows["validation"]) == 0:  # model selection needs at least one validation window
        raise InputError(spec.store, f"the validation split holds no complete window of {spec.window.length} steps "
                                     f"({spec.window.input} in + {spec.window.output} out); shorten --input/--output "
                                     f"or lengthen the catalog's validation split")
    (t_in, channels, *grid) = windows["train"].shape
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if len(windows["train"]) < spec.training.batch_size * world:
        raise UsageError("batch_size", f"{spec.training.batch_size} x {world} processes is more than the "
                                       f"{len(windows['train'])} training samples of {spec.dataset}")
    steps = len(windows["train"]) // (spec.training.batch_size * world)
    steps = min(steps, spec.training.max_steps_per_epoch or steps) * spec.training.epochs
    if spec.training.schedule == "onecycle" and steps < 2:
        raise UsageError("schedule", f"onecycle needs at least 2 optimizer steps, these settings give {steps}; "
                                     "train longer or use --schedule constant")
    config = spec.simvp_config(channels, tuple(grid))
    check_fits(spec, config, device)
    seed_everything(spec.training.seed)  # before the model is built: the seed fixes its initial weights
    model = simvp.SimVP(config)
    if config.anchor_trend and spec.anchor_init == "fitted":
        start_at_fitted_forecast(model, ds, config)
    meta = {
        "dataset": spec.dataset,
        "preset": spec.preset,
        "catalog_entry": json.loads(ds.attrs["catalog_entry"]),
        "store": signature,
        "store_path": str(spec.store),
        "store_fingerprint": ds.attrs["fingerprint"],
        "window": spec.window.model_dump(),
        "samples": {s: len(w) for s, w in windows.items()},
        "simcast_version": __version__,
    }
    if _main_process():
        _check_resumable(spec, meta, model)  # a refused resume leaves the run folder as it is
        prepare_run_dir(spec)
        write_text_atomic(spec.run_dir / "spec.json", spec.dump() + "\n")
    try:
        with reading(spec.store):
            result = train(model, windows["train"], windows["validation"], spec.training, spec.run_dir, meta,
                           resume=spec.resume, progress=progress, log=log)
    except FloatingPointError as e:
        raise TrainingDiverged(f"{spec.run_dir}: {e}") from None
    except DeviceOutOfMemory as e:
        raise OutOfDeviceMemory(out_of_memory_line(spec.run_dir, e)) from None
    except FileExistsError as e:  # the trainer's own guard against overwriting a run (checked above as well)
        raise OutputError(spec.run_dir, str(e)) from None
    return TrainOutcome(spec.run_dir, result.best_path, result, meta["samples"])
