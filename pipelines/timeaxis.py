"""Time axis checks (order, duplicates, step, gaps) and the resolution of catalog splits into periods."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from data_catalog import DatasetEntry, Period

from .errors import InputError
from .timefmt import format_step, iso_minutes


def ns(times) -> np.ndarray:
    """Times as int64 nanoseconds, whatever the index's unit (pandas 3 may hold microseconds)."""
    return pd.DatetimeIndex(times).as_unit("ns").asi8


_fmt = iso_minutes


def check_file_times(path, times: pd.DatetimeIndex) -> None:
    """Within one file: times strictly increasing, none repeated."""
    if len(times) == 0:
        raise InputError(path, "holds no time steps")
    if times.hasnans:
        raise InputError(path, "has missing (NaT) time values")
    diffs = np.diff(ns(times))
    if (bad := np.flatnonzero(diffs == 0)).size:
        raise InputError(path, f"duplicate time {_fmt(times[bad[0] + 1])} ({bad.size} repeated in the file)")
    if (bad := np.flatnonzero(diffs < 0)).size:
        i = bad[0]
        raise InputError(path, f"times not in increasing order: {_fmt(times[i])} is followed by {_fmt(times[i + 1])}")


def order_files(file_times: list[tuple[str, pd.DatetimeIndex]]) -> list[tuple[str, pd.DatetimeIndex]]:
    """Sort per-file time axes by their first time; overlapping files are an error naming both."""
    ordered = sorted(file_times, key=lambda ft: ft[1][0])
    for (prev_path, prev), (path, times) in zip(ordered, ordered[1:]):
        if times[0] <= prev[-1]:
            dup = times[times.isin(prev)]
            what = f"time {_fmt(dup[0])} also in {prev_path}" if len(dup) else f"times overlap {prev_path}"
            raise InputError(path, f"duplicate times: {what} ({len(dup)} shared)")
    return ordered


def source_codes(counts: list[tuple[str, int]]) -> pd.Categorical:
    """The file of each time step, compactly: codes into the list of files, in time order."""
    codes = np.concatenate([np.full(n, i, dtype="int32") for i, (_, n) in enumerate(counts)])
    return pd.Categorical.from_codes(codes, categories=[p for p, _ in counts])


def data_step(times: pd.DatetimeIndex) -> pd.Timedelta | None:
    """The most common spacing of a time axis (None for a single time)."""
    if len(times) < 2:
        return None
    values, counts = np.unique(np.diff(ns(times)), return_counts=True)
    return pd.Timedelta(int(values[np.argmax(counts)]), "ns")


def on_step_grid(times: pd.DatetimeIndex, step: pd.Timedelta) -> np.ndarray:
    """Mask of times that fall on the step grid anchored at midnight 1970-01-01 (00, 06, 12, 18 for 6 h)."""
    return (ns(times) % step.value) == 0


@dataclass(frozen=True)
class Gap:
    first_missing: pd.Timestamp
    last_missing: pd.Timestamp
    count: int
    after_source: str  # the file whose data resumes after the gap

    def as_pair(self) -> list[str]:
        return [_fmt(self.first_missing), _fmt(self.last_missing)]


def find_gaps(times: pd.DatetimeIndex, sources: np.ndarray, step: pd.Timedelta) -> list[Gap]:
    """Gaps in a sorted, unique time axis; a spacing that is not a whole number of steps is an error."""
    diffs = np.diff(ns(times))
    if (bad := np.flatnonzero(diffs % step.value)).size:
        i = bad[0]
        raise InputError(
            sources[i + 1],
            f"time {_fmt(times[i + 1])} is off the {format_step(step)} grid (previous time {_fmt(times[i])})",
        )
    gaps = []
    for i in np.flatnonzero(diffs > step.value):
        n = int(diffs[i] // step.value) - 1
        gaps.append(Gap(times[i] + step, times[i + 1] - step, n, str(sources[i + 1])))
    return gaps


def missing_ranges(times: pd.DatetimeIndex, step: pd.Timedelta) -> list[Gap]:
    return find_gaps(times, np.array(["?"] * len(times)), step)


def _period_bounds(p: Period, step: pd.Timedelta) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Half-open [start, end) of an absolute period; a date end includes that whole day."""
    start = pd.Timestamp(p.start)
    end = pd.Timestamp(p.end)
    if isinstance(p.end, dt.datetime):
        end = end + step
    else:
        end = end + pd.Timedelta(days=1)
    return start, end


def resolve_splits(entry: DatasetEntry, times: pd.DatetimeIndex) -> dict[str, tuple[pd.Timestamp, pd.Timestamp]]:
    """Concrete half-open periods for train/validation/test, resolved test first, then validation, then train."""
    step = entry.step
    cursor = times[-1] + step
    out: dict[str, tuple[pd.Timestamp, pd.Timestamp]] = {}
    for name in ("test", "validation", "train"):
        p: Period = getattr(entry.splits, name)
        if p.rest:
            out[name] = (times[0], cursor)
        elif p.last is not None:
            out[name] = (cursor - pd.Timedelta(p.last), cursor)
        else:
            out[name] = _period_bounds(p, step)
        cursor = min(cursor, out[name][0])
    order = sorted(out.items(), key=lambda kv: kv[1][0])
    for (a, (_, a_end)), (b, (b_start, _)) in zip(order, order[1:]):
        if b_start < a_end:
            raise InputError(entry.name, f"splits {a} and {b} overlap ({_fmt(b_start)} < {_fmt(a_end)})")
    return {k: out[k] for k in ("train", "validation", "test")}


def split_mask(times: pd.DatetimeIndex, period: tuple[pd.Timestamp, pd.Timestamp]) -> np.ndarray:
    return np.asarray((times >= period[0]) & (times < period[1]))
