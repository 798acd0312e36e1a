"""`simcast verify`: archived forecasts whose truth is in the store, scored next to the baselines for the same init
times, by lead and by init time; pairs without truth (not yet, or a missing time) are skipped, not scored."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.errors import InputError, OutputError
from pipelines.forecast.archive import add_to_archive
from pipelines.report import write_report
from pipelines.specs import VerifySpec
from pipelines.verify import NothingToVerify, run

from .test_archive import make_forecast, tree, wb, ws  # noqa: F401  (fixtures)
from .test_forecast_io import nybike_store, persistence_forecast  # noqa: F401  (fixture)

HOUR = pd.Timedelta(hours=1)
DAY = pd.Timedelta(days=1)
FORECASTERS = ("model", "persistence", "previous_day", "climatology", "fitted")


def area_weights(lat):
    """Cell areas between midpoints (the outer edges half a spacing out: this grid is regional), mean 1."""
    lat = np.deg2rad(np.sort(lat))
    half = (lat[1] - lat[0]) / 2
    edges = np.concatenate([[lat[0] - half], (lat[1:] + lat[:-1]) / 2, [lat[-1] + half]])
    w = np.sin(edges[1:]) - np.sin(edges[:-1])
    return w / w.mean()


def rmse(f, t, w=None):
    w = np.ones(f.shape[-2]) if w is None else w
    return float(np.sqrt(((f - t) ** 2 * w[:, None]).mean() / w.mean()))


def mae(f, t, w=None):
    w = np.ones(f.shape[-2]) if w is None else w
    return float((np.abs(f - t) * w[:, None]).mean() / w.mean())


def hourly_climatology(store):
    """The training split's mean by hour of day (the tiny store's training split is shorter than a year)."""
    train = store["data"].isel(time=np.flatnonzero(store["in_train"].values.astype(bool)))
    return train.groupby("time.hour").mean("time")


def frames(store: xr.Dataset, times) -> np.ndarray:
    """Store frames at these times (C, H, W each), float64."""
    return store["data"].sel(time=pd.DatetimeIndex(times)).values.astype("float64")


def archive(ws: Path, store: xr.Dataset, inits, leads: int = 6, how: str = "noise", seed: int = 0) -> Path:
    """The data set's archive (default path) holding forecasts from `inits`: noise, the truth where it exists,
    or persistence (the frame at init time held)."""
    path = ws / "outputs/archive/tiny-wb.zarr"
    times = pd.DatetimeIndex(store["time"].values)
    for k, init in enumerate(pd.DatetimeIndex(inits)):
        values = None
        if how == "truth":
            valid = [init + (i + 1) * HOUR for i in range(leads)]
            values = np.stack([frames(store, [t])[0] if t in times else np.full(frames(store, [init])[0].shape, 270.0)
                               for t in valid])[None]
        elif how == "persistence":
            values = np.repeat(frames(store, [init]), leads, axis=0)[None]
        add_to_archive(make_forecast(store, [init], leads, values, seed=seed + k), path)
    return path


def verified(**overrides) -> dict:
    return run(VerifySpec.from_catalog("tiny-wb", **overrides))


def no_nan(text: str):
    def refuse(token):
        raise AssertionError(f"{token} in the output")
    return json.loads(text, parse_constant=refuse)


# ---- scores ---------------------------------------------------------------------------------------------

def test_a_forecast_equal_to_the_truth_scores_zero(wb, ws):
    archive(ws, wb.ds, ["2010-01-05T00:00", "2010-01-05T12:00"], how="truth")
    result = verified()["result"]
    model = result["metrics"]["model"]
    for key in ("rmse", "mae", "rmse_weighted", "mae_weighted"):
        assert model[key] == 0 and model["by_lead"][key] == [0.0] * 6, key
    assert result["by_init"]["model"]["rmse"] == [[0.0] * 6, [0.0] * 6]
    assert result["metrics"]["persistence"]["rmse"] > 0


def test_a_forecast_equal_to_persistence_gets_the_persistence_scores(wb, ws):
    archive(ws, wb.ds, ["2010-01-04T06:00", "2010-01-05T00:00", "2010-01-05T18:00"], how="persistence")
    result = verified()["result"]
    model, persistence = result["metrics"]["model"], result["metrics"]["persistence"]
    for key in ("rmse", "mae", "rmse_weighted", "mae_weighted", "acc"):
        assert model[key] == pytest.approx(persistence[key], rel=1e-12), key
        assert model["by_lead"][key] == pytest.approx(persistence["by_lead"][key], rel=1e-12), key
    assert result["by_init"]["model"]["rmse"] == result["by_init"]["persistence"]["rmse"]


def test_scores_equal_a_direct_computation_with_the_metrics(wb, ws):
    inits = pd.DatetimeIndex(["2010-01-04T12:00", "2010-01-05T09:00"])
    path = archive(ws, wb.ds, inits, seed=3)
    result = verified()["result"]
    with xr.open_zarr(path) as a:
        pred = a["t2m"].values.astype("float64")  # (N, L, H, W)
    lat = wb.ds["lat"].values.astype("float64")
    assert np.all(np.diff(lat) > 0)
    w = area_weights(lat)
    clim = hourly_climatology(wb.ds)
    valid = [[t + (k + 1) * HOUR for t in inits] for k in range(6)]  # by lead
    truth = np.stack([frames(wb.ds, v)[:, 0] for v in valid], axis=1)  # (N, L, H, W)
    forecasts = {
        "model": pred,
        "persistence": np.repeat(frames(wb.ds, inits)[:, None, 0], 6, axis=1),
        "previous_day": np.stack([frames(wb.ds, [t - DAY for t in v])[:, 0] for v in valid], axis=1),
        "climatology": np.stack([clim.sel(hour=pd.DatetimeIndex(v).hour).values[:, 0] for v in valid], axis=1),
    }
    for name, f in forecasts.items():
        got = result["metrics"][name]
        assert got["rmse"] == pytest.approx(rmse(f, truth), rel=2e-5), name
        assert got["mae_weighted"] == pytest.approx(mae(f, truth, w), rel=2e-5), name
        assert got["bias"] == pytest.approx(float((f - truth).mean()), rel=1e-5, abs=1e-6), name
        assert got["by_lead"]["rmse_weighted"] == pytest.approx(
            [rmse(f[:, k], truth[:, k], w) for k in range(6)], rel=2e-5), name
        assert sum(result["by_init"][name]["rmse"], []) == pytest.approx(
            [rmse(f[i, k], truth[i, k]) for i in range(2) for k in range(6)], rel=2e-5), name
        assert got["samples_by_lead"] == [2] * 6 and got["samples"] == 2  # the same pairs for every forecaster


def test_pairs_without_truth_are_skipped_not_scored(wb, ws):
    """A complete forecast, one across the store's gap (03:00-05:00 on Jan 6 are missing), one whose previous
    day falls in the gap (the baselines lack it), one whose truth has partly arrived, one with none yet."""
    inits = ["2010-01-05T12:00", "2010-01-06T00:00", "2010-01-07T00:00", "2010-01-07T21:00", "2010-01-07T23:00"]
    archive(ws, wb.ds, inits)
    outcome = verified()
    result = outcome["result"]
    assert result["counts"] == {"scored": 6 + 3 + 3 + 2, "awaiting_truth": 4 + 6, "missing_in_store": 3,
                                "no_reference_frames": 3, "forecast": 30, "init_times": 5, "verified_init_times": 4,
                                "complete_init_times": 1, "partly_verified_init_times": 3,
                                "unverified_init_times": 1}
    for name in FORECASTERS:
        assert result["metrics"][name]["samples_by_lead"] == [4, 4, 1, 1, 1, 3]
        assert all(np.isfinite(v) for v in result["metrics"][name]["by_lead"]["rmse"])
    assert result["by_init"]["init_times"] == [pd.Timestamp(t).isoformat() for t in inits[:4]]
    rows = result["by_init"]["model"]["rmse"]
    assert [[v is not None for v in row] for row in rows] == result["by_init"]["scored"]
    assert result["by_init"]["scored"][1] == [True, True, False, False, False, True]
    assert result["by_init"]["scored"][3] == [True, True, False, False, False, False]

    paths = outcome["paths"]
    written = no_nan(paths["json"].read_text())
    assert written["counts"] == result["counts"] and written["plot"] == "skill_rmse_weighted.png"
    with xr.open_dataset(paths["netcdf"]) as nc:
        assert nc["rmse_by_init"].dims == ("forecaster", "init_time", "lead_time") and nc.sizes["init_time"] == 4
        assert nc["rmse"].dims == ("forecaster", "lead_time", "channel", "region")
        assert list(nc["samples"].values) == [4, 4, 1, 1, 1, 3]
        assert np.isfinite(nc["rmse"].values).all()
        assert (np.isfinite(nc["rmse_by_init"].values) == nc["scored"].values.astype(bool)[None]).all()
    html = paths["html"].read_text()
    for text in ("10 lead times (valid after the store", "3 lead times on missing store times", "previous day",
                 'src="skill_rmse_weighted.png"', "RMSE (area-weighted) by lead time [K]", 'src="scorecard.png"' ):
        assert text in html, text
    assert (paths["dir"] / "skill_rmse_weighted.png").read_bytes()[:4] == b"\x89PNG"
    assert "| model |" in paths["markdown"].read_text()


def test_traffic_verification_carries_the_image_metrics(nybike_store, tmp_path, monkeypatch):  # noqa: F811
    path = add_to_archive(persistence_forecast(nybike_store, n_init=3, n_lead=4), tmp_path / "nybike.zarr")
    spec = VerifySpec.from_catalog("nybike", archive_path=path, store=nybike_store.encoding["source"],
                                   out=tmp_path / "verification")
    result = run(spec)["result"]
    assert result["main_metric"] == "rmse" and "rmse_weighted" not in result["metrics"]["model"]
    assert {"ssim", "psnr", "mse_paper"} <= set(result["metrics"]["model"]["by_lead"])
    assert result["counts"]["scored"] == 12


# ---- bad input --------------------------------------------------------------------------------------------

def one_line(*args: str, code: int = 1) -> str:
    result = CliRunner().invoke(app, list(args))
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert result.exit_code == code and len(lines) == 1, (result.exit_code, result.output, result.exception)
    assert lines[0].startswith("error: ") and "Traceback" not in result.output
    return lines[0]


def test_bad_input_ends_in_one_line(wb, ws):
    archive_path = ws / "outputs/archive/tiny-wb.zarr"
    assert f"{archive_path}: no forecast archive here yet" in one_line("verify", "tiny-wb")

    archive(ws, wb.ds, ["2010-01-07T23:00"])  # every lead awaits its truth: a store without the valid times
    line = one_line("verify", "tiny-wb")
    assert f"{wb.store}: no archived forecast has a valid time in the store yet" in line
    assert "6 lead times await their truth" in line and "nothing to verify" in line
    with pytest.raises(NothingToVerify):
        verified()
    assert not (ws / "outputs/verification/tiny-wb").exists()

    other = make_forecast(wb.ds, ["2010-01-05T00:00"])
    other.attrs["dataset"] = "other-set"
    add_to_archive(other, ws / "other.zarr")
    assert "is the forecast archive of 'other-set', not 'tiny-wb'" in one_line(
        "verify", "tiny-wb", "--archive-path", str(ws / "other.zarr"))
    assert "is not a simcast forecast archive" in one_line("verify", "tiny-wb", "--archive-path", str(ws))
    assert "is a simcast store, not a forecast archive" in one_line("verify", "tiny-wb", "--archive-path",
                                                                     str(wb.store))
    assert "--batch-size: must be >= 1" in one_line("verify", "tiny-wb", "--batch-size", "0", code=2)

    archive(ws, wb.ds, ["2010-01-05T00:00"])
    mine = ws / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my own")
    digest = tree(mine)
    assert f"{mine}: exists and is a folder, not a simcast verification" in one_line(
        "verify", "tiny-wb", "--out", str(mine))
    assert tree(mine) == digest
    with pytest.raises(OutputError):
        verified(out=mine)


def test_verify_help():
    result = CliRunner().invoke(app, ["verify", "--help"])
    assert result.exit_code == 0 and "--archive-path" in result.output and "--out" in result.output


def test_a_rerun_replaces_the_verification_and_the_report_links_to_it(wb, ws):
    archive(ws, wb.ds, ["2010-01-05T00:00"])
    first = verified()["paths"]
    assert (first["dir"] / ".simcast").is_file()
    archive(ws, wb.ds, ["2010-01-06T12:00"], seed=5)
    second = verified()
    assert second["paths"]["dir"] == first["dir"] and second["result"]["counts"]["verified_init_times"] == 2
    assert sorted(p.name for p in first["dir"].parent.iterdir()) == ["tiny-wb"]

    fc = make_forecast(wb.ds, ["2010-01-06T12:00"])
    report = write_report(fc, ws / "report", leads=[pd.Timedelta(hours=6)], verification="auto")
    html = Path(report["html"]).read_text()
    assert 'href="../outputs/verification/tiny-wb/verification.html"' in html
    assert "2 of 2 archived forecasts verified" in html
    assert "[Verification of the archived forecasts](../outputs/verification/tiny-wb/verification.html)" in \
        Path(report["markdown"]).read_text()
    with pytest.raises(InputError, match="holds no verification.json"):
        write_report(fc, ws / "report2", leads=[pd.Timedelta(hours=6)], verification=ws)
