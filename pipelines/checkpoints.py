"""A checkpoint and the store it is used with: what a model depends on, and the check that they fit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

from simvp.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint

from .store import store_stats
from .windows import WindowSpec

CHECKED = (("channels", "channels"), ("grid", "grid"), ("time_step", "time step"),
           ("normalization", "normalization"), ("lat", "latitudes"), ("lon", "longitudes"))


def store_signature(ds: xr.Dataset) -> dict:
    """What a model trained on a store depends on: channels, grid, step, normalization (and, for the record and
    for resuming, the data set)."""
    sig = {
        "dataset": ds.attrs["dataset"],
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
    if ds["data"].dims[2:] == ("y", "x"):
        sig["extent"] = json.loads(ds.attrs.get("extent", "null"))
    return sig


def check_compatible(checkpoint_path, ckpt: dict, ds: xr.Dataset, store_path) -> None:
    """A checkpoint applies only to a store with its channels, grid, step and statistics."""
    trained = ckpt["meta"].get("store")
    if trained is None:
        raise CheckpointError(f"{checkpoint_path}: not a simcast training checkpoint (no store signature)")
    have = store_signature(ds)
    for key, what in CHECKED:
        if trained.get(key) != have.get(key):
            raise CheckpointError(f"{checkpoint_path}: checkpoint was trained on {what} {trained.get(key)}, "
                                  f"the store {store_path} has {have.get(key)}")
    for k in ("mean", "std", "min", "max"):
        if not np.allclose(trained["stats"][k], have["stats"][k], rtol=1e-6, atol=1e-9):
            raise CheckpointError(f"{checkpoint_path}: normalization statistics ({k}) differ from those of "
                                  f"{store_path}; the store was rebuilt from other data: retrain")


def load_for_store(checkpoint_path: str | Path, ds: xr.Dataset, store_path):
    """Load, verify and check a checkpoint against a store; returns (model in eval mode, checkpoint)."""
    ckpt = load_checkpoint(checkpoint_path)
    check_compatible(checkpoint_path, ckpt, ds, store_path)
    model = model_from_checkpoint(ckpt)
    model.eval()
    return model, ckpt


def window_spec(ckpt: dict) -> WindowSpec:
    return WindowSpec(**ckpt["meta"]["window"])
