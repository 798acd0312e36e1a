"""Every WeatherBench/ERA5 layout variant ingests to the same canonical values."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from pipelines import synth

from pipelines.ingest.readers.weatherbench import canonical_longitudes
from pipelines.store import open_store

from ..conftest import entry, ingest

UK = ((50.0, 58.0), (-10.0, 2.0))


def _ingest(tmp_path, name, layout, region=None, **fields):
    out = tmp_path / "data" / name
    synth.write_weatherbench(out, "2010-01-01", "2010-01-06", region=region, resolution=1.0 if region else 5.625,
                             layout=layout)
    fields.setdefault("grid", (9, 13) if region else (32, 64))
    e = entry(name=name, source={"pattern": f"{name}/2m_temperature/*.nc"}, store=f"{name}.zarr", **fields)
    return open_store(ingest(e, progress=False).store)


VARIANTS = {
    "latitude_longitude_names": synth.WeatherLayout(lat_name="latitude", lon_name="longitude"),
    "latitude_descending": synth.WeatherLayout(lat_descending=True),
    "longitude_minus180_180": synth.WeatherLayout(lon_180=True),
    "float64": synth.WeatherLayout(dtype="float64"),
    "one_file_per_day": synth.WeatherLayout(files_per="day"),
}


@pytest.fixture
def reference(tmp_path):
    return _ingest(tmp_path, "ref", synth.WeatherLayout())


@pytest.mark.parametrize("variant", VARIANTS)
def test_global_variants_match_reference(tmp_path, reference, variant):
    ds = _ingest(tmp_path, variant, VARIANTS[variant])
    np.testing.assert_array_equal(ds["lat"].values, reference["lat"].values)
    np.testing.assert_array_equal(ds["lon"].values, reference["lon"].values)
    np.testing.assert_allclose(ds["data"].values, reference["data"].values, rtol=1e-6)
    assert ds["data"].dtype == np.float32


def test_reference_is_canonical(reference):
    assert reference["data"].shape == (144, 1, 32, 64)
    assert reference["lat"].values[0] == pytest.approx(-87.1875) and np.all(np.diff(reference["lat"]) > 0)
    assert reference["lon"].values[0] == 0.0 and reference["lon"].values[-1] == 354.375


def test_region_crossing_prime_meridian_in_0_360(tmp_path):
    a = _ingest(tmp_path, "uk_0_360", synth.WeatherLayout(), region=UK)
    b = _ingest(tmp_path, "uk_180", synth.WeatherLayout(lon_180=True, lat_descending=True), region=UK)
    assert a["lon"].values.tolist() == list(np.arange(-10.0, 2.5, 1.0))
    np.testing.assert_array_equal(a["lon"].values, b["lon"].values)
    np.testing.assert_array_equal(a["data"].values, b["data"].values)


def test_canonical_longitudes_rules():
    assert canonical_longitudes(np.arange(0, 360, 90.0)).tolist() == [0, 90, 180, 270]
    assert canonical_longitudes(np.arange(-180, 180, 90.0)).tolist() == [180, 270, 0, 90]
    assert sorted(canonical_longitudes(np.array([350.0, 355.0, 0.0, 5.0]))) == [-10, -5, 0, 5]
    assert sorted(canonical_longitudes(np.array([170.0, 175.0, -180.0, -175.0]))) == [170, 175, 180, 185]


def test_extent_crops_a_global_grid(tmp_path):
    ds = _ingest(tmp_path, "crop", synth.WeatherLayout(), grid=None,
                 extent={"lat": [30, 60], "lon": [-20, 20]})
    assert ds["lat"].min() >= 30 and ds["lat"].max() <= 60
    assert ds["lon"].min() >= -20 and ds["lon"].max() <= 20 and np.all(np.diff(ds["lon"]) > 0)


@pytest.mark.parametrize("level_as_dim", [False, True])
def test_multi_variable_with_levels_and_6h_subsampling(tmp_path, level_as_dim):
    out = tmp_path / "data" / "multi"
    layout = synth.WeatherLayout(level_as_dim=level_as_dim)
    synth.write_weatherbench(out, "2010-01-01", "2010-01-06", variables=["z500", "t850", "t2m"], layout=layout)
    e = entry(
        name="multi", source={"pattern": "multi/*/*.nc"}, store="multi.zarr", time_step="6h",
        variables=[{"name": "z", "levels": [500]}, {"name": "t", "levels": [850]}, {"name": "t2m"}],
    )
    ds = open_store(ingest(e, progress=False).store)
    assert list(ds["channel"].values) == ["z500", "t850", "t2m"]
    assert list(ds["level"].values) == [500, 850, 0] and list(ds["variable"].values) == ["z", "t", "t2m"]
    assert list(ds["units"].values) == ["m**2 s**-2", "K", "K"]
    t = pd.DatetimeIndex(ds["time"].values)
    assert len(t) == 24 and set(t.hour) == {0, 6, 12, 18}
    raw = xr.open_dataset(out / "temperature_850" / "temperature_850hPa_2010_5.625deg.nc")
    expected = raw["t"].sel(time=t).values.reshape(24, 32, 64)
    np.testing.assert_array_equal(ds["data"].sel(channel="t850").values, expected)
    # statistics are per channel
    assert float(ds["stat_mean"].sel(channel="z500")) > 40000 > float(ds["stat_mean"].sel(channel="t850"))


def test_synthetic_files_match_the_real_layout(tmp_path, real_data):
    paths = synth.write_weatherbench(tmp_path, "2010-01-01", "2010-01-01", resolution=0.25, region=UK, layout=synth.WeatherLayout(files_per="day"))
    ours = xr.open_dataset(paths[0])
    real = xr.open_dataset(sorted((real_data / "weather/era5_uk_t2m_0.25deg").glob("*.nc"))[0])
    assert list(ours.data_vars) == list(real.data_vars) == ["t2m"]
    assert ours["t2m"].dims == real["t2m"].dims and ours["t2m"].dtype == real["t2m"].dtype
    assert ours["t2m"].attrs["units"] == real["t2m"].attrs["units"]
    assert ours.sizes == real.sizes
    again = xr.open_dataset(synth.write_weatherbench(tmp_path / "again", "2010-01-01", "2010-01-01", resolution=0.25,
                                                     region=UK, layout=synth.WeatherLayout(files_per="day"))[0])
    np.testing.assert_array_equal(ours["t2m"].values, again["t2m"].values)  # deterministic from the seed
    assert 240 < float(ours["t2m"].mean()) < 300
