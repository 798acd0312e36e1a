"""Synthetic data written exactly in the WeatherBench NetCDF, WeatherBench2 Zarr and TaxiBJ HDF5 layouts,
deterministic from a seed.

Weather fields have a latitude gradient, seasonal and diurnal cycles and eastward-moving anomalies;
traffic flows have daily commuting peaks, a weekly rhythm, hotspots and Poisson noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import xarray as xr

from . import cf
from .errors import OutputError, UsageError
from .outputs import write_atomic

# WeatherBench's directory and file names: name -> (directory, file stem, variable, level)
WEATHERBENCH_VARIABLES = {
    "t2m": ("2m_temperature", "2m_temperature", "t2m", None),
    "u10": ("10m_u_component_of_wind", "10m_u_component_of_wind", "u10", None),
    "v10": ("10m_v_component_of_wind", "10m_v_component_of_wind", "v10", None),
    "z500": ("geopotential_500", "geopotential_500hPa", "z", 500),
    "t850": ("temperature_850", "temperature_850hPa", "t", 850),
}

# climatological mean, equator-to-pole drop, seasonal amplitude, diurnal amplitude, anomaly amplitude
_FIELD_SHAPE = {
    "t2m": (300.0, 45.0, 12.0, 5.0, 4.0),
    "t": (290.0, 40.0, 8.0, 1.0, 3.0),
    "z": (57000.0, 5000.0, 800.0, 50.0, 600.0),
    "u10": (0.0, -8.0, 2.0, 1.0, 4.0),
    "v10": (0.0, 0.0, 1.0, 0.5, 4.0),
}


def global_grid(resolution: float) -> tuple[np.ndarray, np.ndarray]:
    """WeatherBench's regular grid: cell-centred latitudes (ascending), longitudes from 0 east."""
    n_lat = int(round(180 / resolution))
    lat = -90 + resolution / 2 + resolution * np.arange(n_lat)
    lon = resolution * np.arange(int(round(360 / resolution)))
    return lat, lon


@dataclass(frozen=True)
class WeatherLayout:
    """How the files spell things; the defaults are WeatherBench's own."""

    lat_name: str = "lat"
    lon_name: str = "lon"
    lat_descending: bool = False
    lon_180: bool = False  # longitudes in -180..180 instead of 0..360
    dtype: str = "float32"
    files_per: str = "year"  # "year" or "day"
    level_as_dim: bool = False  # pressure-level files with a level dimension instead of a scalar level


def weather_field(name: str, times: pd.DatetimeIndex, lat: np.ndarray, lon: np.ndarray,
                  seed: int) -> np.ndarray:
    """A plausible field (time, lat, lon) in physical units; the same (name, time, place, seed) always
    gives the same value, so files may be written in any split and still agree."""
    mean, drop, seasonal, diurnal, anomaly = _FIELD_SHAPE[name]
    rng = np.random.default_rng([seed, sum(map(ord, name))])
    phase = rng.uniform(0, 2 * np.pi, size=3)
    speed = rng.uniform(5.0, 12.0)  # degrees of longitude per day
    hours = (times - pd.Timestamp("2000-01-01")) / pd.Timedelta(hours=1)
    hours = np.asarray(hours, dtype="float64")[:, None, None]
    la = np.deg2rad(lat)[None, :, None]
    lo = np.deg2rad(lon)[None, None, :]
    year = 2 * np.pi * hours / (365.25 * 24)
    local_solar = 2 * np.pi * (hours / 24.0) + lo
    field = (mean - drop * np.sin(la) ** 2
             - seasonal * np.sin(la) * np.cos(year + phase[0])
             - diurnal * np.cos(la) * np.cos(local_solar)
             + anomaly * np.cos(2 * la) * np.sin(3 * (lo - np.deg2rad(speed) * hours / 24.0) + phase[1])
             * np.cos(year * 6 + phase[2]))
    jitter = np.sin(13.7 * lo + 7.3 * la + 0.37 * hours + phase[2])  # deterministic small-scale noise
    return field + 0.3 * anomaly * jitter * np.cos(la)


def _weather_dataset(key: str, times, lat, lon, seed: int, layout: WeatherLayout) -> xr.Dataset:
    _, _, var, level = WEATHERBENCH_VARIABLES[key]
    values = weather_field(var, times, lat, lon, seed).astype(layout.dtype)
    lat_out, lon_out = lat, lon
    if layout.lon_180:
        lon_out = (lon + 180.0) % 360.0 - 180.0
        order = np.argsort(lon_out)
        lon_out, values = lon_out[order], values[:, :, order]
    if layout.lat_descending:
        lat_out, values = lat_out[::-1], values[:, ::-1, :]
    standard_name, units, long_name = cf.VARIABLES[var]
    dims = ("time", layout.lat_name, layout.lon_name)
    coords = {
        "time": times,
        layout.lat_name: (layout.lat_name, lat_out.astype("float64"), {"units": "degrees_north", "long_name": "latitude"}),
        layout.lon_name: (layout.lon_name, lon_out.astype("float64"), {"units": "degrees_east", "long_name": "longitude"}),
    }
    if level is not None and layout.level_as_dim:
        values, dims = values[:, None], ("time", "level", *dims[1:])
        coords["level"] = ("level", np.array([level], dtype="int32"))
    elif level is not None:
        coords["level"] = np.int32(level)
    ds = xr.Dataset({var: (dims, values, {"units": units, "long_name": long_name})}, coords=coords)
    ds.attrs = {"Conventions": "CF-1.6", "history": "simcast synthetic data in the WeatherBench layout",
                "simcast_synthetic": 1}
    return ds


def write_weatherbench(out: str | Path, start: str, end: str, variables=("t2m",), resolution: float = 5.625,
                       region: tuple[tuple[float, float], tuple[float, float]] | None = None,
                       freq: str = "1h", seed: int = 0, layout: WeatherLayout = WeatherLayout()) -> list[Path]:
    """Write WeatherBench-style files `<dir>/<stem>_<year>_<res>deg.nc` under out; returns their paths.

    region: ((lat_min, lat_max), (lon_min, lon_max)) for a regional grid at the given resolution.
    """
    out = Path(out)
    if region is None:
        lat, lon = global_grid(resolution)
    else:
        (la0, la1), (lo0, lo1) = region
        lat = np.arange(la0, la1 + resolution / 2, resolution)
        lon = np.arange(lo0, lo1 + resolution / 2, resolution) % 360.0
    times = pd.date_range(start, pd.Timestamp(end) + pd.Timedelta(days=1), freq=freq, inclusive="left")
    key_of = times.year.astype(str) if layout.files_per == "year" else times.strftime("%Y-%m-%d")
    encoding_time = {"units": "hours since 1900-01-01", "calendar": "proleptic_gregorian", "dtype": "int64"}
    res = f"{resolution:g}deg"
    paths = []
    for key in variables:
        if key not in WEATHERBENCH_VARIABLES:
            raise UsageError("variables", f"unknown variable {key!r}; choose from {', '.join(WEATHERBENCH_VARIABLES)}")
        folder, stem, var, _ = WEATHERBENCH_VARIABLES[key]
        (out / folder).mkdir(parents=True, exist_ok=True)
        for period in pd.unique(key_of):
            ds = _weather_dataset(key, times[key_of == period], lat, lon, seed, layout)
            path = out / folder / f"{stem}_{period}_{res}.nc"
            enc = {var: {"zlib": True, "complevel": 1}, "time": encoding_time}
            write_atomic(path, lambda tmp, ds=ds, enc=enc: ds.to_netcdf(tmp, engine="netcdf4", encoding=enc),
                         "synthetic")
            paths.append(path)
    return paths


# WeatherBench2's stores: simcast's name -> (the store's name, the WeatherBench 1 file's level); its 13 levels
WEATHERBENCH2_VARIABLES = {
    "t2m": ("2m_temperature", None),
    "u10": ("10m_u_component_of_wind", None),
    "v10": ("10m_v_component_of_wind", None),
    "z": ("geopotential", 500),
    "t": ("temperature", 850),
}
WEATHERBENCH2_LEVELS = (50, 100, 150, 200, 250, 300, 400, 500, 600, 700, 850, 925, 1000)
_LEVEL_SLOPE = {"z": -98.0, "t": 0.065}  # change per hPa away from the WeatherBench 1 level (m2 s-2, K)


def weatherbench2_field(name: str, times: pd.DatetimeIndex, lat: np.ndarray, lon: np.ndarray, seed: int,
                        levels=WEATHERBENCH2_LEVELS) -> np.ndarray:
    """`weather_field` on (time, lat, lon), or (time, level, lat, lon) for z and t: at the WeatherBench 1 level
    (z500, t850) the very values `write_weatherbench` writes, at other levels shifted by a lapse with pressure."""
    base = weather_field(name, times, lat, lon, seed)
    level0 = WEATHERBENCH2_VARIABLES[name][1]
    if level0 is None:
        return base
    shift = _LEVEL_SLOPE[name] * (np.asarray(levels, dtype="float64") - level0)
    return base[:, None] + shift[None, :, None, None]


def weatherbench2_dataset(start: str, end: str, variables=("t2m",), resolution: float = 5.625, freq: str = "6h",
                          seed: int = 0, levels=WEATHERBENCH2_LEVELS) -> xr.Dataset:
    """ERA5 in WeatherBench2's Zarr layout (its 64x32_equiangular_conservative stores at 5.625 deg): variables
    named 2m_temperature, geopotential, ...; dims (time, longitude, latitude) and (time, level, longitude,
    latitude); latitude ascending, longitude 0..360; float32; attributes long_name, short_name, units. `end` is the
    last day (inclusive)."""
    lat, lon = global_grid(resolution)
    times = pd.date_range(start, pd.Timestamp(end) + pd.Timedelta(days=1), freq=freq, inclusive="left")
    data = {}
    for name in variables:
        if name not in WEATHERBENCH2_VARIABLES:
            raise UsageError("variables", f"unknown variable {name!r}; choose from {', '.join(WEATHERBENCH2_VARIABLES)}")
        store_name, level0 = WEATHERBENCH2_VARIABLES[name]
        values = weatherbench2_field(name, times, lat, lon, seed, levels).astype("float32")
        _, units, long_name = cf.VARIABLES[name]
        dims = ("time", "latitude", "longitude") if level0 is None else ("time", "level", "latitude", "longitude")
        da = xr.DataArray(values, dims=dims, attrs={"long_name": long_name, "short_name": name, "units": units})
        data[store_name] = da.transpose(*dims[:-2], "longitude", "latitude")
    coords = {"time": times, "latitude": ("latitude", lat.astype("float64")),
              "longitude": ("longitude", lon.astype("float64"))}
    if any(WEATHERBENCH2_VARIABLES[n][1] is not None for n in variables):
        coords["level"] = ("level", np.asarray(levels, dtype="int64"))
    ds = xr.Dataset(data, coords=coords)
    ds["latitude"].attrs = {"long_name": "latitude", "units": "degrees_north"}
    ds["longitude"].attrs = {"long_name": "longitude", "units": "degrees_east"}
    ds.attrs = {"simcast_synthetic": 1, "history": "simcast synthetic data in the WeatherBench2 layout"}
    return ds


def write_zarr_store(ds: xr.Dataset, out: str | Path, time_chunk: int = 20) -> Path:
    """A Zarr store as WeatherBench2 publishes them: Zarr format 2, consolidated metadata, chunked along time."""
    encoding = {"time": {"units": "hours since 1959-01-01", "dtype": "int64"}}
    if "prediction_timedelta" in ds.coords:
        encoding["prediction_timedelta"] = {"units": "hours", "dtype": "int64"}
    ds = ds.chunk({"time": time_chunk})

    def write(tmp: Path) -> None:
        ds.to_zarr(tmp, mode="w-", zarr_format=2, consolidated=True, encoding=encoding)

    return write_atomic(Path(out), write, "synthetic")


def write_weatherbench2(out: str | Path, start: str, end: str, variables=("t2m",), resolution: float = 5.625,
                        freq: str = "6h", seed: int = 0, levels=WEATHERBENCH2_LEVELS, time_chunk: int = 20) -> Path:
    """Write a WeatherBench2-layout ERA5 store (see weatherbench2_dataset) at out; returns its path."""
    ds = weatherbench2_dataset(start, end, variables, resolution, freq, seed, levels)
    return write_zarr_store(ds, out, time_chunk)


# TaxiBJ's four files and the periods they cover
TAXIBJ_PERIODS = {
    "BJ13": ("2013-07-01", "2013-10-29"),
    "BJ14": ("2014-03-01", "2014-06-27"),
    "BJ15": ("2015-03-01", "2015-06-30"),
    "BJ16": ("2015-11-01", "2016-04-10"),
}


def traffic_flows(times: pd.DatetimeIndex, rows: int, cols: int, seed: int) -> np.ndarray:
    """In/out flows (time, 2, rows, cols): commuting peaks (in to the centre in the morning, out in the
    evening), quieter weekends, a few hotspots, Poisson counts."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:cols] / np.array([rows, cols])[:, None, None]
    hubs = rng.uniform(0.2, 0.8, size=(4, 2))
    centre = sum(np.exp(-((y - a) ** 2 + (x - b) ** 2) / 0.02) for a, b in hubs)
    suburbs = 1.0 - 0.5 * centre / centre.max()
    hour = np.asarray(times.hour + times.minute / 60.0)[:, None, None]
    weekend = np.asarray(times.day_of_week >= 5)[:, None, None]
    morning = np.exp(-((hour - 8.5) ** 2) / 2.0)
    evening = np.exp(-((hour - 18.0) ** 2) / 3.0)
    base = 0.3 + 0.7 * np.exp(-((hour - 14.0) ** 2) / 30.0)
    scale = np.where(weekend, 0.6, 1.0) * 60.0
    inflow = scale * (base * (0.3 + centre) + np.where(weekend, 0.3, 1.0) * (morning * centre + evening * suburbs))
    outflow = scale * (base * (0.3 + centre) + np.where(weekend, 0.3, 1.0) * (morning * suburbs + evening * centre))
    lam = np.stack([inflow, outflow], axis=1)
    return rng.poisson(lam).astype("float64")


def slot_codes(times: pd.DatetimeIndex, step: pd.Timedelta = pd.Timedelta("30min")) -> np.ndarray:
    """TaxiBJ's `date` values: bytes YYYYMMDDSS with SS the 1-based slot of the day."""
    slot = (times - times.normalize()) // step + 1
    return np.array([f"{d}{s:02d}".encode() for d, s in zip(times.strftime("%Y%m%d"), slot)], dtype="S10")


def write_taxibj(out: str | Path, periods: dict[str, tuple[str, str]] | None = None, grid: tuple[int, int] = (32, 32),
                 drop_slots: float = 0.0, seed: int = 0, holidays: bool = True) -> list[Path]:
    """Write `<name>_M<rows>x<cols>_T30_InOut.h5` files; drop_slots removes that fraction of slots at
    random, leaving incomplete days as in the real data. Also writes BJ_Holiday.txt when asked."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    periods = periods or TAXIBJ_PERIODS
    rows, cols = grid
    years = sorted({pd.Timestamp(s).year for s, _ in periods.values()} | {pd.Timestamp(e).year for _, e in periods.values()})
    days = [f"{y}0101" for y in years] + [f"{y}0501" for y in years] + [f"{y}1001" for y in years]
    holiday_text = "\n".join(sorted(days)) + "\n"
    holiday_file = out / "BJ_Holiday.txt"
    if holidays and holiday_file.exists() and holiday_file.read_text() != holiday_text:
        raise OutputError(holiday_file, "exists with other holidays; simcast replaces only what it wrote itself")
    paths = []
    for i, (name, (start, end)) in enumerate(periods.items()):
        times = pd.date_range(start, pd.Timestamp(end) + pd.Timedelta(days=1), freq="30min", inclusive="left")
        data = traffic_flows(times, rows, cols, seed + i)
        if drop_slots > 0:
            keep = np.random.default_rng(seed + 100 + i).random(len(times)) >= drop_slots
            times, data = times[keep], data[keep]
        path = out / f"{name}_M{rows}x{cols}_T30_InOut.h5"

        def write(tmp: Path, data=data, times=times) -> None:
            with h5py.File(tmp, "w") as f:
                f.create_dataset("data", data=data)
                f.create_dataset("date", data=slot_codes(times))
                f.attrs["simcast_synthetic"] = 1

        paths.append(write_atomic(path, write, "synthetic"))
    if holidays:
        holiday_file.write_text(holiday_text)
    return paths
