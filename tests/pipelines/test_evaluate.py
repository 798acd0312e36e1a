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
from pipelines.evaluate.baselines import Baselines, climatology
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


def test_baselines_read_the_right_frames(stores):
    w = Windows(stores["era5"], "test", WindowSpec(input=12, output=12))
    b = Baselines(w)
    data = w.ds["data"].values
    idx = np.array([0, 7, 100])
    starts = w.starts[idx]
    prev = b.previous_day(idx).numpy()
    for k, s in enumerate(starts):
        for lead in range(12):
            target = s + 12 + lead
            np.testing.assert_array_equal(prev[k, lead], data[target - 24])
    clim = climatology(w.ds)
    train = w.ds["data"].sel(time=slice("2019-03-01", "2019-03-20"))
    expected = train.groupby("time.hour").mean("time").values
    np.testing.assert_allclose(clim, expected, rtol=1e-5)
    c = b.climatology(idx).numpy()
    hour = pd.DatetimeIndex(w.times[starts[1] + 12 + 3:starts[1] + 12 + 4]).hour[0]
    np.testing.assert_allclose(c[1, 3], expected[hour], rtol=1e-6)


def test_persistence_model_scores_like_the_persistence_baseline(stores, tmp_path):
    w = Windows(stores["era5"], "test", WindowSpec(input=12, output=12))
    metrics, info = evaluate(w, lambda x, index: x[:, -1:].expand(-1, 12, -1, -1, -1), progress=False)
    assert set(metrics) == {"model", "persistence", "previous_day", "climatology"}
    assert metrics["model"]["rmse"] == pytest.approx(metrics["persistence"]["rmse"], rel=1e-5)
    assert metrics["model"]["rmse_weighted"] == pytest.approx(metrics["persistence"]["rmse_weighted"], rel=1e-5)
    assert info["samples"] == 145 and all(m["samples"] == 145 for m in metrics.values())
    # physical units: persistence errors of a few kelvin, growing with lead
    assert 1.0 < metrics["persistence"]["rmse_weighted"] < 5.0
    by_lead = metrics["persistence"]["by_lead"]["rmse"]
    assert len(by_lead) == 12 and by_lead[0] < by_lead[-1]
    # the day-earlier baseline beats persistence at 12 h leads on hourly temperature
    assert metrics["previous_day"]["rmse_weighted"] < metrics["persistence"]["rmse_weighted"]
    paths = write_metrics(metrics, info, tmp_path / "eval")
    top = json.loads(paths["metrics"].read_text())
    assert list(top) == ["model", "persistence", "previous_day", "climatology"]
    assert top["climatology"]["acc"] is None  # 0/0: climatology has no anomaly
    nc = xr.open_dataset(paths["netcdf"])
    assert nc["rmse"].dims == ("forecaster", "lead_time") and nc.sizes["lead_time"] == 12
    assert float(nc["rmse_overall"].sel(forecaster="persistence")) == pytest.approx(metrics["persistence"]["rmse"])


def test_traffic_metrics_include_paper_convention(stores):
    w = Windows(stores["nybike"], "test")
    metrics, info = evaluate(w, lambda x, index: x[:, -1:].expand(-1, 4, -1, -1, -1), progress=False)
    m = metrics["model"]
    assert {"mse_paper", "mae_paper", "ssim", "psnr"} <= set(m) and "rmse_weighted" not in m
    assert info["samples"] == 14 * 48 - 7  # the first day's previous-day frames lie in validation: allowed
    assert m["mse_paper"] == pytest.approx(metrics["persistence"]["mse_paper"])


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
        if name == "era5-uk-t2m":  # untrained: exactly the same hours one day earlier (inputs 1..24 of 25)
            torch.testing.assert_close(y, x[:, [1 + k % 24 for k in range(48)]])
    with pytest.raises(CatalogError, match="residual_lag 24 must lie between"):
        TrainSpec.from_catalog("era5-uk-t2m", store=stores["era5"], input=12)
