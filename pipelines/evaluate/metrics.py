"""Forecast metrics, streamed batch by batch: torch only, on CPU or CUDA tensors, sums kept in float64.

Batches are (B, T_out, C, H, W) in physical units. Conventions:

- RMSE = sqrt(mean of squared errors pooled over all samples and grid points (and channels at the top
  level)): one square root of the pooled mean, not the mean of per-sample RMSEs. (The WeatherBench 1
  paper's formula averages per-time RMSEs; its score.py, with the default mean_dims, pools as here.)
  Per lead: the same at that lead; per channel: the same for that channel.
  MAE = mean absolute error, pooled the same way.
- Weighted RMSE/MAE (lon/lat grids), as WeatherBench's compute_weighted_rmse/mae: the squared (absolute)
  error times w = cos(lat) / mean(cos(lat)) over the given latitudes, averaged; w acts along H (dim -2).
- ACC: per sample, lead and channel the lat-weighted, uncentered correlation over the grid of the anomalies
  pred - clim and truth - clim, then averaged over samples (and leads, channels for the aggregates).
  This is WeatherBench 2's ACC; WeatherBench 1's compute_weighted_acc instead subtracts the overall mean
  anomaly (centered) and pools all times into one correlation.
- Paper convention (OpenSTL's MSE/MAE with spatial_norm=False, the published TaxiBJ table): data min-max
  scaled to [0, 1] by the training (min, max) of each channel; the squared (absolute) error is summed over
  (C, H, W) of each frame and averaged over samples and frames. In by_channel the sum is over that
  channel's (H, W), as OpenSTL does per channel name.
- SSIM and PSNR as in OpenSTL's metric(): on the [0, 1]-scaled data with the prediction clipped to [0, 1]
  (truth not clipped), one value per frame, averaged over samples and frames.
  PSNR = 10 log10(1 / MSE) with the MSE over the frame's (C, H, W) (over (H, W) in by_channel); an exact
  frame gives inf, as in OpenSTL, so the average is inf as soon as one frame is exact.
  SSIM = skimage's structural_similarity as OpenSTL calls it (multichannel, all defaults): mean over
  channels of the mean over all 7x7 windows lying inside the image (uniform weights, sample covariance
  N-1, K1=0.01, K2=0.03) with data_range=2: skimage < 0.20 took the range of a float image from its dtype,
  [-1, 1], and OpenSTL passes none. Deliberate differences: computed in float64 (skimage used float32 for
  float32 input); the textbook data_range=1 is available as ssim(..., data_range=1.0).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SSIM_DATA_RANGE = 2.0  # what OpenSTL's skimage call used for [0, 1] float images (see above)
CONVENTION = ("RMSE = sqrt(mean squared error over all samples, grid points (and channels)), not the mean "
              "of per-sample RMSEs; MAE likewise; per lead the same at that lead; weighted versions use "
              "cos(lat) weights normalized to mean 1; ACC = lat-weighted uncentered anomaly correlation per "
              "sample and lead, averaged over samples; *_paper = error of [0,1]-scaled data summed over "
              "(C,H,W) per frame, averaged over frames (OpenSTL); ssim/psnr per frame on [0,1] data, averaged")


def latitude_weights(lat_degrees) -> torch.Tensor:
    """cos(lat) normalized to mean 1 over the given latitudes, shape (H,), float64."""
    lat = torch.as_tensor(lat_degrees, dtype=torch.float64)
    if lat.ndim != 1 or lat.numel() == 0:
        raise ValueError(f"latitudes: expected a non-empty 1-D array of degrees, got shape {tuple(lat.shape)}")
    w = torch.cos(torch.deg2rad(lat))
    return w / w.mean()


def _along_lat(weights, ref):
    """(H,) weights as (H, 1), on ref's device and dtype, to broadcast along dim -2."""
    return torch.as_tensor(weights).to(ref.device, ref.dtype).reshape(-1, 1)


def rmse(pred, truth, weights=None) -> torch.Tensor:
    """sqrt(mean((pred - truth)^2 * w)) over all elements; weights (H,) with mean 1 act along dim -2."""
    e2 = (pred - truth) ** 2
    return (e2 if weights is None else e2 * _along_lat(weights, e2)).mean().sqrt()


def mae(pred, truth, weights=None) -> torch.Tensor:
    """mean(|pred - truth| * w) over all elements; weights as in rmse."""
    e = (pred - truth).abs()
    return (e if weights is None else e * _along_lat(weights, e)).mean()


def acc(pred, truth, clim, weights=None) -> torch.Tensor:
    """Uncentered, weighted anomaly correlation over the grid (dims -2, -1): shape pred.shape[:-2]."""
    fa, a = pred - clim, truth - clim  # nan where an anomaly is zero over the whole grid
    w = torch.ones((), dtype=fa.dtype, device=fa.device) if weights is None else _along_lat(weights, fa)
    num = (w * fa * a).sum((-2, -1))
    return num / torch.sqrt((w * fa**2).sum((-2, -1)) * (w * a**2).sum((-2, -1)))


def psnr(pred, truth, data_range=1.0, dims=(-3, -2, -1)) -> torch.Tensor:
    """10 log10(data_range^2 / MSE) with the MSE over dims (a frame's C, H, W by default); inf if exact."""
    return _psnr_from_mse(((pred - truth) ** 2).mean(dims), data_range)


def _psnr_from_mse(mse, data_range=1.0):
    return 10 * torch.log10(data_range**2 / mse)  # mse == 0 gives inf


def ssim(pred, truth, data_range=1.0, win_size=7) -> torch.Tensor:
    """Mean SSIM of each image over its last two dims, shape pred.shape[:-2] (skimage's defaults otherwise:
    uniform win_size x win_size windows that lie inside the image, sample covariance, K1=0.01, K2=0.03)."""
    H, W = pred.shape[-2:]
    if min(H, W) < win_size:
        raise ValueError(f"ssim: images {H}x{W} are smaller than the {win_size}x{win_size} window")
    x, y = pred.reshape(-1, 1, H, W), truth.reshape(-1, 1, H, W)
    mean = lambda z: F.avg_pool2d(z, win_size, stride=1)  # noqa: E731 -- valid windows only
    ux, uy = mean(x), mean(y)
    cov_norm = win_size**2 / (win_size**2 - 1)
    vx, vy = cov_norm * (mean(x * x) - ux**2), cov_norm * (mean(y * y) - uy**2)
    vxy = cov_norm * (mean(x * y) - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    return s.mean((-2, -1)).reshape(pred.shape[:-2])


class MetricAccumulator:
    """Streams batches of forecasts and truths, shape (B, T_out, C, H, W), in physical units.

    lat: latitudes (H,) in degrees of a lon/lat grid: adds rmse_weighted, mae_weighted and, when update()
    gets a climatology, acc. scale: per-channel (min, max) of the training period: adds mse_paper and
    mae_paper, and with image_metrics=True also ssim and psnr. Only per-(lead, channel) sums are kept.
    """

    def __init__(self, leads: int, channels: list[str], lat=None, scale=None, image_metrics: bool = False,
                 device=None):
        if int(leads) < 1 or not channels:
            raise ValueError(f"MetricAccumulator: need leads >= 1 and at least one channel, got {leads}, {channels}")
        self.leads, self.channels = int(leads), [str(c) for c in channels]
        self.weights = None if lat is None else latitude_weights(lat)
        self.scale = None
        if scale is not None:
            lo, hi = (torch.as_tensor(s, dtype=torch.float64).reshape(-1) for s in scale)
            if lo.numel() != len(self.channels) or hi.numel() != len(self.channels) or not bool((hi > lo).all()):
                raise ValueError(f"scale: expected (min, max) with {len(self.channels)} values each and "
                                 f"max > min, got {scale}")
            self.scale = (lo.reshape(-1, 1, 1), (hi - lo).reshape(-1, 1, 1))
        if image_metrics and scale is None:
            raise ValueError("image_metrics: SSIM and PSNR need scale=(min, max) to put the data in [0, 1]")
        self.image_metrics = bool(image_metrics)
        self.device = None if device is None else torch.device(device)
        self.n, self.grid, self.with_clim, self.sums = 0, None, None, None

    def _start(self, device, grid):
        self.device = self.device or device
        self.grid = grid
        if self.weights is not None:
            self.weights = self.weights.to(self.device)
        if self.scale is not None:
            self.scale = tuple(s.to(self.device) for s in self.scale)
        names = ["se", "ae"]
        if self.weights is not None:
            names += ["wse", "wae", "acc"] if self.with_clim else ["wse", "wae"]
        if self.scale is not None:
            names += ["se01", "ae01", "ssim", "psnr_c", "psnr"] if self.image_metrics else ["se01", "ae01"]
        shape = (self.leads, len(self.channels))
        self.sums = {k: torch.zeros(shape[:1] if k == "psnr" else shape, dtype=torch.float64, device=self.device)
                     for k in names}

    def _tensor(self, x, what):
        x = torch.as_tensor(x).to(self.device, torch.float64)
        T, C = self.leads, len(self.channels)
        if x.ndim != 5 or x.shape[1] != T or x.shape[2] != C:
            raise ValueError(f"{what}: expected shape (B, {T}, {C}, H, W), got {tuple(x.shape)}")
        return x

    @torch.no_grad()
    def update(self, pred, truth, climatology=None) -> None:
        if self.sums is None:
            self.device = self.device or torch.as_tensor(pred).device
        pred, truth = self._tensor(pred, "pred"), self._tensor(truth, "truth")
        if pred.shape != truth.shape:
            raise ValueError(f"pred {tuple(pred.shape)} and truth {tuple(truth.shape)} differ in shape")
        if climatology is not None and self.weights is None:
            raise ValueError("climatology given but no lat: ACC is computed only on lon/lat grids")
        if self.weights is not None and self.weights.numel() != pred.shape[-2]:
            raise ValueError(f"lat has {self.weights.numel()} values but the grid has H={pred.shape[-2]}")
        if self.image_metrics and min(pred.shape[-2:]) < 7:
            raise ValueError(f"image_metrics: SSIM needs a grid of at least 7x7, got {tuple(pred.shape[-2:])}")
        if self.sums is None:
            self.with_clim = climatology is not None
            self._start(pred.device, tuple(pred.shape[-2:]))
        if tuple(pred.shape[-2:]) != self.grid:
            raise ValueError(f"grid {tuple(pred.shape[-2:])} differs from the first batch's {self.grid}")
        if self.weights is not None and self.with_clim != (climatology is not None):
            raise ValueError("climatology must be given with every batch or with none (ACC averages all samples)")

        s, err = self.sums, pred - truth
        grid_sum = lambda x: x.sum((0, 3, 4))  # noqa: E731 -- (B, T, C, H, W) -> (T, C)
        s["se"] += grid_sum(err**2)
        s["ae"] += grid_sum(err.abs())
        if self.weights is not None:
            w = self.weights.reshape(-1, 1)
            s["wse"] += grid_sum(err**2 * w)
            s["wae"] += grid_sum(err.abs() * w)
            if self.with_clim:
                clim = torch.as_tensor(climatology).to(pred.device, torch.float64).expand_as(truth)
                s["acc"] += acc(pred, truth, clim, self.weights).sum(0)
        if self.scale is not None:
            lo, span = self.scale
            p01, t01 = (pred - lo) / span, (truth - lo) / span
            s["se01"] += grid_sum((p01 - t01) ** 2)
            s["ae01"] += grid_sum((p01 - t01).abs())
            if self.image_metrics:
                p01 = p01.clamp(0, 1)
                s["ssim"] += ssim(p01, t01, data_range=SSIM_DATA_RANGE).sum(0)
                mse_c = ((p01 - t01) ** 2).mean((3, 4))  # (B, T, C)
                s["psnr_c"] += _psnr_from_mse(mse_c).sum(0)
                s["psnr"] += _psnr_from_mse(mse_c.mean(2)).sum(0)
        self.n += pred.shape[0]

    def _values(self, t, c) -> dict:
        """Metrics over leads t and channels c (lists of indices)."""
        s, n, hw = self.sums, self.n, self.grid[0] * self.grid[1]
        part = lambda k: s[k][t][:, c].sum().item()  # noqa: E731
        cells, frames = n * len(t) * len(c) * hw, n * len(t)
        out = {"rmse": math.sqrt(part("se") / cells), "mae": part("ae") / cells}
        if "wse" in s:
            out |= {"rmse_weighted": math.sqrt(part("wse") / cells), "mae_weighted": part("wae") / cells}
        if "acc" in s:
            out["acc"] = part("acc") / (frames * len(c))
        if "se01" in s:
            out |= {"mse_paper": part("se01") / frames, "mae_paper": part("ae01") / frames}
        if "ssim" in s:
            out["ssim"] = part("ssim") / (frames * len(c))
            whole = len(c) == len(self.channels)  # PSNR of whole frames, else of the one channel's images
            out["psnr"] = (s["psnr"][t].sum().item() if whole else part("psnr_c")) / frames
        return out

    def result(self) -> dict:
        if self.n == 0:
            raise ValueError("MetricAccumulator.result(): no batches were given to update()")
        leads, chans = list(range(self.leads)), list(range(len(self.channels)))

        def summary(c):
            per_lead = [self._values([t], c) for t in leads]
            return {**self._values(leads, c), "by_lead": {k: [v[k] for v in per_lead] for k in per_lead[0]}}

        out = summary(chans)
        out["by_channel"] = {name: summary([i]) for i, name in enumerate(self.channels)}
        return {**out, "samples": self.n, "convention": CONVENTION}


def json_safe(obj):
    """Scores as JSON allows them: undefined ones (NaN, e.g. climatology's ACC, 0/0) become null, inf a string."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    return obj
