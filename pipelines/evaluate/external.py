"""External forecasts scored beside the model and the baselines: Zarr stores in WeatherBench2's forecast layout,
e.g. IFS HRES at 5.625 deg, gs://weatherbench2/datasets/hres/2016-2022-0012-64x32_equiangular_conservative.zarr:
`time` is the init time, `prediction_timedelta` the lead time, `latitude` / `longitude` the grid, and the variables
are named as in WeatherBench2's ERA5 (2m_temperature; geopotential with `level`).

An evaluation sample's init time is its window's last input time and its leads are the evaluated lead times; the
external forecast is read at exactly those (lazily, a batch of init times at a time). Its grid must be the store's
once its latitudes and longitudes are put in the store's order: nothing is regridded. Its variables are mapped to
the store's channels by name (the catalog's, its aliases, WeatherBench2's) and level, and must be in the store's
units. The evaluation then scores every forecaster only on the samples whose init times the external forecasts
hold (HRES: 00 and 12 UTC), so that all are compared on the same samples.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import dask.array
import numpy as np
import pandas as pd
import xarray as xr

from ..errors import InputError
from ..ingest.readers import canonical_longitudes, find_variable, lat_lon_names
from ..remote import open_zarr, resolve
from ..timefmt import format_lead, iso_minutes

LAYOUT = "WeatherBench2's forecast layout (time: init time, prediction_timedelta: lead time, latitude, longitude)"
_ALIASES = {"init_time": "time", "lead_time": "prediction_timedelta"}


@dataclass
class External:
    """An external forecast on the store's grid and channels: `data` (init time, lead, channel, lat, lon), lazy."""

    name: str
    url: str
    data: dask.array.Array
    init_ns: np.ndarray   # its init times (ns), in its order
    lead_pos: np.ndarray  # positions of the evaluated leads along its prediction_timedelta
    dataset: xr.Dataset   # the opened store (closed by close())

    def init_index(self, init_ns: np.ndarray) -> np.ndarray:
        """Positions of the given init times (ns) along its time axis; -1 where it has none."""
        order = np.argsort(self.init_ns, kind="stable")
        s = self.init_ns[order]
        want = np.asarray(init_ns, dtype=np.int64)
        if s.size == 0:
            return np.full(want.shape, -1, dtype=np.int64)
        pos = np.clip(np.searchsorted(s, want), 0, s.size - 1)
        return np.where(s[pos] == want, order[pos], -1)

    def covers(self, init_ns: np.ndarray) -> np.ndarray:
        return self.init_index(init_ns) >= 0

    def take(self, init_ns: np.ndarray) -> np.ndarray:
        """The forecasts (B, L, C, H, W) float32 from the given init times (all covered) at the evaluated leads."""
        idx = self.init_index(init_ns)
        if (idx < 0).any():
            raise ValueError("take(): init times the external forecast does not hold; use covers()")
        out = np.asarray(self.data[idx][:, self.lead_pos].compute(), dtype="float32")
        if not np.isfinite(out).all():
            b = int(np.flatnonzero(~np.isfinite(out).reshape(len(idx), -1).all(axis=1))[0])
            raise InputError(self.url, f"NaN or infinite values in its forecast from "
                                       f"{iso_minutes(pd.Timestamp(int(init_ns[b])))} at the evaluated lead times")
        return out

    def close(self) -> None:
        self.dataset.close()


def _grid(lat: np.ndarray, lon: np.ndarray) -> str:
    return (f"{lat.size}x{lon.size} (lat {lat.min():g} .. {lat.max():g}, lon {lon.min():g} .. {lon.max():g})"
            if lat.size and lon.size else f"{lat.size}x{lon.size}")


def _same_grid(f: xr.Dataset, store: xr.Dataset, where: str) -> tuple[np.ndarray, np.ndarray]:
    """The orders that put its latitudes and longitudes as the store's; refused in one line if the points differ."""
    if "lat" not in store.coords or "lon" not in store.coords:
        raise InputError(where, "different grid: the store's grid has no latitudes and longitudes")
    lat = np.asarray(f["lat"].values, dtype="float64")
    lon = canonical_longitudes(np.asarray(f["lon"].values, dtype="float64"))
    lat_order, lon_order = np.argsort(lat, kind="stable"), np.argsort(lon, kind="stable")
    s_lat, s_lon = store["lat"].values.astype("float64"), store["lon"].values.astype("float64")
    same = (lat.size == s_lat.size and lon.size == s_lon.size and np.allclose(lat[lat_order], s_lat, atol=1e-4)
            and np.allclose(lon[lon_order], s_lon, atol=1e-4))
    if not same:
        raise InputError(where, f"different grid: {_grid(lat, lon)}, the store {store.attrs.get('dataset', '')!r} "
                                f"has {_grid(s_lat, s_lon)}; only the order of latitudes and longitudes is adjusted, "
                                "nothing is regridded: regrid the forecast to the store's grid first")
    return lat_order, lon_order


def _aliases(store: xr.Dataset) -> dict[str, list[str]]:
    try:
        return {v["name"]: list(v.get("aliases") or []) for v in json.loads(store.attrs["catalog_entry"])["variables"]}
    except (KeyError, TypeError, ValueError):
        return {}


def _channel(f: xr.Dataset, store: xr.Dataset, c: int, aliases: dict, where: str) -> xr.DataArray:
    var, level = str(store["variable"].values[c]), int(store["level"].values[c])
    channel, units = str(store["channel"].values[c]), str(store["units"].values[c])
    name = find_variable(f, var, aliases.get(var, ()), where)
    da = f[name]
    if level:
        if "level" not in da.dims:
            raise InputError(where, f"variable {name!r} has no level dimension; the store's channel {channel!r} is "
                                    f"at {level} hPa")
        have = [int(v) for v in da["level"].values]
        if level not in have:
            raise InputError(where, f"variable {name!r} has no level {level} (has {have}) for the store's channel "
                                    f"{channel!r}")
        da = da.isel(level=have.index(level))
    elif "level" in da.dims:
        if da.sizes["level"] != 1:
            raise InputError(where, f"variable {name!r} has {da.sizes['level']} levels; the store's channel "
                                    f"{channel!r} has none")
        da = da.isel(level=0)
    expected = {"time", "prediction_timedelta", "lat", "lon"}
    if set(da.dims) != expected:
        raise InputError(where, f"variable {name!r} has dims {f[name].dims}; expected (time, prediction_timedelta, "
                                "[level,] longitude, latitude) in any order")
    theirs = str(da.attrs.get("units", "")).strip()
    if theirs and units and theirs != units:
        raise InputError(where, f"variable {name!r} is in {theirs}, the store's channel {channel!r} in {units}")
    return da.transpose("time", "prediction_timedelta", "lat", "lon")


def open_external(name: str, url: str, store: xr.Dataset, lead_ns: np.ndarray) -> External:
    """Open an external forecast lazily and check it against the store: layout, grid, channels, units, and that it
    has every evaluated lead time (lead_ns). Problems are one line naming the URL."""
    location = resolve(url)
    opened = open_zarr(location)
    try:
        f = lat_lon_names(opened)
        f = f.rename({k: v for k, v in _ALIASES.items() if k in f.variables and v not in f.variables})
        for coord in ("time", "prediction_timedelta", "lat", "lon"):
            if coord not in f.coords:
                raise InputError(location, f"has no {coord!r} coordinate: not a forecast in {LAYOUT}")
        if not np.issubdtype(f["time"].dtype, np.datetime64):
            raise InputError(location, "its init times (time) could not be decoded to dates")
        if not np.issubdtype(f["prediction_timedelta"].dtype, np.timedelta64):
            raise InputError(location, "its lead times (prediction_timedelta) could not be decoded to durations")
        lat_order, lon_order = _same_grid(f, store, location)
        aliases = _aliases(store)
        fields = [_channel(f, store, c, aliases, location) for c in range(store.sizes["channel"])]
        data = dask.array.stack([da.data for da in fields], axis=2)[..., lat_order, :][..., lon_order]
        leads = f["prediction_timedelta"].values.astype("timedelta64[ns]").astype(np.int64)
        pos = {int(v): i for i, v in enumerate(leads)}
        missing = [int(v) for v in lead_ns if int(v) not in pos]
        if missing:
            shown = ", ".join(format_lead(pd.Timedelta(v, "ns")) for v in missing[:6])
            more = f" and {len(missing) - 6} more" if len(missing) > 6 else ""
            have = (f"{format_lead(pd.Timedelta(int(leads.min()), 'ns'))} .. "
                    f"{format_lead(pd.Timedelta(int(leads.max()), 'ns'))} ({leads.size} lead times)"
                    if leads.size else "none")
            raise InputError(location, f"has no forecast at the evaluated lead times {shown}{more} (it has {have})")
        init_ns = f["time"].values.astype("datetime64[ns]").astype(np.int64)
        return External(name, location, data, init_ns, np.array([pos[int(v)] for v in lead_ns], dtype=np.int64),
                        opened)
    except BaseException:
        opened.close()
        raise
