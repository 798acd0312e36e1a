"""Running a trained model for scoring and forecasting: the horizon a request means, the time features of
future frames, and `model_predictor` (the model's own output up to its trained length, a rollout beyond it).
Both `pipelines.forecast` and `pipelines.scoring` use them."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
import xarray as xr

from .errors import UsageError
from .store import weekly_rhythm
from .timefmt import format_step
from .windows import WindowSpec, time_features

MAX_MODEL_CALLS = 100        # rollout steps of the model per forecast: beyond that skill is long gone


def horizon_steps(lead_hours: float | None, trained: WindowSpec, ds: xr.Dataset, option: str) -> int:
    """Lead steps for a horizon in hours (None: the trained output length); refused when the rollout would be
    absurdly long."""
    if lead_hours is None:
        return trained.output
    step = pd.Timedelta(ds.attrs["time_step"])
    steps = max(1, math.ceil(pd.Timedelta(hours=lead_hours) / step))
    calls = math.ceil(steps / trained.output)
    if calls > MAX_MODEL_CALLS:
        most = pd.Timedelta(step * trained.output * MAX_MODEL_CALLS)
        raise UsageError(option, f"{lead_hours:g} h is {steps} steps of {format_step(step)}, {calls} rollouts of "
                                 f"this {trained.output}-step model; at most {MAX_MODEL_CALLS} are supported "
                                 f"({most.total_seconds() / 3600:g} h)")
    return steps


class FeatureClock:
    """Time features of any time, computed as the windows compute them for the store's times."""

    def __init__(self, ds: xr.Dataset):
        self.weekly = weekly_rhythm(ds)
        self.holidays = None
        if "holiday" in ds:
            times = pd.DatetimeIndex(ds["time"].values)
            self.holidays = pd.DatetimeIndex(times[ds["holiday"].values.astype(bool)].normalize().unique())

    def __call__(self, times: pd.DatetimeIndex) -> np.ndarray:
        hol = None if self.holidays is None else np.asarray(times.normalize().isin(self.holidays))
        return time_features(times, hol, self.weekly)


def future_features(clock: FeatureClock, inits: pd.DatetimeIndex, step: pd.Timedelta, grid, device):
    """features(k0, k1) -> (B, k1 - k0, F, H, W): the true time features of lead steps k0..k1-1 of each init."""
    def features(k0: int, k1: int) -> torch.Tensor:
        ahead = pd.to_timedelta(np.arange(k0 + 1, k1 + 1) * step)
        f = np.stack([clock(pd.DatetimeIndex(t0 + ahead)) for t0 in inits])
        return torch.from_numpy(f).to(device)[..., None, None].expand(-1, -1, -1, *grid)
    return features


def autocast(device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def model_predictor(model, windows, steps: int, device: torch.device):
    """predict(x, sample index) for evaluation: the model's own output up to its trained length, a rollout as
    in a forecast beyond it (with the true time features of the future frames)."""
    clock = FeatureClock(windows.ds) if windows.spec.time_features else None

    @torch.no_grad()
    def predict(x: torch.Tensor, index) -> torch.Tensor:
        features = None
        if clock is not None:
            inits = windows.times[windows.frame_index(index)[:, windows.spec.input - 1]]
            features = future_features(clock, inits, windows.step, x.shape[-2:], device)
        with autocast(device):
            return model.rollout(x, steps, features=features)
    return predict


