"""Ingest of the real samples (ERA5 UK t2m, NYBike) from ../shared/data."""

import collections
import json

import h5py
import numpy as np
import pandas as pd
import xarray as xr

from data_catalog import load_catalog

from pipelines.store import open_store

from ..conftest import ingest


def _real(real_data, name, pattern):
    e = load_catalog()[name]
    return e.model_copy(update={"source": e.source.model_copy(update={"pattern": str(real_data / pattern), "root": "data"})})


def test_era5_sample_ingests_to_canonical_store(real_data, tmp_path):
    entry = _real(real_data, "era5-uk-t2m", "weather/era5_uk_t2m_0.25deg/*.nc")
    result = ingest(entry, progress=False)
    assert not result.skipped and result.summary["time_steps"] == 744
    ds = open_store(result.store)
    assert ds["data"].dims == ("time", "channel", "lat", "lon")
    assert ds["data"].shape == (744, 1, 33, 49) and ds["data"].dtype == np.float32
    assert list(ds["channel"].values) == ["t2m"]
    assert ds["data"].attrs["units"] == "K" and ds["data"].attrs["standard_name"] == "air_temperature"
    assert ds["lat"].attrs["units"] == "degrees_north" and np.all(np.diff(ds["lat"].values) > 0)
    assert np.all(np.diff(ds["lon"].values) > 0) and ds["lon"].values[0] == -10.0

    raw = xr.open_mfdataset(sorted((real_data / "weather/era5_uk_t2m_0.25deg").glob("*.nc")), combine="by_coords")
    np.testing.assert_array_equal(ds["data"].values[:, 0], raw["t2m"].values)

    train = raw["t2m"].sel(time=slice("2019-03-01", "2019-03-20")).values.astype("float64")
    assert train.shape[0] == 480
    np.testing.assert_allclose(float(ds["stat_mean"][0]), train.mean(), rtol=1e-12)
    np.testing.assert_allclose(float(ds["stat_std"][0]), train.std(), rtol=1e-10)
    assert float(ds["stat_min"][0]) == train.min() and float(ds["stat_max"][0]) == train.max()
    everything = raw["t2m"].values.astype("float64")
    assert abs(float(ds["stat_mean"][0]) - everything.mean()) > 1e-3  # not the whole period

    assert ds["data"].encoding["chunks"][0] >= entry.window.length
    assert ds["data"].encoding["chunks"][1:] == (1, 33, 49)
    splits = json.loads(ds.attrs["splits"])
    assert splits["validation"] == ["2019-03-21T00:00:00", "2019-03-25T00:00:00"]
    assert int(ds["in_train"].sum()) == 480 and int(ds["in_test"].sum()) == 168
    prov = json.loads(ds.attrs["provenance"])
    assert len(prov["source_files"]) == 31 and all(f["size"] > 0 for f in prov["source_files"])
    assert json.loads(ds.attrs["catalog_entry"])["name"] == "era5-uk-t2m" and prov["simcast_version"]


def test_ingest_reads_each_source_file_once(real_data, monkeypatch):
    """One pass: the checks, the statistics and the write share the reads; nothing else is left in the store."""
    from xarray.backends import netCDF4_

    reads = collections.Counter()
    read = netCDF4_.NetCDF4ArrayWrapper.__getitem__

    def counting(self, key):
        reads[(self.datastore._filename, self.variable_name)] += 1
        return read(self, key)

    monkeypatch.setattr(netCDF4_.NetCDF4ArrayWrapper, "__getitem__", counting)
    result = ingest(_real(real_data, "era5-uk-t2m", "weather/era5_uk_t2m_0.25deg/*.nc"), progress=False)
    data_reads = [n for (_, variable), n in reads.items() if variable == "t2m"]
    assert len(data_reads) == 31 and set(data_reads) == {1}
    ds = open_store(result.store)
    assert not [name for name in ds.variables if name.startswith("_moment")]
    assert result.summary["stats"]["t2m"]["mean"] == float(ds["stat_mean"][0])
    run_only = {"source_check"}  # what this run compared (not stored)
    assert json.loads(ds.attrs["summary"]) == {k: v for k, v in result.summary.items() if k not in run_only}


def test_nybike_sample_ingests_with_real_timestamps(real_data):
    entry = _real(real_data, "nybike", "traffic/NYBike_M14x8_T30_InOut.h5")
    result = ingest(entry, progress=False)
    assert result.summary["time_steps"] == 4320
    ds = open_store(result.store)
    assert ds["data"].dims == ("time", "channel", "y", "x") and ds["data"].shape == (4320, 2, 14, 8)
    t = pd.DatetimeIndex(ds["time"].values)
    assert t[0] == pd.Timestamp("2016-01-01 00:00") and t[-1] == pd.Timestamp("2016-03-30 23:30")
    assert (np.diff(t.asi8) == pd.Timedelta("30min").value).all()
    with h5py.File(real_data / "traffic/NYBike_M14x8_T30_InOut.h5") as f:
        np.testing.assert_array_equal(ds["data"].values, f["data"][()].astype("float32"))
    assert list(ds["channel"].values) == ["inflow", "outflow"]
    assert ds["lat"].dims == ("y",) and 40.6 < float(ds["lat"].mean()) < 40.9
    # the last two weeks are the test split, the week before validation
    assert int(ds["in_test"].sum()) == 14 * 48 and int(ds["in_validation"].sum()) == 7 * 48
    assert float(ds["stat_max"][0]) <= 323 and float(ds["stat_min"][0]) == 0


def test_second_run_is_a_noop_and_change_triggers_rebuild(real_data, tmp_path):
    import shutil

    src = tmp_path / "src"
    shutil.copytree(real_data / "weather/era5_uk_t2m_0.25deg", src)
    entry = _real(real_data, "era5-uk-t2m", "weather/era5_uk_t2m_0.25deg/*.nc")
    entry = entry.model_copy(update={"source": entry.source.model_copy(update={"pattern": str(src / "*.nc")})})
    first = ingest(entry, progress=False)
    stamp = (first.store / "zarr.json").stat().st_mtime_ns
    again = ingest(entry, progress=False)
    assert again.skipped and again.summary == first.summary
    assert (first.store / "zarr.json").stat().st_mtime_ns == stamp
    (src / "2m_temperature_2019-03-31_0.25deg.nc").unlink()  # inputs changed: rebuilt
    rebuilt = ingest(entry, progress=False)
    assert not rebuilt.skipped and rebuilt.summary["time_steps"] == 744 - 24
