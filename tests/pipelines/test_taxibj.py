"""TaxiBJ HDF5 layout: slot decoding, several yearly files, missing slots, incomplete-day policies, holidays."""

import h5py
import numpy as np
import pandas as pd
import pytest

from pipelines import synth

from pipelines.ingest.readers.taxibj import decode_slots, read_holidays
from pipelines.store import open_store

from ..conftest import entry, ingest

PERIODS = {"BJ13": ("2013-07-01", "2013-07-10"), "BJ14": ("2014-03-01", "2014-03-12")}


def bj_entry(**fields):
    base = dict(name="bj", kind="taxibj", source={"pattern": "bj/BJ1*_M32x32_T30_InOut.h5"},
                variables=[{"name": "inflow"}, {"name": "outflow"}], time_step="30min",
                splits={"train": {"rest": True}, "validation": {"last": "2D"}, "test": {"last": "3D"}},
                window={"input": 4, "output": 4}, normalization="minmax", grid=(32, 32), store="bj.zarr",
                gaps="record", holidays="bj/BJ_Holiday.txt")
    base.update(fields)
    return entry(**base)


def test_slots_decode_to_half_hours():
    t = decode_slots("f.h5", np.array([b"2013070101", b"2013070102", b"2013070148"]), pd.Timedelta("30min"))
    assert list(t) == [pd.Timestamp("2013-07-01 00:00"), pd.Timestamp("2013-07-01 00:30"), pd.Timestamp("2013-07-01 23:30")]
    with pytest.raises(Exception, match="f.h5: date value '2013070149' is not a valid day and slot 01..48"):
        decode_slots("f.h5", np.array([b"2013070149"]), pd.Timedelta("30min"))


def test_files_concatenate_and_gap_between_years_is_recorded(tmp_path):
    synth.write_taxibj(tmp_path / "data/bj", PERIODS)
    ds = open_store(ingest(bj_entry(incomplete_days="keep"), progress=False).store)
    t = pd.DatetimeIndex(ds["time"].values)
    assert len(t) == (10 + 12) * 48 and t[0] == pd.Timestamp("2013-07-01") and t[-1] == pd.Timestamp("2014-03-12 23:30")
    assert ds.attrs["missing_times"] == '[["2013-07-11T00:00", "2014-02-28T23:30"]]'
    with h5py.File(tmp_path / "data/bj/BJ14_M32x32_T30_InOut.h5") as f:
        np.testing.assert_array_equal(ds["data"].values[480:], f["data"][()].astype("float32"))
    # holidays as a covariate; min-max statistics from the training split only
    assert ds["holiday"].sel(time="2014-03-01").values.sum() == 0 and int(ds["holiday"].sum()) == 0
    train = ds["data"].values[ds["in_train"].values == 1]
    assert float(ds["stat_max"][0]) == train[:, 0].max() and float(ds["stat_min"][1]) == train[:, 1].min()


def test_incomplete_days_keep_vs_drop(tmp_path):
    synth.write_taxibj(tmp_path / "data/bj", PERIODS, drop_slots=0.01, seed=3)
    with h5py.File(tmp_path / "data/bj/BJ13_M32x32_T30_InOut.h5") as f:
        present = len(f["date"])
    kept = open_store(ingest(bj_entry(incomplete_days="keep", store="keep.zarr"), progress=False).store)
    dropped = open_store(ingest(bj_entry(incomplete_days="drop", store="drop.zarr"), progress=False).store)
    assert kept.attrs["missing_count"] > 0
    days_kept = pd.DatetimeIndex(kept["time"].values).normalize().value_counts()
    days_dropped = pd.DatetimeIndex(dropped["time"].values).normalize().value_counts()
    assert (days_kept < 48).any() and (days_dropped == 48).all()
    assert set(days_dropped.index) == set(days_kept.index[days_kept == 48])
    assert int((pd.DatetimeIndex(kept["time"].values) < "2014-01-01").sum()) == present


def test_holiday_file_marks_days(tmp_path):
    synth.write_taxibj(tmp_path / "data/bj", {"BJ13": ("2013-09-29", "2013-10-03")})
    (tmp_path / "data/bj/BJ_Holiday.txt").write_text("20131001\n20131002\n")
    ds = open_store(ingest(bj_entry(splits={"train": {"rest": True}, "validation": {"last": "1D"},
                                            "test": {"last": "1D"}}), progress=False).store)
    per_day = ds["holiday"].to_series().groupby(pd.DatetimeIndex(ds["time"].values).date).max()
    assert per_day.tolist() == [0, 0, 1, 1, 0]
    assert read_holidays(tmp_path / "data/bj/BJ_Holiday.txt") == {pd.Timestamp("2013-10-01"), pd.Timestamp("2013-10-02")}


def test_real_holiday_list_reads(real_data):
    days = read_holidays(real_data / "traffic/BJ_Holiday.txt")
    assert pd.Timestamp("2013-01-01") in days and len(days) > 100


def test_synthetic_taxibj_matches_the_real_layout(tmp_path, real_data):
    path = synth.write_taxibj(tmp_path, {"BJ13": ("2013-07-01", "2013-07-01")}, grid=(14, 8))[0]
    with h5py.File(path) as ours, h5py.File(real_data / "traffic/NYBike_M14x8_T30_InOut.h5") as real:
        assert set(ours.keys()) == set(real.keys()) == {"data", "date"}
        for k in ("data", "date"):
            assert ours[k].dtype == real[k].dtype and ours[k].shape[1:] == real[k].shape[1:]
        assert ours["date"][0] == b"2013070101" and ours["date"][-1] == b"2013070148"
        flows = ours["data"][()]
        assert (flows >= 0).all() and (flows == np.round(flows)).all()
        hourly = flows.sum(axis=(1, 2, 3))
        assert hourly[16:20].mean() > 2 * hourly[4:8].mean()  # morning rush above the small hours
