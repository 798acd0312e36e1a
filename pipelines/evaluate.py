"""Evaluation: the model next to persistence, the previous day and climatology, on the same samples,
in physical units, overall and per lead time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
import xarray as xr
from tqdm.auto import tqdm

from .baselines import Baselines
from .metrics import MetricAccumulator
from .store import write_atomic
from .windows import Windows, denormalize, physical_floor

FORECASTERS = ("model", "persistence", "previous_day", "climatology")
HEADLINE = ("rmse", "mae", "rmse_weighted", "mae_weighted", "acc", "mse_paper", "mae_paper", "ssim", "psnr")


def _accumulator(w: Windows) -> MetricAccumulator:
    ds = w.ds
    lat = ds["lat"].values.copy() if "lat" in ds.dims else None
    traffic = ds.attrs.get("kind") == "taxibj"
    scale = (w.stats["min"], w.stats["max"]) if traffic else None
    image = traffic and min(ds["data"].shape[2:]) >= 7
    return MetricAccumulator(w.spec.output, w.channels, lat=lat, scale=scale, image_metrics=image, device=w.device)


def clamp_physical(x: torch.Tensor, floor: float | None) -> torch.Tensor:
    return x if floor is None else x.clamp_min(floor)


def evaluate(w: Windows, predict: Callable[[torch.Tensor], torch.Tensor], batch_size: int = 64,
             progress: bool = True) -> tuple[dict, dict]:
    """Score `predict` (normalized x -> normalized y, (B, T_out, C_out or more, H, W)) and the baselines.

    Returns (metrics: {forecaster: result}, info: sample counts and period).
    """
    base = Baselines(w)
    samples = base.eligible()
    if samples.size == 0:
        raise ValueError(f"the {w.split} split has no complete window with its previous-day frames")
    accs = {name: _accumulator(w) for name in FORECASTERS}
    floor = physical_floor(w.ds)
    n_ch = len(w.channels)
    batches = range(0, samples.size, batch_size)
    for start in tqdm(batches, desc=f"evaluate {w.split}", disable=not progress, unit="batch"):
        index = samples[start:start + batch_size]
        x, y = w.batch(torch.from_numpy(index))
        with torch.no_grad():
            pred = predict(x)[:, :, :n_ch].float()
        truth = denormalize(y, w.stats, w.method)
        last = denormalize(x[:, -1, :n_ch], w.stats, w.method)
        clim = base.climatology(index).to(w.device)
        forecasts = {
            "model": clamp_physical(denormalize(pred, w.stats, w.method), floor),
            "persistence": base.persistence(last),
            "previous_day": base.previous_day(index).to(w.device),
            "climatology": clim,
        }
        for name, f in forecasts.items():
            accs[name].update(f, truth, climatology=clim if "lat" in w.ds.dims else None)
    t0 = w.times[w.starts[samples] + w.spec.input - 1]
    info = {
        "split": w.split,
        "samples": int(samples.size),
        "windows_in_split": len(w),
        "first_init_time": t0[0].isoformat(),
        "last_init_time": t0[-1].isoformat(),
        "input": w.spec.input,
        "output": w.spec.output,
        "time_step": w.ds.attrs["time_step"],
        "units": {c: str(u) for c, u in zip(w.channels, w.ds["units"].values)},
    }
    return {name: a.result() for name, a in accs.items()}, info


def metrics_dataset(metrics: dict, info: dict) -> xr.Dataset:
    """Metrics by lead time as a small dataset: dims (forecaster, lead_time)."""
    names = list(metrics)
    step = pd.Timedelta(info["time_step"])
    leads = pd.to_timedelta(np.arange(1, info["output"] + 1) * step)
    keys = [k for k in metrics[names[0]]["by_lead"]]
    data = {k: (("forecaster", "lead_time"), np.array([metrics[n]["by_lead"][k] for n in names], dtype="float64"))
            for k in keys}
    data.update({f"{k}_overall": (("forecaster",), np.array([metrics[n][k] for n in names], dtype="float64"))
                 for k in keys})
    ds = xr.Dataset(data, coords={"forecaster": names, "lead_time": leads})
    ds.attrs = {"convention": metrics[names[0]]["convention"],
                **{k: json.dumps(v) if isinstance(v, dict) else v for k, v in info.items()}}
    return ds


def write_metrics(metrics: dict, info: dict, out_dir: str | Path) -> dict[str, Path]:
    """metrics.json (one object per forecaster), evaluation.json (what was scored), metrics.nc (by lead)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"metrics": out_dir / "metrics.json", "info": out_dir / "evaluation.json", "netcdf": out_dir / "metrics.nc"}
    write_atomic(paths["metrics"], lambda tmp: tmp.write_text(json.dumps(_finite(metrics), indent=2)))
    write_atomic(paths["info"], lambda tmp: tmp.write_text(json.dumps(info, indent=2)))
    ds = metrics_dataset(metrics, info)
    write_atomic(paths["netcdf"], lambda tmp: ds.to_netcdf(tmp, engine="netcdf4"))
    return paths


def _finite(obj):
    """JSON has no NaN/inf: undefined scores (e.g. climatology's ACC, 0/0) become null, inf a string."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not np.isfinite(obj):
        return None if np.isnan(obj) else ("inf" if obj > 0 else "-inf")
    return obj


def headline(metrics: dict) -> list[tuple[str, dict[str, float]]]:
    """Rows for a table: each forecaster's overall metrics that exist."""
    return [(name, {k: r[k] for k in HEADLINE if k in r}) for name, r in metrics.items()]


def evaluate_checkpoint(name: str, checkpoint: str | Path, split: str = "test", out: str | Path | None = None,
                        store: str | Path | None = None, device: str = "auto", batch_size: int = 64,
                        progress: bool = True) -> tuple[dict, dict, dict[str, Path]]:
    """Score a checkpoint on a split of its store next to the baselines; write the metrics files."""
    import data_catalog
    from simvp.trainer import resolve_device

    from .store import open_store
    from .train import load_for_store, window_spec

    entry = data_catalog.get_entry(name)
    store = Path(store) if store is not None else data_catalog.store_path(entry)
    ds = open_store(store)
    model, ckpt = load_for_store(checkpoint, ds, store)
    dev = resolve_device(device)
    model.to(dev)
    w = Windows(ds, split, window_spec(ckpt["meta"]), device=dev)

    def predict(x):
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            return model(x)

    metrics, info = evaluate(w, predict, batch_size, progress)
    info.update({"dataset": name, "checkpoint": str(checkpoint), "store": str(store),
                 "best_epoch": ckpt.get("state", {}).get("best_epoch")})
    out = Path(out) if out is not None else Path(checkpoint).parent / f"eval-{split}"
    return metrics, info, write_metrics(metrics, info, out)
