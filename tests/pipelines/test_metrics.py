"""Metric functions against hand-computed values, the WeatherBench and OpenSTL formulas, and streaming."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import xarray as xr

from pipelines.evaluate.metrics import (MetricAccumulator, acc, latitude_weights, mae, psnr, rmse, ssim,
                               SSIM_DATA_RANGE)

LAT = np.linspace(-78.75, 78.75, 8)  # a coarse lon/lat grid: 8 latitudes x 10 longitudes
CHANNELS = ["t850", "z500"]


def random_case(n=7, leads=3, seed=0):
    rng = np.random.default_rng(seed)
    shape = (n, leads, len(CHANNELS), len(LAT), 10)
    truth = rng.normal(280.0, 5.0, shape)
    pred = truth + rng.normal(0.5, 2.0, shape)
    clim = truth + rng.normal(0.0, 4.0, shape)
    scale = ([260.0, 265.0], [300.0, 295.0])
    return pred, truth, clim, scale


def accumulate(pred, truth, clim=None, splits=None, **kw):
    m = MetricAccumulator(pred.shape[1], CHANNELS[: pred.shape[2]], **kw)
    edges = [0, *(splits or []), len(pred)]
    for a, b in zip(edges[:-1], edges[1:]):
        m.update(torch.tensor(pred[a:b]), torch.tensor(truth[a:b]),
                 None if clim is None else torch.tensor(clim[a:b]))
    return m.result()


def assert_close(a, b, rel=1e-10):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_close(a[k], b[k], rel)
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_close(x, y, rel)
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=rel, abs=1e-12)
    else:
        assert a == b


# hand-computed values ---------------------------------------------------------------------------------

def test_rmse_mae_by_lead_by_hand():
    """2 samples, 2 leads, 1 channel, 2x2 grid, truth zero; errors chosen so that the pooled RMSE differs
    from the mean of per-sample RMSEs at lead 1 (sqrt(0.5) vs 0.5)."""
    truth = np.zeros((2, 2, 1, 2, 2))
    pred = np.zeros_like(truth)
    pred[0, 0, 0] = [[1, 1], [1, 1]]
    pred[1, 0, 0] = [[-1, 1], [1, -1]]
    pred[0, 1, 0] = [[2, 0], [0, 0]]          # sample 1 at lead 1 is exact
    r = accumulate(pred, truth)
    assert r["samples"] == 2
    assert r["by_lead"]["rmse"] == pytest.approx([1.0, math.sqrt(4 / 8)])
    assert r["by_lead"]["mae"] == pytest.approx([1.0, 2 / 8])
    assert r["rmse"] == pytest.approx(math.sqrt(12 / 16))
    assert r["mae"] == pytest.approx(10 / 16)
    assert r["by_channel"]["t850"]["rmse"] == pytest.approx(r["rmse"])
    assert r["by_channel"]["t850"]["by_lead"]["mae"] == pytest.approx([1.0, 0.25])
    assert set(r) == {"rmse", "mae", "by_lead", "by_channel", "samples", "convention"}
    assert "sqrt(mean squared error over all samples" in r["convention"]


def test_by_channel_by_hand():
    truth = np.zeros((3, 2, 2, 2, 2))
    pred = truth.copy()
    pred[:, :, 0] = 1.0   # t850 off by 1 everywhere
    pred[:, :, 1] = -3.0  # z500 off by 3 everywhere
    r = accumulate(pred, truth)
    assert r["by_channel"]["t850"]["rmse"] == pytest.approx(1.0)
    assert r["by_channel"]["z500"]["rmse"] == pytest.approx(3.0)
    assert r["by_channel"]["z500"]["by_lead"]["mae"] == pytest.approx([3.0, 3.0])
    assert r["rmse"] == pytest.approx(math.sqrt(5.0))  # sqrt((1 + 9) / 2), not (1 + 3) / 2
    assert r["mae"] == pytest.approx(2.0)
    assert r["by_lead"]["rmse"] == pytest.approx([math.sqrt(5.0)] * 2)


def test_pure_functions_by_hand():
    p, t = torch.tensor([[1.0, 3.0], [0.0, 0.0]]), torch.zeros(2, 2)
    assert rmse(p, t).item() == pytest.approx(math.sqrt(10 / 4))
    assert mae(p, t).item() == pytest.approx(1.0)
    w = torch.tensor([1.5, 0.5])  # along H (dim -2): the first row counts 1.5 times
    assert rmse(p, t, w).item() == pytest.approx(math.sqrt(1.5 * 10 / 4))
    assert mae(p, t, w).item() == pytest.approx(1.5 * 4 / 4)


def test_latitude_weights():
    w = latitude_weights([-60.0, 0.0, 60.0])
    assert w.tolist() == pytest.approx([0.5, 1.0, 0.5] / np.mean([0.5, 1.0, 0.5]))
    assert w.mean().item() == pytest.approx(1.0)


# streaming --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("splits", [[1], [3, 4], [2, 5, 6]])
def test_streaming_equals_one_batch(splits):
    pred, truth, clim, scale = random_case()
    kw = dict(lat=LAT, scale=scale, image_metrics=True)
    one = accumulate(pred, truth, clim, **kw)
    assert_close(accumulate(pred, truth, clim, splits=splits, **kw), one)
    assert one["samples"] == 7
    expected = {"rmse", "mae", "rmse_weighted", "mae_weighted", "acc", "mse_paper", "mae_paper", "ssim", "psnr"}
    assert set(one["by_lead"]) == expected
    assert set(one["by_channel"]["z500"]) == expected | {"by_lead"}
    assert all(len(v) == 3 for v in one["by_lead"].values())


def test_result_before_update_and_bad_input():
    m = MetricAccumulator(2, ["t"])
    with pytest.raises(ValueError, match="no batches"):
        m.result()
    with pytest.raises(ValueError, match="expected shape"):
        m.update(torch.zeros(1, 3, 1, 2, 2), torch.zeros(1, 3, 1, 2, 2))
    with pytest.raises(ValueError, match="climatology"):
        m.update(torch.zeros(1, 2, 1, 2, 2), torch.zeros(1, 2, 1, 2, 2), torch.zeros(1, 2, 1, 2, 2))
    with pytest.raises(ValueError, match="scale"):
        MetricAccumulator(2, ["t"], image_metrics=True)
    m = MetricAccumulator(1, ["t"], scale=([0.0], [1.0]), image_metrics=True)
    with pytest.raises(ValueError, match="7x7"):
        m.update(torch.zeros(1, 1, 1, 6, 8), torch.zeros(1, 1, 1, 6, 8))
    m = MetricAccumulator(1, ["t"], lat=[0.0, 10.0])
    with pytest.raises(ValueError, match="H=3"):
        m.update(torch.zeros(1, 1, 1, 3, 4), torch.zeros(1, 1, 1, 3, 4))


# WeatherBench -----------------------------------------------------------------------------------------

def test_weighted_rmse_mae_match_weatherbench_formula():
    pred, truth, _, _ = random_case()
    r = accumulate(pred, truth, lat=LAT)
    for c, name in enumerate(CHANNELS):
        for t in range(pred.shape[1]):
            error = xr.DataArray(pred[:, t, c] - truth[:, t, c], dims=("time", "lat", "lon"), coords={"lat": LAT})
            weights_lat = np.cos(np.deg2rad(error.lat))
            weights_lat = weights_lat / weights_lat.mean()
            wb_rmse = float(np.sqrt((error**2 * weights_lat).mean()))
            wb_mae = float((np.abs(error) * weights_lat).mean())
            assert r["by_channel"][name]["by_lead"]["rmse_weighted"][t] == pytest.approx(wb_rmse, rel=1e-12)
            assert r["by_channel"][name]["by_lead"]["mae_weighted"][t] == pytest.approx(wb_mae, rel=1e-12)
    w = np.cos(np.deg2rad(LAT))[:, None] / np.cos(np.deg2rad(LAT)).mean()
    assert r["rmse_weighted"] == pytest.approx(np.sqrt(np.mean((pred - truth) ** 2 * w)), rel=1e-12)
    assert r["rmse_weighted"] != pytest.approx(r["rmse"], rel=1e-6)  # the weights do something here


def test_uniform_weights_give_unweighted():
    pred, truth, _, _ = random_case()
    r = accumulate(pred, truth, lat=np.full(len(LAT), 30.0))
    assert r["rmse_weighted"] == pytest.approx(r["rmse"], rel=1e-12)
    assert r["mae_weighted"] == pytest.approx(r["mae"], rel=1e-12)
    assert r["by_lead"]["rmse_weighted"] == pytest.approx(r["by_lead"]["rmse"], rel=1e-12)
    p, t = torch.tensor(pred), torch.tensor(truth)
    assert rmse(p, t, torch.ones(len(LAT))).item() == pytest.approx(rmse(p, t).item(), rel=1e-12)


def numpy_acc(pred, truth, clim):
    """Per (sample, lead, channel): sum(w fa a) / sqrt(sum(w fa^2) sum(w a^2)) over the grid, with
    w = cos(lat) / mean(cos(lat)) and anomalies from the climatology; shape (N, T, C)."""
    w = np.cos(np.deg2rad(LAT))
    w = (w / w.mean())[:, None]
    fa, a = pred - clim, truth - clim
    return (w * fa * a).sum((-2, -1)) / np.sqrt((w * fa**2).sum((-2, -1)) * (w * a**2).sum((-2, -1)))


def test_acc_matches_direct_computation():
    pred, truth, clim, _ = random_case()
    r = accumulate(pred, truth, clim, splits=[4], lat=LAT)
    ref = numpy_acc(pred, truth, clim)  # (N, T, C)
    assert r["acc"] == pytest.approx(ref.mean(), rel=1e-12)
    assert r["by_lead"]["acc"] == pytest.approx(ref.mean((0, 2)).tolist(), rel=1e-12)
    for c, name in enumerate(CHANNELS):
        assert r["by_channel"][name]["by_lead"]["acc"] == pytest.approx(ref[:, :, c].mean(0).tolist(), rel=1e-12)
    assert 0.0 < r["acc"] < 1.0
    per_frame = acc(torch.tensor(pred), torch.tensor(truth), torch.tensor(clim), latitude_weights(LAT))
    np.testing.assert_allclose(per_frame.numpy(), ref, rtol=1e-12)


def test_acc_is_one_for_perfect_forecast():
    _, truth, clim, _ = random_case()
    r = accumulate(truth, truth, clim, lat=LAT)
    assert r["acc"] == pytest.approx(1.0, abs=1e-12)
    assert r["by_lead"]["acc"] == pytest.approx([1.0] * 3, abs=1e-12)
    assert r["rmse"] == 0.0 and r["rmse_weighted"] == 0.0


def test_climatology_with_some_batches_only_is_refused():
    pred, truth, clim, _ = random_case()
    m = MetricAccumulator(3, CHANNELS, lat=LAT)
    m.update(torch.tensor(pred[:2]), torch.tensor(truth[:2]), torch.tensor(clim[:2]))
    with pytest.raises(ValueError, match="every batch"):
        m.update(torch.tensor(pred[2:]), torch.tensor(truth[2:]))


# OpenSTL paper convention ------------------------------------------------------------------------------

def test_paper_mse_mae_match_openstl_formula():
    pred, truth, _, (lo, hi) = random_case()
    r = accumulate(pred, truth, splits=[3], scale=(lo, hi))
    lo, hi = np.array(lo)[:, None, None], np.array(hi)[:, None, None]
    p01, t01 = (pred - lo) / (hi - lo), (truth - lo) / (hi - lo)
    # OpenSTL MSE/MAE, spatial_norm=False: np.mean(err, axis=(0, 1)).sum()
    assert r["mse_paper"] == pytest.approx(np.mean((p01 - t01) ** 2, axis=(0, 1)).sum(), rel=1e-12)
    assert r["mae_paper"] == pytest.approx(np.mean(np.abs(p01 - t01), axis=(0, 1)).sum(), rel=1e-12)
    for t in range(3):
        e = p01[:, t:t + 1] - t01[:, t:t + 1]
        assert r["by_lead"]["mse_paper"][t] == pytest.approx(np.mean(e**2, axis=(0, 1)).sum(), rel=1e-12)
    for c, name in enumerate(CHANNELS):  # OpenSTL with channel_names: the channel's slice
        e = p01[:, :, c:c + 1] - t01[:, :, c:c + 1]
        assert r["by_channel"][name]["mae_paper"] == pytest.approx(np.mean(np.abs(e), axis=(0, 1)).sum(), rel=1e-12)


def test_paper_mse_by_hand():
    """Range [0, 10] -> an error of 1 is 0.1 scaled; over a 2-channel 2x2 frame: 8 * 0.01 per frame."""
    truth = np.full((2, 1, 2, 2, 2), 5.0)
    r = accumulate(truth + 1.0, truth, scale=([0.0, 0.0], [10.0, 10.0]))
    assert r["mse_paper"] == pytest.approx(0.08)
    assert r["mae_paper"] == pytest.approx(0.8)
    assert r["by_channel"]["t850"]["mse_paper"] == pytest.approx(0.04)


# SSIM and PSNR ----------------------------------------------------------------------------------------

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


def test_ssim_matches_reference_and_hand_values():
    rng = np.random.default_rng(1)
    x, y = rng.random((9, 11)), rng.random((9, 11))
    y = 0.6 * x + 0.4 * y
    for dr in (1.0, 2.0):
        got = ssim(torch.tensor(x), torch.tensor(y), data_range=dr).item()
        assert got == pytest.approx(numpy_ssim(x, y, dr), rel=1e-10)
    # constant images: the structure term is C2/C2, SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    a, b, c1 = 0.5, 0.25, 0.01**2
    got = ssim(torch.full((7, 7), a, dtype=torch.float64), torch.full((7, 7), b, dtype=torch.float64))
    assert got.item() == pytest.approx((2 * a * b + c1) / (a**2 + b**2 + c1), rel=1e-12)
    assert ssim(torch.tensor(x), torch.tensor(x)).item() == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="smaller than"):
        ssim(torch.zeros(6, 8), torch.zeros(6, 8))


def test_psnr_by_hand():
    t = torch.zeros(2, 3, 4, 4, dtype=torch.float64)
    assert psnr(t + 0.1, t).tolist() == pytest.approx([20.0, 20.0])  # MSE 0.01 -> 20 dB
    assert psnr(t, t).tolist() == [math.inf, math.inf]


def test_accumulator_ssim_psnr_identical_inputs():
    _, truth, _, _ = random_case()
    inside = (truth.min((0, 1, 3, 4)), truth.max((0, 1, 3, 4)))  # the truth lies within the scale range
    r = accumulate(truth, truth, scale=inside, image_metrics=True)
    assert r["ssim"] == pytest.approx(1.0, abs=1e-12)
    assert r["psnr"] == math.inf
    assert r["by_channel"]["t850"]["psnr"] == math.inf
    assert r["mse_paper"] == 0.0
    # as in OpenSTL only the prediction is clipped to [0, 1]: a truth beyond the training range is not
    narrow = ([275.0, 275.0], [285.0, 285.0])
    r = accumulate(truth, truth, scale=narrow, image_metrics=True)
    assert r["ssim"] < 1.0 and r["psnr"] < math.inf and r["mse_paper"] == 0.0


def test_accumulator_ssim_psnr_follow_openstl():
    """Per frame on [0, 1]-scaled data, prediction clipped: SSIM = mean over channels (skimage multichannel),
    PSNR = -10 log10(MSE over the frame); both averaged over samples and frames."""
    pred, truth, _, (lo, hi) = random_case(n=3, leads=2)
    pred[0, 0, 0, :2] = 400.0  # beyond the training max: clipped to 1 for SSIM/PSNR
    r = accumulate(pred, truth, splits=[1], scale=(lo, hi), image_metrics=True)
    lo, hi = np.array(lo)[:, None, None], np.array(hi)[:, None, None]
    p01, t01 = np.clip((pred - lo) / (hi - lo), 0, 1), (truth - lo) / (hi - lo)
    frame_ssim = np.array([[np.mean([numpy_ssim(p01[b, f, c], t01[b, f, c], SSIM_DATA_RANGE) for c in range(2)])
                            for f in range(2)] for b in range(3)])
    frame_psnr = -10 * np.log10(((p01 - t01) ** 2).mean((2, 3, 4)))
    assert r["ssim"] == pytest.approx(frame_ssim.mean(), rel=1e-10)
    assert r["by_lead"]["ssim"] == pytest.approx(frame_ssim.mean(0).tolist(), rel=1e-10)
    assert r["psnr"] == pytest.approx(frame_psnr.mean(), rel=1e-12)
    assert r["by_lead"]["psnr"] == pytest.approx(frame_psnr.mean(0).tolist(), rel=1e-12)
    z = -10 * np.log10(((p01[:, :, 1] - t01[:, :, 1]) ** 2).mean((2, 3)))
    assert r["by_channel"]["z500"]["psnr"] == pytest.approx(z.mean(), rel=1e-12)
