"""The forecast archive: one Zarr store per data set with an init_time dimension, every init time kept, a rerun
replacing only its own init time, foreign paths refused, a killed write leaving the previous archive whole."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr
from typer.testing import CliRunner

from pipelines import synth
from pipelines.cli import app
from pipelines.errors import InputError, OutputError
from pipelines.forecast.archive import add_to_archive, open_archive
from pipelines.forecast.output import forecast_dataset, open_forecast
from pipelines.outputs import owner_kind
from pipelines.store import open_store

from ..conftest import TINY_WB, ingest, write_catalog
from .test_forecast_io import nybike_store, persistence_forecast  # noqa: F401  (fixture)

GAP = ("2010-01-06T03:00", "2010-01-06T05:00")  # three hours the store lacks (its missing_times)


# ---- a tiny store, shared with test_verify.py -----------------------------------------------------------

@pytest.fixture(scope="session")
def wb(tmp_path_factory):
    """A week of hourly 9 x 13 t2m (TINY_WB) with a recorded gap of three hours, ingested; its env."""
    root = tmp_path_factory.mktemp("wb-archive")
    (path,) = synth.write_weatherbench(root / "data/wb", "2010-01-01", "2010-01-07", resolution=1.0,
                                       region=((50.0, 58.0), (-10.0, 2.0)))
    ds = xr.load_dataset(path)
    gap = (ds["time"] >= np.datetime64(GAP[0])) & (ds["time"] <= np.datetime64(GAP[1]))
    ds.isel(time=np.flatnonzero(~gap.values)).to_netcdf(path)
    write_catalog(root / "catalog.yaml", {"tiny-wb": {**TINY_WB, "gaps": "record"}})
    env = {"SIMCAST_DATA_ROOT": str(root / "data"), "SIMCAST_STORE_ROOT": str(root / "stores"),
           "SIMCAST_CATALOG": str(root / "catalog.yaml")}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        store = ingest("tiny-wb").store
    return SimpleNamespace(root=root, env=env, store=store, ds=open_store(store))


@pytest.fixture
def ws(wb, isolated, monkeypatch) -> Path:
    """The test's own folder as output root, the shared store and catalog."""
    for k, v in wb.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("SIMCAST_OUTPUT_ROOT", str(isolated / "outputs"))
    return isolated


def make_forecast(store: xr.Dataset, inits, leads: int = 6, values=None, seed: int = 0,
                  checkpoint: str = "runs/a/best.pt") -> xr.Dataset:
    """A forecast dataset as `simcast forecast` builds it; values (N, L, C, H, W) or noise around 275 K."""
    inits = pd.DatetimeIndex(inits)
    shape = (len(inits), leads, store.sizes["channel"], *store["data"].shape[2:])
    if values is None:
        values = 275 + np.random.default_rng(seed).normal(size=shape)
    step = pd.Timedelta(store.attrs["time_step"])
    leads = np.arange(1, leads + 1) * step.to_timedelta64()
    return forecast_dataset(np.asarray(values, "float32"), inits.values, leads, store,
                            {"checkpoint": checkpoint, "store": str(store.encoding.get("source", ""))})


def chunk_files(archive: Path, var: str = "t2m") -> dict[str, tuple[bytes, int]]:
    """Each data chunk file of the archive by its init time: (bytes, inode)."""
    times = xr.open_zarr(archive)["init_time"].values
    arr = zarr.open_group(str(archive), mode="r")[var]
    out = {}
    for i, t in enumerate(times):
        f = archive / var / arr.metadata.encode_chunk_key((i, 0, 0, 0))
        out[str(t)] = (f.read_bytes(), f.stat().st_ino)
    return out


def tree(path: Path) -> str:
    h = hashlib.sha256()
    for p in sorted([path, *path.rglob("*")]):
        h.update(str(p.relative_to(path.parent)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


# ---- layout ---------------------------------------------------------------------------------------------

def test_the_archive_keeps_every_init_time_in_the_forecast_layout(wb, ws):
    path = ws / "outputs/archive/tiny-wb.zarr"
    a = make_forecast(wb.ds, ["2010-01-05T06:00"], seed=1)
    b = make_forecast(wb.ds, ["2010-01-06T00:00", "2010-01-04T12:00"], seed=2, checkpoint="runs/b/best.pt")
    add_to_archive(a, path)
    add_to_archive(b, path)
    assert owner_kind(path) == "archive"
    with open_archive(path, "tiny-wb") as ds:
        assert [str(t)[:16] for t in ds["init_time"].values] == ["2010-01-04T12:00", "2010-01-05T06:00",
                                                                "2010-01-06T00:00"]
        assert ds["t2m"].dims == ("init_time", "lead_time", "lat", "lon") and ds.sizes["lead_time"] == 6
        np.testing.assert_array_equal(ds["t2m"].values[1], a["t2m"].values[0])
        np.testing.assert_array_equal(ds["t2m"].values[[0, 2]], b["t2m"].values[[1, 0]])
        assert list(ds["checkpoint"].values) == ["runs/b/best.pt", "runs/a/best.pt", "runs/b/best.pt"]
        assert ds["has_forecast"].values.all()
        np.testing.assert_array_equal(ds["valid_time"].values, ds["init_time"].values[:, None]
                                      + ds["lead_time"].values[None, :])
        for key in ("units", "standard_name", "long_name", "grid_mapping", "simcast_variable"):  # as a forecast
            assert ds["t2m"].attrs[key] == a["t2m"].attrs[key], key
        assert ds["crs"].attrs["epsg_code"] == "EPSG:4326" and "lat_bnds" in ds and "lon_bnds" in ds
        assert ds["init_time"].attrs["standard_name"] == "forecast_reference_time"
        assert ds.attrs["Conventions"] == "CF-1.8" and ds.attrs["dataset"] == "tiny-wb"
        assert ds.attrs["simcast_archive_format"] == 1 and "simcast_forecast_format" not in ds.attrs
        assert ds.attrs["time_coverage_end"] == "2010-01-06T06:00:00"
    group = zarr.open_group(str(path), mode="r")
    assert group["t2m"].chunks == (1, 6, 9, 13)  # one init time per chunk
    assert "crc32c" in json.dumps(group["t2m"].metadata.to_dict()["codecs"])
    assert "consolidated_metadata" in json.loads((path / "zarr.json").read_text())
    with pytest.raises(InputError, match="not a simcast forecast"):
        open_forecast(path)  # an archive is not a single forecast


def test_replacing_an_init_time_leaves_the_others_byte_identical(wb, ws):
    path = ws / "archive.zarr"
    add_to_archive(make_forecast(wb.ds, ["2010-01-04T00:00", "2010-01-05T00:00", "2010-01-06T00:00"]), path)
    before = chunk_files(path)
    again = make_forecast(wb.ds, ["2010-01-05T00:00"], seed=7, checkpoint="runs/new/best.pt")
    add_to_archive(again, path)
    after = chunk_files(path)
    assert list(after) == list(before)
    for t in ("2010-01-04T00:00:00.000000000", "2010-01-06T00:00:00.000000000"):
        assert after[t] == before[t]  # the same bytes in the same file: never rewritten, hard-linked across
    middle = "2010-01-05T00:00:00.000000000"
    assert after[middle][0] != before[middle][0]
    with open_archive(path) as ds:
        np.testing.assert_array_equal(ds["t2m"].values[1], again["t2m"].values[0])
        assert list(ds["checkpoint"].values) == ["runs/a/best.pt", "runs/new/best.pt", "runs/a/best.pt"]

    add_to_archive(make_forecast(wb.ds, ["2010-01-03T00:00"], seed=8), path)  # an earlier one: rows shift
    shifted = chunk_files(path)
    assert len(shifted) == 4 and all(shifted[t] == after[t] for t in after)
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".archive.zarr.")] == [".archive.zarr.lock"]


def test_forecasts_of_other_horizons_share_the_archive(wb, ws):
    path = ws / "archive.zarr"
    six = make_forecast(wb.ds, ["2010-01-05T00:00"], leads=6, seed=1)
    add_to_archive(six, path)
    add_to_archive(make_forecast(wb.ds, ["2010-01-05T06:00"], leads=3, seed=2), path)  # shorter: NaN after +3 h
    add_to_archive(make_forecast(wb.ds, ["2010-01-05T12:00"], leads=8, seed=3), path)  # longer: the axis grows
    with open_archive(path) as ds:
        assert ds.sizes["lead_time"] == 8
        assert ds["has_forecast"].values.sum(axis=1).tolist() == [6, 3, 8]
        np.testing.assert_array_equal(ds["t2m"].values[0, :6], six["t2m"].values[0])
        assert np.isnan(ds["t2m"].values[0, 6:]).all() and np.isnan(ds["t2m"].values[1, 3:]).all()
        assert np.isfinite(ds["t2m"].values[2]).all()


def test_traffic_grids_are_archived_on_y_x(nybike_store, tmp_path):  # noqa: F811
    fc = persistence_forecast(nybike_store, n_init=2, n_lead=4)
    path = add_to_archive(fc, tmp_path / "nybike.zarr")
    with open_archive(path, "nybike") as ds:
        assert ds["inflow"].dims == ("init_time", "lead_time", "y", "x") and ds["lat"].dims == ("y",)
        np.testing.assert_array_equal(ds["outflow"].values, fc["outflow"].values)


# ---- refusals -------------------------------------------------------------------------------------------

def test_a_users_folder_at_the_archive_path_is_refused_and_untouched(wb, ws):
    folder = ws / "mine.zarr"
    folder.mkdir()
    (folder / "notes.txt").write_text("my own")
    digest = tree(folder)
    with pytest.raises(OutputError, match="mine.zarr: exists and is a folder, not a simcast archive"):
        add_to_archive(make_forecast(wb.ds, ["2010-01-05T00:00"]), folder)
    assert tree(folder) == digest and [p.name for p in ws.iterdir() if p.name.startswith(".mine")] == []
    digest = tree(wb.store)  # a simcast output of another kind is refused too
    with pytest.raises(OutputError, match="is a simcast store, not a simcast archive"):
        add_to_archive(make_forecast(wb.ds, ["2010-01-05T00:00"]), wb.store)
    assert tree(wb.store) == digest


def test_an_archive_of_another_data_set_or_layout_is_refused(wb, ws):
    path = ws / "archive.zarr"
    other = make_forecast(wb.ds, ["2010-01-05T00:00"])
    other.attrs["dataset"] = "other-set"
    add_to_archive(other, path)
    digest = tree(path)
    with pytest.raises(OutputError, match="is the forecast archive of 'other-set', not 'tiny-wb'"):
        add_to_archive(make_forecast(wb.ds, ["2010-01-06T00:00"]), path)
    renamed = make_forecast(wb.ds, ["2010-01-06T00:00"]).rename(t2m="z500")
    renamed.attrs.update(dataset="other-set", channels="z500")
    with pytest.raises(OutputError, match=r"holds forecasts of another layout \(channels \['t2m'\]"):
        add_to_archive(renamed, path)
    assert tree(path) == digest
    with pytest.raises(InputError, match="is the forecast archive of 'other-set', not 'tiny-wb'"):
        open_archive(path, "tiny-wb")
    with pytest.raises(InputError, match="no forecast archive here yet"):
        open_archive(ws / "none.zarr", "tiny-wb")
    with pytest.raises(InputError, match="is a simcast store, not a forecast archive"):
        open_archive(wb.store)


# ---- the forecast command and kills (a trained tiny model) ----------------------------------------------

CKPT = "runs/first/best.pt"


def simcast(*args: str):
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result


@pytest.fixture(scope="module")
def trained(wb, tmp_path_factory):
    w = tmp_path_factory.mktemp("archive-model")
    env = {**wb.env, "SIMCAST_RUNS_ROOT": str(w / "runs"), "SIMCAST_OUTPUT_ROOT": str(w / "outputs")}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(w)
        for k, v in env.items():
            mp.setenv(k, v)
        simcast("train", "tiny-wb", "--device", "cpu", "--out", "runs/first", "--max-steps-per-epoch", "2")
    return w, env


@pytest.fixture
def tw(trained, monkeypatch) -> Path:
    w, env = trained
    monkeypatch.chdir(w)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return w


def forecast_args(out: str, init: str, *extra: str) -> list[str]:
    return ["forecast", "tiny-wb", "--checkpoint", CKPT, "--device", "cpu", "--out", out, "--init-time", init, *extra]


@pytest.mark.slow
def test_simcast_forecast_archive_adds_to_the_default_archive(tw):
    archive = tw / "outputs/archive/tiny-wb.zarr"
    out = simcast(*forecast_args("fc/a", "2010-01-06T00:00", "--archive")).output
    assert str(archive) in out
    simcast(*forecast_args("fc/b", "2010-01-05T00:00/2010-01-05T12:00/6h", "--archive"))
    simcast(*forecast_args("fc/c", "2010-01-06T00:00", "--archive"))  # the same init time again: replaced
    with open_archive(archive, "tiny-wb") as ds, open_forecast(tw / "fc/c.zarr") as c:
        assert ds.sizes["init_time"] == 4
        np.testing.assert_array_equal(ds["t2m"].sel(init_time="2010-01-06T00:00").values, c["t2m"].values[0])
    mine = tw / "mine"
    mine.mkdir()
    (mine / "a.txt").write_text("x")
    result = CliRunner().invoke(app, forecast_args("fc/d", "2010-01-06T00:00", "--archive-path", str(mine)))
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert f"{mine}: exists and is a folder, not a simcast archive" in lines[0]
    assert not (tw / "fc/d.zarr").exists()  # refused before any work


@pytest.mark.slow
@pytest.mark.parametrize("point, n", [("swap", 3), ("swapped", 1)])
def test_a_killed_archive_write_keeps_the_previous_archive(tw, point, n):
    """forecast --archive swaps three outputs into place (Zarr, NetCDF, archive): the kill comes at the
    archive's swap (`swap`: before it; `swapped`: just after the exchange, before the previous is dropped)."""
    from .test_kills_and_seeds import killed

    archive = tw / f"outputs/{point}.zarr"
    simcast(*forecast_args(f"fc/{point}-1", "2010-01-05T00:00", "--archive-path", str(archive)))
    before = tree(archive)
    kept = chunk_files(archive)
    killed(point, n, *forecast_args(f"fc/{point}-2", "2010-01-06T00:00", "--archive-path", str(archive)), cwd=tw)
    if point == "swap":
        assert tree(archive) == before
    else:  # the new archive is in place, whole; the previous one's chunks live on in it
        with open_archive(archive) as ds:
            assert ds.sizes["init_time"] == 2
        assert chunk_files(archive)["2010-01-05T00:00:00.000000000"] == kept["2010-01-05T00:00:00.000000000"]
    simcast(*forecast_args(f"fc/{point}-2", "2010-01-06T00:00", "--archive-path", str(archive)))
    with open_archive(archive) as ds, open_forecast(tw / f"fc/{point}-2.zarr") as fc:
        assert ds.sizes["init_time"] == 2
        np.testing.assert_array_equal(ds["t2m"].values[1], fc["t2m"].values[0])
    leftovers = [p.name for p in archive.parent.iterdir() if p.name.startswith(f".{archive.name}.")]
    assert leftovers == [f".{archive.name}.lock"], leftovers


# ---- a damaged archive: refused by the forecast that would add to it and by verify, left as it is ----------

def _flip(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


DAMAGE = {  # what is done to an archive of two init times -> what the line says
    "corrupt first chunk": (lambda a: _flip(a / "t2m/c.0.0.0.0"), "array 't2m' chunk c.0.0.0.0 is corrupt"),
    "corrupt last chunk": (lambda a: _flip(a / "t2m/c.1.0.0.0"), "array 't2m' chunk c.1.0.0.0 is corrupt"),
    "corrupt coordinate": (lambda a: _flip(a / "has_forecast/c/0/0"), "array 'has_forecast' chunk c/0/0 is corrupt"),
    "deleted chunk": (lambda a: (a / "t2m/c.1.0.0.0").unlink(), "array 't2m' chunk c.1.0.0.0 is missing"),
    "garbled array metadata": (lambda a: (a / "t2m/zarr.json").write_text("{garbage"),
                               "array 't2m': its metadata (t2m/zarr.json) cannot be read"),
    "deleted array metadata": (lambda a: (a / "t2m/zarr.json").unlink(),
                               "array 't2m': its metadata (t2m/zarr.json) is missing"),
    "changed array metadata": (lambda a: (a / "t2m/zarr.json").write_text(
        (a / "t2m/zarr.json").read_text().replace('"units": "K"', '"units": "degC"')),
        "array 't2m': its metadata (t2m/zarr.json) differs from the archive's consolidated metadata"),
}


def _damaged_archive(wb, ws, how: str) -> Path:
    path = ws / "outputs/archive/tiny-wb.zarr"
    add_to_archive(make_forecast(wb.ds, ["2010-01-05T00:00", "2010-01-05T06:00"]), path)
    DAMAGE[how][0](path)
    return path


@pytest.mark.parametrize("how", list(DAMAGE))
def test_a_damaged_archive_is_refused_by_additions_and_verify_and_kept_as_it_is(wb, ws, how):
    from pipelines.errors import StoreError

    path = _damaged_archive(wb, ws, how)
    digest, says = tree(path), DAMAGE[how][1]
    for leads in (6, 3):  # the same lead axis (kept chunks are linked) and another (they are rewritten)
        with pytest.raises(OutputError, match="damaged archive: " + re.escape(says)):
            add_to_archive(make_forecast(wb.ds, ["2010-01-06T00:00"], leads=leads), path)
        assert tree(path) == digest
    line = f"{re.escape(str(path))}: damaged archive: {re.escape(says)}.*; move it away"
    with pytest.raises(StoreError, match=line):
        open_archive(path, "tiny-wb")
    result = CliRunner().invoke(app, ["verify", "tiny-wb"])
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and says in lines[0], (result.output, result.exception)
    assert tree(path) == digest and not (ws / "outputs/verification").exists()


@pytest.mark.slow
@pytest.mark.parametrize("how", ["corrupt first chunk", "corrupt last chunk", "garbled array metadata"])
def test_forecast_into_a_damaged_archive_is_refused_before_any_work(tw, how):
    archive = tw / f"outputs/damaged-{how.replace(' ', '-')}.zarr"
    simcast(*forecast_args("fc/ok", "2010-01-05T00:00/2010-01-05T06:00/6h", "--archive-path", str(archive)))
    DAMAGE[how][0](archive)
    digest = tree(archive)
    for init in ("2010-01-06T00:00", "2010-01-05T06:00"):  # a new init time, and one that replaces a chunk
        result = CliRunner().invoke(app, forecast_args("fc/new", init, "--archive-path", str(archive)))
        lines = [ln for ln in result.output.splitlines() if ln.strip()]
        assert result.exit_code == 1 and len(lines) == 1, (result.output, result.exception)
        assert lines[0].startswith(f"error: {archive}: damaged archive: {DAMAGE[how][1]}"), lines[0]
        assert tree(archive) == digest and not (tw / "fc/new.zarr").exists()
