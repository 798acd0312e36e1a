"""A battery of malformed inputs and options across every command, as a new user would try them.

Each case runs the real `simcast` command (in process) against one shared workspace that holds real outputs: a
store per data set, trained run folders, an evaluation, a forecast and a report, plus a user's own files. Every
case must end with the expected exit code (2 for usage errors, 1 for bad input), exactly one line on stderr that
names the culprit (the file or the option), no traceback, and the workspace byte-identical afterwards.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr
import yaml
from typer.testing import CliRunner

from pipelines import synth
from pipelines.cli import app

from .conftest import TINY_BJ, TINY_WB, ingest

WB_FILE = "data/wb/2m_temperature/2m_temperature_2010_1deg.nc"
BJ_FILE = "data/bj/BJ13_M8x8_T30_InOut.h5"
RUN = "runs/tiny-wb-20200101-000000"


def _nc(ds: xr.Dataset, path: Path, **kw) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(path, **kw)


def _bad_weather(w: Path) -> dict:
    """Broken copies of the WeatherBench file, one folder and catalog entry each: name -> entry."""
    good = xr.load_dataset(w / WB_FILE)
    bad = w / "data/bad"
    entries = {}

    def add(name, **fields):
        entries[name] = {**TINY_WB, "source": {"pattern": f"bad/{name}/*.nc"}, "store": f"{name}.zarr", **fields}

    def variant(name, ds, **fields):
        _nc(ds, bad / name / "t2m.nc")
        add(name, **fields)

    variant("wb-missing-var", good.rename(t2m="tas"))
    variant("wb-nan", good.assign(t2m=good["t2m"].where(good["time"] != good["time"][30])))
    variant("wb-inf", good.assign(t2m=good["t2m"].where(good["time"] != good["time"][40], np.inf)))
    variant("wb-hot", good.assign(t2m=good["t2m"].where(good["time"] != good["time"][50], 500.0)))
    variant("wb-unsorted", good.isel(time=[0, 2, 1] + list(range(3, good.sizes["time"]))))
    variant("wb-gap", good.isel(time=list(range(10)) + list(range(13, good.sizes["time"]))))
    variant("wb-two-hourly", good.isel(time=slice(None, None, 2)))
    shifted = good["time"].values.copy()
    shifted[20] += np.timedelta64(30, "m")
    variant("wb-off-grid", good.assign_coords(time=shifted))
    variant("wb-no-train", good, splits={"train": {"start": "2009-01-01", "end": "2009-12-31"},
                                         "validation": {"last": "1D"}, "test": {"last": "1D"}})
    variant("wb-wrong-grid", good, grid=[10, 13])
    variant("wb-wrong-units", good.assign(t2m=good["t2m"].assign_attrs(units="m s**-1")))
    variant("wb-unknown-units", good.assign(t2m=good["t2m"].assign_attrs(units="bananas")))
    _nc(good.isel(time=slice(0, 72)), bad / "wb-dup" / "a.nc")
    _nc(good.isel(time=slice(48, None)), bad / "wb-dup" / "b.nc")
    add("wb-dup")
    _nc(good, bad / "wb-truncated-nc4" / "t2m.nc")
    raw = (bad / "wb-truncated-nc4" / "t2m.nc").read_bytes()
    (bad / "wb-truncated-nc4" / "t2m.nc").write_bytes(raw[: len(raw) // 2])
    add("wb-truncated-nc4")
    _nc(good, bad / "wb-truncated-nc3" / "t2m.nc", format="NETCDF3_64BIT")
    raw = (bad / "wb-truncated-nc3" / "t2m.nc").read_bytes()
    (bad / "wb-truncated-nc3" / "t2m.nc").write_bytes(raw[: len(raw) - 5000])
    add("wb-truncated-nc3")
    (bad / "wb-random").mkdir()
    (bad / "wb-random" / "t2m.nc").write_bytes(np.random.default_rng(0).bytes(4096))
    add("wb-random")
    return entries


def _bad_traffic(w: Path) -> dict:
    with h5py.File(w / BJ_FILE, "r") as f:
        data, date = f["data"][()], f["date"][()]
    bad = w / "data/bad"
    entries = {}

    def variant(name, write, **fields):
        (bad / name).mkdir(parents=True)
        with h5py.File(bad / name / "BJ13.h5", "w") as f:
            write(f)
        shutil.copy(w / "data/bj/BJ_Holiday.txt", bad / name / "BJ_Holiday.txt")
        entries[name] = {**TINY_BJ, "source": {"pattern": f"bad/{name}/BJ13.h5"}, "store": f"{name}.zarr",
                         "holidays": f"bad/{name}/BJ_Holiday.txt", **fields}

    def plain(f, d=data, t=date):
        f.create_dataset("data", data=d)
        f.create_dataset("date", data=t)

    variant("bj-no-date", lambda f: f.create_dataset("data", data=data))
    variant("bj-bad-date", lambda f: plain(f, t=np.where(np.arange(len(date)) == 5, b"2013079901", date)))
    variant("bj-negative", lambda f: plain(f, d=np.where(np.arange(data.size).reshape(data.shape) == 99, -3.0, data)))
    variant("bj-three-flows", lambda f: plain(f, d=np.concatenate([data, data[:, :1]], axis=1)))
    variant("bj-gzip", lambda f: (f.create_dataset("data", data=data, chunks=(48, 2, 8, 8), compression="gzip"),
                                  f.create_dataset("date", data=date)))
    with h5py.File(bad / "bj-gzip" / "BJ13.h5", "r") as f:
        info = f["data"].id.get_chunk_info(3)
    with open(bad / "bj-gzip" / "BJ13.h5", "r+b") as f:  # scramble the middle of one compressed chunk
        f.seek(info.byte_offset + info.size // 2)
        f.write(b"\x00\xff" * 16)
    variant("bj-truncated", plain)
    raw = (bad / "bj-truncated" / "BJ13.h5").read_bytes()
    (bad / "bj-truncated" / "BJ13.h5").write_bytes(raw[: len(raw) // 3])
    variant("bj-holiday-missing", plain, holidays="bad/bj-holiday-missing/none.txt")
    variant("bj-holiday-bad", plain)
    (bad / "bj-holiday-bad" / "BJ_Holiday.txt").write_text("20130101\nNew Year\n")
    return entries


def _damaged_stores(w: Path) -> None:
    store = w / "stores/tiny-wb.zarr"
    for name in ("missing-chunk", "corrupt-chunk", "old-format"):
        shutil.copytree(store, w / f"damaged/{name}.zarr")
    (w / "damaged/missing-chunk.zarr/data/c/0/0/0/0").unlink()
    chunk = w / "damaged/corrupt-chunk.zarr/data/c/0/0/0/0"
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    meta = w / "damaged/old-format.zarr/zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"]["simcast_format"] = 1
    meta.write_text(json.dumps(doc))


def _damaged_archives(w: Path) -> None:
    chunk = w / "archives/corrupt.zarr/t2m/c.0.0.0.0"
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    (w / "archives/deleted.zarr/t2m/c.1.0.0.0").unlink()
    (w / "archives/meta.zarr/t2m/zarr.json").write_text("{not json")


def _user_files(w: Path) -> None:
    (w / "mydocs").mkdir()
    (w / "mydocs/thesis.txt").write_text("months of work\n")
    (w / "plain.txt").write_text("a user's file\n")
    (w / "userdata.zarr").mkdir()
    (w / "userdata.zarr/notes.txt").write_text("not a store\n")
    xr.Dataset({"x": ("t", np.arange(3.0))}).to_netcdf(w / "user.nc")
    (w / "user_geotiff").mkdir()
    (w / "user_geotiff/map.tif").write_bytes(b"II*\x00")
    (w / "notjson.txt").write_text("rmse: 3\n")
    (w / "list.json").write_text("[1, 2]\n")
    (w / "random.pt").write_bytes(np.random.default_rng(1).bytes(5000))
    best = (w / RUN / "best.pt").read_bytes()
    (w / "truncated.pt").write_bytes(best[: len(best) // 2])
    (w / "synth-clash/2m_temperature").mkdir(parents=True)
    xr.Dataset({"t2m": ("time", np.zeros(2))}).to_netcdf(w / "synth-clash/2m_temperature/2m_temperature_2010_5.625deg.nc")
    (w / "synth-holidays").mkdir()
    (w / "synth-holidays/BJ_Holiday.txt").write_text("20991231\n")
    spec = json.loads((w / RUN / "spec.json").read_text())
    for name, change in {"abc": {"hid_S": "abc"}, "huge": {"hid_S": 100000000}, "unknown": {"hid_Q": 1},
                         "negative": {"N_T": -1}}.items():
        doc = {**spec, "run_dir": str(w / f"runs/spec-{name}"), "model": {**spec["model"], **change}}
        (w / f"spec-{name}.json").write_text(json.dumps(doc))
    (w / "bad-catalogs").mkdir()
    (w / "bad-catalogs/syntax.yaml").write_text("datasets:\n  x: {kind: taxibj,\n  y: [\n")
    (w / "bad-catalogs/field.yaml").write_text(yaml.safe_dump({"datasets": {"x": {**TINY_WB, "time_step": "hourly"}}}))
    (w / "bad-catalogs/twice.yaml").write_text("datasets:\n  x:\n    kind: taxibj\n  x:\n    kind: weatherbench\n")
    (w / "bad-catalogs/reversed.yaml").write_text(yaml.safe_dump({"datasets": {
        "wb-reversed-range": {**TINY_WB, "variables": [{"name": "t2m", "valid_range": [300, 200]}]}}}))


def _read_only(folder: Path) -> bool:
    """Make a folder unwritable, even for root (an immutable folder); False where the machine cannot."""
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return True
    done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True)
    return done.returncode == 0


def _tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root)).encode()
        if p.is_symlink():
            h.update(b"L" + rel)
        elif p.is_dir():
            h.update(b"D" + rel)
        else:
            h.update(b"F" + rel + hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


# an entry whose archive is on a port nothing listens on
DL_REFUSED = {**TINY_WB, "source": {"pattern": "dl/*.nc"}, "store": "dl.zarr",
              "download": {"files": [{"path": "dl", "archive": "zip", "url": "http://127.0.0.1:9/weatherbench.zip"}]}}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    w = tmp_path_factory.mktemp("battery")
    synth.write_weatherbench(w / "data/wb", "2010-01-01", "2010-01-07", resolution=1.0,
                             region=((50.0, 58.0), (-10.0, 2.0)))
    synth.write_taxibj(w / "data/bj", {"BJ13": ("2013-07-01", "2013-07-10")}, grid=(8, 8))
    entries = {"tiny-wb": TINY_WB, "tiny-bj": TINY_BJ, **_bad_weather(w), **_bad_traffic(w), "dl-refused": DL_REFUSED}
    (w / "catalog.yaml").write_text(yaml.safe_dump({"datasets": entries}, sort_keys=False))
    env = {"SIMCAST_DATA_ROOT": str(w / "data"), "SIMCAST_STORE_ROOT": str(w / "stores"),
           "SIMCAST_RUNS_ROOT": str(w / "runs"), "SIMCAST_OUTPUT_ROOT": str(w / "outputs"),
           "SIMCAST_CATALOG": str(w / "catalog.yaml")}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    cwd = os.getcwd()
    os.chdir(w)
    try:
        runner = CliRunner()
        for args in (["train", "tiny-wb", "--device", "cpu", "--out", str(w / RUN), "--max-steps-per-epoch", "2"],
                     ["train", "tiny-bj", "--device", "cpu", "--out", str(w / "elsewhere/bj-run"),
                      "--max-steps-per-epoch", "2"],
                     ["evaluate", "tiny-wb", "--checkpoint", str(w / RUN / "best.pt"), "--device", "cpu"],
                     ["forecast", "tiny-wb", "--checkpoint", str(w / RUN / "best.pt"), "--out", str(w / "outputs/fc"),
                      "--device", "cpu"],
                     ["report", str(w / "outputs/fc.zarr"), "--out", str(w / "outputs/report"),
                      "--truth", str(w / "stores/tiny-wb.zarr"),
                      "--metrics", str(w / RUN / "eval-test/metrics.json")]):
            if args[0] == "train":
                ingest(args[1])
            result = runner.invoke(app, args)
            assert result.exit_code == 0, (args, result.output)
        for name in ("corrupt", "deleted", "meta"):
            result = runner.invoke(app, ["forecast", "tiny-wb", "--checkpoint", str(w / RUN / "best.pt"), "--out",
                                         str(w / f"outputs/fc-{name}"), "--device", "cpu", "--init-time",
                                         "2010-01-05T00:00/2010-01-05T06:00/6h", "--archive-path",
                                         str(w / f"archives/{name}.zarr")])
            assert result.exit_code == 0, result.output
        _damaged_stores(w)
        _damaged_archives(w)
        _user_files(w)
        read_only = _read_only(w / "locked")
        yield {"root": w, "env": env, "read_only": read_only}
    finally:
        subprocess.run(["chattr", "-i", str(w / "locked")], capture_output=True)
        os.chdir(cwd)
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@dataclass
class Case:
    args: list[str]
    code: int
    says: list[str]            # all of these in the error line ({w}: the workspace)
    env: dict = field(default_factory=dict)
    needs_read_only: bool = False


W = "{w}"
CKPT = f"{W}/{RUN}/best.pt"
BJ_CKPT = f"{W}/elsewhere/bj-run/best.pt"
FC = f"{W}/outputs/fc.zarr"
TRAIN = ["train", "tiny-wb", "--device", "cpu"]
EVAL = ["evaluate", "tiny-wb", "--checkpoint", CKPT, "--device", "cpu"]
FORECAST = ["forecast", "tiny-wb", "--checkpoint", CKPT, "--device", "cpu"]
REPORT = ["report", FC]

CASES = {
    # the command line itself
    "unknown command": Case(["fly"], 2, ["No such command 'fly'"]),
    "unknown option": Case(["train", "tiny-wb", "--bogus"], 2, ["No such option: --bogus"]),
    "missing argument": Case(["ingest"], 2, ["Missing argument 'dataset'"]),
    "option without value": Case(["forecast", "tiny-wb", "--lead-hours"], 2, ["--lead-hours"]),
    "not a number": Case(FORECAST + ["--out", f"{W}/x", "--lead-hours", "banana"], 2, ["--lead-hours", "'banana' is not a number"]),
    # the catalog
    "catalog: unknown entry": Case(["catalog", "show", "nope"], 2, ["no data set named 'nope'", "tiny-wb"]),
    "catalog: YAML syntax": Case(["catalog", "list"], 2, [f"{W}/bad-catalogs/syntax.yaml", "not valid YAML at line"],
                                 env={"SIMCAST_CATALOG": f"{W}/bad-catalogs/syntax.yaml"}),
    "catalog: bad field": Case(["catalog", "list"], 2, [f"{W}/bad-catalogs/field.yaml", "field time_step"],
                               env={"SIMCAST_CATALOG": f"{W}/bad-catalogs/field.yaml"}),
    "catalog: an entry twice": Case(["catalog", "list"], 2, [f"{W}/bad-catalogs/twice.yaml",
                                                             "entry 'x' appears twice (lines 2 and 4)"],
                                    env={"SIMCAST_CATALOG": f"{W}/bad-catalogs/twice.yaml"}),
    "catalog: missing file": Case(["catalog", "list"], 2, [f"{W}/nothing.yaml", "catalog file not found"],
                                  env={"SIMCAST_CATALOG": f"{W}/nothing.yaml"}),
    "catalog: reversed range": Case(["ingest", "wb-reversed-range"], 2, ["valid_range must be [min, max]"],
                                    env={"SIMCAST_CATALOG": f"{W}/bad-catalogs/reversed.yaml"}),
    # ingest: sources
    "ingest: unknown entry": Case(["ingest", "nope"], 2, ["no data set named 'nope'"]),
    "ingest: no files": Case(["ingest", "tiny-wb", "--source", "nothing/*.nc"], 1, ["nothing/*.nc", "no files match"]),
    "ingest: missing variable": Case(["ingest", "wb-missing-var"], 1, [f"{W}/data/bad/wb-missing-var/t2m.nc",
                                                                       "variables t2m (has: tas)"]),
    "ingest: NaN": Case(["ingest", "wb-nan"], 1, ["wb-nan/t2m.nc", "NaN values in 't2m'", "gaps: record"]),
    "ingest: infinite": Case(["ingest", "wb-inf"], 1, ["wb-inf/t2m.nc", "infinite values in 't2m'"]),
    "ingest: impossible temperature": Case(["ingest", "wb-hot"], 1, ["wb-hot/t2m.nc", "above its valid range",
                                                                     "[150, 350] K", "500"]),
    "ingest: duplicate times": Case(["ingest", "wb-dup"], 1, ["wb-dup/b.nc", "duplicate times", "also in"]),
    "ingest: unsorted times": Case(["ingest", "wb-unsorted"], 1, ["wb-unsorted/t2m.nc", "not in increasing order"]),
    "ingest: gap": Case(["ingest", "wb-gap"], 1, ["wb-gap/t2m.nc", "gap in time: 3 missing 1h steps"]),
    "ingest: coarser files": Case(["ingest", "wb-two-hourly"], 1, ["wb-two-hourly/t2m.nc",
                                                                   "time step of the files is 2h", "expects 1h"]),
    "ingest: off the step grid": Case(["ingest", "wb-off-grid"], 1, ["wb-off-grid/t2m.nc", "off the 1h grid"]),
    "ingest: wrong grid": Case(["ingest", "wb-wrong-grid"], 1, ["grid is 9x13", "expects 10x13"]),
    "ingest: units that do not convert": Case(["ingest", "wb-wrong-units"], 1, [
        "wb-wrong-units/t2m.nc", "variable 't2m' is in 'm s**-1', the catalog expects 'K'"]),
    "ingest: units UDUNITS does not know": Case(["ingest", "wb-unknown-units"], 1, [
        "wb-unknown-units/t2m.nc", "'bananas' is not a unit UDUNITS knows"]),
    "ingest: no training data": Case(["ingest", "wb-no-train"], 1, ["no data in the training period"]),
    "ingest: truncated NetCDF4": Case(["ingest", "wb-truncated-nc4"], 1, ["wb-truncated-nc4/t2m.nc",
                                                                          "not a readable NetCDF file"]),
    "ingest: truncated NetCDF3": Case(["ingest", "wb-truncated-nc3"], 1, ["wb-truncated-nc3/t2m.nc",
                                                                          "truncated NetCDF3 file"]),
    "ingest: random bytes": Case(["ingest", "wb-random"], 1, ["wb-random/t2m.nc", "not a readable NetCDF file"]),
    "ingest: HDF5 without dates": Case(["ingest", "bj-no-date"], 1, ["bj-no-date/BJ13.h5", "missing dataset 'date'"]),
    "ingest: HDF5 bad date": Case(["ingest", "bj-bad-date"], 1, ["bj-bad-date/BJ13.h5", "2013079901"]),
    "ingest: negative flows": Case(["ingest", "bj-negative"], 1, ["bj-negative/BJ13.h5", "below its valid range",
                                                                  "[0, ]"]),
    "ingest: three flows": Case(["ingest", "bj-three-flows"], 1, ["bj-three-flows/BJ13.h5", "expected (time, 2"]),
    "ingest: corrupt gzip chunk": Case(["ingest", "bj-gzip"], 1, ["bj-gzip/BJ13.h5", "corrupt data in 'data'"]),
    "ingest: truncated HDF5": Case(["ingest", "bj-truncated"], 1, ["bj-truncated/BJ13.h5", "not a readable HDF5"]),
    "ingest: holiday file missing": Case(["ingest", "bj-holiday-missing"], 1, ["none.txt", "does not exist"]),
    "ingest: holiday file bad": Case(["ingest", "bj-holiday-bad"], 1, ["bj-holiday-bad/BJ_Holiday.txt",
                                                                       "'New Year' is not YYYYMMDD"]),
    # ingest: outputs
    "ingest: store is a user folder": Case(["ingest", "tiny-wb", "--store", f"{W}/mydocs"], 1,
                                           [f"{W}/mydocs", "is a folder, not a simcast store"]),
    "ingest: store is a user file": Case(["ingest", "tiny-wb", "--store", f"{W}/plain.txt"], 1,
                                         [f"{W}/plain.txt", "is a file, not a simcast store"]),
    "ingest: store is a forecast": Case(["ingest", "tiny-wb", "--store", FC], 1,
                                        ["is a simcast forecast, not a simcast store"]),
    "ingest: store is a run": Case(["ingest", "tiny-wb", "--store", f"{W}/{RUN}"], 1,
                                   ["is a simcast run, not a simcast store"]),
    "ingest: store under a file": Case(["ingest", "tiny-wb", "--store", f"{W}/plain.txt/x.zarr"], 1,
                                       [f"{W}/plain.txt", "is a file, not a folder"]),
    "ingest: read-only folder": Case(["ingest", "tiny-wb", "--store", f"{W}/locked/x.zarr"], 1,
                                     [f"{W}/locked", "cannot write here"], needs_read_only=True),
    "ingest: another data set's store": Case(["ingest", "tiny-bj", "--store", f"{W}/stores/tiny-wb.zarr"], 1,
                                             ["tiny-wb.zarr", "holds data set 'tiny-wb', not 'tiny-bj'"]),
    "train: not an integer": Case(TRAIN + ["--epochs", "1.5"], 2, ["--epochs", "'1.5' is not an integer"]),
    # download
    "download: unknown entry": Case(["download", "nope"], 2, ["no data set named 'nope'"]),
    "download: negative retries": Case(["download", "dl-refused", "--retries", "-1"], 2, ["--retries", "must be >= 0"]),
    "download: no download, no files": Case(["download", "tiny-wb"], 1, [f"{W}/nowhere/wb/2m_temperature/*.nc",
                                                                         "no download section"],
                                            env={"SIMCAST_DATA_ROOT": f"{W}/nowhere"}),
    "download: taxibj by hand": Case(["download", "taxibj"], 1, [f"{W}/data/taxibj/BJ13_M32x32_T30_InOut.h5",
                                                                 "lucktroy/DeepST"]),
    "download: connection refused": Case(["download", "dl-refused"], 1, ["http://127.0.0.1:9/weatherbench.zip",
                                                                         "cannot connect"]),
    "download: data root is a file": Case(["download", "dl-refused"], 1, [f"{W}/plain.txt", "is a file, not a folder"],
                                          env={"SIMCAST_DATA_ROOT": f"{W}/plain.txt"}),
    "download: read-only data root": Case(["download", "dl-refused"], 1, [f"{W}/locked", "cannot write here"],
                                          env={"SIMCAST_DATA_ROOT": f"{W}/locked"}, needs_read_only=True),
    # info
    "info: no store": Case(["info", f"{W}/nothing.zarr"], 1, [f"{W}/nothing.zarr", "does not exist"]),
    "info: a user folder": Case(["info", f"{W}/mydocs"], 1, [f"{W}/mydocs", "not a simcast Zarr store"]),
    "info: a forecast": Case(["info", FC], 1, ["fc.zarr", "not a simcast Zarr store"]),
    "info: missing chunk": Case(["info", f"{W}/damaged/missing-chunk.zarr"], 1,
                                ["missing-chunk.zarr", "array 'data' chunk c/0/0/0/0 is missing"]),
    "info: corrupt chunk": Case(["info", "--check", f"{W}/damaged/corrupt-chunk.zarr"], 1,
                                ["corrupt-chunk.zarr", "array 'data' chunk c/0/0/0/0 is corrupt"]),
    "info: old format": Case(["info", f"{W}/damaged/old-format.zarr"], 1, ["old-format.zarr", "store format 1"]),
    # train
    "train: unknown entry": Case(["train", "nope"], 2, ["no data set named 'nope'"]),
    "train: no GPU": Case(["train", "tiny-wb", "--device", "cuda"], 2, ["--device", "CUDA is not available"]),
    "train: bad device": Case(["train", "tiny-wb", "--device", "gpu"], 2, ["--device", "'gpu'"]),
    "train: zero epochs": Case(TRAIN + ["--epochs", "0"], 2, ["--epochs", "must be >= 1"]),
    "train: negative lr": Case(TRAIN + ["--lr", "-1"], 2, ["--lr", "must be >= 0"]),
    "train: zero batch": Case(TRAIN + ["--batch-size", "0"], 2, ["--batch-size", "must be >= 1"]),
    "train: batch larger than data": Case(TRAIN + ["--batch-size", "100000"], 2, ["--batch-size",
                                                                                  "training samples"]),
    "train: unknown translator": Case(TRAIN + ["--translator", "lstm"], 2, ["--translator", "'gsta'"]),
    "train: unknown preset": Case(TRAIN + ["--preset", "huge"], 2, ["'huge'", "weatherbench-t2m-5.625deg"]),
    "train: unknown schedule": Case(TRAIN + ["--schedule", "step"], 2, ["--schedule", "'step'"]),
    "train: one-step onecycle": Case(TRAIN + ["--epochs", "1", "--max-steps-per-epoch", "1"], 2,
                                     ["--schedule", "onecycle needs at least 2 optimizer steps"]),
    "train: unknown compile mode": Case(TRAIN + ["--compile-mode", "fast"], 2, ["--compile-mode", "'fast'"]),
    "train: unknown optimizer": Case(TRAIN + ["--optimizer", "sgd"], 2, ["--optimizer", "'sgd'"]),
    "train: warm-up too long": Case(TRAIN + ["--warmup-epochs", "5"], 2, ["--warmup-epochs"]),
    "train: zero input": Case(TRAIN + ["--input", "0"], 2, ["--input", "must be >= 1, got 0"]),
    "train: zero stride": Case(TRAIN + ["--stride", "0"], 2, ["--stride"]),
    "train: window longer than the data": Case(TRAIN + ["--input", "500"], 1, ["tiny-wb", "no complete window"]),
    "train: window longer than the validation split": Case(TRAIN + ["--input", "20"], 1, [
        "tiny-wb", "validation split holds no complete window of 26 steps"]),
    "train: out is a user folder": Case(TRAIN + ["--out", f"{W}/mydocs"], 1, [f"{W}/mydocs",
                                                                               "is a folder, not a simcast run"]),
    "train: out is a file": Case(TRAIN + ["--out", f"{W}/plain.txt"], 1, [f"{W}/plain.txt", "is a file"]),
    "train: out is a store": Case(TRAIN + ["--out", f"{W}/stores/tiny-wb.zarr"], 1, ["is a simcast store"]),
    "train: out is a run, no --resume": Case(TRAIN + ["--out", f"{W}/{RUN}"], 2, ["--out", "holds a previous run",
                                                                                  "--resume"]),
    "train: resume another data set": Case(TRAIN + ["--resume", "--out", f"{W}/elsewhere/bj-run"], 1,
                                           ["bj-run/last.pt", "trained data set 'tiny-bj', not 'tiny-wb'"]),
    "train: nothing to resume": Case(["train", "tiny-bj", "--device", "cpu", "--resume"], 2,
                                     ["--resume", "no run of 'tiny-bj'"]),
    "train: read-only runs": Case(TRAIN + ["--out", f"{W}/locked/run"], 1, [f"{W}/locked", "cannot write here"],
                                  needs_read_only=True),
    "train: missing chunk": Case(TRAIN + ["--store", f"{W}/damaged/missing-chunk.zarr"], 1, ["chunk c/0/0/0/0"]),
    "train: corrupt chunk": Case(TRAIN + ["--store", f"{W}/damaged/corrupt-chunk.zarr"], 1,
                                 ["corrupt-chunk.zarr", "chunk c/0/0/0/0 is corrupt"]),
    "train: store is a user folder": Case(TRAIN + ["--store", f"{W}/mydocs"], 1, ["not a simcast Zarr store"]),
    "train: store of another data set": Case(TRAIN + ["--store", f"{W}/stores/tiny-bj.zarr"], 1,
                                             ["holds data set 'tiny-bj', not 'tiny-wb'"]),
    "train: spec file missing": Case(["train", "tiny-wb", "--spec", f"{W}/nothing.json"], 1,
                                     [f"{W}/nothing.json", "not readable"]),
    "train: spec file not a spec": Case(["train", "tiny-wb", "--spec", f"{W}/list.json"], 1,
                                        [f"{W}/list.json", "not a train spec"]),
    "train: spec of another data set": Case(["train", "tiny-bj", "--spec", f"{W}/{RUN}/spec.json"], 2,
                                            ["--spec", "'tiny-wb', not 'tiny-bj'"]),
    "train: spec with a text size": Case(["train", "tiny-wb", "--spec", f"{W}/spec-abc.json"], 1,
                                         [f"{W}/spec-abc.json", "field model.hid_S: must be an integer >= 1, got 'abc'"]),
    "train: spec with a huge model": Case(["train", "tiny-wb", "--spec", f"{W}/spec-huge.json"], 1,
                                          [f"{W}/spec-huge.json", "field model: a SimVP of", "available"]),
    "train: spec with an unknown setting": Case(["train", "tiny-wb", "--spec", f"{W}/spec-unknown.json"], 1,
                                                [f"{W}/spec-unknown.json", "field model.hid_Q: not a SimVP setting"]),
    "train: spec with a negative depth": Case(["train", "tiny-wb", "--spec", f"{W}/spec-negative.json"], 1,
                                              [f"{W}/spec-negative.json", "field model.N_T: must be an integer >= 1"]),
    "train: resume with another lr": Case(TRAIN + ["--resume", "--out", f"{W}/{RUN}", "--lr", "0.5"], 1,
                                          ["last.pt: cannot resume with a different training config", "->0.5"]),
    # evaluate
    "evaluate: no checkpoint": Case(["evaluate", "tiny-wb"], 2, ["--checkpoint"]),
    "evaluate: missing checkpoint": Case(["evaluate", "tiny-wb", "--checkpoint", f"{W}/none.pt"], 1,
                                         [f"{W}/none.pt", "no such checkpoint"]),
    "evaluate: random bytes": Case(["evaluate", "tiny-wb", "--checkpoint", f"{W}/random.pt"], 1,
                                   [f"{W}/random.pt", "not a readable checkpoint"]),
    "evaluate: truncated checkpoint": Case(["evaluate", "tiny-wb", "--checkpoint", f"{W}/truncated.pt"], 1,
                                           [f"{W}/truncated.pt", "truncated or corrupt"]),
    "evaluate: a text file": Case(["evaluate", "tiny-wb", "--checkpoint", f"{W}/plain.txt"], 1,
                                  [f"{W}/plain.txt", "not a readable checkpoint"]),
    "evaluate: another data set's model": Case(["evaluate", "tiny-wb", "--checkpoint", BJ_CKPT], 1,
                                               ["bj-run/best.pt", "trained on channels"]),
    "evaluate: bad split": Case(EVAL + ["--split", "holdout"], 2, ["--split", "'test'"]),
    "evaluate: unknown scorecard reference": Case(EVAL + ["--reference", "hres"], 2,
                                                  ["--reference", "'hres'", "fitted"]),
    "evaluate: out is a user folder": Case(EVAL + ["--out", f"{W}/mydocs"], 1, [f"{W}/mydocs",
                                                                                "not a simcast evaluation"]),
    "evaluate: out is a file": Case(EVAL + ["--out", f"{W}/plain.txt"], 1, [f"{W}/plain.txt", "is a file"]),
    "evaluate: out is the run": Case(EVAL + ["--out", f"{W}/{RUN}"], 1, ["is a simcast run, not a simcast "
                                                                         "evaluation"]),
    "evaluate: read-only": Case(EVAL + ["--out", f"{W}/locked/eval"], 1, [f"{W}/locked", "cannot write here"],
                                needs_read_only=True),
    "evaluate: missing chunk": Case(EVAL + ["--store", f"{W}/damaged/missing-chunk.zarr"], 1, ["is missing"]),
    "evaluate: corrupt chunk": Case(EVAL + ["--store", f"{W}/damaged/corrupt-chunk.zarr", "--out", f"{W}/e2"], 1,
                                    ["chunk c/0/0/0/0 is corrupt"]),
    "evaluate: NaN horizon": Case(EVAL + ["--lead-hours", "nan"], 2, ["--lead-hours", "finite"]),
    "evaluate: negative horizon": Case(EVAL + ["--lead-hours", "-3"], 2, ["--lead-hours", "positive"]),
    "evaluate: absurd horizon": Case(EVAL + ["--lead-hours", "1e9"], 2, ["--lead-hours", "at most 100"]),
    "evaluate: no GPU": Case(["evaluate", "tiny-wb", "--checkpoint", CKPT, "--device", "cuda"], 2, ["--device"]),
    "evaluate: zero batch": Case(EVAL + ["--batch-size", "0"], 2, ["--batch-size", "must be >= 1, got 0"]),
    # forecast
    "forecast: no out": Case(FORECAST, 2, ["--out"]),
    "forecast: NaN horizon": Case(FORECAST + ["--out", f"{W}/x", "--lead-hours", "nan"], 2, ["--lead-hours",
                                                                                              "finite"]),
    "forecast: infinite horizon": Case(FORECAST + ["--out", f"{W}/x", "--lead-hours", "inf"], 2, ["--lead-hours"]),
    "forecast: zero horizon": Case(FORECAST + ["--out", f"{W}/x", "--lead-hours", "0"], 2, ["--lead-hours"]),
    "forecast: absurd horizon": Case(FORECAST + ["--out", f"{W}/x", "--lead-hours", "1e9"], 2,
                                     ["--lead-hours", "at most 100"]),
    "forecast: long horizon": Case(FORECAST + ["--out", f"{W}/x", "--lead-hours", "1e5"], 2, ["--lead-hours"]),
    "forecast: init yesterday": Case(FORECAST + ["--out", f"{W}/x", "--init-time", "yesterday"], 2,
                                     ["--init-time", "'yesterday' is not a time"]),
    "forecast: backwards range": Case(FORECAST + ["--out", f"{W}/x", "--init-time", "2010-01-05/2010-01-04"], 2,
                                      ["--init-time", "ends before it starts"]),
    "forecast: bad range step": Case(FORECAST + ["--out", f"{W}/x", "--init-time", "2010-01-05/2010-01-06/soon"], 2,
                                     ["--init-time", "'soon'"]),
    "forecast: huge hindcast": Case(FORECAST + ["--out", f"{W}/x", "--init-time", "2000-01-01/2030-01-01/1min"], 2,
                                    ["--init-time", "at most"]),
    "forecast: init not in store": Case(FORECAST + ["--out", f"{W}/x", "--init-time", "1990-01-01T00:00"], 1,
                                        ["tiny-wb.zarr", "not in the store"]),
    "forecast: init without history": Case(FORECAST + ["--out", f"{W}/x", "--init-time", "2010-01-01T00:00"], 1,
                                           ["tiny-wb.zarr", "not all in the store"]),
    "forecast: random checkpoint": Case(["forecast", "tiny-wb", "--checkpoint", f"{W}/random.pt", "--out", f"{W}/x"],
                                        1, ["random.pt"]),
    "forecast: archive is a user folder": Case(FORECAST + ["--out", f"{W}/x", "--archive-path", f"{W}/mydocs"], 1,
                                               [f"{W}/mydocs", "is a folder, not a simcast archive"]),
    "forecast: archive is a forecast": Case(FORECAST + ["--out", f"{W}/x", "--archive", "--archive-path", FC], 1,
                                            [FC, "is a simcast forecast, not a simcast archive"]),
    "forecast: out is a user folder": Case(FORECAST + ["--out", f"{W}/userdata"], 1,
                                           [f"{W}/userdata.zarr", "is a folder, not a simcast forecast"]),
    "forecast: out is a user NetCDF": Case(FORECAST + ["--out", f"{W}/user"], 1,
                                           [f"{W}/user.nc", "is a file, not a simcast forecast"]),
    "forecast: out is a store": Case(FORECAST + ["--out", f"{W}/stores/tiny-wb"], 1, ["is a simcast store"]),
    "forecast: GeoTIFF folder is the user's": Case(FORECAST + ["--out", f"{W}/user", "--geotiff"], 1, ["user"]),
    "forecast: read-only": Case(FORECAST + ["--out", f"{W}/locked/fc"], 1, ["cannot write here"],
                                needs_read_only=True),
    "forecast: corrupt chunk": Case(FORECAST + ["--out", f"{W}/x", "--store", f"{W}/damaged/corrupt-chunk.zarr",
                                                "--init-time", "2010-01-01T12:00"], 1, ["chunk c/0/0/0/0 is corrupt"]),
    "forecast: missing chunk": Case(FORECAST + ["--out", f"{W}/x", "--store", f"{W}/damaged/missing-chunk.zarr"], 1,
                                    ["is missing"]),
    "forecast: archive with a corrupt chunk": Case(FORECAST + ["--out", f"{W}/x", "--archive-path",
                                                          f"{W}/archives/corrupt.zarr"], 1, [
        f"{W}/archives/corrupt.zarr", "damaged archive: array 't2m' chunk c.0.0.0.0 is corrupt"]),
    "forecast: archive replacing a corrupt chunk": Case(FORECAST + ["--out", f"{W}/x", "--init-time", "2010-01-05T00:00",
                                                               "--archive-path", f"{W}/archives/corrupt.zarr"], 1, [
        f"{W}/archives/corrupt.zarr", "chunk c.0.0.0.0 is corrupt"]),
    "forecast: archive with a deleted chunk": Case(FORECAST + ["--out", f"{W}/x", "--archive-path",
                                                          f"{W}/archives/deleted.zarr"], 1, [
        f"{W}/archives/deleted.zarr", "array 't2m' chunk c.1.0.0.0 is missing"]),
    "forecast: archive with damaged metadata": Case(FORECAST + ["--out", f"{W}/x", "--archive-path",
                                                           f"{W}/archives/meta.zarr"], 1, [
        f"{W}/archives/meta.zarr", "array 't2m': its metadata (t2m/zarr.json) cannot be read"]),
    "forecast: no GPU": Case(FORECAST + ["--out", f"{W}/x", "--device", "cuda"], 2, ["--device"]),
    # report
    "report: no forecast": Case(["report", f"{W}/nothing.zarr", "--out", f"{W}/r"], 1,
                                [f"{W}/nothing.zarr", "does not exist"]),
    "report: a store is no forecast": Case(["report", f"{W}/stores/tiny-wb.zarr", "--out", f"{W}/r"], 1,
                                           ["tiny-wb.zarr", "not a simcast forecast"]),
    "report: out is a user folder": Case(REPORT + ["--out", f"{W}/mydocs"], 1, [f"{W}/mydocs",
                                                                                "not a simcast report"]),
    "report: out is a file": Case(REPORT + ["--out", f"{W}/plain.txt"], 1, [f"{W}/plain.txt", "is a file"]),
    "report: out is the forecast": Case(REPORT + ["--out", FC], 1, ["is a simcast forecast, not a simcast report"]),
    "report: metrics missing": Case(REPORT + ["--out", f"{W}/r", "--metrics", f"{W}/none.json"], 1,
                                    [f"{W}/none.json", "metrics file not found"]),
    "report: metrics not JSON": Case(REPORT + ["--out", f"{W}/r", "--metrics", f"{W}/notjson.txt"], 1,
                                     [f"{W}/notjson.txt", "not a JSON metrics file"]),
    "report: metrics not scores": Case(REPORT + ["--out", f"{W}/r", "--metrics", f"{W}/list.json"], 1,
                                       [f"{W}/list.json", "not a simcast metrics file"]),
    "report: lead banana": Case(REPORT + ["--out", f"{W}/r", "--lead", "banana"], 2, ["--lead",
                                                                                      "'banana' is not a lead time"]),
    "report: lead not forecast": Case(REPORT + ["--out", f"{W}/r", "--lead", "7"], 2, ["--lead", "+7 h"]),
    "report: unknown projection": Case(REPORT + ["--out", f"{W}/r", "--projection", "Flat"], 2,
                                       ["--projection", "'Flat'"]),
    "report: truth is a user folder": Case(REPORT + ["--out", f"{W}/r", "--truth", f"{W}/mydocs"], 1,
                                           [f"{W}/mydocs", "not a simcast Zarr store"]),
    "report: read-only": Case(REPORT + ["--out", f"{W}/locked/r"], 1, ["cannot write here"], needs_read_only=True),
    # verification of the forecast archive
    "verify: unknown data set": Case(["verify", "nope"], 2, ["no data set named 'nope'"]),
    "verify: no archive yet": Case(["verify", "tiny-wb"], 1, [f"{W}/outputs/archive/tiny-wb.zarr",
                                                               "no forecast archive here yet"]),
    "verify: archive is a user folder": Case(["verify", "tiny-wb", "--archive-path", f"{W}/mydocs"], 1,
                                             [f"{W}/mydocs", "is not a simcast forecast archive"]),
    "verify: archive is a forecast": Case(["verify", "tiny-wb", "--archive-path", FC], 1,
                                          [FC, "is a simcast forecast, not a forecast archive"]),
    "verify: out is a user folder": Case(["verify", "tiny-wb", "--out", f"{W}/mydocs"], 1,
                                         [f"{W}/mydocs", "is a folder, not a simcast verification"]),
    "verify: out is the store": Case(["verify", "tiny-wb", "--out", f"{W}/stores/tiny-wb.zarr"], 1,
                                     ["tiny-wb.zarr", "is a simcast store, not a simcast verification"]),
    "verify: archive with a corrupt chunk": Case(["verify", "tiny-wb", "--archive-path", f"{W}/archives/corrupt.zarr"],
                                                 1, [f"{W}/archives/corrupt.zarr", "chunk c.0.0.0.0 is corrupt"]),
    "verify: archive with a deleted chunk": Case(["verify", "tiny-wb", "--archive-path", f"{W}/archives/deleted.zarr"],
                                                 1, [f"{W}/archives/deleted.zarr", "chunk c.1.0.0.0 is missing"]),
    "verify: archive with damaged metadata": Case(["verify", "tiny-wb", "--archive-path", f"{W}/archives/meta.zarr"],
                                                  1, [f"{W}/archives/meta.zarr", "array 't2m': its metadata"]),
    "verify: batch size zero": Case(["verify", "tiny-wb", "--batch-size", "0"], 2, ["--batch-size", "must be >= 1"]),
    # synthetic data
    "synth: unknown variable": Case(["synth", "weatherbench", "--out", f"{W}/s", "--variables", "sst"], 2,
                                    ["--variables", "'sst'"]),
    "synth: a real file in the way": Case(["synth", "weatherbench", "--out", f"{W}/synth-clash", "--start",
                                           "2010-01-01", "--end", "2010-01-01"], 1,
                                          ["2m_temperature_2010_5.625deg.nc", "is a file, not a simcast synthetic"]),
    "synth: other holidays in the way": Case(["synth", "taxibj", "--out", f"{W}/synth-holidays", "--rows", "4",
                                              "--cols", "4"], 1, ["BJ_Holiday.txt", "other holidays"]),
}


@pytest.fixture
def ws(workspace, monkeypatch):
    w = workspace["root"]
    monkeypatch.chdir(w)
    for k, v in workspace["env"].items():
        monkeypatch.setenv(k, v)
    return workspace


def test_the_battery_is_large():
    assert len(CASES) >= 100


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_ends_in_one_line_and_changes_nothing(ws, name, monkeypatch):
    case = CASES[name]
    w = ws["root"]
    if case.needs_read_only and not ws["read_only"]:
        pytest.skip("this machine cannot make a folder read-only for this user")
    for k, v in case.env.items():
        monkeypatch.setenv(k, v.format(w=w))
    before = _tree_digest(w)
    result = CliRunner().invoke(app, [a.format(w=w) for a in case.args])
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == case.code, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for text in case.says:
        assert text.format(w=w) in lines[0], (text, lines[0])
    assert _tree_digest(w) == before, "the workspace changed"


REPLAY_CASES = {  # python -m flows.replay, a front end like the command: args -> (exit code, the line says)
    "replay: a user's folder": (["weather", "--work", f"{W}/mydocs"], 1, [f"{W}/mydocs", "not a simcast replay"]),
    "replay: a user's file": (["weather", "--work", f"{W}/plain.txt"], 1, [f"{W}/plain.txt", "is a file"]),
    "replay: a store": (["weather", "--work", f"{W}/stores/tiny-wb.zarr"], 1, ["is a simcast store"]),
    "replay: zero epochs": (["weather", "--work", f"{W}/r", "--epochs", "0"], 2, ["--epochs", "must be >= 1"]),
    "replay: negative days": (["traffic", "--work", f"{W}/r", "--days", "-1"], 2, ["--days", "must be >= 1"]),
    "replay: bad device": (["weather", "--work", f"{W}/r", "--device", "banana"], 2, ["--device", "'banana'"]),
    "replay: unknown sample": (["rain", "--work", f"{W}/r"], 2, ["invalid choice: 'rain'"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(REPLAY_CASES))
def test_replay_refuses_in_one_line_and_changes_nothing(ws, name, capsys):
    from flows import replay

    args, code, says = REPLAY_CASES[name]
    w = ws["root"]
    before = _tree_digest(w)
    with pytest.raises(SystemExit) as e:
        replay.main([a.format(w=w) for a in args])
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert e.value.code == code and len(lines) == 1 and lines[0].startswith("error: "), lines
    for text in says:
        assert text.format(w=w) in lines[0], (text, lines[0])
    assert _tree_digest(w) == before, "the workspace changed"
