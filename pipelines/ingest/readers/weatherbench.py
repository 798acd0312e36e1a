"""WeatherBench / ERA5 NetCDF files -> canonical (time, channel, lat, lon), lazily with dask."""

from __future__ import annotations

from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd
import xarray as xr

from data_catalog import DatasetEntry, Variable

from ... import cf
from ...errors import InputError
from ...timeaxis import check_file_times, order_files, source_codes
from ..units import in_catalog_units
from . import register

# netCDF-C gives every open variable a chunk cache (64 MB by default): with dozens of yearly files open
# lazily it holds gigabytes of decompressed chunks. Each chunk is read once here, so a small cache suffices.
NETCDF_CHUNK_CACHE = (4 * 2**20, 1009, 0.75)


def limit_netcdf_cache() -> None:
    netCDF4.set_chunk_cache(*NETCDF_CHUNK_CACHE)


_RENAMES = {"latitude": "lat", "longitude": "lon", "valid_time": "time",
            "pressure_level": "level", "isobaricInhPa": "level", "plev": "level"}


def check_classic_complete(path: Path) -> None:
    """netCDF-C reads the missing tail of a truncated classic (NetCDF3) file as zeros, without an error; scipy's
    reader maps the file against the sizes its header declares and fails when the data stop short."""
    with open(path, "rb") as f:
        if f.read(3) != b"CDF":
            return  # NetCDF4 (HDF5) files fail to open when truncated
    import scipy.io

    try:
        scipy.io.netcdf_file(path, mode="r", mmap=True).close()
    except Exception:  # noqa: BLE001 - any failure to lay the declared variables over the file
        size = path.stat().st_size
        raise InputError(path, f"truncated NetCDF3 file: its {size} bytes end before the data its header "
                               "declares (an interrupted download or copy?)") from None


def _open(path: Path, chunk_frames: int) -> xr.Dataset:
    try:
        ds = xr.open_dataset(path, engine="netcdf4", chunks={}, cache=False)
    except (OSError, ValueError, RuntimeError) as e:
        raise InputError(path, f"not a readable NetCDF file (truncated or corrupt?): {str(e).splitlines()[0]}") from None
    try:
        check_classic_complete(path)
    except BaseException:
        ds.close()
        raise
    try:
        return _canonical_names(path, ds, chunk_frames)
    except BaseException:
        ds.close()
        raise


def _canonical_names(path: Path, opened: xr.Dataset, chunk_frames: int) -> xr.Dataset:
    ds = opened.rename({k: v for k, v in _RENAMES.items() if k in opened.variables or k in opened.dims})
    for coord in ("time", "lat", "lon"):
        if coord not in ds.coords:
            raise InputError(path, f"has no {coord!r} coordinate (coordinates: {', '.join(map(str, ds.coords))})")
    if not np.issubdtype(ds["time"].dtype, np.datetime64):
        raise InputError(path, "time coordinate could not be decoded to dates (check its units attribute)")
    # read whole multiples of the file's own time chunks, at least chunk_frames at a time
    native = max((v.encoding.get("preferred_chunks", {}).get("time", 1) for v in ds.data_vars.values()), default=1)
    ds = ds.chunk(time=max(native, -(-chunk_frames // native) * native))
    ds.set_close(opened.close)  # derived datasets drop the closer; keep the file closable
    return ds


def _has(ds: xr.Dataset, var: Variable) -> str | None:
    for name in (var.name, *var.aliases):
        if name in ds.data_vars:
            return name
    return None


def canonical_longitudes(lon: np.ndarray) -> np.ndarray:
    """Longitudes in [0, 360) when the grid is contiguous there (global grids), else in [-180, 180)
    (regions crossing the prime meridian). Either way they sort into one monotonic, unbroken run."""
    for lo in (0.0, -180.0):
        wrapped = (lon - lo) % 360.0 + lo
        d = np.diff(np.sort(wrapped))
        if d.size == 0 or d.max() <= 1.5 * np.median(d):
            return wrapped
    return (lon + 180.0) % 360.0 - 180.0


def _levels(da: xr.DataArray, var: Variable, path: Path) -> xr.DataArray:
    """Return (time, level, lat, lon) for a field with levels, (time, lat, lon) for a surface field."""
    if var.levels is None:
        if "level" in da.dims:
            if da.sizes["level"] != 1:
                raise InputError(path, f"variable {var.name!r} has {da.sizes['level']} levels; the catalog names none")
            da = da.squeeze("level", drop=True)
        return da.drop_vars("level", errors="ignore")
    if "level" in da.dims:
        have = [int(v) for v in da["level"].values]
        missing = [lev for lev in var.levels if lev not in have]
        if missing:
            raise InputError(path, f"variable {var.name!r} lacks levels {missing} (has {have})")
        return da.sel(level=var.levels)
    if "level" in da.coords:  # a scalar level, as in WeatherBench's single-level files
        lev = int(da["level"].values)
        if var.levels != [lev]:
            raise InputError(path, f"variable {var.name!r} is at level {lev}, catalog asks {var.levels}")
        return da.drop_vars("level").expand_dims(level=[lev], axis=1)
    if len(var.levels) == 1:  # no level metadata: trust the file pattern, which names one level
        return da.expand_dims(level=var.levels, axis=1)
    raise InputError(path, f"variable {var.name!r} has no level dimension but the catalog asks {var.levels}")


def _read_variable(var: Variable, files: list[Path], opened: dict[Path, xr.Dataset]) -> tuple[xr.DataArray, np.ndarray]:
    """One variable across its files, time-sorted and checked; plus the source file of each time."""
    pieces = []
    for path in files:
        ds = opened[path]
        name = _has(ds, var)
        if name is None:
            continue
        da = in_catalog_units(_levels(ds[name], var, path), var, ds[name].attrs.get("units"), path)
        if da.dims[0] != "time" or da.dims[-2:] != ("lat", "lon"):
            raise InputError(path, f"variable {name!r} has dims {da.dims}; expected (time, [level,] lat, lon)")
        times = pd.DatetimeIndex(da["time"].values)
        check_file_times(path, times)
        pieces.append((str(path), times, da))
    if not pieces:
        raise InputError(files[0].parent, f"no file holds variable {var.name!r} ({len(files)} files searched)")
    by_path = {p: da for p, _, da in pieces}
    ordered = order_files([(p, t) for p, t, _ in pieces])
    first_path, first = ordered[0][0], by_path[ordered[0][0]]
    for path, _ in ordered[1:]:
        for c in ("lat", "lon"):
            if not np.array_equal(by_path[path][c].values, first[c].values):
                raise InputError(path, f"{c} grid differs from {first_path}")
    data = xr.concat([by_path[p] for p, _ in ordered], dim="time", coords="minimal", compat="override",
                     join="override", data_vars="all")
    sources = source_codes([(p, len(t)) for p, t in ordered])
    data.attrs = cf.variable_attrs(var, first.attrs)
    return data, sources


def _to_channels(var: Variable, da: xr.DataArray) -> xr.DataArray:
    if var.levels is None:
        da = da.expand_dims(channel=[var.name], axis=1)
        level = [0]
    else:
        da = da.rename(level="channel").assign_coords(channel=var.channel_names())
        level = var.levels
    attrs = da.attrs
    n = da.sizes["channel"]
    return da.assign_coords(
        variable=("channel", [var.name] * n),
        level=("channel", np.asarray(level, dtype="int32")),
        units=("channel", [attrs.get("units", "")] * n),
        standard_name=("channel", [attrs.get("standard_name", "")] * n),
        long_name=("channel", [attrs.get("long_name", var.name)] * n),
    )


def _canonical_grid(da: xr.DataArray, entry: DatasetEntry) -> xr.DataArray:
    """Latitudes ascending, longitudes one monotonic run; cropped to the catalog extent if it has one."""
    lon = da["lon"].values.astype("float64")
    lat = da["lat"].values.astype("float64")
    if entry.extent is not None:
        (la0, la1), (lo0, lo1) = entry.extent.lat, entry.extent.lon
        lon_in = ((lon - lo0) % 360.0) <= ((lo1 - lo0) % 360.0) + 1e-9
        lat_in = (lat >= la0 - 1e-9) & (lat <= la1 + 1e-9)
        da, lon, lat = da.isel(lat=lat_in, lon=lon_in), lon[lon_in], lat[lat_in]
    da = da.assign_coords(lon=canonical_longitudes(lon), lat=lat)
    return da.sortby("lat").sortby("lon")


@register("weatherbench", time_zone="UTC")
def read_weatherbench(entry: DatasetEntry, files: dict[str, list[Path]], chunk_frames: int = 256) -> xr.Dataset:
    """Open all files lazily and join the entry's variables/levels into the canonical dataset.
    Closing the returned dataset closes the files."""
    all_files = sorted({f for fs in files.values() for f in fs})
    limit_netcdf_cache()
    opened: dict[Path, xr.Dataset] = {}
    try:
        for f in all_files:
            opened[f] = _open(f, chunk_frames)
        return _join(entry, files, opened)
    except BaseException:
        for d in opened.values():
            d.close()
        raise


def _join(entry: DatasetEntry, files: dict[str, list[Path]], opened: dict[Path, xr.Dataset]) -> xr.Dataset:
    shared = files.get("*", [])
    if shared:
        for f in shared:
            if not any(_has(opened[f], v) for v in entry.variables if v.name not in files):
                wanted = ", ".join(v.name for v in entry.variables)
                have = ", ".join(map(str, opened[f].data_vars)) or "none"
                raise InputError(f, f"holds none of the variables {wanted} (has: {have})")
    channels, sources = [], None
    for var in entry.variables:
        var_files = files.get(var.name, shared)
        if var.name in files:
            for f in var_files:
                if _has(opened[f], var) is None:
                    have = ", ".join(map(str, opened[f].data_vars)) or "none"
                    raise InputError(f, f"has no variable {var.name!r} (has: {have})")
        da, var_sources = _read_variable(var, var_files, opened)
        if sources is None:
            sources, times0, name0 = var_sources, da["time"].values, var.name
        elif not np.array_equal(da["time"].values, times0):
            raise InputError(var_files[0], f"variable {var.name!r} covers other times than {name0!r} "
                             f"({da.sizes['time']} vs {len(times0)} steps); give them the same period")
        channels.append(_to_channels(var, da))
    data = xr.concat(channels, dim="channel", coords="different", compat="equals", join="exact")
    data = _canonical_grid(data.astype("float32"), entry).transpose("time", "channel", "lat", "lon")
    data.attrs = {}
    ds = xr.Dataset({"data": data}, coords={"source": ("time", sources.codes)})
    ds.attrs["source_files"] = list(sources.categories)
    ds.set_close(lambda: [d.close() for d in opened.values()])
    return ds
