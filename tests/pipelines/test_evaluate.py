"""Baselines and evaluation on the real samples: same samples for every forecaster, physical units."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

import simvp
from data_catalog import CatalogError, load_catalog
from pipelines.evaluate import evaluate, write_metrics
from pipelines.scoring import Batch, Room
from pipelines.specs import TrainSpec
from pipelines.store import open_store
from pipelines.windows import Windows, WindowSpec

from ..conftest import ingest


def _store(real_data, name, pattern):
    e = load_catalog()[name]
    e = e.model_copy(update={"source": e.source.model_copy(update={"pattern": str(real_data / pattern), "root": "data"})})
    return ingest(e, progress=False).store


@pytest.fixture(scope="module")
def stores(tmp_path_factory, real_data_module):
    import os
    old = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("stores"))
    try:
        return {
            "era5": _store(real_data_module, "era5-uk-t2m", "weather/era5_uk_t2m_0.25deg/*.nc").resolve(),
            "nybike": _store(real_data_module, "nybike", "traffic/NYBike_M14x8_T30_InOut.h5").resolve(),
        }
    finally:
        os.chdir(old)


@pytest.fixture(scope="module")
def real_data_module():
    from ..conftest import REAL_DATA
    return REAL_DATA


def test_reference_forecasts_read_the_right_frames(stores):
    w = Windows(stores["era5"], "test", WindowSpec(input=12, output=12))
    room = Room(w.ds, np.arange(1, 13))
    persistence, previous_day, climatology, fitted = room.references
    data = w.ds["data"].values
    idx = np.array([0, 7, 100])
    starts = w.starts[idx]
    init_ns = w.times[starts + 11].values.astype("datetime64[ns]").astype(np.int64)
    batch = Batch(np.arange(3), init_ns, room.valid_ns(init_ns), np.ones((3, 12), bool))
    prev, pers = previous_day(batch).values.numpy(), persistence(batch).values.numpy()
    clim, fit = climatology(batch).values.numpy(), fitted(batch).values.numpy()
    train = w.ds["data"].sel(time=slice("2019-03-01", "2019-03-20"))
    expected = train.groupby("time.hour").mean("time").values  # three weeks: the mean by hour of day
    a = fitted.coefficients
    for k, s in enumerate(starts):
        for lead in range(12):
            target = s + 12 + lead
            np.testing.assert_array_equal(prev[k, lead], data[target - 24])
            np.testing.assert_array_equal(pers[k, lead], data[s + 11])
            hour = w.times[target].hour
            np.testing.assert_allclose(clim[k, lead], expected[hour], rtol=1e-5)
            np.testing.assert_allclose(fit[k, lead], data[target - 24] + a[lead] * (data[s + 11] - data[s + 11 - 24]),
                                       rtol=1e-5)
    assert room.climatology.seasonal is False and "time of day" in room.climatology.description
    assert np.all(np.diff(a[:, 0]) < 0) and 0 < a[-1, 0] < a[0, 0] < 1  # today's departure fades with lead


def test_persistence_model_scores_like_the_persistence_baseline(stores, tmp_path):
    w = Windows(stores["era5"], "test", WindowSpec(input=12, output=12))
    metrics, info, scores = evaluate(w, lambda x, index: x[:, -1:].expand(-1, 12, -1, -1, -1), progress=False)
    forecasters = ["model", "persistence", "previous_day", "climatology", "fitted"]
    assert [k for k in metrics if k != "scorecard"] == forecasters
    assert metrics["model"]["rmse"] == pytest.approx(metrics["persistence"]["rmse"], rel=1e-5)
    assert metrics["model"]["rmse_weighted"] == pytest.approx(metrics["persistence"]["rmse_weighted"], rel=1e-5)
    assert info["samples"] == 145 and all(metrics[f]["samples"] == 145 for f in forecasters)
    # physical units: persistence errors of a few kelvin, growing with lead
    assert 1.0 < metrics["persistence"]["rmse_weighted"] < 5.0
    by_lead = metrics["persistence"]["by_lead"]["rmse"]
    assert len(by_lead) == 12 and by_lead[0] < by_lead[-1]
    # the day-earlier baseline beats persistence at 12 h leads on hourly temperature, the fitted one beats both
    assert metrics["fitted"]["rmse_weighted"] < metrics["previous_day"]["rmse_weighted"] < \
        metrics["persistence"]["rmse_weighted"]
    assert info["reference"] == "fitted" and metrics["scorecard"]["reference"] == "fitted"
    # intervals hold the point value; the model (= persistence) is significantly worse than the fitted forecast
    lo, hi = metrics["model"]["intervals"]["rmse_weighted"]["overall"]
    assert lo < metrics["model"]["rmse_weighted"] < hi
    versus = metrics["model"]["versus"]
    assert versus["persistence"]["rmse_weighted"]["significant"] == [0] * 12
    assert versus["persistence"]["rmse_weighted"]["skill"] == pytest.approx([0] * 12, abs=1e-3)
    assert versus["fitted"]["rmse_weighted"]["significant"] == [-1] * 12
    paths = write_metrics(metrics, info, tmp_path / "eval", scores)
    top = json.loads(paths["metrics"].read_text())
    assert list(top) == [*forecasters, "scorecard"]
    assert top["climatology"]["acc"] is None  # 0/0: climatology has no anomaly
    assert json.loads(paths["info"].read_text())["conventions"]["rmse"].startswith("sqrt of the mean squared")
    nc = xr.open_dataset(paths["netcdf"])
    assert nc["rmse"].dims == ("forecaster", "lead_time", "channel", "region") and nc.sizes["lead_time"] == 12
    assert list(nc["region"].values) == ["all"]
    assert float(nc["rmse_overall"].sel(forecaster="persistence", channel="t2m", region="all")) == \
        pytest.approx(metrics["persistence"]["rmse"])
    assert {"rmse_weighted_skill", "rmse_weighted_significant", "rmse_overall_lower"} <= set(nc.data_vars)


def test_traffic_metrics_include_paper_and_masked_conventions(stores):
    w = Windows(stores["nybike"], "test")
    metrics, info, _ = evaluate(w, lambda x, index: x[:, -1:, :2].expand(-1, 4, -1, -1, -1), progress=False)
    m = metrics["model"]
    assert {"mse_paper", "mae_paper", "ssim", "psnr", "masked_mae", "masked_mape", "masked_rmse"} <= set(m)
    assert "rmse_weighted" not in m and "acc" not in m
    assert info["samples"] == 14 * 48 - 7  # the first day's previous-day frames lie in validation: allowed
    assert m["mse_paper"] == pytest.approx(metrics["persistence"]["mse_paper"])
    assert set(m["by_channel"]) == {"inflow", "outflow"}


def test_shipped_training_defaults_fit_their_windows(stores):
    """Each bundled entry's catalog model builds on its real windows; the ERA5 default starts as the
    previous-day forecast, and a window too short for its residual lag is refused in one line."""
    for key, name in (("era5", "era5-uk-t2m"), ("nybike", "nybike")):
        entry = load_catalog()[name]
        ds = open_store(stores[key])
        spec = WindowSpec.from_store(ds, time_features=entry.training.time_features)
        windows = Windows(ds, "test", spec)
        train_spec = TrainSpec.from_catalog(name, store=stores[key])
        model = simvp.SimVP(train_spec.simvp_config(windows.shape[1], windows.shape[2:])).eval()
        x, _ = windows.batch(np.arange(4))
        with torch.no_grad():
            y = model(x)
        if name == "era5-uk-t2m":  # untrained, trend weights at zero: the same hours one day earlier
            torch.testing.assert_close(y, x[:, [1 + k % 24 for k in range(12)]])
    with pytest.raises(CatalogError, match="residual_lag 24 must lie between"):
        TrainSpec.from_catalog("era5-uk-t2m", store=stores["era5"], input=12)


def test_an_untrained_anchor_trend_model_is_the_fitted_forecast(stores):
    """anchor_init 'fitted' (the default): the trend weights start at the fitted forecast's coefficients, so the
    untrained model scores exactly as the fitted linear forecast; 'zero' starts at the previous day."""
    from pipelines.predict import model_predictor
    from pipelines.train import start_at_fitted_forecast

    ds = open_store(stores["era5"])
    spec = TrainSpec.from_catalog("era5-uk-t2m", store=stores["era5"], output=12)
    assert spec.anchor_init == "fitted"
    w = Windows(ds, "test", spec.window)
    config = spec.simvp_config(w.shape[1], w.shape[2:])
    model = simvp.SimVP(config).eval()
    assert start_at_fitted_forecast(model, ds, config)
    metrics, _, _ = evaluate(w, model_predictor(model, w, 12, torch.device("cpu")), progress=False)
    assert metrics["model"]["rmse_weighted"] == pytest.approx(metrics["fitted"]["rmse_weighted"], rel=1e-5)
    assert metrics["model"]["by_lead"]["mae"] == pytest.approx(metrics["fitted"]["by_lead"]["mae"], rel=1e-5)
    odd = spec.simvp_config(w.shape[1], w.shape[2:]).__class__(**{**config.__dict__, "residual_lag": 12})
    assert not start_at_fitted_forecast(simvp.SimVP(odd), ds, odd)  # not a day: the fitted lag does not apply
