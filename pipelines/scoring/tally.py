"""Running sums per (init time, lead time, channel (+ all channels when there are several), region) for each forecaster, computed batch by
batch on the batch's device (float64), kept on the host. Every metric of metrics.py follows from them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .metrics import METRICS, SSIM_DATA_RANGE, SUMS, Pooled, psnr_from_mse, ssim
from .regions import Regions


@dataclass(frozen=True)
class Forecast:
    """A forecaster's forecasts for a batch (B, L, C, H, W) in physical units; `raw`: the model's output before
    clipping at the physical floor (scored by the paper metrics, as OpenSTL scores it), when it differs."""

    values: torch.Tensor
    raw: torch.Tensor | None = None


class Tally:
    """Sums for `rows` init times x `leads` lead times. `metrics`: the names that apply (metrics.needed)."""

    def __init__(self, rows: int, leads: int, channels: list[str], regions: Regions, metrics: list[str],
                 paper_range: tuple[float, float] | None = None, mask_threshold: float | None = None):
        self.rows, self.leads, self.channels = int(rows), int(leads), list(channels)
        self.regions = regions
        self.metrics = list(metrics)
        self.needs = {"always"} | {METRICS[m].needs for m in self.metrics}
        if "paper" in self.needs and paper_range is None:
            raise ValueError("paper metrics need paper_range=(min, max) of the training split")
        if "masked" in self.needs and mask_threshold is None:
            raise ValueError("masked metrics need a mask_threshold")
        self.paper_range, self.mask_threshold = paper_range, mask_threshold
        self.names = [s for need in SUMS if need in self.needs for s in SUMS[need]]
        self.scored = np.zeros((self.rows, self.leads), bool)
        self.sums: dict[str, dict[str, np.ndarray]] = {}
        C, R = len(self.channels), len(regions.names)
        # the channel axis: the channels, then "all channels" (with one channel, that one is all)
        self.width = C + 1 if C > 1 else 1
        masks = regions.masks.reshape(R, -1).astype("float64")
        self._masks = masks
        self._wmasks = masks * regions.weights.reshape(1, -1)
        self.cells = self._per_channel(masks.sum(1))                    # (width, R)
        self.wcells = self._per_channel(self._wmasks.sum(1))
        self.channel_counts = np.array([1] * C + [C], dtype="float64")[: self.width]
        self._device_masks: dict[torch.device, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def _per_channel(self, per_region: np.ndarray) -> np.ndarray:
        C = len(self.channels)
        rows = [per_region] * C + ([C * per_region] if self.width > C else [])
        return np.stack(rows)

    # ---- accumulation -------------------------------------------------------------------------------

    def _on(self, device: torch.device):
        if device not in self._device_masks:
            w = torch.from_numpy(self.regions.weights).to(device, torch.float64)
            self._device_masks[device] = (torch.from_numpy(self._masks.T.copy()).to(device),
                                          torch.from_numpy(self._wmasks.T.copy()).to(device), w)
        return self._device_masks[device]

    def _with_all(self, x: torch.Tensor, whole: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L, C, ...) -> (B, L, width, ...): the channels, then their sum (or `whole`) when there are several."""
        if self.width == x.shape[2]:
            return x
        return torch.cat([x, x.sum(2, keepdim=True) if whole is None else whole], dim=2)

    def mark(self, rows: np.ndarray, scored: np.ndarray) -> None:
        """The pairs of these rows that are scored (the same for every forecaster)."""
        self.scored[rows] |= scored

    @torch.no_grad()
    def add(self, name: str, rows: np.ndarray, forecast: Forecast, truth: torch.Tensor, scored: np.ndarray,
            climatology: torch.Tensor | None = None) -> None:
        """Add a batch: rows (B,) of the init times, forecast and truth (B, L, C, H, W), scored (B, L)."""
        pred = forecast.values
        B, L, C, H, W = truth.shape
        if tuple(pred.shape) != (B, L, C, H, W) or L != self.leads or C != len(self.channels):
            raise ValueError(f"{name}: forecast {tuple(pred.shape)} and truth {tuple(truth.shape)} do not match "
                             f"{self.leads} leads x {len(self.channels)} channels")
        dev = truth.device
        M, WM, weights = self._on(dev)
        ok = torch.from_numpy(np.asarray(scored, bool)).to(dev)[:, :, None, None, None]
        zero = torch.zeros((), dtype=torch.float64, device=dev)
        t = torch.where(ok, truth.to(torch.float64), zero)
        p = torch.where(ok, pred.to(dev, torch.float64), zero)
        e = p - t

        def region_sum(x, mask=M):  # (B, L, C, H, W) -> (B, L, C, R)
            return x.reshape(B, L, C, H * W) @ mask

        out: dict[str, torch.Tensor] = {}
        out["se"], out["ae"], out["e"] = region_sum(e**2), region_sum(e.abs()), region_sum(e)
        if "area" in self.needs:
            out["wse"], out["wae"], out["we"] = region_sum(e**2, WM), region_sum(e.abs(), WM), region_sum(e, WM)
        if "climatology" in self.needs:
            if climatology is None:
                raise ValueError("acc needs the climatology of every batch")
            c = torch.where(ok, climatology.to(dev, torch.float64).expand_as(t), zero)
            fa, a = p - c, t - c
            num = region_sum(fa * a, WM)
            den = torch.sqrt(region_sum(fa**2, WM) * region_sum(a**2, WM))
            acc = num / den  # NaN where an anomaly is zero over the region (climatology itself)
            out["acc"] = torch.where(ok[..., 0].expand_as(acc), acc, zero)
        if "paper" in self.needs:
            lo, hi = self.paper_range
            raw = p if forecast.raw is None else torch.where(ok, forecast.raw.to(dev, torch.float64), zero)
            e01 = (raw - t) / (hi - lo)
            out["se01"], out["ae01"] = region_sum(e01**2), region_sum(e01.abs())
        if "masked" in self.needs:
            keep = (t > self.mask_threshold) & ok
            k = keep.to(torch.float64)
            safe = torch.where(keep, t.abs(), torch.ones((), dtype=torch.float64, device=dev))
            out["se_m"], out["ae_m"] = region_sum(e**2 * k), region_sum(e.abs() * k)
            out["ape_m"], out["n_m"] = region_sum(e.abs() / safe * k), region_sum(k)
        sums = {key: self._with_all(v) for key, v in out.items()}
        if "image" in self.needs:
            lo, hi = self.paper_range
            p01 = ((p - lo) / (hi - lo)).clamp(0, 1)
            t01 = (t - lo) / (hi - lo)
            R = len(self.regions.names)
            s = ssim(p01, t01, data_range=SSIM_DATA_RANGE)               # (B, L, C)
            mse_c = ((p01 - t01) ** 2).mean((3, 4))
            ps_c, ps_all = psnr_from_mse(mse_c), psnr_from_mse(mse_c.mean(2, keepdim=True))
            okc = ok[..., 0, 0]
            s, ps_c, ps_all = (torch.where(okc.expand_as(x), x, zero) for x in (s, ps_c, ps_all))
            nan = torch.full((B, L, self.width, R - 1), float("nan"), dtype=torch.float64, device=dev)
            sums["ssim"] = torch.cat([self._with_all(s)[..., None], nan], 3)
            sums["psnr"] = torch.cat([self._with_all(ps_c, ps_all)[..., None], nan], 3)
        # float32 per init time keeps two test years x 13 regions small; pooling adds them up in float64
        store = self.sums.setdefault(name, {k: np.zeros((self.rows, self.leads, self.width, len(self.regions.names)),
                                                        dtype="float32") for k in self.names})
        for key, v in sums.items():
            store[key][rows] += v.cpu().numpy().astype("float32")

    # ---- pooling ------------------------------------------------------------------------------------

    def pooled(self, name: str, rows=None, over_leads: bool = False) -> Pooled:
        """Sums of forecaster `name` pooled over `rows` (all by default; or a (K, rows) matrix of counts, one row
        per resample) and, with over_leads, over the leads. Shapes: (L | (), C + 1, R), a leading K for counts."""
        sums = self.sums[name]
        scored = self.scored.astype("float64")
        if rows is None:
            pooled = {k: v.sum(0, dtype="float64") for k, v in sums.items()}
            pairs = scored.sum(0)
        else:
            counts = np.asarray(rows, dtype="float64")
            pooled = {k: np.tensordot(counts, v.astype("float64"), axes=(1, 0)) for k, v in sums.items()}
            pairs = counts @ scored
        if over_leads:
            pooled = {k: v.sum(-3) for k, v in pooled.items()}
            pairs = pairs.sum(-1)
        return Pooled(pooled, pairs, self.cells, self.wcells, self.channel_counts)

    def per_row(self, name: str) -> Pooled:
        """Sums of each init time on its own: shapes (rows, L, C + 1, R)."""
        sums = {k: v.astype("float64") for k, v in self.sums[name].items()}
        return Pooled(sums, self.scored.astype("float64"), self.cells, self.wcells, self.channel_counts)

    def value(self, metric: str, pooled: Pooled) -> np.ndarray:
        m = METRICS[metric]
        v = m.value(pooled)
        if not m.regional:
            v = v.copy()
            v[..., 1:] = np.nan
        return v
