"""Per-frame moments (one NumPy pass per block) against the plain masked formulation, and the training
statistics combined from them against NumPy over the whole period."""

import numpy as np
import pytest
import xarray as xr

from pipelines.ingest import stats


def masked_reference(data: xr.DataArray) -> xr.Dataset:
    space = ["lat", "lon"]
    raw = data.astype("float64")
    x = raw.where(np.isfinite(raw))
    mean = x.mean(space, skipna=True)
    return xr.Dataset({"count": x.count(space), "nan": raw.isnull().sum(space), "mean": mean,
                       "m2": ((x - mean) ** 2).sum(space, skipna=True),
                       "min": x.min(space, skipna=True), "max": x.max(space, skipna=True)})


@pytest.fixture
def frames():
    values = np.random.default_rng(0).normal(280, 5, (600, 2, 6, 7)).astype("float32")
    values[3, 0, 1, 1] = np.nan
    values[4, 1] = np.nan          # a whole frame of NaN
    values[7, 0, 2, 2] = np.inf
    values[300, 1, 0, 0] = -np.inf
    return xr.DataArray(values, dims=("time", "channel", "lat", "lon"),
                        coords={"time": np.arange(600), "channel": ["a", "b"]})


@pytest.mark.parametrize("chunks", [None, {"time": 64, "lat": 3}, {"time": 600, "lon": 2}])
def test_frame_moments_match_the_masked_formulation(frames, chunks):
    data = frames if chunks is None else frames.chunk(chunks)
    got = stats.frame_moments(data).compute()
    want = masked_reference(frames)
    for name in stats.MOMENTS:
        assert got[name].dims == ("time", "channel") and got[name].dtype == want[name].dtype, name
        np.testing.assert_allclose(got[name].values, want[name].values, rtol=1e-12, equal_nan=True, err_msg=name)


def test_combined_statistics_equal_numpy_over_the_finite_values(frames):
    combined = stats.combine_moments(stats.frame_moments(frames.chunk({"time": 100})).compute())
    for c in range(2):
        v = frames.values[:, c].astype("float64")
        v = v[np.isfinite(v)]
        np.testing.assert_allclose(float(combined["mean"][c]), v.mean(), rtol=1e-12)
        np.testing.assert_allclose(float(combined["std"][c]), v.std(), rtol=1e-10)
        assert float(combined["min"][c]) == v.min() and float(combined["max"][c]) == v.max()
        assert int(combined["count"][c]) == v.size
