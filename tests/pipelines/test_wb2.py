"""WeatherBench2 / ARCO Zarr stores as a source (local, over HTTP) ingest as the NetCDF files of the same values do;
external forecasts in WeatherBench2's forecast layout are scored beside the model and the baselines."""

import functools
import http.server
import json
import threading

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from typer.testing import CliRunner

from data_catalog import DatasetEntry, load_catalog
from pipelines import synth
from pipelines.cli import app
from pipelines.errors import InputError
from pipelines.evaluate import evaluate
from pipelines.evaluate.external import open_external
from pipelines.specs import EvaluateSpec
from pipelines.store import open_store
from pipelines.windows import Windows, WindowSpec

from ..conftest import TINY_MODEL, ingest, write_catalog

SPLITS = {"train": {"start": "2010-01-01", "end": "2010-01-04"},
          "validation": {"start": "2010-01-05", "end": "2010-01-05"},
          "test": {"start": "2010-01-06", "end": "2010-01-08"}}
START, END = "2010-01-01", "2010-01-08"


def wb2_entry(name="wb2", url="wb2.zarr", variables=({"name": "t2m"},), **fields) -> DatasetEntry:
    body = {"name": name, "kind": "weatherbench2", "source": {"url": url}, "variables": list(variables),
            "time_step": "6h", "splits": SPLITS, "window": {"input": 4, "output": 4}, "store": f"{name}.zarr"}
    body.update(fields)
    return DatasetEntry(**body)


def _one_line(e) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


# ---- ingest -------------------------------------------------------------------------------------------

def test_catalog_entries():
    cat = load_catalog()
    t2m, multi = cat["weatherbench2-t2m-5.625deg"], cat["weatherbench2-multi-5.625deg"]
    assert t2m.kind == multi.kind == "weatherbench2" and t2m.time_step == multi.time_step == "6h"
    assert t2m.source.url.startswith("gs://weatherbench2/datasets/era5/") and "hourly" in t2m.description
    assert t2m.splits == cat["weatherbench-t2m-5.625deg"].splits and t2m.grid == (32, 64)
    assert multi.channel_names() == cat["weatherbench-multi-5.625deg"].channel_names()
    assert multi.splits == cat["weatherbench-multi-5.625deg"].splits


@pytest.mark.parametrize("change, reason", [
    ({"source": {"url": "x.zarr", "pattern": "*.nc"}}, "either pattern"),
    ({"source": {"pattern": "*.nc"}}, "weatherbench2 entries read one Zarr store"),
    ({"source": {"url": "x.zarr", "time": {"start": "2010-01-02", "end": "2010-01-01"}}}, "before start"),
    ({"variables": [{"name": "t2m", "pattern": "x/*.nc"}]}, "no variable patterns"),
])
def test_malformed_entries(change, reason):
    with pytest.raises(ValueError, match=reason):
        wb2_entry(**change)


def test_time_only_with_a_store():
    with pytest.raises(ValueError, match="time selects from a Zarr store"):
        DatasetEntry(**{**wb2_entry().model_dump(), "kind": "weatherbench",
                        "source": {"pattern": "*.nc", "time": {"start": "2010-01-01"}}})


def test_wb2_store_ingests_like_the_netcdf_files(tmp_path):
    """The same values in WeatherBench2's layout (names, dims (time, [level,] longitude, latitude), attributes,
    Zarr 2 with consolidated metadata) and in WeatherBench's NetCDF files give equal stores."""
    synth.write_weatherbench(tmp_path / "data/wb", START, END, ["t2m", "z500"], freq="6h")
    synth.write_weatherbench2(tmp_path / "data/wb2.zarr", START, END, ["t2m", "z"])
    raw = xr.open_zarr(tmp_path / "data/wb2.zarr")
    assert raw["2m_temperature"].dims == ("time", "longitude", "latitude")
    assert raw["geopotential"].dims == ("time", "level", "longitude", "latitude") and raw.sizes["level"] == 13
    assert raw["latitude"].values[0] == -87.1875 and raw["longitude"].values[-1] == 354.375
    assert (tmp_path / "data/wb2.zarr/.zmetadata").is_file()

    variables = [{"name": "t2m"}, {"name": "z", "levels": [500]}]
    nc = DatasetEntry(**{**wb2_entry(variables=variables).model_dump(exclude={"name", "kind", "source", "store"}),
                         "name": "nc", "kind": "weatherbench", "source": {"pattern": "wb/*/*.nc"}, "store": "nc.zarr"})
    a = open_store(ingest(nc).store)
    result = ingest(wb2_entry(variables=variables, grid=(32, 64)))
    b = open_store(result.store)
    assert set(a.variables) == set(b.variables)
    for name in a.variables:
        xr.testing.assert_identical(a[name].load(), b[name].load())
    assert b["data"].dims == ("time", "channel", "lat", "lon") and b["channel"].values.tolist() == ["t2m", "z500"]
    assert b["units"].values.tolist() == ["K", "m**2 s**-2"]
    for key in ("splits", "window", "missing_times", "properties", "normalization"):
        assert a.attrs[key] == b.attrs[key], key
    sa, sb = json.loads(a.attrs["summary"]), json.loads(b.attrs["summary"])
    assert {**sa, "dataset": "", "store": ""} == {**sb, "dataset": "", "store": ""}
    prov = json.loads(b.attrs["provenance"])["source_files"]
    assert prov[0]["path"] == str(tmp_path / "data/wb2.zarr") and prov[0]["metadata"] == ".zmetadata"

    # unchanged: a no-op; the store rewritten: a new fingerprint, rebuilt whole (never appended)
    assert ingest(wb2_entry(variables=variables, grid=(32, 64))).skipped
    synth.write_weatherbench2(tmp_path / "data/wb2.zarr", START, "2010-01-09", ["t2m", "z"])
    again = ingest(wb2_entry(variables=variables, grid=(32, 64)))
    assert not again.skipped and not again.appended and "Zarr store" in again.summary["rebuilt"]
    assert again.summary["time_steps"] == 36


def test_pressure_levels_and_time_range(tmp_path):
    synth.write_weatherbench2(tmp_path / "data/wb2.zarr", START, END, ["z", "t"], resolution=11.25)
    e = wb2_entry(variables=[{"name": "z", "levels": [500, 850]}, {"name": "t", "levels": [850]}],
                  source={"url": "wb2.zarr", "time": {"start": "2010-01-02", "end": "2010-01-07T12:00"}},
                  splits={"train": {"start": "2010-01-02", "end": "2010-01-04"},
                          "validation": {"start": "2010-01-05", "end": "2010-01-05"},
                          "test": {"start": "2010-01-06", "end": "2010-01-07"}})
    ds = open_store(ingest(e).store)
    assert ds["channel"].values.tolist() == ["z500", "z850", "t850"]
    assert ds["level"].values.tolist() == [500, 850, 850]
    times = pd.DatetimeIndex(ds["time"].values)
    assert times[0] == pd.Timestamp("2010-01-02") and times[-1] == pd.Timestamp("2010-01-07T12:00")
    lat, lon = synth.global_grid(11.25)
    z = synth.weatherbench2_field("z", times, lat, lon, 0, levels=(500, 850)).astype("float32")
    np.testing.assert_array_equal(ds["data"].values[:, :2], z)
    np.testing.assert_allclose(ds["data"].values[:, 1] - ds["data"].values[:, 0], 350 * -98.0, rtol=1e-4)

    with pytest.raises(InputError) as err:
        ingest(e.model_copy(update={"variables": [e.variables[0].model_copy(update={"levels": [775]})],
                                    "store": "x.zarr"}))
    assert "lacks levels [775]" in _one_line(err)
    empty = DatasetEntry(**{**e.model_dump(), "source": {"url": "wb2.zarr", "time": {"start": "2011-01-01"}},
                            "store": "y.zarr"})
    with pytest.raises(InputError) as err:
        ingest(empty)
    assert "holds no time in 2011-01-01T00:00 .." in _one_line(err) and "it covers 2010-01-01T00:00" in str(err.value)


@pytest.mark.filterwarnings("ignore:Consolidated metadata")
def test_zarr3_store_fingerprinted_by_its_zarr_json(tmp_path):
    ds = synth.weatherbench2_dataset(START, END, ["t2m"], resolution=11.25)
    ds.chunk({"time": 8}).to_zarr(tmp_path / "data/v3.zarr", zarr_format=3, consolidated=True)
    result = ingest(wb2_entry(url="v3.zarr"))
    prov = json.loads(open_store(result.store).attrs["provenance"])["source_files"][0]
    assert prov["metadata"] == "zarr.json" and prov["size"] == (tmp_path / "data/v3.zarr/zarr.json").stat().st_size
    assert ingest(wb2_entry(url="v3.zarr")).skipped
    (tmp_path / "data/v3.zarr/zarr.json").touch()  # a rewritten store: its metadata file changes
    assert not ingest(wb2_entry(url="v3.zarr")).skipped


@pytest.fixture
def http_root(tmp_path):
    """A local HTTP server (127.0.0.1, a free port) serving tmp_path/data."""
    pytest.importorskip("aiohttp", reason="fsspec's HTTP file system needs aiohttp (pip install simcast[cloud])")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    (tmp_path / "data").mkdir(exist_ok=True)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=tmp_path / "data"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_store_over_http_equals_local(tmp_path, http_root):
    synth.write_weatherbench2(tmp_path / "data/wb2.zarr", START, END, ["t2m", "z"], resolution=11.25)
    variables = [{"name": "t2m"}, {"name": "z", "levels": [500]}]
    local = open_store(ingest(wb2_entry(name="local", variables=variables)).store)
    remote = ingest(wb2_entry(name="remote", url=f"{http_root}/wb2.zarr", variables=variables))
    ds = open_store(remote.store)
    np.testing.assert_array_equal(ds["data"].values, local["data"].values)
    assert json.loads(ds.attrs["provenance"])["source_files"][0]["path"] == f"{http_root}/wb2.zarr"
    assert ingest(wb2_entry(name="remote", url=f"{http_root}/wb2.zarr", variables=variables)).skipped
    # --source overrides the catalog's URL
    other = ingest(wb2_entry(name="other", url="nowhere.zarr", variables=variables), source=f"{http_root}/wb2.zarr")
    np.testing.assert_array_equal(open_store(other.store)["data"].values, local["data"].values)
    with pytest.raises(InputError) as err:
        ingest(wb2_entry(name="missing", url=f"{http_root}/missing.zarr"))
    assert "not a Zarr store (no .zmetadata or zarr.json)" in _one_line(err)


def _rewrite_values_in_place(store, name="2m_temperature", delta=1.0):
    """Values of one variable rewritten in place (the consolidated metadata untouched), as an upstream fix would."""
    import zarr

    meta = (store / ".zmetadata").read_bytes()
    array = zarr.open_group(str(store), mode="r+")[name]
    array[:2] = array[:2] + delta
    assert (store / ".zmetadata").read_bytes() == meta


def test_values_rewritten_in_place_are_seen_and_the_summary_says_what_was_checked(tmp_path):
    store = tmp_path / "data/wb2.zarr"
    synth.write_weatherbench2(store, START, END, ["t2m"], resolution=11.25)
    first = ingest(wb2_entry())
    assert first.summary["source_check"].startswith("consolidated metadata and every file of 2m_temperature, time (")
    assert "by size, ino, mtime" in first.summary["source_check"]
    again = ingest(wb2_entry())
    assert again.skipped and again.summary["source_check"] == first.summary["source_check"]
    before = open_store(first.store)["data"].values[:2].copy()
    _rewrite_values_in_place(store)
    rebuilt = ingest(wb2_entry())
    assert not rebuilt.skipped and "Zarr store" in rebuilt.summary["rebuilt"]
    np.testing.assert_allclose(open_store(rebuilt.store)["data"].values[:2], before + 1.0, rtol=1e-6)
    result = CliRunner().invoke(app, ["ingest", "wb2", "--force"],
                                env={"SIMCAST_CATALOG": str(write_catalog(tmp_path / "c.yaml", {"wb2": {
                                    **wb2_entry().model_dump(mode="json", exclude={"name"}, exclude_none=True)}}))})
    assert result.exit_code == 0 and "sources checked" in result.output, result.output


def test_over_http_a_sample_of_chunks_is_compared_and_the_summary_says_so(tmp_path, http_root):
    store = tmp_path / "data/wb2.zarr"
    synth.write_weatherbench2(store, START, END, ["t2m"], resolution=11.25)
    entry = wb2_entry(url=f"{http_root}/wb2.zarr")
    first = ingest(entry)
    check = first.summary["source_check"]
    assert "the contents of" in check and "chunks of 2m_temperature, time" in check
    assert "values rewritten in other chunks are not seen; --force rebuilds" in check
    assert ingest(entry).skipped
    _rewrite_values_in_place(store)  # the first chunk along time is always in the sample
    assert not ingest(entry).skipped


def test_errors_are_one_line(tmp_path):
    synth.write_weatherbench2(tmp_path / "data/wb2.zarr", START, END, ["t2m"], resolution=11.25)
    cases = [
        (wb2_entry(variables=[{"name": "t850x"}]), "has no variable 't850x' (looked for t850x; has: 2m_temperature)"),
        (wb2_entry(variables=[{"name": "t2m"}], grid=(32, 64)), "grid is 16x32; catalog entry 'wb2' expects 32x64"),
        (wb2_entry(variables=[{"name": "t2m", "levels": [500]}]), "has no level dimension"),
        (wb2_entry(url="http://127.0.0.1:1/wb2.zarr"), "cannot reach the Zarr store"),
        (wb2_entry(url="nothing.zarr"), "no such Zarr store"),
        (wb2_entry(url="wb2.zarr/.zmetadata"), "not a Zarr store (a file, not a folder)"),
        (wb2_entry(url="wb2.zarr/2m_temperature"), "not a Zarr store (no .zmetadata or zarr.json)"),
    ]
    for e, reason in cases:
        with pytest.raises(InputError) as err:
            ingest(e)
        assert reason in _one_line(err), (reason, str(err.value))
    (tmp_path / "data/wb2.zarr/.zmetadata").unlink()
    with pytest.raises(InputError) as err:
        ingest(wb2_entry())
    assert "without consolidated metadata" in _one_line(err)


def test_cloud_url_without_gcsfs_names_the_extra(tmp_path):
    try:
        import gcsfs  # noqa: F401
    except ImportError:
        with pytest.raises(InputError) as err:
            ingest(wb2_entry(url="gs://weatherbench2/datasets/era5/x.zarr"))
        assert "pip install 'simcast[cloud]'" in _one_line(err)
    else:
        pytest.skip("gcsfs is installed (and this machine has no internet to reach the bucket)")


# ---- external forecasts -----------------------------------------------------------------------------------

RES = 11.25  # a 16 x 32 global grid
LEADS = 4


def forecast_store(path, init_times, leads=range(0, (LEADS + 1) * 6, 6), mode="truth", resolution=RES,
                   flip=False):
    """A forecast in WeatherBench2's layout (time: init time, prediction_timedelta, [level,] longitude, latitude)
    made of the synthetic truth at the valid times (mode truth) or at the init time (mode persistence)."""
    inits = pd.DatetimeIndex(init_times)
    deltas = pd.to_timedelta(list(leads), unit="h")
    lat, lon = synth.global_grid(resolution)
    data = {}
    for name, store_name in (("t2m", "2m_temperature"), ("z", "geopotential")):
        frames = []
        for d in deltas:
            valid = inits + (d if mode == "truth" else pd.Timedelta(0))
            frames.append(synth.weatherbench2_field(name, valid, lat, lon, 0, levels=(500, 850)))
        values = np.stack(frames, axis=1).astype("float32")  # (init, lead, [level,] lat, lon)
        dims = ["time", "prediction_timedelta", *(["level"] if name == "z" else []), "latitude", "longitude"]
        da = xr.DataArray(values, dims=dims, attrs={"units": "K" if name == "t2m" else "m**2 s**-2"})
        data[store_name] = da.transpose(*dims[:-2], "longitude", "latitude")
    ds = xr.Dataset(data, coords={"time": inits, "prediction_timedelta": deltas, "level": [500, 850],
                                  "latitude": lat, "longitude": lon})
    if flip:  # latitude descending, longitude -180..180: reordered on reading
        ds = ds.assign_coords(longitude=(ds["longitude"] + 180) % 360 - 180).sortby("longitude").isel(
            latitude=slice(None, None, -1))
    return synth.write_zarr_store(ds, path, time_chunk=4)


@pytest.fixture
def store(tmp_path):
    synth.write_weatherbench2(tmp_path / "data/wb2.zarr", START, END, ["t2m", "z"], resolution=RES)
    e = wb2_entry(variables=[{"name": "t2m"}, {"name": "z", "levels": [500]}])
    return open_store(ingest(e).store)


def _score(store, external):
    w = Windows(store, "test", WindowSpec(input=4, output=LEADS))
    lead_ns = np.arange(1, LEADS + 1) * pd.Timedelta("6h").value
    opened = [open_external(name, str(path), store, lead_ns) for name, path in external.items()]
    try:
        return evaluate(w, lambda x, index: x[:, -1:].expand(-1, LEADS, -1, -1, -1), progress=False,
                        external=opened)
    finally:
        for ext in opened:
            ext.close()


def test_external_forecasts_scored_on_their_init_times(tmp_path, store):
    inits = pd.date_range("2010-01-05", "2010-01-09", freq="12h")  # 00 and 12 UTC, as HRES
    truth = forecast_store(tmp_path / "truth.zarr", inits)
    persistence = forecast_store(tmp_path / "pers.zarr", inits, mode="persistence", flip=True)
    metrics, info, scores = _score(store, {"truth": truth, "pers": persistence})
    assert list(metrics) == ["model", "persistence", "previous_day", "climatology", "fitted", "truth", "pers",
                             "scorecard"]
    assert info["reference"] == "truth" == scores.attrs["reference"]  # an external forecast is the reference
    metrics.pop("scorecard")
    assert metrics["truth"]["rmse"] < 1e-3 and metrics["truth"]["by_channel"]["z500"]["rmse"] < 1e-2
    for key in ("rmse", "rmse_weighted", "mae", "acc"):
        assert metrics["pers"][key] == pytest.approx(metrics["persistence"][key], rel=1e-5, abs=1e-6), key
    # every forecaster on the same samples: the test windows' init times at 00 and 12 UTC
    w = Windows(store, "test", WindowSpec(input=4, output=LEADS))
    all_inits = pd.DatetimeIndex(w.times[w.starts + 3])
    assert info["samples_without_external"] == len(all_inits)
    assert info["samples"] == int(all_inits.hour.isin([0, 12]).sum()) < len(all_inits)
    assert {m["samples"] for m in metrics.values()} == {info["samples"]}
    assert info["external"]["truth"]["url"] == str(truth)


def test_external_forecasts_refused_in_one_line(tmp_path, store):
    inits = pd.date_range("2010-01-05", "2010-01-09", freq="12h")
    cases = {
        "different grid": forecast_store(tmp_path / "coarse.zarr", inits, resolution=22.5),
        "no init time in common with the test split's": forecast_store(tmp_path / "late.zarr",
                                                                       pd.date_range("2011-01-01", periods=2)),
        "has no forecast at the evaluated lead times +18 h, +24 h": forecast_store(tmp_path / "short.zarr", inits,
                                                                                 leads=[0, 6, 12]),
        "not a Zarr store": tmp_path / "nothing.zarr",
    }
    (tmp_path / "nothing.zarr").mkdir()
    for reason, path in cases.items():
        with pytest.raises(InputError) as err:
            _score(store, {"x": path})
        assert reason in _one_line(err) and str(path) in str(err.value), (reason, str(err.value))


def test_external_option(tmp_path):
    spec = EvaluateSpec.from_catalog("weatherbench2-t2m-5.625deg", checkpoint="run/best.pt",
                                     external=["hres=gs://weatherbench2/datasets/hres/x.zarr", "mine=fc.zarr"])
    assert spec.external == ["hres=gs://weatherbench2/datasets/hres/x.zarr", f"mine={tmp_path / 'fc.zarr'}"]
    for bad, reason in [(["gs://x.zarr"], "use NAME=URL"), (["model=x.zarr"], "taken by simcast's own scores"),
                        (["a=x.zarr", "a=y.zarr"], "names repeat")]:
        with pytest.raises(Exception, match=reason):
            EvaluateSpec.from_catalog("weatherbench2-t2m-5.625deg", checkpoint="best.pt", external=bad)


@pytest.mark.slow
def test_simcast_evaluate_with_external(tmp_path, monkeypatch):
    """ingest -> train -> `simcast evaluate --external`: metrics.json and the table carry the external forecast."""
    synth.write_weatherbench2(tmp_path / "data/wb2.zarr", START, END, ["t2m", "z"], resolution=RES)
    splits = {"train": {"start": "2010-01-01", "end": "2010-01-03"},
              "validation": {"start": "2010-01-04", "end": "2010-01-05"}, "test": SPLITS["test"]}
    body = wb2_entry(variables=[{"name": "t2m"}, {"name": "z", "levels": [500]}], splits=splits,
                     window={"input": 2, "output": LEADS}).model_dump(mode="json", exclude={"name"}, exclude_none=True)
    body["training"] = {"preset": "weatherbench-t2m-5.625deg", "translator": "gsta", "model": TINY_MODEL,
                        "epochs": 1, "batch_size": 2, "lr": 0.01, "schedule": "constant"}
    monkeypatch.setenv("SIMCAST_CATALOG", str(write_catalog(tmp_path / "cat.yaml", {"wb2": body})))
    runner = CliRunner()
    assert runner.invoke(app, ["ingest", "wb2"]).exit_code == 0
    trained = runner.invoke(app, ["train", "wb2", "--device", "cpu", "--out", str(tmp_path / "run")])
    assert trained.exit_code == 0, trained.output
    best = trained.stdout.strip().splitlines()[-1]
    truth = forecast_store(tmp_path / "truth.zarr", pd.date_range("2010-01-05", "2010-01-09", freq="12h"))
    r = runner.invoke(app, ["evaluate", "wb2", "--checkpoint", best, "--device", "cpu", "--out",
                            str(tmp_path / "eval"), "--external", f"ifs={truth}"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    metrics = json.loads((tmp_path / "eval/metrics.json").read_text())
    assert list(metrics)[-2:] == ["ifs", "scorecard"] and metrics["ifs"]["rmse"] < 1e-3
    assert metrics["scorecard"]["reference"] == "ifs"  # IFS given: the scorecard's reference
    assert "significantly worse" in r.output  # every reference forecast is far from the truth-equal ifs
    assert metrics["ifs"]["lead_hours"] == [6, 12, 18, 24]
    assert "ifs" in r.output and "init times ifs holds" in r.output
    bad = runner.invoke(app, ["evaluate", "wb2", "--checkpoint", best, "--external", "ifs"])
    assert bad.exit_code == 2 and "--external" in bad.output and "NAME=URL" in bad.output


# ---- units ----------------------------------------------------------------------------------------------

def _in_celsius(ds: xr.Dataset, name: str, units: str = "degC") -> xr.Dataset:
    return ds.assign({name: (ds[name] - 273.15).assign_attrs({**ds[name].attrs, "units": units})})


def test_a_source_in_other_units_is_converted_to_the_catalogs(tmp_path, real_data):
    """t2m in degC (a WB2 store, a NetCDF file) ingests as the kelvin source does, in K, range-checked."""
    ds = synth.weatherbench2_dataset(START, END, ["t2m"], resolution=11.25)
    ds.to_zarr(tmp_path / "data/k.zarr", consolidated=True, zarr_format=2)
    _in_celsius(ds, "2m_temperature").to_zarr(tmp_path / "data/c.zarr", consolidated=True, zarr_format=2)
    k = open_store(ingest(wb2_entry(name="k", url="k.zarr")).store)
    c = open_store(ingest(wb2_entry(name="c", url="c.zarr")).store)
    assert c["units"].values.tolist() == ["K"]
    np.testing.assert_allclose(c["data"].values, k["data"].values, atol=2e-4)
    hot = _in_celsius(ds, "2m_temperature")
    hot["2m_temperature"][5] = 300.0  # 573 K: out of the kelvin valid range once converted
    hot.to_zarr(tmp_path / "data/hot.zarr", consolidated=True, zarr_format=2)
    with pytest.raises(InputError) as err:
        ingest(wb2_entry(name="hot", url="hot.zarr"))
    assert "above its valid range [150, 350] K" in _one_line(err)

    # the real ERA5 sample's first day, in degC in a NetCDF file
    day = sorted((real_data / "weather/era5_uk_t2m_0.25deg").glob("*.nc"))[0]
    (tmp_path / "data/nc").mkdir(parents=True)
    with xr.open_dataset(day) as raw:
        real = raw.load()
    _in_celsius(real, "t2m").to_netcdf(tmp_path / "data/nc/c.nc")
    entry = DatasetEntry(name="nc", kind="weatherbench", source={"pattern": "nc/*.nc"}, variables=[{"name": "t2m"}],
                         time_step="1h", splits={"train": {"rest": True}, "validation": {"last": "3h"},
                                                 "test": {"last": "3h"}}, window={"input": 1, "output": 1},
                         store="nc.zarr")
    nc = open_store(ingest(entry).store)
    assert nc["units"].values.tolist() == ["K"]
    np.testing.assert_allclose(nc["data"].values[:, 0], real["t2m"].values, atol=2e-4)


def test_units_that_cannot_be_converted_are_refused_naming_both(tmp_path):
    ds = synth.weatherbench2_dataset(START, END, ["t2m"], resolution=11.25)
    wrong = ds.assign({"2m_temperature": ds["2m_temperature"].assign_attrs(units="m s**-1")})
    wrong.to_zarr(tmp_path / "data/w.zarr", consolidated=True, zarr_format=2)
    with pytest.raises(InputError) as err:
        ingest(wb2_entry(name="w", url="w.zarr"))
    line = _one_line(err)
    assert line.startswith(str(tmp_path / "data/w.zarr")) and "variable 't2m' is in 'm s**-1'" in line
    assert "the catalog expects 'K'" in line and "they measure different things" in line
    odd = ds.assign({"2m_temperature": ds["2m_temperature"].assign_attrs(units="(0 - 1) furlongs")})
    odd.to_zarr(tmp_path / "data/o.zarr", consolidated=True, zarr_format=2)
    with pytest.raises(InputError) as err:
        ingest(wb2_entry(name="o", url="o.zarr"))
    assert "'(0 - 1) furlongs' is not a unit UDUNITS knows" in _one_line(err)
    # the catalog's own units win: a kelvin source for an entry in degC is converted to degC
    ds.to_zarr(tmp_path / "data/k.zarr", consolidated=True, zarr_format=2)
    c = open_store(ingest(wb2_entry(name="c", url="k.zarr", variables=[{"name": "t2m", "units": "degC"}])).store)
    assert c["units"].values.tolist() == ["degC"]
    np.testing.assert_allclose(c["data"].values.max(), float(ds["2m_temperature"].max()) - 273.15, atol=1e-3)
