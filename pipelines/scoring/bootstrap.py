"""Confidence intervals by a block bootstrap over init times, from the tally's per-init-time sums.

Consecutive init times are strongly correlated, so they are resampled in blocks: the scored init times, in time
order, are cut into blocks spanning `BLOCK` (a day by default: at least one init time), and each of `RESAMPLES`
resamples draws as many blocks as there are, with replacement. A resample's score is computed from the sums of the
blocks it drew (the sums are added up per block once, so the cost does not grow with the number of init times).
Every forecaster is resampled with the same draws, so a difference between two forecasters gets a paired interval.
Intervals are the 2.5 and 97.5 percentiles (95%); a difference is significant where its interval excludes zero.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

BLOCK = pd.Timedelta(days=1)
RESAMPLES = 1000
LEVEL = 0.95
SEED = 0


def blocks(init_ns: np.ndarray, block: pd.Timedelta = BLOCK) -> np.ndarray:
    """Block number of each init time (in the given order, which must be sorted): a new block starts once the
    current one spans `block`."""
    init_ns = np.asarray(init_ns, dtype=np.int64)
    out = np.zeros(init_ns.size, dtype=np.int64)
    start, k = None, -1
    for i, t in enumerate(init_ns):
        if start is None or t - start >= block.value:
            start, k = t, k + 1
        out[i] = k
    return out


def block_counts(block_of_row: np.ndarray, resamples: int = RESAMPLES, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """(membership (blocks, rows) 0/1, resampled block counts (resamples, blocks)): pooling a resample is
    counts @ (membership @ sums), the per-block sums computed once."""
    n_blocks = int(block_of_row.max()) + 1 if block_of_row.size else 0
    member = np.zeros((n_blocks, block_of_row.size))
    member[block_of_row, np.arange(block_of_row.size)] = 1
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, max(n_blocks, 1), size=(resamples, n_blocks))
    counts = np.stack([np.bincount(d, minlength=n_blocks) for d in draws]).astype("float64")
    return member, counts


def interval(samples: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over the first axis, ignoring resamples where the value is undefined."""
    lo, hi = (1 - level) / 2 * 100, (1 + level) / 2 * 100
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices (an undefined score) stay NaN
        return np.nanpercentile(samples, lo, axis=0), np.nanpercentile(samples, hi, axis=0)
