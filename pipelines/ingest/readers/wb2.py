"""WeatherBench2 / ARCO Zarr stores -> canonical (time, channel, lat, lon), lazily with dask.

WeatherBench2's layout (gs://weatherbench2/datasets/era5/1959-2023_01_10-6h-64x32_equiangular_conservative.zarr):
one consolidated Zarr store with long variable names (2m_temperature, geopotential, ...), dims (time, longitude,
latitude) for surface fields and (time, level, longitude, latitude) on pressure levels, latitude ascending on the
equiangular grids (descending on the 1440x721 ones), longitude 0..360, float32, attributes long_name, short_name and
units. The catalog names variables as the NetCDF entries do (t2m; z with levels [500]), so that both give the same
channels; the store's name is the variable's own, one of its aliases, or WeatherBench2's (WB2_NAMES).

The entry's `source.url` is the store (gs://, https://, a local path); `source.time` selects a period. Only the
selected variables, levels and times are read, chunk by chunk, by the ingest's two passes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from data_catalog import DatasetEntry, Variable

from ... import cf
from ...errors import InputError
from ...remote import open_zarr
from ...timeaxis import check_file_times
from ...timefmt import iso_minutes
from ..units import in_catalog_units
from . import register
from .weatherbench import _canonical_grid, _levels, _to_channels

# simcast's (ERA5 short) names -> WeatherBench2's
WB2_NAMES: dict[str, tuple[str, ...]] = {
    "t2m": ("2m_temperature",),
    "u10": ("10m_u_component_of_wind",),
    "v10": ("10m_v_component_of_wind",),
    "z": ("geopotential",),
    "t": ("temperature",),
    "u": ("u_component_of_wind",),
    "v": ("v_component_of_wind",),
    "q": ("specific_humidity",),
    "r": ("relative_humidity",),
    "tp": ("total_precipitation_6hr", "total_precipitation"),
    "tisr": ("toa_incident_solar_radiation",),
    "tcc": ("total_cloud_cover",),
    "msl": ("mean_sea_level_pressure",),
    "sp": ("surface_pressure",),
}
_RENAMES = {"latitude": "lat", "longitude": "lon"}


def store_names(name: str, aliases=()) -> list[str]:
    """The names a variable may carry in a WeatherBench2-layout store, in the order they are looked for."""
    return list(dict.fromkeys([name, *aliases, *WB2_NAMES.get(name, ())]))


def find_variable(ds: xr.Dataset, name: str, aliases=(), where: str = "") -> str:
    """The store's name of a variable; one line listing what was looked for and what is there when absent."""
    for candidate in store_names(name, aliases):
        if candidate in ds.data_vars:
            return candidate
    have = sorted(map(str, ds.data_vars))
    shown = ", ".join(have[:12]) + (f", ... ({len(have)} in all)" if len(have) > 12 else "") if have else "none"
    raise InputError(where, f"has no variable {name!r} (looked for {', '.join(store_names(name, aliases))}; "
                            f"has: {shown})")


def lat_lon_names(ds: xr.Dataset) -> xr.Dataset:
    return ds.rename({k: v for k, v in _RENAMES.items() if k in ds.variables or k in ds.dims})


def _select_times(ds: xr.Dataset, entry: DatasetEntry, where: str) -> xr.Dataset:
    times = pd.DatetimeIndex(ds["time"].values)
    check_file_times(where, times)
    if entry.source.time is None:
        return ds
    start, end = entry.source.time.bounds()
    i0 = 0 if start is None else int(times.searchsorted(start, side="left"))
    i1 = len(times) if end is None else int(times.searchsorted(end, side="right"))
    if i1 <= i0:
        asked = f"{'' if start is None else iso_minutes(start)} .. {'' if end is None else iso_minutes(end)}"
        raise InputError(where, f"holds no time in {asked} (source.time); it covers {iso_minutes(times[0])} .. "
                                f"{iso_minutes(times[-1])}")
    return ds.isel(time=slice(i0, i1))


def _variable(ds: xr.Dataset, var: Variable, where: str) -> tuple[xr.DataArray, str]:
    """(the variable as (time, [level,] lat, lon) with its CF attributes, its name in the store)"""
    name = find_variable(ds, var.name, var.aliases, where)
    da = ds[name]
    if "time" not in da.dims:
        raise InputError(where, f"variable {name!r} has no time dimension (dims {da.dims})")
    if var.levels is not None and "level" not in da.dims:
        raise InputError(where, f"variable {name!r} has no level dimension but the catalog asks levels {var.levels}")
    da = _levels(da, var, where)
    extra = [d for d in da.dims if d not in ("time", "level", "lat", "lon")]
    if extra or not {"lat", "lon"} <= set(da.dims):
        raise InputError(where, f"variable {name!r} has dims {ds[name].dims}; expected (time, [level,] longitude, "
                                "latitude) in any order")
    da = da.transpose("time", *(["level"] if "level" in da.dims else []), "lat", "lon")
    da = in_catalog_units(da, var, ds[name].attrs.get("units"), where)
    da.attrs = cf.variable_attrs(var, {**ds[name].attrs, **da.attrs})
    return da, name


@register("weatherbench2", time_zone="UTC")
def read_weatherbench2(entry: DatasetEntry, files: dict[str, list], chunk_frames: int = 256) -> xr.Dataset:
    """Open the store lazily and join the entry's variables/levels over the selected times into the canonical
    dataset. files: {"*": [the store's location]} (pipelines.ingest.sources). Closing the result closes the store."""
    (location,) = {str(f) for fs in files.values() for f in fs}
    opened = open_zarr(location, check=False)  # find_sources has read its metadata
    try:
        ds = lat_lon_names(opened)
        for coord in ("time", "lat", "lon"):
            if coord not in ds.coords:
                raise InputError(location, f"has no {coord!r} coordinate (coordinates: {', '.join(map(str, ds.coords))})")
        if not np.issubdtype(ds["time"].dtype, np.datetime64):
            raise InputError(location, "time coordinate could not be decoded to dates (check its units attribute)")
        ds = _select_times(ds, entry, location)
        fields = [_variable(ds, var, location) for var in entry.variables]
        # read whole multiples of the store's own time chunks, at least chunk_frames at a time
        native = max(int(ds[name].encoding.get("preferred_chunks", {}).get("time", 1)) for _, name in fields)
        channels = [_to_channels(var, da) for var, (da, _) in zip(entry.variables, fields)]
        data = xr.concat(channels, dim="channel", coords="different", compat="equals", join="exact")
        data = _canonical_grid(data.astype("float32"), entry).transpose("time", "channel", "lat", "lon")
        data = data.chunk(time=max(native, -(-chunk_frames // native) * native))
        data.attrs = {}
        out = xr.Dataset({"data": data}, coords={"source": ("time", np.zeros(data.sizes["time"], dtype="int32"))})
        out.attrs["source_files"] = [location]
        out.set_close(opened.close)
        return out
    except BaseException:
        opened.close()
        raise
