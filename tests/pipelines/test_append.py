"""Append instead of re-ingest: grown sources are appended to the store, which then equals a full ingest of the
same files; anything else is rebuilt; bad new files fail in one line and leave the store as it was; a killed
append leaves the previous store and a rerun completes; a reader of the previous store keeps its values."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from typer.testing import CliRunner

from pipelines import synth
from pipelines.errors import InputError
from pipelines.store import open_store, verify_store

from ..conftest import REPO, entry, ingest, write_catalog
from .test_ingest_errors import _digest

DAILY = synth.WeatherLayout(files_per="day")
FILES = "data/wb/2m_temperature"
SPLITS = {"train": {"start": "2010-01-01", "end": "2010-01-03"},
          "validation": {"start": "2010-01-04", "end": "2010-01-05"},
          "test": {"start": "2010-01-06", "end": "2010-01-31"}}
FRAME = 4 * 32 * 64  # bytes of one frame of the global 5.625 deg grid
CHUNK = 10 * FRAME   # ten frames a chunk: a store of a few days has many, the last one partial


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr("pipelines.ingest.CHUNK_BYTES", CHUNK)


def wb(**fields):
    return entry(**{"splits": SPLITS, **fields})


def days(tmp_path, start, end, **kw):
    return synth.write_weatherbench(tmp_path / "data/wb", start, end, layout=DAILY, **kw)


def day_file(tmp_path, day):
    return tmp_path / FILES / f"2m_temperature_{day}_5.625deg.nc"


@pytest.fixture
def store(tmp_path):
    """A store of six daily files (144 steps, 15 chunks of 10, the last one partial)."""
    days(tmp_path, "2010-01-01", "2010-01-06")
    result = ingest(wb())
    assert not result.appended and result.summary["time_steps"] == 144
    return result.store


def content(store):
    """What a full ingest determines: every array, every attribute but the provenance's times."""
    ds = open_store(store)
    values = {k: ds[k].values for k in ds.variables}
    attrs = dict(ds.attrs)
    files = json.loads(attrs.pop("provenance"))["source_files"]
    summary = json.loads(attrs.pop("summary"))
    summary.pop("store")
    return values, attrs, summary, files


def assert_equals_full_ingest(store, e, tmp_path):
    verify_store(store)
    full = ingest(e, store=tmp_path / "full.zarr", force=True)
    assert not full.appended
    (a, a_attrs, a_sum, a_files), (b, b_attrs, b_sum, b_files) = content(store), content(full.store)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert a_attrs == b_attrs and a_sum == b_sum and a_files == b_files


def _leftovers(store):
    return [p.name for p in store.parent.iterdir() if p.name.startswith(f".{store.name}.")]


# ---- appending ------------------------------------------------------------------------------------------

def test_new_daily_files_are_appended_and_equal_a_full_ingest(tmp_path, store):
    first_chunk = store / "data/c/0/0/0/0"
    inode = first_chunk.stat().st_ino
    days(tmp_path, "2010-01-07", "2010-01-08")
    result = ingest(wb())
    assert result.appended and result.summary["appended_steps"] == 48 and "rebuilt" not in result.summary
    assert result.summary["time_steps"] == 192 and result.summary["end"] == "2010-01-08T23:00"
    assert first_chunk.stat().st_ino == inode  # the history was linked, not copied
    assert not _leftovers(store)
    ds = open_store(store)
    assert ds["data"].encoding["chunks"][0] == 10 and ds.sizes["time"] == 192
    prov = json.loads(ds.attrs["provenance"])
    assert prov["appends"] == 1 and len(prov["source_files"]) == 8
    assert_equals_full_ingest(store, wb(), tmp_path)
    again = ingest(wb())
    assert again.skipped and again.summary["time_steps"] == 192


def test_a_gap_before_the_new_file_is_recorded(tmp_path, store):
    days(tmp_path, "2010-01-09", "2010-01-09")
    with pytest.raises(InputError, match="gap in time: 48 missing 1h steps 2010-01-07T00:00 .. 2010-01-08T23:00"):
        ingest(wb())
    result = ingest(wb(gaps="record"))
    assert not result.appended and "catalog entry 'test-wb' changed" in result.summary["rebuilt"]
    days(tmp_path, "2010-01-11", "2010-01-12")
    nan_day = day_file(tmp_path, "2010-01-12")
    _rewrite(nan_day, lambda d: _set(d, slice(20, 22), np.nan))
    result = ingest(wb(gaps="record"))
    assert result.appended and result.summary["appended_steps"] == 46
    ds = open_store(store)
    assert json.loads(ds.attrs["missing_times"]) == [["2010-01-07T00:00", "2010-01-08T23:00"],
                                                     ["2010-01-10T00:00", "2010-01-10T23:00"],
                                                     ["2010-01-12T20:00", "2010-01-12T21:00"]]
    assert_equals_full_ingest(store, wb(gaps="record"), tmp_path)


def _grow(tmp_path, day, until):
    """Rewrite one daily file with the following days' times in it too."""
    extra = synth.write_weatherbench(tmp_path / "extra", pd.Timestamp(day) + pd.Timedelta(days=1), until, layout=DAILY)
    path = day_file(tmp_path, day)
    grown = xr.concat([xr.load_dataset(path), *(xr.load_dataset(p) for p in extra)], dim="time")
    path.unlink()
    grown.to_netcdf(path, encoding={"time": {"units": "hours since 1900-01-01", "dtype": "int64"}})
    shutil.rmtree(tmp_path / "extra")
    return path


def test_a_grown_last_file_is_appended(tmp_path, store):
    _grow(tmp_path, "2010-01-06", "2010-01-07")
    result = ingest(wb())
    assert result.appended and result.summary["appended_steps"] == 24
    assert_equals_full_ingest(store, wb(), tmp_path)


def test_a_grown_last_file_with_changed_old_times_is_rebuilt(tmp_path, store):
    path = _grow(tmp_path, "2010-01-06", "2010-01-07")
    _rewrite(path, lambda d: _set(d, slice(3, 4), 280.0))  # a time already in the store
    result = ingest(wb())
    assert not result.appended and result.summary["rebuilt"] == f"{path} changed in times already in the store"
    assert result.summary["time_steps"] == 168
    assert_equals_full_ingest(store, wb(), tmp_path)


def test_a_changed_old_file_rebuilds(tmp_path, store):
    middle = day_file(tmp_path, "2010-01-03")
    os.utime(middle, ns=(middle.stat().st_atime_ns, middle.stat().st_mtime_ns + 10**9))
    days(tmp_path, "2010-01-07", "2010-01-07")
    result = ingest(wb())
    assert not result.appended
    assert result.summary["rebuilt"] == f"{middle} changed since it was ingested (only the last file may grow)"
    day_file(tmp_path, "2010-01-02").unlink()
    result = ingest(wb(gaps="record"))
    assert not result.appended and "changed since the store was written" in result.summary["rebuilt"]
    days(tmp_path, "2010-01-08", "2010-01-08")
    result = ingest(wb(gaps="record"))
    assert result.appended and result.summary["appended_steps"] == 24
    days(tmp_path, "2010-01-02", "2010-01-02")  # the hole filled again: not an append
    result = ingest(wb(gaps="record"))
    assert not result.appended and "holds times up to the store's end" in result.summary["rebuilt"]
    assert result.summary["missing_steps"] == 0


def test_a_changed_entry_or_force_rebuilds_a_training_change_does_not(tmp_path, store):
    days(tmp_path, "2010-01-07", "2010-01-07")
    result = ingest(wb(variables=[{"name": "t2m", "valid_range": [100, 400]}]))
    assert not result.appended and result.summary["rebuilt"] == "catalog entry 'test-wb' changed since the store " \
                                                                "was written"
    days(tmp_path, "2010-01-08", "2010-01-08")
    result = ingest(wb(variables=[{"name": "t2m", "valid_range": [100, 400]}]), force=True)
    assert not result.appended and result.summary["rebuilt"] == "--force was given"
    days(tmp_path, "2010-01-09", "2010-01-09")
    result = ingest(wb(variables=[{"name": "t2m", "valid_range": [100, 400]}], description="prose only"))
    assert result.appended and result.summary["appended_steps"] == 24
    assert json.loads(open_store(store).attrs["catalog_entry"])["description"] == "prose only"


def test_splits_that_move_with_the_end_of_the_data_rebuild(tmp_path):
    days(tmp_path, "2010-01-01", "2010-01-06")
    relative = {"train": {"rest": True}, "validation": {"last": "1D"}, "test": {"last": "1D"}}
    ingest(wb(splits=relative))
    days(tmp_path, "2010-01-07", "2010-01-07")
    result = ingest(wb(splits=relative))
    assert not result.appended and result.summary["rebuilt"].startswith("split validation is the last 1D of the data")
    assert result.summary["split_steps"] == {"train": 120, "validation": 24, "test": 24}
    # absolute splits, but the new day falls in the training period: the statistics would change
    in_train = {**SPLITS, "train": {"start": "2010-01-01", "end": "2010-01-08"},
                "validation": {"start": "2010-01-09", "end": "2010-01-09"},
                "test": {"start": "2010-01-10", "end": "2010-01-31"}}
    ingest(wb(splits=in_train))
    days(tmp_path, "2010-01-08", "2010-01-08")
    result = ingest(wb(splits=in_train))
    assert not result.appended and result.summary["rebuilt"].startswith("24 new steps fall in the training period")


def test_a_store_shorter_than_one_chunk_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setattr("pipelines.ingest.CHUNK_BYTES", 1000 * FRAME)
    days(tmp_path, "2010-01-01", "2010-01-06")
    ingest(wb())
    days(tmp_path, "2010-01-07", "2010-01-07")
    result = ingest(wb())
    assert not result.appended and "less than one chunk" in result.summary["rebuilt"]


def test_a_damaged_store_is_rebuilt(tmp_path, store):
    (store / "data/c/3/0/0/0").unlink()
    days(tmp_path, "2010-01-07", "2010-01-07")
    result = ingest(wb())
    assert not result.appended
    assert result.summary["rebuilt"] == "the store is damaged: array 'data' chunk c/3/0/0/0 is missing"
    verify_store(store)
    assert not _leftovers(store)


def test_several_variables_in_their_own_files_and_subsampled(tmp_path):
    e = wb(time_step="6h", variables=[{"name": "z", "levels": [500], "pattern": "wb/geopotential_500/*.nc"},
                                      {"name": "t2m", "pattern": "wb/2m_temperature/*.nc"}])
    days(tmp_path, "2010-01-01", "2010-01-05", variables=("z500", "t2m"))
    store = ingest(e).store
    days(tmp_path, "2010-01-06", "2010-01-07", variables=("z500", "t2m"))
    result = ingest(e)
    assert result.appended and result.summary["appended_steps"] == 8
    assert_equals_full_ingest(store, e, tmp_path)
    before = _digest(store)
    days(tmp_path, "2010-01-08", "2010-01-08", variables=("t2m",))  # one variable only: not an append, an error
    with pytest.raises(InputError, match="covers other times"):
        ingest(e)
    assert _digest(store) == before


# ---- bad new files --------------------------------------------------------------------------------------

def _rewrite(path, fn):
    ds = xr.load_dataset(path)
    path.unlink()
    fn(ds).to_netcdf(path)


def _set(ds, times, value):
    ds["t2m"][times, 10:20, 5:9] = value
    return ds


def _nan(tmp_path):
    path = days(tmp_path, "2010-01-07", "2010-01-07")[0]
    _rewrite(path, lambda d: _set(d, slice(3, 6), np.nan))
    return path, "120 NaN values in 't2m' at 3 times (2010-01-07T03:00 .. 2010-01-07T05:00)"


def _too_hot(tmp_path):
    path = days(tmp_path, "2010-01-07", "2010-01-07")[0]
    _rewrite(path, lambda d: _set(d, slice(3, 4), 400.0))
    return path, "'t2m' has values above its valid range [150, 350] K at 1 times (first 2010-01-07T03:00: 400)"


def _gap(tmp_path):
    path = days(tmp_path, "2010-01-08", "2010-01-08")[0]
    return path, "gap in time: 24 missing 1h steps 2010-01-07T00:00 .. 2010-01-07T23:00"


def _other_grid(tmp_path):
    path = days(tmp_path, "2010-01-07", "2010-01-07", region=((0.0, 45.0), (0.0, 90.0)))[0]
    return path, "data are 1x9x17 (channel x grid); the store holds 1x32x64"


def _shifted_grid(tmp_path):
    path = days(tmp_path, "2010-01-07", "2010-01-07", resolution=5.625)[0]
    _rewrite(path, lambda d: d.assign_coords(lat=d["lat"] + 1.0))
    return path, "lat (-86.1875 .. 88.1875) differs from the store's (-87.1875 .. 87.1875)"


def _duplicate_day(tmp_path):
    path = tmp_path / FILES / "2m_temperature_2010-01-06b_5.625deg.nc"
    shutil.copy(day_file(tmp_path, "2010-01-06"), path)
    return path, "duplicate times: time 2010-01-06T00:00 also in"


def _duplicate_in_file(tmp_path):
    path = days(tmp_path, "2010-01-07", "2010-01-07")[0]
    _rewrite(path, lambda d: d.isel(time=[0, 1, 1, 2]))
    return path, "duplicate time 2010-01-07T01:00"


def _off_grid(tmp_path):
    path = days(tmp_path, "2010-01-07", "2010-01-07")[0]
    _rewrite(path, lambda d: d.assign_coords(time=d["time"] + np.timedelta64(30, "m")))
    return path, "time 2010-01-07T00:30 is off the 1h grid (previous time 2010-01-06T23:00)"


@pytest.mark.parametrize("bad", [_nan, _too_hot, _gap, _other_grid, _shifted_grid, _duplicate_day,
                                 _duplicate_in_file, _off_grid])
def test_a_bad_new_file_fails_in_one_line_and_leaves_the_store(tmp_path, store, bad):
    before = _digest(store)
    path, problem = bad(tmp_path)
    with pytest.raises(InputError) as info:
        ingest(wb())
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{path}: ") and problem in msg, msg
    assert _digest(store) == before and not _leftovers(store)


# ---- kills and readers ----------------------------------------------------------------------------------

KILLERS = {
    # after the first array's new chunks are written into the temporary store
    "writing": """
        from pipelines.ingest import append
        real = append._write_region
        def write_region(*a, **k):
            real(*a, **k)
            os.kill(os.getpid(), signal.SIGKILL)
        append._write_region = write_region
    """,
    # the appended store complete beside the store, not yet swapped in
    "swap": """
        from pipelines import outputs
        outputs._swap_into_place = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
    """,
    # just after the exchange, before the previous store is removed
    "swapped": """
        from pipelines import outputs
        real = outputs._exchange
        def exchange(*a):
            real(*a)
            os.kill(os.getpid(), signal.SIGKILL)
        outputs._exchange = exchange
    """,
}


@pytest.mark.parametrize("moment", KILLERS)
def test_a_killed_append_leaves_the_store_and_a_rerun_completes(tmp_path, store, moment):
    before = _digest(store)
    days(tmp_path, "2010-01-07", "2010-01-08")
    script = "import os, signal\n" + textwrap.dedent(KILLERS[moment]) + textwrap.dedent(f"""
        import pipelines.ingest
        pipelines.ingest.CHUNK_BYTES = {CHUNK}
        from tests.conftest import ingest
        from tests.pipelines.test_append import wb
        ingest(wb())
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert _leftovers(store), "the killed append should have left its temporary behind"
    if moment == "swapped":  # the appended store is in place, complete
        again = ingest(wb())
        assert again.skipped and again.summary["time_steps"] == 192
    else:
        assert _digest(store) == before
        verify_store(store)
        again = ingest(wb())
        assert again.appended and again.summary["appended_steps"] == 48
    assert not _leftovers(store)
    assert_equals_full_ingest(store, wb(), tmp_path)


def test_a_reader_of_the_previous_store_keeps_its_values(tmp_path, store):
    old = open_store(store).load()
    reader = open_store(store)  # opened before the append, read after it
    days(tmp_path, "2010-01-07", "2010-01-07")
    assert ingest(wb()).appended
    assert reader.sizes["time"] == 144
    for name in ("data", "in_test", "time"):
        np.testing.assert_array_equal(reader[name].values, old[name].values)
    assert open_store(store).sizes["time"] == 168


# ---- TaxiBJ ----------------------------------------------------------------------------------------------

def bj(**fields):
    base = dict(name="bj", kind="taxibj", source={"pattern": "bj/BJ1*_M8x8_T30_InOut.h5"},
                variables=[{"name": "inflow"}, {"name": "outflow"}], time_step="30min",
                splits={"train": {"rest": True}, "validation": {"start": "2013-07-05", "end": "2013-07-06"},
                        "test": {"start": "2013-07-07", "end": "2013-12-31"}},
                window={"input": 4, "output": 4}, normalization="minmax", grid=(8, 8), store="bj.zarr",
                gaps="record", holidays="bj/BJ_Holiday.txt")
    return entry(**{**base, **fields})


@pytest.mark.parametrize("incomplete_days", ["keep", "drop"])
def test_taxibj_a_longer_rewrite_and_a_second_file_are_appended(tmp_path, monkeypatch, incomplete_days):
    monkeypatch.setattr("pipelines.ingest.CHUNK_BYTES", 50 * 2 * 8 * 8 * 4)  # 50 slots a chunk
    e = bj(incomplete_days=incomplete_days)

    def write(periods):
        synth.write_taxibj(tmp_path / "data/bj", periods, grid=(8, 8), drop_slots=0.002)

    write({"BJ13": ("2013-07-01", "2013-07-08")})
    store = ingest(e).store
    write({"BJ13": ("2013-07-01", "2013-07-10")})  # the same file, two days longer (and the holidays rewritten)
    result = ingest(e)
    assert result.appended and result.summary["appended_steps"] > 40, result.summary
    assert_equals_full_ingest(store, e, tmp_path)
    write({"BJ14": ("2013-07-12", "2013-07-13")})  # a second file, after a missing day
    result = ingest(e)
    assert result.appended and result.summary["appended_steps"] > 40, result.summary
    assert ["2013-07-11T00:00", "2013-07-11T23:30"] in json.loads(open_store(store).attrs["missing_times"])
    assert_equals_full_ingest(store, e, tmp_path)


def test_taxibj_holidays(tmp_path, monkeypatch):
    monkeypatch.setattr("pipelines.ingest.CHUNK_BYTES", 50 * 2 * 8 * 8 * 4)
    synth.write_taxibj(tmp_path / "data/bj", {"BJ13": ("2013-07-01", "2013-07-08")}, grid=(8, 8))
    store = ingest(bj()).store
    holidays = tmp_path / "data/bj/BJ_Holiday.txt"
    holidays.write_text(holidays.read_text() + "20131225\n")  # a holiday after the data: nothing to append
    result = ingest(bj())
    assert result.appended and result.summary["appended_steps"] == 0
    holidays.write_text(holidays.read_text() + "20130702\n")  # a day in the store
    result = ingest(bj())
    assert not result.appended and result.summary["rebuilt"] == f"the holiday file {holidays} changed for days " \
                                                                "already in the store"
    assert_equals_full_ingest(store, bj(), tmp_path)
    assert open_store(store)["holiday"].sel(time="2013-07-02").values.all()


# ---- the command line ------------------------------------------------------------------------------------

def test_the_command_says_it_appended(tmp_path, store, monkeypatch):
    from pipelines.cli import app

    write_catalog(tmp_path / "catalog.yaml", {"test-wb": wb().model_dump(mode="json", exclude={"name"})})
    monkeypatch.setenv("SIMCAST_CATALOG", str(tmp_path / "catalog.yaml"))
    days(tmp_path, "2010-01-07", "2010-01-07")
    result = CliRunner().invoke(app, ["ingest", "test-wb"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "24 new steps appended" in result.output
    days(tmp_path, "2010-01-08", "2010-01-08")
    result = CliRunner().invoke(app, ["ingest", "test-wb", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["appended_steps"] == 24
