"""Forecasts: a checkpoint and the latest T_in frames of a store -> a georeferenced forecast in physical units.

    paths = pipelines.forecast.run(ForecastSpec.from_catalog("era5-uk-t2m", checkpoint=best, out="fc/era5"))

Horizons beyond the trained T_out come from autoregressive rollout (`SimVP.rollout`, the same one evaluation
scores); several init times (a hindcast) run in batches on the model's device. Horizons and hindcasts whose
output would not fit are refused before any work. With `archive`, every init time is also added to the data
set's forecast archive (archive.py), which `simcast verify` scores once the truth is in the store.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import xarray as xr

from ..checkpoints import load_for_store, window_spec
from ..errors import InputError, UsageError
from ..outputs import claim, ensure_writable
from ..settings import resolve_device
from ..specs import ForecastSpec, parse_init_time
from ..store import open_store, physical_floor, reading, store_stats
from ..timeaxis import ns
from ..timefmt import iso_minutes
from ..windows import denormalize, normalize
from ..predict import FeatureClock, autocast, future_features, horizon_steps
from .archive import add_to_archive, check_archive_target
from .output import forecast_dataset, geotiff_folder, output_paths, write_forecast

MAX_INIT_TIMES = 100_000     # init times of one hindcast
OUTPUT_MEMORY_SHARE = 0.5    # a forecast is held in memory before it is written: at most this share of it


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def init_times(specs: list[str], times: pd.DatetimeIndex, step: pd.Timedelta) -> pd.DatetimeIndex:
    """Init times from 'YYYY-MM-DDTHH:MM' or 'start/end[/every]' ranges; none means the latest time."""
    if not specs:
        return pd.DatetimeIndex([times[-1]])
    out = []
    for text in specs:
        start, end, every = parse_init_time(text)
        every = every or step
        count = (end - start) // every + 1
        if count > MAX_INIT_TIMES:
            raise UsageError("init_times", f"{text!r} is {count} init times; at most {MAX_INIT_TIMES} per forecast")
        out.extend(pd.date_range(start, end, freq=every))
    return pd.DatetimeIndex(sorted(set(out)))


def history_index(store_path, times: pd.DatetimeIndex, step: pd.Timedelta, inits: pd.DatetimeIndex,
                  t_in: int) -> np.ndarray:
    """Store indices (N, T_in) of the frames up to each init time; an error if any is missing."""
    t = ns(times)
    pos = np.searchsorted(t, ns(inits))
    out = []
    for init, p in zip(inits, pos):
        if p >= len(t) or t[p] != init.value:
            raise InputError(store_path, f"init time {iso_minutes(init)} is not in the store "
                                         f"({iso_minutes(times[0])} .. {iso_minutes(times[-1])})")
        idx = np.arange(p - t_in + 1, p + 1)
        if idx[0] < 0 or t[p] - t[idx[0]] != (t_in - 1) * step.value:
            raise InputError(store_path, f"init time {iso_minutes(init)}: the {t_in} frames up to it are not all "
                                         "in the store (a gap or the start of the data)")
        out.append(idx)
    return np.stack(out)


def latest_init_with_truth(store: str | Path, t_in: int, steps: int) -> pd.Timestamp | None:
    """The latest init time whose T_in input frames and whole horizon of `steps` are in the store (so that a
    forecast from it can be shown next to what happened); None when there is none."""
    ds = open_store(store)
    times = pd.DatetimeIndex(ds["time"].values)
    step = pd.Timedelta(ds.attrs["time_step"])
    n = t_in + steps
    t = ns(times)
    if len(t) < n:
        return None
    whole = np.flatnonzero(t[n - 1:] - t[: len(t) - n + 1] == (n - 1) * step.value)
    return times[whole[-1] + t_in - 1] if len(whole) else None


def latest_time(store: str | Path) -> pd.Timestamp:
    return pd.Timestamp(open_store(store)["time"].values[-1])


def make_forecast(spec: ForecastSpec, batch_size: int = 32) -> xr.Dataset:
    """The forecast dataset (init_time, lead_time, ..., lat, lon) for the spec's init times."""
    ds = open_store(spec.store)
    model, ckpt = load_for_store(spec.checkpoint, ds, spec.store)
    dev = resolve_device(spec.device)
    model.to(dev)
    trained = window_spec(ckpt)
    step = pd.Timedelta(ds.attrs["time_step"])
    times = pd.DatetimeIndex(ds["time"].values)
    steps = horizon_steps(spec.lead_hours, trained, ds, "lead_hours")
    inits = init_times(spec.init_times, times, step)
    n_ch = ds.sizes["channel"]
    frame = n_ch * int(np.prod(ds["data"].shape[2:]))
    needed = len(inits) * steps * frame * 4
    if needed > OUTPUT_MEMORY_SHARE * _memory_bytes():
        raise UsageError("lead_hours" if spec.lead_hours else "init_times",
                         f"{len(inits)} init times x {steps} lead steps is a forecast of {needed / 2**30:.1f} GiB, "
                         f"more than half of this machine's memory; ask for fewer")
    hist = history_index(spec.store, times, step, inits, trained.input)
    stats, method = store_stats(ds), ds.attrs["normalization"]
    clock = FeatureClock(ds) if trained.time_features else None
    floor = physical_floor(ds)
    leads = pd.to_timedelta(np.arange(1, steps + 1) * step)
    values = np.empty((len(inits), steps, n_ch, *ds["data"].shape[2:]), dtype="float32")
    with reading(spec.store):
        for b0 in range(0, len(inits), batch_size):
            idx = hist[b0:b0 + batch_size]
            needed_frames = np.unique(idx)  # read only the frames these inits need
            frames = normalize(ds["data"][needed_frames].values.astype("float32"), stats, method)
            x = torch.from_numpy(frames[np.searchsorted(needed_frames, idx)]).to(dev)  # (B, T_in, C, H, W)
            features = None
            if clock is not None:
                past = np.stack([clock(times[row]) for row in idx])
                x = torch.cat([x, torch.from_numpy(past).to(dev)[..., None, None].expand(-1, -1, -1, *x.shape[-2:])],
                              dim=2)
                features = future_features(clock, inits[b0:b0 + batch_size], step, x.shape[-2:], dev)
            with torch.no_grad(), autocast(dev):
                pred = model.rollout(x, steps, features=features)
            pred = denormalize(pred[:, :, :n_ch].float(), stats, method)
            values[b0:b0 + len(idx)] = (pred if floor is None else pred.clamp_min(floor)).cpu().numpy()
    provenance = {"checkpoint": str(spec.checkpoint), "store": str(spec.store),
                  "model": ckpt["meta"].get("preset", ""), "translator": ckpt["meta"]["model_config"]["translator"],
                  "trained_output_frames": trained.output, "rollout": steps > trained.output}
    return forecast_dataset(values, inits.values, leads.values, ds, provenance)


def run(spec: ForecastSpec) -> dict[str, Path]:
    """Forecast and write it (Zarr and NetCDF, atomically; GeoTIFFs when asked); with spec.archive, add it to
    the forecast archive too (returned as "archive")."""
    for path in output_paths(spec.out).values():
        claim(path, "forecast")
    if spec.geotiff:
        claim(geotiff_folder(spec.out), "geotiff")
    if spec.archive:
        check_archive_target(spec.archive_path, spec.dataset)
        ensure_writable(Path(spec.archive_path).parent)
    ensure_writable(Path(spec.out).parent)
    forecast = make_forecast(spec)
    paths = write_forecast(forecast, spec.out, geotiff=spec.geotiff)
    if spec.archive:
        paths["archive"] = add_to_archive(forecast, spec.archive_path)
    return paths
