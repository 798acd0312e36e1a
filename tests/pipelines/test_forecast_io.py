"""Forecast layout: CF-1.8 dataset on the store's grid, atomic Zarr/NetCDF writes, reading back."""

from __future__ import annotations

import importlib.util
import json

import netCDF4
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pipelines.errors import InputError
from pipelines.forecast.output import forecast_dataset, forecast_variables, open_forecast, write_forecast

from pipelines.store import open_store

from ..conftest import ingest

PROVENANCE = {"checkpoint": "runs/era5/best.safetensors", "model": "simvp-gsta", "epochs": 3,
              "window": {"input": 12, "output": 12}}


# ---- shared with test_maps_report.py -------------------------------------------------------------

@pytest.fixture(scope="session")
def era5_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("stores") / "era5-uk-t2m.zarr"
    return open_store(ingest("era5-uk-t2m", store=path, progress=False).store)


@pytest.fixture(scope="session")
def nybike_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("stores") / "nybike.zarr"
    return open_store(ingest("nybike", store=path, progress=False).store)


def persistence_forecast(store: xr.Dataset, n_init: int = 2, n_lead: int = 12, spacing: int = 6,
                         provenance: dict | None = None, seed: int = 0) -> xr.Dataset:
    """A fake forecast: the last observed frame repeated over the leads, plus noise growing with lead.
    Init times lie inside the store so that truth exists for every valid time."""
    step = pd.Timedelta(store.attrs["time_step"])
    n_time = store.sizes["time"]
    idx = [n_time - 1 - n_lead - spacing * (n_init - 1 - k) for k in range(n_init)]
    frames = store["data"].isel(time=idx).values  # (N, C, H, W)
    rng = np.random.default_rng(seed)
    scale = 0.05 * np.nanstd(frames) * np.arange(1, n_lead + 1)[None, :, None, None, None]
    values = frames[:, None] + rng.normal(size=(n_init, n_lead, *frames.shape[1:])) * scale
    leads = np.arange(1, n_lead + 1) * step.to_timedelta64()
    return forecast_dataset(values, store["time"].values[idx], leads, store,
                            dict(PROVENANCE if provenance is None else provenance))


# ---- layout --------------------------------------------------------------------------------------

def _check_cf(ds: xr.Dataset, space: tuple[str, str]) -> None:
    names = forecast_variables(ds)
    assert names
    for name in names:
        v = ds[name]
        assert v.dims == ("init_time", "lead_time", *space)
        assert v.dtype == np.float32
        assert v.attrs["units"] and v.attrs["long_name"]
        gm = v.attrs["grid_mapping"]
        assert gm == "crs" and gm in ds.variables
    crs = ds["crs"].attrs
    assert crs["grid_mapping_name"] == "latitude_longitude"
    assert "WGS 84" in crs["crs_wkt"] and crs["epsg_code"] == "EPSG:4326"
    assert crs["semi_major_axis"] == pytest.approx(6378137.0)
    assert ds["lat"].attrs["units"] == "degrees_north" and ds["lon"].attrs["units"] == "degrees_east"
    assert ds["lat"].attrs["standard_name"] == "latitude"
    for c in ("lat", "lon"):
        bnds = ds[ds[c].attrs["bounds"]].values
        centres = ds[c].values
        assert bnds.shape == (centres.size, 2)
        assert np.all(bnds.min(axis=1) < centres) and np.all(centres < bnds.max(axis=1))
        # neighbouring cells share an edge
        np.testing.assert_allclose(bnds[1:, 0], bnds[:-1, 1])
    assert ds["init_time"].attrs["standard_name"] == "forecast_reference_time"
    assert ds["lead_time"].attrs["standard_name"] == "forecast_period"
    assert ds["valid_time"].dims == ("init_time", "lead_time")
    expected = ds["init_time"].values[:, None] + ds["lead_time"].values[None, :]
    np.testing.assert_array_equal(ds["valid_time"].values.astype("datetime64[ns]"), expected.astype("datetime64[ns]"))
    assert (ds["lead_time"].values > np.timedelta64(0)).all()
    for key in ("Conventions", "title", "dataset", "kind", "source_store", "checkpoint", "simcast_version", "created"):
        assert ds.attrs[key] != "", key
    assert ds.attrs["Conventions"] == "CF-1.8"


def test_era5_forecast_written_as_cf_netcdf_and_zarr(era5_store, tmp_path):
    fc = persistence_forecast(era5_store)
    assert fc.sizes == {"init_time": 2, "lead_time": 12, "lat": 33, "lon": 49, "nv": 2}
    paths = write_forecast(fc, tmp_path / "out" / "era5")
    assert paths == {"zarr": tmp_path / "out" / "era5.zarr", "netcdf": tmp_path / "out" / "era5.nc"}

    for reopened in (xr.open_dataset(paths["netcdf"]), xr.open_zarr(paths["zarr"], consolidated=False),
                     open_forecast(tmp_path / "out" / "era5")):
        _check_cf(reopened, ("lat", "lon"))
        assert forecast_variables(reopened) == ["t2m"]
        t2m = reopened["t2m"]
        assert t2m.attrs["units"] == "K" and t2m.attrs["standard_name"] == "air_temperature"
        np.testing.assert_allclose(t2m.values, fc["t2m"].values)
        assert reopened.attrs["dataset"] == "era5-uk-t2m" and reopened.attrs["kind"] == "weatherbench"
        assert reopened.attrs["checkpoint"] == PROVENANCE["checkpoint"]
        assert reopened.attrs["model"] == "simvp-gsta" and reopened.attrs["epochs"] == 3
        assert json.loads(reopened.attrs["window"]) == PROVENANCE["window"]
        assert reopened.attrs["source_store"].endswith("era5-uk-t2m.zarr")
        # the first init is the last observed frame: lead 1 of a persistence forecast is close to it
        assert str(reopened["init_time"].values[0])[:13] == "2019-03-31T05"
        np.testing.assert_array_equal(reopened["lat"].values, era5_store["lat"].values)
        reopened.close()

    with netCDF4.Dataset(paths["netcdf"]) as nc:  # time encodings as another CF reader sees them
        assert nc["init_time"].units == "hours since 1970-01-01" and nc["init_time"].calendar == "proleptic_gregorian"
        assert nc["valid_time"].units == "hours since 1970-01-01"
        assert nc["lead_time"].units == "hours" and list(nc["lead_time"][:]) == list(range(1, 13))
        assert nc["t2m"].grid_mapping == "crs" and "valid_time" in nc["t2m"].coordinates
        assert "_FillValue" not in nc["lat"].ncattrs() and nc["lat"].bounds == "lat_bnds"


def test_nybike_forecast_keeps_the_traffic_grid(nybike_store, tmp_path):
    fc = persistence_forecast(nybike_store, n_lead=4, spacing=2)
    assert forecast_variables(fc) == ["inflow", "outflow"]
    paths = write_forecast(fc, tmp_path / "nybike.nc")  # a suffix on the stem is dropped
    assert set(paths) == {"zarr", "netcdf"} and paths["zarr"].name == "nybike.zarr"
    for reopened in (xr.open_dataset(paths["netcdf"]), open_forecast(paths["zarr"])):
        _check_cf(reopened, ("y", "x"))
        assert forecast_variables(reopened) == ["inflow", "outflow"]  # channel order survives Zarr's listing
        assert reopened["lat"].dims == ("y",) and reopened["lon"].dims == ("x",)
        assert reopened["lat"].values[0] > reopened["lat"].values[-1]  # row 0 is north
        assert reopened["inflow"].attrs["units"] == "flows per slot"
        np.testing.assert_array_equal(reopened["lead_time"].values.astype("timedelta64[m]").astype(int),
                                      [30, 60, 90, 120])
        assert reopened.attrs["kind"] == "taxibj" and reopened.attrs["time_step"] == "30min"
        reopened.close()
    with netCDF4.Dataset(paths["netcdf"]) as nc:
        assert nc["lead_time"].units == "minutes" and nc["init_time"].units.startswith("minutes since")


def test_bad_shapes_and_leads_are_rejected(era5_store):
    times = era5_store["time"].values[:1]
    leads = np.array([1, 2], dtype="timedelta64[h]")
    with pytest.raises(ValueError, match="expected"):
        forecast_dataset(np.zeros((1, 2, 1, 33, 48)), times, leads, era5_store, {})
    with pytest.raises(ValueError, match="positive"):
        forecast_dataset(np.zeros((1, 2, 1, 33, 49)), times, leads - np.timedelta64(1, "h"), era5_store, {})


# ---- atomic writes -------------------------------------------------------------------------------

def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_rewrite_replaces_atomically_and_failure_keeps_previous(era5_store, tmp_path, monkeypatch):
    first = persistence_forecast(era5_store, seed=1)
    paths = write_forecast(first, tmp_path / "fc")
    second = persistence_forecast(era5_store, seed=2)
    write_forecast(second, tmp_path / "fc")
    assert _leftovers(tmp_path) == []
    with open_forecast(paths["netcdf"]) as ds:
        np.testing.assert_allclose(ds["t2m"].values, second["t2m"].values)
    with open_forecast(paths["zarr"]) as ds:
        np.testing.assert_allclose(ds["t2m"].values, second["t2m"].values)

    def broken(self, path, *args, **kwargs):  # dies half way: a partial file exists when it fails
        open(path, "wb").write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        write_forecast(persistence_forecast(era5_store, seed=3), tmp_path / "fc")
    assert _leftovers(tmp_path) == []
    with open_forecast(paths["netcdf"]) as ds:  # the previous forecast is intact
        np.testing.assert_allclose(ds["t2m"].values, second["t2m"].values)


def test_geotiff_needs_rioxarray(era5_store, tmp_path):
    fc = persistence_forecast(era5_store, n_init=1, n_lead=2)
    if importlib.util.find_spec("rioxarray") is None:
        with pytest.warns(UserWarning, match="GeoTIFF output skipped"):
            paths = write_forecast(fc, tmp_path / "fc", formats=("netcdf",), geotiff=True)
        assert set(paths) == {"netcdf"} and not (tmp_path / "fc_geotiff").exists()
    else:
        paths = write_forecast(fc, tmp_path / "fc", formats=("netcdf",), geotiff=True)
        tifs = sorted(paths["geotiff"].glob("*.tif"))
        assert [t.name.split("_", 1)[1] for t in tifs] == ["lead01h.tif", "lead02h.tif"]


# ---- reading back --------------------------------------------------------------------------------

def test_open_forecast_errors_are_one_line(era5_store, tmp_path):
    with pytest.raises(InputError, match="does not exist") as e:
        open_forecast(tmp_path / "nothing.nc")
    assert "\n" not in str(e.value) and "nothing.nc" in str(e.value)

    with pytest.raises(InputError, match="not a simcast forecast"):
        open_forecast(era5_store.encoding["source"])  # a store, not a forecast

    junk = tmp_path / "junk.nc"
    junk.write_text("not netcdf")
    with pytest.raises(InputError, match="not a readable") as e:
        open_forecast(junk)
    assert "\n" not in str(e.value)

    with pytest.raises(ValueError, match="unknown forecast format"):
        write_forecast(persistence_forecast(era5_store, n_init=1, n_lead=1), tmp_path / "x", formats=("grib",))
