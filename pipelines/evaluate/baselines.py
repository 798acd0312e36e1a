"""Reference forecasters on the same samples as the model: persistence, the same hours one day earlier,
and a climatology by time of day from the training period. All in physical units.

`Baselines` serves the windows of a split (evaluation); `BaselinesAt` the same three for forecasts from given
init times, e.g. those of a forecast archive (verification). Both look frames up the same way
(`previous_day_index`, `climatology`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import xarray as xr

from ..timeaxis import ns
from ..streaming import FrameCache
from ..windows import Windows

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


def days_back(lead_steps, step: pd.Timedelta) -> np.ndarray:
    """Days to go back from each lead's valid time to the same hours on the last day observed at init time:
    1 for leads up to a day, 2 up to two days, ..."""
    return np.ceil(np.asarray(lead_steps) * step / DAY).astype(np.int64)


def previous_day_index(times: pd.DatetimeIndex, valid_ns: np.ndarray, back: np.ndarray) -> np.ndarray:
    """Store indices (B, L) of the frames `back` (L,) days before valid times (B, L) in ns; -1 where absent."""
    return index_of(times, valid_ns - back[None, :] * DAY.value)


def index_of(times: pd.DatetimeIndex, want_ns: np.ndarray) -> np.ndarray:
    """Store indices of times given in ns (any shape); -1 where the store has no such time."""
    t = ns(times)
    if len(t) == 0:
        return np.full(np.shape(want_ns), -1, dtype=np.int64)
    pos = np.clip(np.searchsorted(t, want_ns), 0, len(t) - 1)
    return np.where(t[pos] == want_ns, pos, -1)


class Baselines:
    """Baseline forecasts for samples of a Windows object, read from the whole store (the past only)."""

    def __init__(self, windows: Windows):
        self.w = windows
        ds = windows.ds
        self.step = windows.step
        self.times = windows.times
        self.frames = FrameCache(ds, max_chunks=8)
        self.device = windows.device
        self.clim = torch.from_numpy(climatology(ds)).to(self.device)  # small: one frame per time-of-day slot
        self.slots = time_of_day_slot(self.times, self.step)
        # the same hours on the last day that was observed at init time: 1 day back for leads up to a day
        self.days_back = days_back(np.arange(1, windows.spec.output + 1), self.step)

    def _valid_ns(self, index) -> np.ndarray:
        """Valid times (B, T_out) in ns of the samples' target frames."""
        idx = self.w.frame_index(index)[:, self.w.spec.input:]
        return ns(self.times)[idx]

    def previous_day_index(self, index) -> np.ndarray:
        """Store indices (B, T_out) of the frames one (or more) days before each target; -1 where absent."""
        return previous_day_index(self.times, self._valid_ns(index), self.days_back)

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
        return _to_device(torch.from_numpy(self.frames.take(idx)), self.device)

    def climatology(self, index) -> torch.Tensor:
        """Built on the device: only the slot numbers travel."""
        idx = self.w.frame_index(index)[:, self.w.spec.input:]
        return self.clim[_to_device(torch.from_numpy(self.slots[idx]), self.device)]


def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host tensor to the device without blocking the host (through pinned memory on CUDA)."""
    if device.type == "cuda":
        t = t.pin_memory()
    return t.to(device, non_blocking=True)


class BaselinesAt:
    """The same baselines for forecasts from given init times (B,) at given lead steps (L,), from a store:
    persistence is the store's frame at init time, previous day the frame `days_back` days before each valid
    time, climatology the training-period mean of the valid time's time of day. Frames are read through a
    small chunk cache; physical units."""

    def __init__(self, ds: xr.Dataset, lead_steps):
        self.ds = ds
        self.step = pd.Timedelta(ds.attrs["time_step"])
        self.times = pd.DatetimeIndex(ds["time"].values)
        self.lead_ns = np.asarray(lead_steps, dtype=np.int64) * self.step.value
        self.days_back = days_back(lead_steps, self.step)
        self.frames = FrameCache(ds, max_chunks=8)
        self._clim = None

    def valid_ns(self, init_ns: np.ndarray) -> np.ndarray:
        return np.asarray(init_ns, dtype=np.int64)[:, None] + self.lead_ns[None, :]

    def truth_index(self, init_ns: np.ndarray) -> np.ndarray:
        """Store indices (B, L) of the valid times; -1 where the store has no frame (not yet, or missing)."""
        return index_of(self.times, self.valid_ns(init_ns))

    def init_index(self, init_ns: np.ndarray) -> np.ndarray:
        return index_of(self.times, np.asarray(init_ns, dtype=np.int64))

    def previous_day_index(self, init_ns: np.ndarray) -> np.ndarray:
        return previous_day_index(self.times, self.valid_ns(init_ns), self.days_back)

    def take(self, idx: np.ndarray) -> np.ndarray:
        """Frames at store indices (any shape; -1 gives a frame of NaN)."""
        out = self.frames.take(np.where(idx < 0, 0, idx))
        out[idx < 0] = np.nan
        return out

    def persistence(self, init_idx: np.ndarray) -> np.ndarray:
        """The frame at each init time held for every lead: (B, L, C, H, W)."""
        frames = self.take(np.asarray(init_idx))
        return np.broadcast_to(frames[:, None], (len(frames), len(self.lead_ns), *frames.shape[1:]))

    def previous_day(self, prev_idx: np.ndarray) -> np.ndarray:
        return self.take(prev_idx)

    def climatology(self, init_ns: np.ndarray) -> np.ndarray:
        """(B, L, C, H, W): the training mean of each valid time's time-of-day slot."""
        if self._clim is None:
            self._clim = climatology(self.ds)
        valid = pd.DatetimeIndex(self.valid_ns(init_ns).reshape(-1))
        slots = time_of_day_slot(valid, self.step) % len(self._clim)
        return self._clim[slots].reshape(*self.valid_ns(init_ns).shape, *self._clim.shape[1:])
