"""Forecasts as georeferenced CF-1.8 data: build the dataset, write Zarr/NetCDF (and GeoTIFF) atomically, read back.

Layout (one data variable per channel, the pressure level folded into the name as in the store: t2m, z500,
t850, inflow, outflow):

    <channel>(init_time, lead_time, lat, lon)   float32, physical units    weather grids
    <channel>(init_time, lead_time, y, x)       with lat(y), lon(x) coords  traffic grids (row 0 = north)

    init_time   forecast_reference_time: the time of the last observed input frame
    lead_time   forecast_period (timedelta, positive)
    valid_time  (init_time, lead_time) = init_time + lead_time
    lat_bnds, lon_bnds   cell bounds (CF `bounds`)
    crs         grid_mapping latitude_longitude, WGS 84 (EPSG:4326), named by every data variable

Files from `write_forecast(ds, "out/era5")`: `out/era5.zarr`, `out/era5.nc` and, with geotiff=True and
rioxarray installed, `out/era5_geotiff/init<YYYYMMDDTHHMM>_lead<HH>h[<MM>m].tif` (one band per channel).
"""

from __future__ import annotations

import datetime as dt
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .. import __version__, cf
from ..errors import InputError
from ..outputs import write_atomic
from ..timefmt import lead_label

FORECAST_FORMAT = 1
FORMATS = ("zarr", "netcdf")
SUFFIX = {"zarr": ".zarr", "netcdf": ".nc"}

INIT_TIME = {"standard_name": "forecast_reference_time",
             "long_name": "forecast initialisation time (time of the last observed input frame)"}
LEAD_TIME = {"standard_name": "forecast_period", "long_name": "lead time"}
VALID_TIME = {"standard_name": "time", "long_name": "valid time (init_time + lead_time)"}
_TIME_CODED = ("init_time", "valid_time")


def _crs_attrs() -> dict:
    """CF grid_mapping attributes of WGS 84 longitude/latitude (EPSG:4326)."""
    try:
        import pyproj

        attrs = {k: v for k, v in pyproj.CRS.from_epsg(4326).to_cf().items() if v is not None}
    except Exception:  # pyproj comes with cartopy; this fallback only guards a stripped environment
        attrs = {"grid_mapping_name": "latitude_longitude", "semi_major_axis": 6378137.0,
                 "inverse_flattening": 298.257223563, "longitude_of_prime_meridian": 0.0,
                 "crs_wkt": 'GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563]],'
                            'PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433],AUTHORITY["EPSG","4326"]]'}
    attrs["spatial_ref"] = attrs["crs_wkt"]  # the GDAL name for the same text
    attrs["epsg_code"] = "EPSG:4326"
    attrs["long_name"] = "coordinate reference system"
    return attrs


def cell_bounds(centres: np.ndarray, clip: tuple[float, float] | None = None) -> np.ndarray:
    """(n, 2) bounds halfway between neighbouring centres (ends extrapolated); keeps the centres' order."""
    c = np.asarray(centres, dtype="float64")
    if c.size == 1:
        edges = np.array([c[0] - 0.5, c[0] + 0.5])
    else:
        mid = (c[:-1] + c[1:]) / 2
        edges = np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])
    if clip is not None:
        edges = np.clip(edges, *clip)
    return np.stack([edges[:-1], edges[1:]], axis=1)


def _time_units(times: np.ndarray, leads: np.ndarray) -> str:
    """Whole hours when every init time and lead is on the hour, else minutes (half-hourly traffic)."""
    ns = np.concatenate([times.astype("datetime64[ns]").astype("int64"),
                         leads.astype("timedelta64[ns]").astype("int64")])
    return "hours" if np.all(ns % (3600 * 10**9) == 0) else "minutes"


def _attr_value(v):
    """Attribute values portable to NetCDF and Zarr: strings and numbers as they are, the rest as JSON."""
    if isinstance(v, (str, int, float, np.integer, np.floating)) and not isinstance(v, bool):
        return v
    if isinstance(v, Path):
        return str(v)
    return json.dumps(v, default=str)


def _channel_table(store: xr.Dataset) -> list[dict]:
    def col(name, default=""):
        return [str(x) for x in store[name].values] if name in store.coords else [default] * store.sizes["channel"]

    names = col("channel")
    levels = [int(x) for x in store["level"].values] if "level" in store.coords else [0] * len(names)
    return [{"name": n, "variable": v, "level": lv, "units": u, "standard_name": s, "long_name": ln}
            for n, v, lv, u, s, ln in zip(names, col("variable"), levels, col("units"), col("standard_name"),
                                          col("long_name"))]


def forecast_dataset(values, init_times, lead_times, store: xr.Dataset, provenance: dict | None = None) -> xr.Dataset:
    """Wrap a forecast array (N_init, L, C, H, W) in physical units as a CF-1.8 dataset on the store's grid.

    init_times: datetime64 (N_init,), the time of the last observed input frame of each forecast;
    lead_times: timedelta64 (L,), positive. store: the opened store (grid, channel metadata, dataset name).
    provenance: extra global attributes (checkpoint, store, model, ...); non-scalar values are stored as JSON.
    """
    values = np.asarray(values)
    init = pd.DatetimeIndex(np.atleast_1d(np.asarray(init_times, dtype="datetime64[ns]")))
    lead = pd.TimedeltaIndex(np.atleast_1d(np.asarray(lead_times, dtype="timedelta64[ns]")))
    space = tuple(store["data"].dims[2:])
    shape = (len(init), len(lead), store.sizes["channel"], *(store.sizes[d] for d in space))
    if values.shape != shape:
        raise ValueError(f"forecast values have shape {values.shape}; expected (init_time, lead_time, channel, "
                         f"{', '.join(space)}) = {shape} for store {store.attrs.get('dataset', '?')!r}")
    if (lead <= pd.Timedelta(0)).any():
        raise ValueError(f"lead times must be positive; got {list(lead)}")
    if not init.is_unique or not lead.is_unique:
        raise ValueError("init times and lead times must be unique")
    provenance = dict(provenance or {})

    coords: dict = {
        "init_time": ("init_time", init.values, INIT_TIME),
        "lead_time": ("lead_time", lead.values, LEAD_TIME),
        "valid_time": (("init_time", "lead_time"), init.values[:, None] + lead.values[None, :], VALID_TIME),
    }
    georef = "lat" in store.coords and "lon" in store.coords
    if space == ("lat", "lon"):
        lat_dim, lon_dim = "lat", "lon"
    else:
        lat_dim, lon_dim = space
        coords[lat_dim] = (lat_dim, np.asarray(store[lat_dim].values),
                           {"long_name": "grid row (0 = northern edge)", "units": "1"})
        coords[lon_dim] = (lon_dim, np.asarray(store[lon_dim].values),
                           {"long_name": "grid column (0 = western edge)", "units": "1"})
    if georef:
        lat = np.asarray(store["lat"].values, dtype="float64")
        lon = np.asarray(store["lon"].values, dtype="float64")
        coords["lat"] = (lat_dim, lat, {**cf.LAT, "bounds": "lat_bnds"})
        coords["lon"] = (lon_dim, lon, {**cf.LON, "bounds": "lon_bnds"})
        if lat_dim != "lat":  # auxiliary coordinates of a y/x grid: no axis attribute (CF reserves it for dims)
            coords["lat"][2].pop("axis")
            coords["lon"][2].pop("axis")

    data_vars: dict = {}
    reserved = set(coords) | {"crs", "lat_bnds", "lon_bnds"}
    for i, ch in enumerate(_channel_table(store)):
        if ch["name"] in reserved:
            raise ValueError(f"channel name {ch['name']!r} clashes with a coordinate name")
        attrs = {k: ch[k] for k in ("units", "standard_name", "long_name") if ch[k]}
        if not attrs.get("units"):
            attrs.update({k: v for k, v in cf.variable_attrs(ch["variable"] or ch["name"]).items() if k not in attrs})
        attrs["simcast_variable"] = ch["variable"] or ch["name"]
        if ch["level"]:
            attrs["level"] = ch["level"]
            attrs["level_units"] = cf.LEVEL["units"]
        if georef:
            attrs["grid_mapping"] = "crs"
        data_vars[ch["name"]] = (("init_time", "lead_time", lat_dim, lon_dim),
                                 values[:, :, i].astype("float32", copy=False), attrs)
    if georef:
        data_vars["crs"] = ((), np.int32(0), _crs_attrs())
        data_vars["lat_bnds"] = ((lat_dim, "nv"), cell_bounds(lat, (-90.0, 90.0)),
                                 {"long_name": "latitude cell bounds", "units": cf.LAT["units"]})
        data_vars["lon_bnds"] = ((lon_dim, "nv"), cell_bounds(lon),
                                 {"long_name": "longitude cell bounds", "units": cf.LON["units"]})

    sa = store.attrs
    created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    attrs = {
        "Conventions": "CF-1.8",
        "title": f"simcast forecast for {sa.get('dataset', 'unknown data set')}",
        "simcast_forecast_format": FORECAST_FORMAT,
        "dataset": sa.get("dataset", ""),
        "kind": sa.get("kind", ""),
        "properties": sa.get("properties", "{}"),
        "source_store": str(provenance.pop("store", store.encoding.get("source", ""))),
        "checkpoint": str(provenance.pop("checkpoint", "")),
        "simcast_version": __version__,
        "created": created,
        "history": f"{created} simcast forecast",
        "channels": " ".join(ch["name"] for ch in _channel_table(store)),
        "time_step": sa.get("time_step", ""),
        "extent": sa.get("extent", "null"),
        "time_coverage_start": init[0].isoformat(),
        "time_coverage_end": (init[-1] + lead[-1]).isoformat(),
    }
    if georef:
        lat_b, lon_b = data_vars["lat_bnds"][1], data_vars["lon_bnds"][1]
        attrs.update(geospatial_lat_min=float(lat_b.min()), geospatial_lat_max=float(lat_b.max()),
                     geospatial_lon_min=float(lon_b.min()), geospatial_lon_max=float(lon_b.max()))
    attrs.update({k: _attr_value(v) for k, v in provenance.items() if v is not None})

    ds = xr.Dataset(data_vars, coords=coords, attrs=attrs)
    units = _time_units(init.values, lead.values)
    for name in _TIME_CODED:
        ds[name].encoding = {"units": f"{units} since 1970-01-01 00:00:00", "calendar": "proleptic_gregorian",
                             "dtype": "int64"}
    ds["lead_time"].encoding = {"units": units, "dtype": "int64"}
    return ds


def forecast_variables(ds: xr.Dataset) -> list[str]:
    """The forecast's data variables (one per channel), in the store's channel order (Zarr lists its arrays in
    no fixed order, so the order is kept in the `channels` attribute)."""
    found = [str(n) for n, v in ds.data_vars.items() if v.dims[:2] == ("init_time", "lead_time")]
    order = str(ds.attrs.get("channels", "")).split()
    return [n for n in order if n in found] + [n for n in found if n not in order]


def output_paths(out: str | Path, formats=FORMATS) -> dict[str, Path]:
    """Where write_forecast puts each format: `<stem>.zarr`, `<stem>.nc` (a .zarr/.nc suffix on out is dropped)."""
    out = Path(out)
    stem = out.with_suffix("") if out.suffix in (".zarr", ".nc") else out
    unknown = [f for f in formats if f not in SUFFIX]
    if unknown:
        raise ValueError(f"unknown forecast format(s) {unknown}; choose from {list(SUFFIX)}")
    return {f: stem.parent / (stem.name + SUFFIX[f]) for f in formats}


def _encoding(ds: xr.Dataset, fmt: str) -> dict:
    enc: dict = {}
    for name in forecast_variables(ds):
        chunks = (1, 1, *ds[name].shape[2:])
        if fmt == "netcdf":
            enc[name] = {"zlib": True, "complevel": 4, "chunksizes": chunks, "_FillValue": np.float32(np.nan)}
        else:
            enc[name] = {"chunks": chunks}
    for name in ("lat", "lon", "lat_bnds", "lon_bnds", "y", "x"):
        if name in ds.variables:
            enc[name] = {"_FillValue": None}
    for name in (*_TIME_CODED, "lead_time"):
        enc[name] = {**ds[name].encoding, "_FillValue": None} if fmt == "netcdf" else dict(ds[name].encoding)
    return enc


def write_forecast(ds: xr.Dataset, out: str | Path, formats=FORMATS, geotiff: bool = False) -> dict[str, Path]:
    """Write the forecast as `<out>.zarr` and/or `<out>.nc` (out: a path stem), each built beside its target
    and renamed into place. geotiff=True adds `<out>_geotiff/` (needs rioxarray; skipped with a warning
    without it). Returns {"zarr": path, "netcdf": path, "geotiff": folder} for what was written."""
    ds = ds.copy()
    for name in (*_TIME_CODED, "lead_time"):  # coords keep their encodings through copy, but be explicit
        ds[name].encoding = dict(ds[name].encoding)
    paths = output_paths(out, formats)
    written: dict[str, Path] = {}
    for fmt, target in paths.items():
        enc = _encoding(ds, fmt)
        if fmt == "zarr":
            write_atomic(target, lambda tmp, enc=enc: _to_zarr(ds, tmp, enc), "forecast")
        else:
            write_atomic(target, lambda tmp, enc=enc: ds.to_netcdf(tmp, engine="netcdf4", format="NETCDF4",
                                                                    encoding=enc), "forecast")
        written[fmt] = target
    if geotiff:
        folder = geotiff_folder(out)
        if _write_geotiffs(ds, folder):
            written["geotiff"] = folder
    return written


def _to_zarr(ds: xr.Dataset, path: Path, encoding: dict) -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        ds.to_zarr(path, mode="w-", zarr_format=3, consolidated=True, encoding=encoding)


def geotiff_folder(out: str | Path) -> Path:
    stem = output_paths(out, ("zarr",))["zarr"].with_suffix("")
    return stem.parent / f"{stem.name}_geotiff"


def _write_geotiffs(ds: xr.Dataset, folder: Path) -> bool:
    try:
        import rioxarray  # noqa: F401  (registers the .rio accessor)
    except ImportError:
        warnings.warn("GeoTIFF output skipped: it needs rioxarray (and rasterio), which are not installed",
                      stacklevel=3)
        return False
    if "crs" not in ds.variables:
        warnings.warn("GeoTIFF output skipped: the forecast grid has no latitude/longitude", stacklevel=3)
        return False
    names = forecast_variables(ds)
    lat_dim, lon_dim = ds["lat"].dims[0], ds["lon"].dims[0]

    def write(tmp: Path) -> None:
        tmp.mkdir()
        for i in range(ds.sizes["init_time"]):
            stamp = pd.Timestamp(ds["init_time"].values[i]).strftime("%Y%m%dT%H%M")
            for j in range(ds.sizes["lead_time"]):
                bands = xr.concat([ds[n].isel(init_time=i, lead_time=j, drop=True).reset_coords(drop=True)
                                   for n in names], dim="band")
                bands = bands.assign_coords(band=np.arange(1, len(names) + 1))
                bands = bands.rename({lat_dim: "y", lon_dim: "x"}).assign_coords(
                    y=("y", ds["lat"].values), x=("x", ds["lon"].values))
                if bands["y"].values[0] < bands["y"].values[-1]:
                    bands = bands.isel(y=slice(None, None, -1))  # north up
                bands.attrs = {"long_name": tuple(names), "units": tuple(ds[n].attrs.get("units", "") for n in names)}
                bands = bands.rio.set_spatial_dims(x_dim="x", y_dim="y").rio.write_crs("EPSG:4326")
                name = f"init{stamp}_lead{lead_label(ds['lead_time'].values[j])}.tif"
                bands.rio.to_raster(tmp / name, tags={"dataset": ds.attrs.get("dataset", ""),
                                                      "init_time": pd.Timestamp(ds["init_time"].values[i]).isoformat()})

    write_atomic(folder, write, "geotiff")
    return True


def open_forecast(path: str | Path) -> xr.Dataset:
    """Open a forecast written by write_forecast (`.zarr` folder, `.nc` file, or their common stem)."""
    path = Path(path)
    if not path.exists() and path.suffix not in (".zarr", ".nc"):
        found = [p for p in output_paths(path).values() if p.exists()]
        if found:
            path = found[0]
    if not path.exists():
        raise InputError(path, "forecast does not exist; run `simcast forecast` first")
    try:
        if path.is_dir():
            ds = xr.open_zarr(path)
        else:
            ds = xr.open_dataset(path, engine="netcdf4")
    except Exception as e:
        raise InputError(path, f"is not a readable Zarr or NetCDF forecast ({type(e).__name__}: {e})") from None
    if "simcast_forecast_format" not in ds.attrs:
        ds.close()
        raise InputError(path, "is not a simcast forecast (no simcast_forecast_format attribute)")
    if int(ds.attrs["simcast_forecast_format"]) != FORECAST_FORMAT:
        ds.close()
        raise InputError(path, f"forecast format {ds.attrs['simcast_forecast_format']} is not {FORECAST_FORMAT}; "
                               "write the forecast again")
    return ds
