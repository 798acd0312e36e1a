"""TaxiBJ-layout HDF5 (`data` (N, 2, H, W), `date` bytes YYYYMMDDSS) -> canonical (time, channel, y, x)."""

from __future__ import annotations

from pathlib import Path

import dask.array as dsa
import h5py
import numpy as np
import pandas as pd
import xarray as xr

from data_catalog import DatasetEntry

from ... import cf
from ...errors import InputError
from ...timeaxis import check_file_times, order_files, source_codes
from . import register

CHANNELS = ["inflow", "outflow"]


class H5Array:
    """A picklable, lazily read HDF5 dataset: each read opens the file, so dask workers can share it."""

    def __init__(self, path: Path, name: str, shape: tuple[int, ...], dtype: np.dtype):
        self.path, self.name, self.shape, self.dtype, self.ndim = str(path), name, shape, dtype, len(shape)

    def __getitem__(self, key):
        try:
            with h5py.File(self.path, "r") as f:
                return f[self.name][key]
        except OSError as e:  # a corrupt compressed chunk: "Can't read data (inflate() failed)"
            raise InputError(self.path, f"corrupt data in {self.name!r}: {str(e).splitlines()[0]}") from None


def decode_slots(path: Path, raw: np.ndarray, step: pd.Timedelta) -> pd.DatetimeIndex:
    """`YYYYMMDDSS` with SS = 1 .. slots per day -> the slot's start time."""
    slots_per_day = pd.Timedelta(days=1) // step
    text = np.char.decode(raw.astype("S10"), "ascii") if raw.dtype.kind == "S" else raw.astype(str)
    ok = np.char.isdigit(text) & (np.char.str_len(text) == 10)
    if not ok.all():
        raise InputError(path, f"date value {str(text[~ok][0])!r} is not YYYYMMDDSS")
    slot = text.astype("U10").view("U1").reshape(-1, 10)[:, 8:].astype(object).sum(axis=1).astype(int)
    days = pd.to_datetime(np.array([t[:8] for t in text]), format="%Y%m%d", errors="coerce")
    if days.hasnans or ((slot < 1) | (slot > slots_per_day)).any():
        i = int(np.flatnonzero(days.isna() | (slot < 1) | (slot > slots_per_day))[0])
        raise InputError(path, f"date value {str(text[i])!r} is not a valid day and slot 01..{slots_per_day:02d}")
    return pd.DatetimeIndex(days + (slot - 1) * step)


def _open(path: Path, entry: DatasetEntry) -> tuple[pd.DatetimeIndex, H5Array]:
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in ("data", "date") if k not in f]
            if missing:
                raise InputError(path, f"missing dataset {missing[0]!r} (has: {', '.join(f.keys()) or 'none'})")
            data, raw_dates = f["data"], f["date"][()]
            shape, dtype = tuple(data.shape), data.dtype
    except OSError as e:
        raise InputError(path, f"not a readable HDF5 file (truncated or corrupt?): {str(e).splitlines()[0]}") from None
    if len(shape) != 4 or shape[1] != 2:
        raise InputError(path, f"'data' has shape {shape}; expected (time, 2, rows, cols)")
    if entry.grid is not None and tuple(shape[2:]) != tuple(entry.grid):
        raise InputError(path, f"grid is {shape[2]}x{shape[3]}; catalog entry {entry.name!r} expects "
                               f"{entry.grid[0]}x{entry.grid[1]}")
    if len(raw_dates) != shape[0]:
        raise InputError(path, f"'date' has {len(raw_dates)} values but 'data' has {shape[0]} time slots")
    times = decode_slots(path, np.asarray(raw_dates).reshape(-1), entry.step)
    check_file_times(path, times)
    return times, H5Array(path, "data", shape, dtype)


def grid_coords(entry: DatasetEntry, rows: int, cols: int) -> dict:
    """Cell-centre lat(y)/lon(x) from the catalog extent; row 0 is the northern edge (image order)."""
    if entry.extent is None:
        return {}
    (la0, la1), (lo0, lo1) = entry.extent.lat, entry.extent.lon
    dlat, dlon = (la1 - la0) / rows, (lo1 - lo0) / cols
    return {
        "lat": ("y", la1 - dlat * (np.arange(rows) + 0.5), cf.LAT),
        "lon": ("x", lo0 + dlon * (np.arange(cols) + 0.5), cf.LON),
    }


def read_holidays(path: Path) -> set[pd.Timestamp]:
    """The TaxiBJ holiday list: one YYYYMMDD per line."""
    try:
        lines = [ln.strip() for ln in Path(path).read_text().splitlines() if ln.strip()]
    except OSError as e:
        raise InputError(path, f"holiday file not readable: {e.strerror}") from None
    days = pd.to_datetime(lines, format="%Y%m%d", errors="coerce")
    if days.hasnans:
        raise InputError(path, f"line {lines[int(np.flatnonzero(days.isna())[0])]!r} is not YYYYMMDD")
    return set(days)


@register("taxibj", physical_floor=0.0, weekly_rhythm=True, time_zone="", image_metrics=True)
def read_taxibj(entry: DatasetEntry, files: dict[str, list[Path]], chunk_frames: int = 1024) -> xr.Dataset:
    paths = sorted({f for fs in files.values() for f in fs})
    opened = {str(p): _open(p, entry) for p in paths}
    ordered = order_files([(p, t) for p, (t, _) in opened.items()])
    grids = {opened[p][1].shape[2:] for p, _ in ordered}
    if len(grids) > 1:
        raise InputError(ordered[-1][0], f"grid differs between files: {sorted(grids)}")
    arrays = [dsa.from_array(opened[p][1], chunks=(chunk_frames, 2, -1, -1), lock=False) for p, _ in ordered]
    data = dsa.concatenate(arrays, axis=0).astype("float32")
    times = pd.DatetimeIndex(np.concatenate([t.values for _, t in ordered])).as_unit("ns")
    sources = source_codes([(p, len(t)) for p, t in ordered])
    rows, cols = data.shape[2:]
    attrs = [cf.variable_attrs(v) for v in entry.variables]
    ds = xr.Dataset(
        {"data": (("time", "channel", "y", "x"), data)},
        coords={
            "time": times,
            "channel": CHANNELS,
            "variable": ("channel", CHANNELS),
            "level": ("channel", np.zeros(2, "int32")),
            "units": ("channel", [a.get("units", "") for a in attrs]),
            "standard_name": ("channel", [a.get("standard_name", "") for a in attrs]),
            "long_name": ("channel", [a.get("long_name", "") for a in attrs]),
            "source": ("time", sources.codes),
            "y": np.arange(rows),
            "x": np.arange(cols),
            **grid_coords(entry, rows, cols),
        },
    )
    ds.attrs["source_files"] = list(sources.categories)
    return ds
