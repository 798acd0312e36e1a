"""Reference forecasters on the same samples as the model: persistence, the same hours one day earlier,
and a climatology by time of day from the training period. All in physical units."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import xarray as xr

from ..timeaxis import ns
from ..windows import FrameCache, Windows

DAY = pd.Timedelta(days=1)


def time_of_day_slot(times: pd.DatetimeIndex, step: pd.Timedelta) -> np.ndarray:
    return ((ns(times) - ns(times.normalize())) // step.value).astype(np.int64)


def climatology(ds: xr.Dataset) -> np.ndarray:
    """Mean per time-of-day slot over the training period: (slots per day, C, H, W) float32.
    A slot the training period never saw falls back to the training mean of all slots."""
    step = pd.Timedelta(ds.attrs["time_step"])
    per_day = max(1, DAY // step)
    train = np.flatnonzero(ds["in_train"].values.astype(bool))
    data = ds["data"].isel(time=train)
    slot = xr.DataArray(time_of_day_slot(pd.DatetimeIndex(data["time"].values), step), dims="time", name="slot")
    means = data.groupby(slot).mean("time").compute()
    out = np.broadcast_to(data.mean("time").values, (per_day, *data.shape[1:])).astype("float32").copy()
    out[means["slot"].values] = means.values
    return out


class Baselines:
    """Baseline forecasts for samples of a Windows object, read from the whole store (the past only)."""

    def __init__(self, windows: Windows):
        self.w = windows
        ds = windows.ds
        self.step = windows.step
        self.times = windows.times
        self.frames = FrameCache(ds["data"], max_chunks=8)
        self.clim = torch.from_numpy(climatology(ds))
        self.slots = time_of_day_slot(self.times, self.step)
        leads = np.arange(1, windows.spec.output + 1)
        # the same hours on the last day that was observed at init time: 1 day back for leads up to a day
        self.days_back = np.ceil(leads * self.step / DAY).astype(np.int64)

    def _valid_ns(self, index) -> np.ndarray:
        """Valid times (B, T_out) in ns of the samples' target frames."""
        idx = self.w.frame_index(index)[:, self.w.spec.input:]
        return ns(self.times)[idx]

    def previous_day_index(self, index) -> np.ndarray:
        """Store indices (B, T_out) of the frames one (or more) days before each target; -1 where absent."""
        want = self._valid_ns(index) - self.days_back[None, :] * DAY.value
        t = ns(self.times)
        pos = np.clip(np.searchsorted(t, want), 0, len(t) - 1)
        return np.where(t[pos] == want, pos, -1)

    def eligible(self) -> np.ndarray:
        """Samples whose previous-day frames all exist: the common sample set for every forecaster."""
        if len(self.w) == 0:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero((self.previous_day_index(np.arange(len(self.w))) >= 0).all(axis=1))

    def persistence(self, x_phys_last: torch.Tensor) -> torch.Tensor:
        """The last input frame (B, C, H, W) held for every lead."""
        return x_phys_last[:, None].expand(-1, self.w.spec.output, -1, -1, -1)

    def previous_day(self, index) -> torch.Tensor:
        idx = self.previous_day_index(index)
        if (idx < 0).any():
            raise ValueError("previous-day frames missing for some samples; use eligible() samples")
        return torch.from_numpy(self.frames.take(idx))

    def climatology(self, index) -> torch.Tensor:
        idx = self.w.frame_index(index)[:, self.w.spec.input:]
        return self.clim[torch.from_numpy(self.slots[idx])]
