"""Normalization statistics: per-frame moments in one lazy pass, combined over the training times only."""

from __future__ import annotations

import numpy as np
import xarray as xr


def frame_moments(data: xr.DataArray) -> xr.Dataset:
    """Per (time, channel): counts of finite and NaN values (the rest are infinite), and the mean, sum of squared
    deviations, min and max of the finite values (lazy)."""
    space = [d for d in data.dims if d not in ("time", "channel")]
    raw = data.astype("float64")
    x = raw.where(np.isfinite(raw))
    mean = x.mean(space, skipna=True)
    return xr.Dataset({
        "count": x.count(space),
        "nan": raw.isnull().sum(space),
        "mean": mean,
        "m2": ((x - mean) ** 2).sum(space, skipna=True),
        "min": x.min(space, skipna=True),
        "max": x.max(space, skipna=True),
    })


def combine_moments(m: xr.Dataset) -> xr.Dataset:
    """Exact per-channel mean/std/min/max over all the times in `m` (Chan et al.'s parallel variance)."""
    n_t = m["count"].astype("float64")
    n = n_t.sum("time")
    mean = (n_t * m["mean"].fillna(0)).sum("time") / n
    m2 = m["m2"].fillna(0).sum("time") + (n_t * (m["mean"].fillna(0) - mean) ** 2).sum("time")
    return xr.Dataset({
        "mean": mean,
        "std": np.sqrt(m2 / n),
        "min": m["min"].min("time"),
        "max": m["max"].max("time"),
        "count": n.astype("int64"),
    })
