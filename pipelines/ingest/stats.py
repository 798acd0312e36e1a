"""Normalization statistics: per-frame moments in one lazy pass, combined over the training times only."""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr


MOMENTS = ("count", "nan", "mean", "m2", "min", "max")


def frame_moments(data: xr.DataArray) -> xr.Dataset:
    """Per (time, channel): counts of finite and NaN values (the rest are infinite), and the mean, sum of squared
    deviations, min and max of the finite values (lazy; one NumPy function per block of whole frames)."""
    space = [d for d in data.dims if d not in ("time", "channel")]
    arr = data.transpose("time", "channel", *space).data
    if not hasattr(arr, "map_blocks"):  # NumPy-backed: one block
        import dask.array as da

        arr = da.from_array(arr, chunks=(-1, -1, *(-1 for _ in space)))
    arr = arr.rechunk({i: -1 for i in range(1, arr.ndim)})  # whole frames per block
    stacked = arr.map_blocks(_block_moments, drop_axis=list(range(2, arr.ndim)), new_axis=2,
                             chunks=(arr.chunks[0], arr.chunks[1], (len(MOMENTS),)), dtype="float64")
    coords = {"time": data["time"]} if "time" in data.coords else {}
    if "channel" in data.coords:
        coords["channel"] = data["channel"]
    out = xr.DataArray(stacked, dims=("time", "channel", "moment"), coords=coords)
    moments = {name: out.isel(moment=i, drop=True) for i, name in enumerate(MOMENTS)}
    for name in ("count", "nan"):
        moments[name] = moments[name].astype("int64")
    return xr.Dataset(moments)


def _block_moments(block: np.ndarray, frames_at_once: int = 256) -> np.ndarray:
    """(T, C, *space) -> (T, C, len(MOMENTS)) in float64, in few passes over the block, a few frames at a time
    (bounded temporary memory)."""
    x = block.reshape(block.shape[0], block.shape[1], -1)
    out = np.empty((x.shape[0], x.shape[1], len(MOMENTS)))
    for t in range(0, x.shape[0], frames_at_once):
        _frames_moments(x[t:t + frames_at_once], out[t:t + frames_at_once])
    return out


def _frames_moments(x: np.ndarray, out: np.ndarray) -> None:
    finite = np.isfinite(x)
    if finite.all():  # the common case: no masking
        wide = x.astype("float64")
        mean = wide.mean(axis=-1)
        wide -= mean[..., None]
        out[..., 0] = x.shape[-1]
        out[..., 1] = 0
        out[..., 2] = mean
        out[..., 3] = np.einsum("tcs,tcs->tc", wide, wide)
        out[..., 4] = x.min(axis=-1)
        out[..., 5] = x.max(axis=-1)
        return
    count = finite.sum(axis=-1)
    wide = np.where(finite, x, np.nan).astype("float64")
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN frames: NaN moments, counted as such
        mean = np.nanmean(wide, axis=-1)
        out[..., 0] = count
        out[..., 1] = np.isnan(x).sum(axis=-1)
        out[..., 2] = mean
        out[..., 3] = np.where(count > 0, np.nansum((wide - mean[..., None]) ** 2, axis=-1), 0.0)
        out[..., 4] = np.nanmin(wide, axis=-1)
        out[..., 5] = np.nanmax(wide, axis=-1)


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
