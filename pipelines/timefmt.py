"""Times, steps and lead times: one parser for what users type, one set of formatters for what they read."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .errors import UsageError


# ---- formatting ---------------------------------------------------------------------------------------

def format_step(step) -> str:
    """A time step or duration the way the catalog writes it: 1h, 30min, 6h, 1h30min, 2D."""
    td = pd.Timedelta(step)
    minutes, seconds = divmod(int(td.total_seconds()), 60)
    if seconds or minutes == 0:
        return f"{int(td.total_seconds())}s"
    hours, minutes = divmod(minutes, 60)
    if hours and hours % 24 == 0 and not minutes and hours > 48:
        return f"{hours // 24}D"
    return (f"{hours}h" if hours else "") + (f"{minutes}min" if minutes else "")


def format_lead(lead) -> str:
    """A lead time for people: +6 h, +30 min, +1 h 30 min."""
    minutes = int(pd.Timedelta(lead).total_seconds() // 60)
    h, m = divmod(minutes, 60)
    if h and m:
        return f"+{h} h {m} min"
    return f"+{h} h" if h else f"+{m} min"


def lead_label(lead) -> str:
    """A lead time in file names: 06h, 00h30m."""
    minutes = int(pd.Timedelta(lead).total_seconds() // 60)
    h, m = divmod(minutes, 60)
    return f"{h:02d}h" if m == 0 else f"{h:02d}h{m:02d}m"


def format_time(t, zone: str | None = None) -> str:
    """2019-03-25 00:00, with the time zone's name when known (UTC for reanalysis)."""
    text = pd.Timestamp(t).strftime("%Y-%m-%d %H:%M")
    return f"{text} {zone}" if zone else text


def iso_minutes(t) -> str:
    return pd.Timestamp(t).isoformat(timespec="minutes")


# ---- parsing ------------------------------------------------------------------------------------------

def parse_hours(value, option: str, *, positive: bool = True) -> float:
    """A number of hours: finite (and > 0 unless positive=False)."""
    try:
        hours = float(value)
    except (TypeError, ValueError):
        raise UsageError(option, f"{value!r} is not a number of hours") from None
    if not math.isfinite(hours) or (positive and hours <= 0):
        raise UsageError(option, f"must be a {'positive, ' if positive else ''}finite number of hours, got {value!r}")
    return hours


def parse_lead(value, option: str) -> pd.Timedelta:
    """A lead time: a bare number is hours (6, 0.5), a string with a unit passes to pandas (6h, 30min, 1D)."""
    if isinstance(value, (pd.Timedelta, np.timedelta64)):
        td = pd.Timedelta(value)
    elif isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        td = pd.Timedelta(hours=parse_hours(value, option))
    else:
        text = str(value).strip()
        try:
            td = pd.Timedelta(hours=float(text)) if _is_number(text) else pd.Timedelta(text)
        except (ValueError, OverflowError):
            raise UsageError(option, f"{value!r} is not a lead time (use hours, e.g. 6 or 0.5, or 6h, 30min)") from None
    if pd.isna(td) or td <= pd.Timedelta(0):
        raise UsageError(option, f"lead time {value!r} must be positive")
    return td


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def parse_time(value, option: str) -> pd.Timestamp:
    """A time as ISO 8601 (2019-03-25T00:00); words like 'yesterday' are refused, not guessed."""
    text = str(value).strip()
    try:
        t = pd.Timestamp(text) if text and text[0].isdigit() else None
    except (ValueError, OverflowError):
        t = None
    if t is None or pd.isna(t):
        raise UsageError(option, f"{value!r} is not a time (use ISO 8601, e.g. 2019-03-25T00:00)")
    return t.tz_convert(None) if t.tzinfo is not None else t


def parse_step(value, option: str) -> pd.Timedelta:
    try:
        td = pd.Timedelta(str(value).strip())
    except (ValueError, OverflowError):
        raise UsageError(option, f"{value!r} is not a time step (use e.g. 1h, 6h, 30min)") from None
    if pd.isna(td) or td <= pd.Timedelta(0):
        raise UsageError(option, f"time step {value!r} must be positive")
    return td
