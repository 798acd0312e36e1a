"""The scoring room's metrics, regions, climatology, fitted forecast and intervals against formulas written out
here in NumPy, on small arrays with known answers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from data_catalog.schema import Region, Scoring
from pipelines.errors import InputError, UsageError
from pipelines.scoring import Batch, Room
from pipelines.scoring.bootstrap import blocks
from pipelines.scoring.climatology import Climatology, day_of_year
from pipelines.scoring.metrics import SSIM_DATA_RANGE, ssim
from pipelines.scoring.regions import Regions, area_weights, box_mask, grid_regions, is_global
from pipelines.scoring.tally import Forecast, Tally

CHANNELS = ["t850", "z500"]


def tally_of(pred, truth, metrics, weights=None, masks=None, clim=None, paper_range=None, threshold=None,
             raw=None, scored=None, batches=1):
    """Scores of one forecaster over (N, L, C, H, W) arrays, added in `batches` pieces."""
    N, L, C, H, W = truth.shape
    weights = np.ones((H, W)) if weights is None else weights
    masks = np.ones((1, H, W), bool) if masks is None else masks
    regions = Regions([f"r{i}" for i in range(len(masks))], masks, weights, True)
    t = Tally(N, L, CHANNELS[:C], regions, metrics, paper_range, threshold)
    scored = np.ones((N, L), bool) if scored is None else scored
    for rows in np.array_split(np.arange(N), batches):
        t.mark(rows, scored[rows])
        t.add("f", rows, Forecast(torch.tensor(pred[rows]), None if raw is None else torch.tensor(raw[rows])),
              torch.tensor(truth[rows]), scored[rows], None if clim is None else torch.tensor(clim[rows]))
    return t


def value(t, metric, over_leads=True):
    return t.value(metric, t.pooled("f", over_leads=over_leads))


def case(n=6, leads=3, channels=2, h=8, w=10, seed=0):
    rng = np.random.default_rng(seed)
    truth = rng.normal(280.0, 5.0, (n, leads, channels, h, w))
    return truth + rng.normal(0.5, 2.0, truth.shape), truth


# ---- pooled errors -------------------------------------------------------------------------------------

def test_rmse_pools_over_init_times_and_points_by_hand():
    """2 init times, 2 leads, a 2x2 grid, truth zero: the pooled RMSE at lead 1 is sqrt(0.5), not the mean of
    per-init RMSEs (0.5); that is WeatherBench2's RMSE (mean of the spatial MSE over init times, then sqrt)."""
    truth = np.zeros((2, 2, 1, 2, 2))
    pred = np.zeros_like(truth)
    pred[0, 0, 0] = [[1, 1], [1, 1]]
    pred[1, 0, 0] = [[-1, 1], [1, -1]]
    pred[0, 1, 0] = [[2, 0], [0, 0]]
    t = tally_of(pred, truth, ["rmse", "mae", "bias"])
    assert value(t, "rmse", False)[:, 0, 0] == pytest.approx([1.0, math.sqrt(4 / 8)])
    assert value(t, "mae", False)[:, 0, 0] == pytest.approx([1.0, 2 / 8])
    assert value(t, "bias", False)[:, 0, 0] == pytest.approx([0.5, 2 / 8])
    assert value(t, "rmse")[0, 0] == pytest.approx(math.sqrt(12 / 16))
    per_init_mse = ((pred - truth) ** 2).mean((2, 3, 4))   # (init, lead)
    assert value(t, "rmse", False)[:, 0, 0] == pytest.approx(np.sqrt(per_init_mse.mean(0)))


def test_channels_and_all_channels():
    pred, truth = case()
    t = tally_of(pred, truth, ["rmse", "mae", "bias"], batches=3)
    e = pred - truth
    for c in range(2):
        assert value(t, "rmse")[c, 0] == pytest.approx(np.sqrt((e[:, :, c] ** 2).mean()), rel=1e-6)
    assert value(t, "rmse")[2, 0] == pytest.approx(np.sqrt((e**2).mean()), rel=1e-6)   # all channels pooled
    assert value(t, "bias", False)[:, 2, 0] == pytest.approx(e.mean((0, 2, 3, 4)), rel=1e-5)


def test_area_weights_are_weatherbench2s_on_a_global_grid():
    lat = np.linspace(-87.1875, 87.1875, 32)                        # 5.625 deg, no pole rows
    edges = np.deg2rad(np.concatenate([[-90], (lat[1:] + lat[:-1]) / 2, [90]]))
    wb2 = np.sin(edges[1:]) - np.sin(edges[:-1])
    assert area_weights(lat) == pytest.approx(wb2 / wb2.mean(), rel=1e-12)
    cos = np.cos(np.deg2rad(lat))
    assert area_weights(lat) == pytest.approx(cos / cos.mean(), rel=1e-12)  # cos(lat) exactly on this grid
    poles = np.linspace(-90, 90, 121)                                # 1.5 deg with pole rows: not cos(lat)
    w = area_weights(poles)
    assert w[0] > 0 and w[0] == pytest.approx(w[-1]) and w.mean() == pytest.approx(1.0)
    assert area_weights(lat[::-1]) == pytest.approx((wb2 / wb2.mean())[::-1])  # order kept


def test_weighted_scores_normalize_within_each_region():
    pred, truth = case(channels=1)
    lat = np.linspace(-78.75, 78.75, 8)
    w = np.repeat(area_weights(lat)[:, None], 10, axis=1)
    north = np.zeros((8, 10), bool)
    north[5:, 2:7] = True
    t = tally_of(pred, truth, ["rmse_weighted", "mae_weighted", "bias_weighted"], weights=w,
                 masks=np.stack([np.ones((8, 10), bool), north]), batches=2)
    e = pred - truth
    for r, mask in enumerate([np.ones((8, 10), bool), north]):
        ww = w * mask
        assert value(t, "rmse_weighted")[0, r] == pytest.approx(np.sqrt((e**2 * ww).sum() / (ww.sum() * 18)),
                                                                rel=1e-6)
        assert value(t, "mae_weighted")[0, r] == pytest.approx((np.abs(e) * ww).sum() / (ww.sum() * 18), rel=1e-6)


def test_acc_is_weatherbench2s_per_pair_uncentered_correlation():
    pred, truth = case()
    rng = np.random.default_rng(5)
    clim = truth + rng.normal(0, 4.0, truth.shape)
    w = np.repeat(area_weights(np.linspace(-70, 70, 8))[:, None], 10, axis=1)
    t = tally_of(pred, truth, ["acc"], weights=w, clim=clim, batches=2)
    fa, a = pred - clim, truth - clim
    per_pair = (w * fa * a).sum((3, 4)) / np.sqrt((w * fa**2).sum((3, 4)) * (w * a**2).sum((3, 4)))  # (N, L, C)
    assert value(t, "acc", False)[:, 0, 0] == pytest.approx(per_pair[:, :, 0].mean(0), rel=1e-5)
    assert value(t, "acc")[2, 0] == pytest.approx(per_pair.mean(), rel=1e-5)
    perfect = tally_of(truth, truth, ["acc"], weights=w, clim=clim)
    assert value(perfect, "acc")[2, 0] == pytest.approx(1.0, abs=1e-6)


def test_paper_metrics_use_one_range_and_the_raw_output():
    """OpenSTL's MSE/MAE (spatial_norm=False) on data scaled by ONE min/max: np.mean(err, axis=(0, 1)).sum()."""
    pred, truth = case(n=4, leads=2)
    lo, hi = 260.0, 300.0
    raw = pred - 3.0  # what the model gave before clipping: the paper metrics score it
    t = tally_of(pred, truth, ["mse_paper", "mae_paper"], paper_range=(lo, hi), raw=raw)
    e = (raw - truth) / (hi - lo)
    assert value(t, "mse_paper")[2, 0] == pytest.approx(np.mean(e**2, axis=(0, 1)).sum(), rel=1e-5)
    assert value(t, "mae_paper")[2, 0] == pytest.approx(np.mean(np.abs(e), axis=(0, 1)).sum(), rel=1e-5)
    assert value(t, "mse_paper")[0, 0] == pytest.approx(np.mean(e[:, :, :1] ** 2, axis=(0, 1)).sum(), rel=1e-5)
    by_hand = tally_of(np.full((2, 1, 2, 2, 2), 6.0), np.full((2, 1, 2, 2, 2), 5.0), ["mse_paper"],
                       paper_range=(0.0, 10.0))
    assert value(by_hand, "mse_paper")[2, 0] == pytest.approx(0.08)  # 8 points x 0.1^2 a frame


def test_masked_metrics_leave_out_truth_at_or_below_the_threshold_as_libcity():
    truth = np.array([0.0, 2.0, 4.0, 0.0]).reshape(1, 1, 1, 2, 2).repeat(2, axis=1)
    pred = np.array([1.0, 1.0, 5.0, 3.0]).reshape(1, 1, 1, 2, 2).repeat(2, axis=1)
    t = tally_of(pred, truth, ["masked_mae", "masked_rmse", "masked_mape"], threshold=0.0)
    assert value(t, "masked_mae")[0, 0] == pytest.approx(1.0)                # (1 + 1) / 2
    assert value(t, "masked_rmse")[0, 0] == pytest.approx(1.0)
    assert value(t, "masked_mape")[0, 0] == pytest.approx((1 / 2 + 1 / 4) / 2)  # a fraction, as LibCity
    pred, truth = case(n=3, leads=2, channels=1)
    truth[truth < 280] = 0.0
    t = tally_of(pred, truth, ["masked_mae", "masked_mape"], threshold=0.0)
    keep = truth > 0
    ref = np.abs(pred - truth)[keep].mean()  # LibCity: mask / mask.mean(), loss * mask, mean
    mask = keep / keep.mean()
    assert value(t, "masked_mae")[0, 0] == pytest.approx(ref, rel=1e-5)
    assert value(t, "masked_mae")[0, 0] == pytest.approx((np.abs(pred - truth) * mask).mean(), rel=1e-5)
    assert value(t, "masked_mape")[0, 0] == pytest.approx((np.abs(pred - truth)[keep] / truth[keep]).mean(),
                                                          rel=1e-5)


def numpy_ssim(x, y, data_range, win=7):
    """SSIM the long way: every win x win window inside the image, sample (co)variances, averaged."""
    from numpy.lib.stride_tricks import sliding_window_view
    wx = sliding_window_view(x, (win, win)).reshape(-1, win * win)
    wy = sliding_window_view(y, (win, win)).reshape(-1, win * win)
    mx, my = wx.mean(1), wy.mean(1)
    vx, vy = wx.var(1, ddof=1), wy.var(1, ddof=1)
    cxy = ((wx - mx[:, None]) * (wy - my[:, None])).sum(1) / (win * win - 1)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    return np.mean((2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))


def test_ssim_function_matches_the_long_way():
    rng = np.random.default_rng(1)
    x, y = rng.random((9, 11)), rng.random((9, 11))
    y = 0.6 * x + 0.4 * y
    for dr in (1.0, 2.0):
        assert ssim(torch.tensor(x), torch.tensor(y), data_range=dr).item() == pytest.approx(numpy_ssim(x, y, dr))


def test_ssim_psnr_per_frame_with_the_forecast_clipped_as_openstl():
    pred, truth = case(n=3, leads=2)
    lo, hi = float(truth.min()), float(truth.max())
    pred[0, 0, 0, :2] = 400.0  # beyond the range: clipped to 1 for SSIM/PSNR
    t = tally_of(pred, truth, ["ssim", "psnr"], paper_range=(lo, hi), batches=2)
    p01, t01 = np.clip((pred - lo) / (hi - lo), 0, 1), (truth - lo) / (hi - lo)
    frame_ssim = np.array([[np.mean([numpy_ssim(p01[b, f, c], t01[b, f, c], SSIM_DATA_RANGE) for c in range(2)])
                            for f in range(2)] for b in range(3)])
    frame_psnr = -10 * np.log10(((p01 - t01) ** 2).mean((2, 3, 4)))
    assert value(t, "ssim")[2, 0] == pytest.approx(frame_ssim.mean(), rel=1e-5)
    assert value(t, "psnr")[2, 0] == pytest.approx(frame_psnr.mean(), rel=1e-5)
    assert value(t, "psnr", False)[:, 2, 0] == pytest.approx(frame_psnr.mean(0), rel=1e-5)
    z = -10 * np.log10(((p01[:, :, 1] - t01[:, :, 1]) ** 2).mean((2, 3)))
    assert value(t, "psnr")[1, 0] == pytest.approx(z.mean(), rel=1e-5)


def test_unscored_pairs_count_nowhere():
    pred, truth = case(n=4, leads=3, channels=1)
    scored = np.ones((4, 3), bool)
    scored[1, 2] = scored[3, 0] = False
    truth_nan = truth.copy()
    truth_nan[~scored] = np.nan  # what an absent truth looks like before masking
    t = tally_of(pred, np.nan_to_num(truth_nan), ["rmse"], scored=scored, batches=2)
    e2 = ((pred - truth) ** 2).mean((2, 3, 4))
    expected = [np.sqrt(e2[scored[:, k], k].mean()) for k in range(3)]
    assert value(t, "rmse", False)[:, 0, 0] == pytest.approx(expected, rel=1e-6)
    assert value(t, "rmse")[0, 0] == pytest.approx(np.sqrt(e2[scored].mean()), rel=1e-6)


# ---- regions --------------------------------------------------------------------------------------------

def global_store(n_lat=32, n_lon=64, times=48):
    lat = np.linspace(-87.1875, 87.1875, n_lat)
    lon = np.arange(n_lon) * 360 / n_lon
    t = pd.date_range("2017-01-01", periods=times, freq="h")
    data = np.random.default_rng(0).normal(280, 5, (times, 1, n_lat, n_lon)).astype("float32")
    ds = xr.Dataset({"data": (("time", "channel", "lat", "lon"), data),
                     "in_train": (("time",), np.r_[np.ones(times // 2), np.zeros(times - times // 2)].astype("int8")),
                     "units": (("channel",), ["K"]), "variable": (("channel",), ["t2m"]),
                     "stat_mean": (("channel",), [280.0]), "stat_std": (("channel",), [5.0]),
                     "stat_min": (("channel",), [250.0]), "stat_max": (("channel",), [310.0])},
                    coords={"time": t, "channel": ["t2m"], "lat": lat, "lon": lon})
    ds.attrs = {"time_step": "1h", "properties": "{}"}
    return ds


def test_standard_regions_on_a_global_grid_and_boxes_that_wrap():
    ds = global_store()
    lat, lon = ds["lat"].values, ds["lon"].values
    assert is_global(lat, lon) and not is_global(lat[10:20], lon)
    regions = grid_regions(ds, {"uk": Region(lat=(49, 61), lon=(-8, 2))})
    assert regions.names[:3] == ["global", "tropics", "extra-tropics"] and regions.names[-1] == "uk"
    assert len(regions.names) == 1 + 12 + 1
    masks = dict(zip(regions.names, regions.masks))
    np.testing.assert_array_equal(masks["tropics"].any(1), np.abs(lat) <= 20)
    assert not (masks["tropics"] & masks["extra-tropics"]).any()
    europe_cols = masks["europe"].any(0)  # 347.5 .. 360 and 0 .. 42.5 on a 0..360 grid
    np.testing.assert_array_equal(europe_cols, (lon >= 347.5) | (lon <= 42.5))
    uk_cols = masks["uk"].any(0)
    np.testing.assert_array_equal(uk_cols, (lon >= 352) | (lon <= 2))
    np.testing.assert_array_equal(box_mask(lat, lon, [((-90, 90), (0, 360))]), np.ones((32, 64), bool))
    with pytest.raises(ValueError, match="holds no point"):
        grid_regions(ds, {"nowhere": Region(lat=(1, 2), lon=(1, 2))})
    with pytest.raises(ValueError, match="rows and cols"):
        grid_regions(ds.rename({"lat": "y", "lon": "x"}), {"uk": Region(lat=(49, 61), lon=(-8, 2))})
    regional = grid_regions(ds.isel(lat=slice(20, 28), lon=slice(0, 10)))
    assert regional.names == ["all"]


def test_index_regions_on_a_grid_without_coordinates():
    ds = global_store(8, 6).rename({"lat": "y", "lon": "x"}).drop_vars(["y", "x"])
    regions = grid_regions(ds, {"centre": Region(rows=(2, 5), cols=(1, 3))})
    assert regions.names == ["all", "centre"] and regions.masks[1].sum() == 6 and not regions.area_weighted
    with pytest.raises(ValueError, match="do not fit"):
        grid_regions(ds, {"big": Region(rows=(0, 9), cols=(0, 2))})
    with pytest.raises(ValueError):
        Region(rows=(3, 3), cols=(0, 1))


# ---- climatology ------------------------------------------------------------------------------------

def test_day_of_year_on_a_366_day_calendar():
    t = pd.DatetimeIndex(["2019-02-28", "2019-03-01", "2020-02-29", "2020-03-01", "2020-12-31", "2019-12-31"])
    assert day_of_year(t).tolist() == [58, 60, 59, 60, 365, 365]


def test_seasonal_climatology_is_a_smoothed_day_of_year_and_hour_mean():
    """Two training years, 6-hourly, a 1x2 grid; the table equals the mean by (day, hour) smoothed by a
    circular 61-day running mean of sums and counts, written out here."""
    times = pd.date_range("2015-01-01", "2017-12-31 18:00", freq="6h")
    rng = np.random.default_rng(2)
    doy = day_of_year(times)
    data = (280 + 10 * np.cos(2 * np.pi * doy / 366) + 2 * (times.hour.values == 12))[:, None, None, None] \
        + rng.normal(0, 1, (len(times), 1, 1, 2))
    ds = xr.Dataset({"data": (("time", "channel", "lat", "lon"), data.astype("float32")),
                     "in_train": (("time",), (times.year < 2017).astype("int8"))},
                    coords={"time": times, "channel": ["t2m"], "lat": [50.0], "lon": [0.0, 1.0]})
    ds.attrs = {"time_step": "6h"}
    clim = Climatology(ds)
    assert clim.seasonal and "day of year" in clim.description
    train = times.year < 2017
    sums, counts = np.zeros((366, 4, 2)), np.zeros((366, 4))
    for d, h, x in zip(doy[train], times.hour.values[train] // 6, data[train, 0, 0]):
        sums[d, h] += x
        counts[d, h] += 1
    idx = (np.arange(-30, 31)[:, None] + np.arange(366)[None]) % 366
    expected = sums[idx].sum(0) / counts[idx].sum(0)[..., None]
    probe = pd.DatetimeIndex(["2017-03-01 12:00", "2017-07-15 00:00", "2017-12-31 18:00"])
    got = clim.at(probe.values.astype("datetime64[ns]").astype(np.int64)).numpy()[:, 0, 0]
    for k, t in enumerate(probe):
        assert got[k] == pytest.approx(expected[day_of_year(pd.DatetimeIndex([t]))[0], t.hour // 6], rel=1e-5)
    short = Climatology(ds.isel(time=slice(0, 4 * 60)))
    assert not short.seasonal and "time of day" in short.description


# ---- the fitted forecast and the room -----------------------------------------------------------------

def test_fitted_forecast_recovers_a_known_decay_and_uses_training_data_only():
    """x(t) = a daily cycle + an anomaly that decays by 0.9 an hour: y(init + k) - y(init + k - 24) depends on
    today's departure x(init) - x(init - 24) with a coefficient the fit must find from the training split."""
    n = 24 * 40
    times = pd.date_range("2018-01-01", periods=n, freq="h")
    rng = np.random.default_rng(3)
    anomaly = np.zeros(n)
    for i in range(1, n):
        anomaly[i] = 0.9 * anomaly[i - 1] + rng.normal()
    cycle = 5 * np.sin(2 * np.pi * np.arange(n) / 24)
    data = (280 + cycle + anomaly)[:, None, None, None] * np.ones((1, 1, 2, 3))
    ds = global_store().isel(time=slice(0, 1), lat=slice(0, 2), lon=slice(0, 3)).drop_dims("time")
    ds = ds.assign(data=(("time", "channel", "lat", "lon"), data.astype("float32")),
                   in_train=(("time",), (np.arange(n) < n // 2).astype("int8"))).assign_coords(time=times)
    room = Room(ds, np.arange(1, 7))
    fitted = room.references[-1]
    # the least-squares coefficient of (anomaly(t + k) - anomaly(t + k - 24)) on (anomaly(t) - anomaly(t - 24))
    train = np.arange(24, n // 2 - 6)
    d = anomaly[train] - anomaly[train - 24]
    for k in range(1, 7):
        resid = anomaly[train + k] - anomaly[train + k - 24]
        assert fitted.coefficients[k - 1, 0] == pytest.approx((resid * d).sum() / (d * d).sum(), abs=0.02)
    assert 0 < fitted.coefficients[-1, 0] < fitted.coefficients[0, 0] < 1


def test_a_forecaster_no_better_than_another_is_not_called_better():
    """Scores with intervals: a copy of a reference forecast is never significantly different from it; a clearly
    better one is; the reference is the best baseline unless named; a bad name is one usage line."""
    ds = global_store(8, 16, times=24 * 12)
    ds["in_train"][:] = (np.arange(ds.sizes["time"]) < 24 * 6).astype("int8")
    room = Room(ds, np.arange(1, 4))
    times = pd.DatetimeIndex(ds["time"].values)
    init_ns = times[24 * 7:24 * 11:3].values.astype("datetime64[ns]").astype(np.int64)
    truth_frames = ds["data"].values

    class Copy:
        name = "model"

        def available(self, init, valid):
            return np.ones(valid.shape, bool)

        def __call__(self, batch):
            return room.references[0](batch)  # persistence

    def batches():
        for rows in np.array_split(np.arange(init_ns.size), 4):
            valid = room.valid_ns(init_ns[rows])
            idx = room.frames.index(valid)
            yield Batch(rows, init_ns[rows], valid, np.ones(valid.shape, bool)), torch.from_numpy(truth_frames[idx])

    scores = room.score([Copy(), *room.references], batches(), init_ns)
    out = scores.dataset()
    assert out.attrs["reference"] in ("persistence", "previous_day", "climatology", "fitted")
    sig = out["model_rmse_weighted_significant"].sel(versus="persistence", region="global").values
    assert (sig == 0).all()
    assert np.allclose(out["model_rmse_weighted_skill"].sel(versus="persistence").values, 0, atol=1e-4)
    lo, hi = out["rmse_weighted_overall_lower"], out["rmse_weighted_overall_upper"]
    assert bool(((lo <= out["rmse_weighted_overall"] + 1e-9) & (out["rmse_weighted_overall"] <= hi + 1e-9)).all())
    # noise fields: climatology beats persistence everywhere, significantly
    clim_vs = out["model_rmse_weighted_overall_significant"].sel(versus="climatology", region="global")
    assert clim_vs.values.tolist() == [-1]
    with pytest.raises(UsageError, match="not one of the forecasters"):
        scores.dataset(reference="hres")
    assert scores.dataset(reference="persistence").attrs["reference"] == "persistence"


def test_blocks_span_a_day():
    t = pd.date_range("2017-01-01", periods=10, freq="6h").values.astype("datetime64[ns]").astype(np.int64)
    assert blocks(t).tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2]


def test_catalog_scoring_settings_reach_the_room():
    ds = global_store()
    room = Room(ds, [1], scoring=Scoring(regions={"box": Region(lat=(0, 30), lon=(0, 40))}, standard_regions=False))
    assert room.regions.names == ["global", "box"]
    with pytest.raises(InputError, match="the catalog's scoring settings: regions: 'nowhere' holds no point"):
        Room(ds, [1], scoring=Scoring(regions={"nowhere": Region(lat=(1, 2), lon=(1, 2))}))
