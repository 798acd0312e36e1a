"""Forecasts: a checkpoint and the latest T_in frames of a store -> a georeferenced forecast in physical units.

Horizons beyond the trained T_out come from autoregressive rollout; several init times (a hindcast) run
in batches on the model's device.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
import xarray as xr

import data_catalog
from simvp.trainer import resolve_device

from .errors import InputError
from .forecast_io import forecast_dataset, write_forecast
from .store import open_store
from .timeaxis import ns
from .train import load_for_store, window_spec
from .evaluate import clamp_physical
from .windows import denormalize, normalize, physical_floor, store_stats, time_features, weekly_rhythm


def parse_init_times(specs: list[str] | None, times: pd.DatetimeIndex, step: pd.Timedelta) -> pd.DatetimeIndex:
    """Init times from 'YYYY-MM-DDTHH:MM' or 'start/end[/every]' ranges; none means the latest time."""
    if not specs:
        return pd.DatetimeIndex([times[-1]])
    out = []
    for spec in specs:
        parts = spec.split("/")
        if len(parts) == 1:
            out.append(pd.Timestamp(parts[0]))
        elif len(parts) in (2, 3):
            every = pd.Timedelta(parts[2]) if len(parts) == 3 else step
            out.extend(pd.date_range(parts[0], parts[1], freq=every))
        else:
            raise ValueError(f"init time {spec!r}: use a time or start/end[/every]")
    return pd.DatetimeIndex(sorted(set(out)))


def history_index(store_path, times: pd.DatetimeIndex, step: pd.Timedelta, inits: pd.DatetimeIndex,
                  t_in: int) -> np.ndarray:
    """Store indices (N, T_in) of the frames up to each init time; an error if any is missing."""
    t = ns(times)
    pos = np.searchsorted(t, ns(inits))
    out = []
    for init, p in zip(inits, pos):
        if p >= len(t) or t[p] != init.value:
            raise InputError(store_path, f"init time {init.isoformat()} is not in the store "
                                         f"({times[0].isoformat()} .. {times[-1].isoformat()})")
        idx = np.arange(p - t_in + 1, p + 1)
        if idx[0] < 0 or t[p] - t[idx[0]] != (t_in - 1) * step.value:
            raise InputError(store_path, f"init time {init.isoformat()}: the {t_in} frames up to it are not all "
                                         f"in the store (a gap or the start of the data)")
        out.append(idx)
    return np.stack(out)


@torch.no_grad()
def rollout(model, x: torch.Tensor, steps: int, n_channels: int, features=None) -> torch.Tensor:
    """Feed the model its own outputs until `steps` frames exist. When x carries time-feature channels
    after the data channels, the predicted ones are replaced by the true features of those times:
    features(k0, k1) -> (B, k1 - k0, F, H, W) for lead steps k0..k1-1."""
    context, produced, out = x, 0, []
    t_in = model.in_frames
    while produced < steps:
        y = model(context[:, -t_in:]).float()
        k = y.shape[1]
        if features is not None:
            y = torch.cat([y[:, :, :n_channels], features(produced, produced + k)], dim=2)
        out.append(y[:, :, :n_channels])
        context = torch.cat([context[:, -t_in:], y], dim=1)
        produced += k
    return torch.cat(out, dim=1)[:, :steps]


def make_forecast(checkpoint: str | Path, store: str | Path, init_times: list[str] | None = None,
                  lead_hours: float | None = None, device: str = "auto", batch_size: int = 32) -> xr.Dataset:
    """The forecast dataset (init_time, lead_time, ..., lat, lon) for the given init times."""
    ds = open_store(store)
    model, ckpt = load_for_store(checkpoint, ds, store)
    dev = resolve_device(device)
    model.to(dev)
    spec = window_spec(ckpt["meta"])
    step = pd.Timedelta(ds.attrs["time_step"])
    times = pd.DatetimeIndex(ds["time"].values)
    steps = spec.output if lead_hours is None else int(np.ceil(pd.Timedelta(hours=lead_hours) / step))
    if steps < 1:
        raise ValueError(f"lead hours must cover at least one {step} step")
    inits = parse_init_times(init_times, times, step)
    hist = history_index(store, times, step, inits, spec.input)
    stats, method = store_stats(ds), ds.attrs["normalization"]
    n_ch = ds.sizes["channel"]
    floor = physical_floor(ds)
    holidays = None
    if "holiday" in ds:
        holidays = set(times[ds["holiday"].values.astype(bool)].normalize())

    def feats(t: pd.DatetimeIndex, grid) -> torch.Tensor:
        hol = np.asarray(t.normalize().isin(list(holidays))) if holidays is not None else None
        f = torch.from_numpy(time_features(t, hol, weekly_rhythm(ds))).to(dev)
        return f[..., None, None].expand(-1, -1, *grid)

    leads = pd.to_timedelta(np.arange(1, steps + 1) * step)
    values = np.empty((len(inits), steps, n_ch, *ds["data"].shape[2:]), dtype="float32")
    for b0 in range(0, len(inits), batch_size):
        idx = hist[b0:b0 + batch_size]
        needed = np.unique(idx)  # read only the frames these inits need
        frames = normalize(ds["data"][needed].values.astype("float32"), stats, method)
        x = torch.from_numpy(frames[np.searchsorted(needed, idx)]).to(dev)  # (B, T_in, C, H, W)
        grid = x.shape[-2:]
        future = None
        if spec.time_features:
            x = torch.cat([x, torch.stack([feats(times[row], grid) for row in idx])], dim=2)
            init_b = inits[b0:b0 + batch_size]

            def future(k0, k1, init_b=init_b):
                ahead = pd.to_timedelta(np.arange(k0 + 1, k1 + 1) * step)  # may run past the last lead
                return torch.stack([feats(pd.DatetimeIndex(t0 + ahead), grid) for t0 in init_b])
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            pred = rollout(model, x, steps, n_ch, future)
        values[b0:b0 + len(idx)] = clamp_physical(denormalize(pred.float(), stats, method), floor).cpu().numpy()
    provenance = {"checkpoint": str(checkpoint), "store": str(store), "model": ckpt["meta"].get("preset", ""),
                  "translator": ckpt["meta"]["model_config"]["translator"],
                  "trained_output_frames": spec.output, "rollout": steps > spec.output}
    return forecast_dataset(values, inits.values, leads.values, ds, provenance)


def run_forecast(name: str, checkpoint: str | Path, out: str | Path, init_times: list[str] | None = None,
                 lead_hours: float | None = None, store: str | Path | None = None, device: str = "auto",
                 geotiff: bool = False) -> dict[str, Path]:
    """Forecast for a catalog entry and write it (Zarr and NetCDF, atomically)."""
    entry = data_catalog.get_entry(name)
    store = Path(store) if store is not None else data_catalog.store_path(entry)
    fc = make_forecast(checkpoint, store, init_times, lead_hours, device)
    return write_forecast(fc, out, geotiff=geotiff)
