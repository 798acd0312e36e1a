"""Bad input: one clear line naming the file and the problem; an existing store is left untouched."""

import hashlib
import json
import shutil

import h5py
import numpy as np
import pytest
import xarray as xr

from pipelines import synth
from pipelines.errors import InputError

from pipelines.store import open_store

from ..conftest import entry, ingest
from .test_taxibj import bj_entry

FILES = "data/wb/2m_temperature"


def _digest(store):
    h = hashlib.sha256()
    for p in sorted(store.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(store)).encode() + p.read_bytes())
    return h.hexdigest()


@pytest.fixture
def good_store(tmp_path):
    """A valid store built from daily files; tests then damage the inputs and ingest again."""
    synth.write_weatherbench(tmp_path / "data/wb", "2010-01-01", "2010-01-06", layout=synth.WeatherLayout(files_per="day"))
    store = ingest(entry(), progress=False).store
    return store, _digest(store)


def _rewrite(path, fn):
    ds = xr.load_dataset(path)
    path.unlink()
    fn(ds).to_netcdf(path)


def _fails(match, e=None):
    with pytest.raises(InputError) as info:
        ingest(e or entry(), progress=False)
    msg = str(info.value)
    assert "\n" not in msg, msg
    assert match in msg, msg
    return msg


def test_netcdf_missing_the_variable(tmp_path, good_store):
    _rewrite(tmp_path / FILES / "2m_temperature_2010-01-03_5.625deg.nc", lambda d: d.rename(t2m="tas"))
    msg = _fails("holds none of the variables t2m (has: tas)")
    assert msg.startswith(str(tmp_path / FILES / "2m_temperature_2010-01-03_5.625deg.nc"))
    assert _digest(good_store[0]) == good_store[1]


def test_truncated_netcdf(tmp_path, good_store):
    path = tmp_path / FILES / "2m_temperature_2010-01-02_5.625deg.nc"
    path.write_bytes(path.read_bytes()[:2000])
    msg = _fails("not a readable NetCDF file")
    assert msg.startswith(str(path))
    assert _digest(good_store[0]) == good_store[1]


def test_duplicate_times_across_files(tmp_path, good_store):
    src = tmp_path / FILES / "2m_temperature_2010-01-02_5.625deg.nc"
    shutil.copy(src, tmp_path / FILES / "2m_temperature_2010-01-02b_5.625deg.nc")
    msg = _fails("duplicate times: time 2010-01-02T00:00 also in")
    assert "2010-01-02" in msg
    assert _digest(good_store[0]) == good_store[1]


def test_duplicate_and_unsorted_times_within_a_file(tmp_path, good_store):
    path = tmp_path / FILES / "2m_temperature_2010-01-04_5.625deg.nc"
    original = path.read_bytes()
    _rewrite(path, lambda d: d.isel(time=[0, 1, 1, 2]))
    _fails(f"{path}: duplicate time 2010-01-04T01:00")
    path.write_bytes(original)
    path = tmp_path / FILES / "2m_temperature_2010-01-05_5.625deg.nc"
    _rewrite(path, lambda d: d.isel(time=[0, 2, 1, 3]))
    _fails(f"{path}: times not in increasing order: 2010-01-05T02:00 is followed by 2010-01-05T01:00")
    assert _digest(good_store[0]) == good_store[1]


def test_nan_block(tmp_path, good_store):
    path = tmp_path / FILES / "2m_temperature_2010-01-05_5.625deg.nc"

    def nan_block(d):
        d["t2m"][3:6, 10:20, 5:9] = np.nan
        return d

    _rewrite(path, nan_block)
    _fails(f"{path}: 120 NaN values in 't2m' at 3 times (2010-01-05T03:00 .. 2010-01-05T05:00)")
    assert _digest(good_store[0]) == good_store[1]


def test_recorded_nan_times_are_left_out_and_kept_out_of_the_statistics(tmp_path, good_store):
    """gaps: record with NaN frames: the store is written again without those times (the one-pass ingest's
    second write), they count as missing, and the statistics come from the finite training frames only."""
    path = tmp_path / FILES / "2m_temperature_2010-01-02_5.625deg.nc"
    _rewrite(path, lambda d: d.assign(t2m=d["t2m"].where(d["time"].dt.hour != 7)))
    ds = open_store(ingest(entry(gaps="record"), progress=False).store)
    assert ds.attrs["missing_times"] == '[["2010-01-02T07:00", "2010-01-02T07:00"]]' and ds.attrs["missing_count"] == 1
    assert ds.sizes["time"] == 6 * 24 - 1 and not np.isnan(ds["data"].values).any()
    raw = xr.open_mfdataset(sorted((tmp_path / FILES).glob("*.nc")), combine="by_coords")["t2m"]
    start, end = (np.datetime64(t) for t in json.loads(ds.attrs["splits"])["train"])  # end exclusive
    train = raw.isel(time=np.flatnonzero((raw["time"].values >= start) & (raw["time"].values < end)))
    train = train.values.astype("float64")
    train = train[np.isfinite(train).all(axis=(1, 2))]
    np.testing.assert_allclose(float(ds["stat_mean"][0]), train.mean(), rtol=1e-12)
    np.testing.assert_allclose(float(ds["stat_std"][0]), train.std(), rtol=1e-10)
    assert not [name for name in ds.variables if name.startswith("_moment")]


def test_gap_is_an_error_or_recorded(tmp_path, good_store):
    path = tmp_path / FILES / "2m_temperature_2010-01-03_5.625deg.nc"
    _rewrite(path, lambda d: d.isel(time=list(range(0, 5)) + list(range(8, 24))))
    _fails(f"{path}: gap in time: 3 missing 1h steps 2010-01-03T05:00 .. 2010-01-03T07:00")
    assert _digest(good_store[0]) == good_store[1]
    ds = open_store(ingest(entry(gaps="record"), progress=False).store)
    assert ds.attrs["missing_times"] == '[["2010-01-03T05:00", "2010-01-03T07:00"]]' and ds.attrs["missing_count"] == 3


def test_wrong_grid(tmp_path, good_store):
    _fails("grid is 32x64; catalog entry 'test-wb' expects 33x49", entry(grid=(33, 49)))


def test_wrong_time_step(tmp_path, good_store):
    _fails("time step of the files is 1h; catalog entry 'test-wb' expects 30min",
           entry(time_step="30min"))


def test_no_training_data(tmp_path, good_store):
    e = entry(splits={"train": {"start": "2009-01-01", "end": "2009-12-31"},
                      "validation": {"last": "1D"}, "test": {"last": "1D"}})
    _fails("no data in the training period 2009-01-01T00:00 .. 2010-01-01T00:00", e)


def test_missing_files(tmp_path):
    _fails(f"{tmp_path}/data/wb/2m_temperature/*.nc: no files match this pattern")


def test_truncated_hdf5_and_missing_dataset(tmp_path):
    synth.write_taxibj(tmp_path / "data/bj", {"BJ13": ("2013-07-01", "2013-07-05"), "BJ14": ("2014-03-01", "2014-03-05")})
    store = ingest(bj_entry(), progress=False).store
    before = _digest(store)
    bad = tmp_path / "data/bj/BJ14_M32x32_T30_InOut.h5"
    good_bytes = bad.read_bytes()
    bad.write_bytes(good_bytes[: len(good_bytes) // 3])
    _fails(f"{bad}: not a readable HDF5 file (truncated or corrupt?)", bj_entry())
    with h5py.File(bad, "w") as f:
        f.create_dataset("data", data=np.zeros((4, 2, 32, 32)))
    _fails(f"{bad}: missing dataset 'date' (has: data)", bj_entry())
    with h5py.File(bad, "w") as f:
        f.create_dataset("data", data=np.zeros((4, 2, 16, 16)))
        f.create_dataset("date", data=np.array([b"2014030101", b"2014030102", b"2014030103", b"2014030104"]))
    _fails(f"{bad}: grid is 16x16; catalog entry 'bj' expects 32x32", bj_entry())
    with h5py.File(bad, "w") as f:
        f.create_dataset("data", data=np.zeros((3, 2, 32, 32)))
        f.create_dataset("date", data=np.array([b"2014030101", b"2014030102", b"2014030102"]))
    _fails(f"{bad}: duplicate time 2014-03-01T00:30", bj_entry())
    assert _digest(store) == before
