"""The climatology of the training split: the climatology baseline and the reference of the ACC's anomalies.

Where the training split spans a year or more it is WeatherBench2's kind: the mean by day of year and time of day,
smoothed along the day of year by a circular running mean of 61 days (sums and counts smoothed alike, so uneven
years weigh by their frames). Days of year count on a 366-day calendar (1 March is day 61 in every year), so a date
keeps its place in leap years. A shorter training split gives the mean by time of day. Only training frames are
read, chunk by chunk.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import xarray as xr
from scipy.ndimage import uniform_filter1d

from ..streaming import FrameReader
from ..timeaxis import ns

DAY = pd.Timedelta(days=1)
YEAR_DAYS = 366
SMOOTHING_DAYS = 61
READ_FRAMES = 512  # training frames read at a time


def time_of_day_slot(times: pd.DatetimeIndex, step: pd.Timedelta) -> np.ndarray:
    return ((ns(times) - ns(times.normalize())) // step.value).astype(np.int64)


def day_of_year(times: pd.DatetimeIndex) -> np.ndarray:
    """0-based day of year on a 366-day calendar: 29 February is 59, 1 March always 60."""
    doy = np.asarray(times.day_of_year, dtype=np.int64) - 1
    late_in_common_year = ~np.asarray(times.is_leap_year) & (doy >= 59)
    return doy + late_in_common_year


class Climatology:
    """Training-period means (physical units) looked up at any valid time, on `device`."""

    def __init__(self, ds: xr.Dataset, device="cpu"):
        self.step = pd.Timedelta(ds.attrs["time_step"])
        self.per_day = max(1, DAY // self.step)
        times = pd.DatetimeIndex(ds["time"].values)
        train = np.flatnonzero(ds["in_train"].values.astype(bool))
        span = times[train[-1]] - times[train[0]] if train.size else pd.Timedelta(0)
        self.seasonal = span >= pd.Timedelta(days=365)
        days = YEAR_DAYS if self.seasonal else 1
        shape = ds["data"].shape[1:]
        sums = np.zeros((days, self.per_day, *shape))
        counts = np.zeros((days, self.per_day))
        read = FrameReader(ds)
        for a in range(0, train.size, READ_FRAMES):
            idx = train[a:a + READ_FRAMES]
            frames = read(int(idx[0]), int(idx[-1]) + 1)[idx - idx[0]].astype("float64")
            t = times[idx]
            d = day_of_year(t) if self.seasonal else np.zeros(len(t), np.int64)
            s = time_of_day_slot(t, self.step) % self.per_day
            np.add.at(sums, (d, s), frames)
            np.add.at(counts, (d, s), 1)
        if self.seasonal:
            sums = uniform_filter1d(sums, SMOOTHING_DAYS, axis=0, mode="wrap") * SMOOTHING_DAYS
            counts = uniform_filter1d(counts, SMOOTHING_DAYS, axis=0, mode="wrap") * SMOOTHING_DAYS
        overall = sums.sum((0, 1)) / max(counts.sum(), 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            table = sums / counts[..., None, None, None]
        table[counts < 0.5] = overall  # a slot the training split never saw: the training mean
        self.table = torch.from_numpy(table.reshape(days * self.per_day, *shape).astype("float32")).to(device)
        self.description = (f"mean by day of year and time of day of the training split, smoothed over "
                            f"{SMOOTHING_DAYS} days" if self.seasonal else "mean by time of day of the training split")

    def index(self, valid_ns: np.ndarray) -> np.ndarray:
        t = pd.DatetimeIndex(np.asarray(valid_ns).reshape(-1))
        slot = time_of_day_slot(t, self.step) % self.per_day
        day = day_of_year(t) if self.seasonal else 0
        return (day * self.per_day + slot).reshape(np.shape(valid_ns))

    def at(self, valid_ns: np.ndarray) -> torch.Tensor:
        """(..., C, H, W) at valid times (...) in ns; only the slot numbers travel to the device."""
        idx = torch.from_numpy(self.index(valid_ns)).to(self.table.device)
        return self.table[idx]
