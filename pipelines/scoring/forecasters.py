"""The forecasters the scoring loop scores side by side. Each yields forecasts at (init time, lead time) for a batch
and says, cheaply (coordinates only), at which pairs it has one; the loop scores every forecaster on the pairs all
of them have.

Reference forecasts, all read from the store (the past only, as seen at init time), in physical units:

- persistence: the frame at init time, held for every lead;
- previous_day: the same hours on the last day observed at init time (one day back for leads up to a day, two up
  to two days, ...);
- climatology: the training split's climatology at the valid time (climatology.py);
- fitted: previous_day + a_k * (x(init) - x(init - 1 day)), a per-lead (and channel) least-squares fit of how much
  of today's departure from yesterday lasts to lead k, on the training split only (the strongest simple forecast
  of a short record; `FITTED_INITS` evenly spread training init times).

And the forecasts under test: the model (its own output up to its trained length, rolled out beyond), an external
forecast in WeatherBench2's layout (external.py), and the forecasts of an archive (verification).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
import torch
import xarray as xr

from ..streaming import FrameCache
from ..timeaxis import ns
from .climatology import Climatology
from .tally import Forecast

DAY = pd.Timedelta(days=1)
FITTED_INITS = 2000
BASELINES = ("persistence", "previous_day", "climatology", "fitted")
LABELS = {"model": "model", "persistence": "persistence", "previous_day": "previous day",
          "climatology": "climatology", "fitted": "fitted linear"}


@dataclass
class Batch:
    """What a forecaster sees of a batch of init times."""

    rows: np.ndarray              # (B,) positions in the scored init times
    init_ns: np.ndarray           # (B,)
    valid_ns: np.ndarray          # (B, L)
    scored: np.ndarray            # (B, L) pairs scored
    inputs: torch.Tensor | None = None   # evaluation: the windows' normalized inputs
    samples: np.ndarray | None = None    # evaluation: their sample indices
    extra: dict = field(default_factory=dict)


def days_back(lead_steps, step: pd.Timedelta) -> np.ndarray:
    """Days from each lead's valid time back to the same hours on the last day observed at init time."""
    return np.ceil(np.asarray(lead_steps) * step / DAY).astype(np.int64)


def index_of(times: pd.DatetimeIndex, want_ns: np.ndarray) -> np.ndarray:
    """Store indices of times given in ns (any shape); -1 where the store has no such time."""
    t = ns(times)
    want = np.asarray(want_ns, dtype=np.int64)
    if len(t) == 0:
        return np.full(want.shape, -1, dtype=np.int64)
    pos = np.clip(np.searchsorted(t, want), 0, len(t) - 1)
    return np.where(t[pos] == want, pos, -1)


def to_device(a: np.ndarray, device: torch.device) -> torch.Tensor:
    """A host array to the device without blocking the host (through pinned memory on CUDA)."""
    t = torch.from_numpy(np.ascontiguousarray(a))
    if device.type == "cuda":
        t = t.pin_memory()
    return t.to(device, non_blocking=True)


class StoreFrames:
    """A store's frames by time, through a small chunk cache; -1 gives a frame of zeros (never scored)."""

    def __init__(self, ds: xr.Dataset, lead_steps, device):
        self.ds, self.device = ds, torch.device(device)
        self.times = pd.DatetimeIndex(ds["time"].values)
        self.step = pd.Timedelta(ds.attrs["time_step"])
        self.lead_steps = np.asarray(lead_steps, dtype=np.int64)
        self.lead_ns = self.lead_steps * self.step.value
        self.back = days_back(self.lead_steps, self.step)
        self.cache = FrameCache(ds, max_chunks=8)

    def index(self, want_ns) -> np.ndarray:
        return index_of(self.times, want_ns)

    def take(self, idx: np.ndarray) -> torch.Tensor:
        out = self.cache.take(np.where(idx < 0, 0, idx))
        out[idx < 0] = 0
        return to_device(out, self.device)

    def valid_ns(self, init_ns) -> np.ndarray:
        return np.asarray(init_ns, dtype=np.int64)[:, None] + self.lead_ns[None, :]

    def previous_day_ns(self, valid_ns) -> np.ndarray:
        return valid_ns - self.back[None, :] * DAY.value


class Persistence:
    name = "persistence"

    def __init__(self, frames: StoreFrames):
        self.frames = frames

    def available(self, init_ns, valid_ns) -> np.ndarray:
        have = self.frames.index(init_ns) >= 0
        return np.repeat(have[:, None], valid_ns.shape[1], axis=1)

    def __call__(self, batch: Batch) -> Forecast:
        x = self.frames.take(self.frames.index(batch.init_ns))
        return Forecast(x[:, None].expand(-1, batch.valid_ns.shape[1], -1, -1, -1))


class PreviousDay:
    name = "previous_day"

    def __init__(self, frames: StoreFrames):
        self.frames = frames

    def available(self, init_ns, valid_ns) -> np.ndarray:
        return self.frames.index(self.frames.previous_day_ns(valid_ns)) >= 0

    def __call__(self, batch: Batch) -> Forecast:
        return Forecast(self.frames.take(self.frames.index(self.frames.previous_day_ns(batch.valid_ns))))


class ClimatologyForecast:
    name = "climatology"

    def __init__(self, climatology: Climatology):
        self.climatology = climatology

    def available(self, init_ns, valid_ns) -> np.ndarray:
        return np.ones(valid_ns.shape, bool)

    def __call__(self, batch: Batch) -> Forecast:
        return Forecast(self.climatology.at(batch.valid_ns))


class Fitted:
    """previous_day + a[k, c] * (x(init) - x(init - 1 day)); `a` fitted on the training split (module docstring)."""

    name = "fitted"

    def __init__(self, frames: StoreFrames, weights: np.ndarray):
        self.frames = frames
        self.coefficients = self._fit(weights)

    def _pieces(self, init_ns):
        f = self.frames
        valid = f.valid_ns(init_ns)
        return (f.index(init_ns), f.index(np.asarray(init_ns) - DAY.value), f.index(f.previous_day_ns(valid)),
                f.index(valid))

    def _fit(self, weights: np.ndarray) -> np.ndarray:
        ds, f = self.frames.ds, self.frames
        in_train = ds["in_train"].values.astype(bool)
        train_ns = ns(f.times[in_train])
        now, yesterday, anchor, truth = self._pieces(train_ns)
        inside = lambda idx: (idx >= 0) & in_train[np.where(idx < 0, 0, idx)]  # noqa: E731
        ok = inside(now) & inside(yesterday) & inside(anchor).all(1) & inside(truth).all(1)
        rows = np.flatnonzero(ok)
        C, L = ds.sizes["channel"], len(f.lead_steps)
        if rows.size == 0:
            return np.zeros((L, C))
        rows = rows[np.unique(np.linspace(0, rows.size - 1, min(FITTED_INITS, rows.size)).round().astype(int))]
        num, den = np.zeros((L, C)), np.zeros(C)
        w = weights[None, None]  # (1, 1, H, W)
        for b in range(0, rows.size, 64):
            r = rows[b:b + 64]
            x0 = f.cache.take(now[r]).astype("float64")
            d = x0 - f.cache.take(yesterday[r])                       # (B, C, H, W)
            resid = f.cache.take(truth[r]) - f.cache.take(anchor[r])  # (B, L, C, H, W)
            num += (resid * d[:, None] * w[:, None]).sum((0, 3, 4))
            den += (d**2 * w).sum((0, 2, 3))
        with np.errstate(invalid="ignore", divide="ignore"):
            a = np.where(den > 0, num / den, 0.0)
        return a

    def available(self, init_ns, valid_ns) -> np.ndarray:
        f = self.frames
        have = (f.index(init_ns) >= 0) & (f.index(np.asarray(init_ns) - DAY.value) >= 0)
        return have[:, None] & (f.index(f.previous_day_ns(valid_ns)) >= 0)

    def __call__(self, batch: Batch) -> Forecast:
        f = self.frames
        now, yesterday = f.take(f.index(batch.init_ns)), f.take(f.index(batch.init_ns - DAY.value))
        anchor = f.take(f.index(f.previous_day_ns(batch.valid_ns)))
        a = torch.from_numpy(self.coefficients).to(anchor.device, anchor.dtype)[None, :, :, None, None]
        return Forecast(anchor + a * (now - yesterday)[:, None])


class ModelForecast:
    """The model on the windows' inputs: `predict(x, samples)` -> physical forecasts (B, L, C, H, W) before
    clipping; `floor`: the physical floor the delivered forecast is clipped at (as a written forecast is)."""

    name = "model"

    def __init__(self, predict: Callable[[torch.Tensor, np.ndarray], torch.Tensor], floor: float | None):
        self.predict, self.floor = predict, floor

    def available(self, init_ns, valid_ns) -> np.ndarray:
        return np.ones(valid_ns.shape, bool)

    def __call__(self, batch: Batch) -> Forecast:
        raw = self.predict(batch.inputs, batch.samples)
        return Forecast(raw if self.floor is None else raw.clamp_min(self.floor), raw)


class ExternalForecast:
    """A forecast in WeatherBench2's layout (external.External) at the batch's init times."""

    def __init__(self, external, device):
        self.external, self.name, self.device = external, external.name, torch.device(device)

    def available(self, init_ns, valid_ns) -> np.ndarray:
        return np.repeat(self.external.covers(init_ns)[:, None], valid_ns.shape[1], axis=1)

    def __call__(self, batch: Batch) -> Forecast:
        return Forecast(to_device(self.external.take(batch.init_ns), self.device))


class ArchivedForecast:
    """The archived forecasts (verification): `read(rows)` -> (B, L, C, H, W) of the batch's archive rows."""

    name = "model"

    def __init__(self, read: Callable[[np.ndarray], np.ndarray], made: np.ndarray, device):
        self.read, self.made, self.device = read, made, torch.device(device)

    def available(self, init_ns, valid_ns) -> np.ndarray:
        return self.made

    def __call__(self, batch: Batch) -> Forecast:
        values = np.nan_to_num(self.read(batch.extra["archive_rows"]), nan=0.0)
        return Forecast(to_device(values.astype("float32"), self.device))


def reference_forecasters(frames: StoreFrames, climatology: Climatology, weights: np.ndarray) -> list:
    """The four reference forecasters of a store."""
    return [Persistence(frames), PreviousDay(frames), ClimatologyForecast(climatology), Fitted(frames, weights)]
