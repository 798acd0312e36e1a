"""Every metric simcast reports, declared once: its name, label, unit rule, which way is better, what it needs, and
how its value follows from running sums. Tables, plots, scorecards and files derive from these declarations.

Sums are kept per (init time, lead time, channel, region); the channel axis has one more entry at the end, "all
channels". A metric's value is a function of sums pooled over any set of init times and leads, so that one pass
over the data gives scores by lead, overall, per region, per channel, per init time and under every bootstrap
resample (bootstrap.py).

Conventions (written into every output as CONVENTIONS):

- rmse, mae, bias: sqrt(mean squared error), mean absolute error, mean error (forecast - truth), each pooled over
  every scored (init time, lead time) pair and grid point of the region (and channel, for "all channels"): one
  square root of the pooled mean, which is WeatherBench2's RMSE (its mean over init times of the spatially
  averaged squared error, then the square root: every init time has the same number of points).
- rmse_weighted, mae_weighted, bias_weighted (lon/lat grids): the same with WeatherBench2's area weights
  (regions.py), normalized within the region.
- acc: WeatherBench2's anomaly correlation: per pair and channel the area-weighted, uncentered correlation over the
  region of forecast - climatology and truth - climatology, averaged over pairs (and channels). The climatology is
  by day of year and hour where the training split spans a year, else by hour of day (climatology.py).
- mse_paper, mae_paper (image data sets, e.g. TaxiBJ): OpenSTL's MSE/MAE (spatial_norm=False) as in the SimVP
  paper's tables: data scaled to [0, 1] by ONE min and max over all channels of the training split (DeepST's
  preprocessing, which OpenSTL's TaxiBJ uses), the raw model output (not clipped at the physical floor), the
  squared (absolute) error summed over a frame's channels and grid points, averaged over frames.
- ssim, psnr (image data sets): OpenSTL's, per frame on the [0, 1] data with the forecast clipped to [0, 1]:
  SSIM as skimage's structural_similarity (7x7 windows inside the image, data_range 2 as OpenSTL's call had it),
  PSNR = 10 log10(1 / MSE of the frame); whole grid only.
- masked_mae, masked_rmse, masked_mape (count data: traffic): LibCity's / BasicTS's masked metrics: true values at or
  below the threshold (default 0) are left out; per lead LibCity's "single" mode, overall its "average" mode over
  the whole horizon (every kept point pooled); MAPE as a fraction, not percent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F

SSIM_DATA_RANGE = 2.0  # what OpenSTL's skimage call used for [0, 1] float images

Needs = Literal["always", "area", "climatology", "paper", "image", "masked"]


@dataclass(frozen=True)
class Pooled:
    """Sums pooled over some init times and leads: sums[name] (..., C + 1, R); pairs (...), the scored pairs;
    cells / wcells (C + 1, R), the points (weights) of one pair; channels (C + 1,), channels per entry."""

    sums: dict[str, np.ndarray]
    pairs: np.ndarray
    cells: np.ndarray
    wcells: np.ndarray
    channels: np.ndarray

    def per_point(self, name: str, weighted: bool = False) -> np.ndarray:
        points = self.pairs[..., None, None] * (self.wcells if weighted else self.cells)
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.sums[name] / points

    def per_pair(self, name: str, per_channel: bool = False) -> np.ndarray:
        n = self.pairs[..., None, None] * (self.channels[:, None] if per_channel else 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.sums[name] / n

    def ratio(self, num: str, den: str) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.sums[num] / self.sums[den]


@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    in_units: bool                      # in the data's units (else unitless or on [0, 1] data)
    better: Literal["lower", "higher", "zero"]
    needs: Needs
    regional: bool                      # computed for every region (else for the whole grid only)
    value: Callable[[Pooled], np.ndarray]

    def goodness(self, v):
        """Larger is better: for ranking and scorecards."""
        v = np.asarray(v, dtype="float64")
        return {"lower": -v, "higher": v, "zero": -np.abs(v)}[self.better]


METRICS: dict[str, Metric] = {m.name: m for m in [
    Metric("rmse", "RMSE", True, "lower", "always", True, lambda p: np.sqrt(p.per_point("se"))),
    Metric("rmse_weighted", "RMSE (area-weighted)", True, "lower", "area", True,
           lambda p: np.sqrt(p.per_point("wse", weighted=True))),
    Metric("mae", "MAE", True, "lower", "always", True, lambda p: p.per_point("ae")),
    Metric("mae_weighted", "MAE (area-weighted)", True, "lower", "area", True,
           lambda p: p.per_point("wae", weighted=True)),
    Metric("bias", "bias", True, "zero", "always", True, lambda p: p.per_point("e")),
    Metric("bias_weighted", "bias (area-weighted)", True, "zero", "area", True,
           lambda p: p.per_point("we", weighted=True)),
    Metric("acc", "ACC", False, "higher", "climatology", True, lambda p: p.per_pair("acc", per_channel=True)),
    Metric("mse_paper", "MSE (paper)", False, "lower", "paper", True, lambda p: p.per_pair("se01")),
    Metric("mae_paper", "MAE (paper)", False, "lower", "paper", True, lambda p: p.per_pair("ae01")),
    Metric("ssim", "SSIM", False, "higher", "image", False, lambda p: p.per_pair("ssim", per_channel=True)),
    Metric("psnr", "PSNR", False, "higher", "image", False, lambda p: p.per_pair("psnr")),
    Metric("masked_mae", "masked MAE", True, "lower", "masked", True, lambda p: p.ratio("ae_m", "n_m")),
    Metric("masked_rmse", "masked RMSE", True, "lower", "masked", True, lambda p: np.sqrt(p.ratio("se_m", "n_m"))),
    Metric("masked_mape", "masked MAPE", False, "lower", "masked", True, lambda p: p.ratio("ape_m", "n_m")),
]}

SUMS: dict[Needs, tuple[str, ...]] = {
    "always": ("se", "ae", "e"), "area": ("wse", "wae", "we"), "climatology": ("acc",), "paper": ("se01", "ae01"),
    "image": ("ssim", "psnr"), "masked": ("se_m", "ae_m", "ape_m", "n_m"),
}

CONVENTIONS = {
    "rmse": "sqrt of the mean squared error pooled over every scored (init time, lead time) pair and grid point "
            "of the region (and channel); WeatherBench2's RMSE (mean over init times, then sqrt)",
    "mae": "mean absolute error, pooled as rmse", "bias": "mean of forecast - truth, pooled as rmse",
    "weighted": "WeatherBench2's area weights (cell area by latitude, normalized to mean 1) within the region",
    "acc": "WeatherBench2's ACC: per pair and channel the area-weighted uncentered correlation of the anomalies "
           "from the climatology over the region, averaged over pairs and channels",
    "paper": "OpenSTL's MSE/MAE (spatial_norm=False): one training min-max over all channels to [0, 1], the raw "
             "model output, squared (absolute) error summed over a frame's channels and points, averaged over frames",
    "image": "OpenSTL's SSIM (skimage, 7x7, data_range 2) and PSNR per frame on [0, 1] data, forecast clipped to "
             "[0, 1], averaged over frames; whole grid only",
    "masked": "LibCity's masked metrics: true values at or below the threshold left out; per lead its single mode, "
              "overall every kept point of the horizon pooled; MAPE as a fraction",
    "all_channels": "scores over all channels pool the channels (ACC, SSIM: the mean over channels)",
}


# ---- pure functions on tensors (used by the tally and by tests) ---------------------------------

def ssim(pred, truth, data_range=1.0, win_size=7) -> torch.Tensor:
    """Mean SSIM of each image over its last two dims, shape pred.shape[:-2] (skimage's defaults otherwise:
    uniform win_size x win_size windows that lie inside the image, sample covariance, K1=0.01, K2=0.03)."""
    H, W = pred.shape[-2:]
    if min(H, W) < win_size:
        raise ValueError(f"ssim: images {H}x{W} are smaller than the {win_size}x{win_size} window")
    x, y = pred.reshape(-1, 1, H, W), truth.reshape(-1, 1, H, W)

    def mean(z):
        return F.avg_pool2d(z, win_size, stride=1)  # valid windows only

    ux, uy = mean(x), mean(y)
    cov_norm = win_size**2 / (win_size**2 - 1)
    vx, vy = cov_norm * (mean(x * x) - ux**2), cov_norm * (mean(y * y) - uy**2)
    vxy = cov_norm * (mean(x * y) - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    return s.mean((-2, -1)).reshape(pred.shape[:-2])


def psnr_from_mse(mse, data_range=1.0):
    return 10 * torch.log10(data_range**2 / mse)  # mse == 0 gives inf, as in OpenSTL


def needed(lonlat: bool, climatology: bool, paper: bool, image: bool, masked: bool) -> list[str]:
    """The metric names that apply to a data set."""
    have = {"always": True, "area": lonlat, "climatology": climatology and lonlat, "paper": paper,
            "image": image, "masked": masked}
    return [name for name, m in METRICS.items() if have[m.needs]]
