"""Training glue: a catalog entry's store -> windows -> SimVP -> checkpoints; and checkpoint/store checks."""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

import data_catalog
import simvp
from simvp.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from simvp.trainer import RECIPES, TrainConfig, TrainResult, resolve_device, train

from . import __version__
from .errors import InputError
from .store import open_store
from .windows import WindowSpec, split_windows, store_stats

DEFAULT_RUNS = Path("runs")


@dataclass
class TrainOutcome:
    run_dir: Path
    best_path: Path
    result: TrainResult
    samples: dict[str, int]


def store_signature(ds: xr.Dataset) -> dict:
    """What a model trained on a store depends on: channels, grid, step, normalization."""
    spatial = ds["data"].dims[2:]
    sig = {
        "dataset": ds.attrs["dataset"],
        "kind": ds.attrs["kind"],
        "channels": [str(c) for c in ds["channel"].values],
        "units": [str(u) for u in ds["units"].values],
        "grid": [int(n) for n in ds["data"].shape[2:]],
        "dims": list(ds["data"].dims),
        "time_step": ds.attrs["time_step"],
        "normalization": ds.attrs["normalization"],
        "stats": store_stats(ds),
    }
    if "lat" in ds.coords:
        sig["lat"] = [float(ds["lat"].values[0]), float(ds["lat"].values[-1])]
        sig["lon"] = [float(ds["lon"].values[0]), float(ds["lon"].values[-1])]
    if spatial == ("y", "x"):
        sig["extent"] = json.loads(ds.attrs.get("extent", "null"))
    return sig


def check_compatible(checkpoint_path, ckpt: dict, ds: xr.Dataset, store_path) -> None:
    """A checkpoint applies only to a store with its channels, grid, step and statistics."""
    trained = ckpt["meta"].get("store")
    if trained is None:
        raise CheckpointError(f"{checkpoint_path}: not a simcast training checkpoint (no store signature)")
    have = store_signature(ds)
    for key, what in (("channels", "channels"), ("grid", "grid"), ("time_step", "time step"),
                      ("normalization", "normalization"), ("lat", "latitudes"), ("lon", "longitudes")):
        if trained.get(key) != have.get(key):
            raise CheckpointError(f"{checkpoint_path}: checkpoint was trained on {what} {trained.get(key)}, "
                                  f"the store {store_path} has {have.get(key)}")
    for k in ("mean", "std", "min", "max"):
        if not np.allclose(trained["stats"][k], have["stats"][k], rtol=1e-6, atol=1e-9):
            raise CheckpointError(f"{checkpoint_path}: normalization statistics ({k}) differ from those of "
                                  f"{store_path}; the store was rebuilt from other data — retrain")


def load_for_store(checkpoint_path, ds: xr.Dataset, store_path):
    """Load, verify and check a checkpoint against a store; returns (model in eval mode, checkpoint)."""
    ckpt = load_checkpoint(checkpoint_path)
    check_compatible(checkpoint_path, ckpt, ds, store_path)
    model = model_from_checkpoint(ckpt)
    model.eval()
    return model, ckpt


def window_spec(meta: dict) -> WindowSpec:
    return WindowSpec(**meta["window"])


def _train_config(entry, epochs, device, overrides: dict) -> TrainConfig:
    t = entry.training
    recipe = (t.recipe if t and t.recipe else None) or (t.preset if t and t.preset in RECIPES else None)
    fields = {k: getattr(t, k) for k in ("epochs", "batch_size", "lr", "optimizer", "weight_decay", "schedule",
                                     "warmup_epochs", "patience")
              if t is not None and getattr(t, k) is not None}
    fields.update({k: v for k, v in overrides.items() if v is not None})
    if epochs is not None:
        fields["epochs"] = epochs
    fields["device"] = device
    if recipe and "warmup_epochs" not in fields and "epochs" in fields:
        # a shortened run keeps the recipe's shape: warm up for the same share of it, not the full-length count
        full = RECIPES[recipe]
        fields["warmup_epochs"] = full.get("warmup_epochs", 0) * fields["epochs"] / full.get("epochs", fields["epochs"])
    return TrainConfig.from_recipe(recipe, **fields) if recipe else TrainConfig(**fields)


def new_run_dir(name: str) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return DEFAULT_RUNS / f"{name}-{stamp}"


def latest_run_dir(name: str) -> Path | None:
    runs = sorted(DEFAULT_RUNS.glob(f"{name}-*"))
    return runs[-1] if runs else None


def run_training(name: str, store: str | Path | None = None, preset: str | None = None,
                 translator: str | None = None, epochs: int | None = None, device: str = "auto",
                 out: str | Path | None = None, resume: bool = False, progress: bool = True,
                 log=None, input_frames: int | None = None, output_frames: int | None = None,
                 stride: int | None = None, **overrides) -> TrainOutcome:
    """Train SimVP on an ingested catalog entry with its default settings (flags override them)."""
    entry = data_catalog.get_entry(name)
    store_path = Path(store) if store is not None else data_catalog.store_path(entry)
    ds = open_store(store_path)
    if ds.attrs["dataset"] != entry.name:
        raise InputError(store_path, f"holds data set {ds.attrs['dataset']!r}, not {entry.name!r}")
    t = entry.training
    preset = preset or (t.preset if t else None)
    if preset is None:
        raise InputError(entry.name, "no training defaults in the catalog; pass --preset")
    if preset not in simvp.PRESETS:
        raise InputError(entry.name, f"unknown preset {preset!r} (known: {', '.join(simvp.PRESETS)})")
    spec = WindowSpec.from_store(ds, input=input_frames, output=output_frames, stride=stride,
                                 time_features=bool(t and t.time_features))
    config = _train_config(entry, epochs, device, overrides)
    # under torchrun each process holds its data on its own GPU
    windows = split_windows(ds, spec, device=resolve_device(device, int(os.environ.get("LOCAL_RANK", 0))))
    model_args = {**simvp.PRESETS[preset], **(t.model if t else {}),
                  "in_shape": windows["train"].shape, "out_frames": spec.output,
                  "translator": translator or (t.translator if t else "gsta")}
    try:
        model = simvp.SimVP(**model_args)
    except ValueError as error:
        raise InputError(entry.name, f"cannot build the model for a {spec.input} -> {spec.output} window: {error}")
    if out is not None:
        run_dir = Path(out)
    elif resume:
        run_dir = latest_run_dir(name) or new_run_dir(name)
    else:
        run_dir = new_run_dir(name)
    meta = {
        "dataset": entry.name,
        "preset": preset,
        "catalog_entry": json.loads(ds.attrs["catalog_entry"]),
        "store": store_signature(ds),
        "store_path": str(store_path),
        "store_fingerprint": ds.attrs["fingerprint"],
        "window": {"input": spec.input, "output": spec.output, "stride": spec.stride,
                   "time_features": spec.time_features},
        "samples": {s: len(w) for s, w in windows.items()},
        "simcast_version": __version__,
    }
    result = train(model, windows["train"], windows["validation"], config, run_dir, meta,
                   resume=resume, progress=progress, log=log)
    return TrainOutcome(run_dir, result.best_path, result, meta["samples"])
