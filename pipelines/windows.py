"""Windows: (T_in frames in, T_out frames out) samples from one split of a store, normalized.

A window never spans a gap, a missing time or a split boundary. When the split fits in memory the whole
normalized array lives on the training device and batches are gathered there by index; otherwise frames stream
from Zarr (`pipelines.streaming`: blocks of whole chunks read ahead in background threads, a chunk-aware
shuffle). Both give identical samples; only the training order differs (`epoch_order`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch
import xarray as xr
from simvp.trainer import derive_seed, epoch_permutation

from .errors import InputError, UsageError
from .specs import WindowSpec
from .store import open_store, store_stats, weekly_rhythm
from .streaming import GROUP_BYTES, BatchStream, FrameCache, block_size, chunk_aware_order
from .timeaxis import ns

SPLITS = ("train", "validation", "test")
IN_MEMORY_LIMIT_BYTES = 4 * 2**30


def window_starts(times: pd.DatetimeIndex, step: pd.Timedelta, in_split: np.ndarray, spec: WindowSpec) -> np.ndarray:
    """Indices i such that frames i .. i+length-1 are consecutive steps, all inside the split.

    Starts are kept on a stride grid counted in time steps from the first time, so the same windows come
    out whatever the gaps.
    """
    n = spec.length
    if len(times) < n:
        return np.zeros(0, dtype=np.int64)
    t = ns(times)
    span_ok = (t[n - 1:] - t[: len(t) - n + 1]) == (n - 1) * step.value
    inside = np.convolve(in_split.astype(np.int64), np.ones(n, dtype=np.int64), mode="valid") == n
    on_stride = ((t[: len(t) - n + 1] - t[0]) // step.value) % spec.stride == 0
    return np.flatnonzero(span_ok & inside & on_stride).astype(np.int64)


def normalize(x, stats: dict, method: str):
    """Physical -> normalized units, per channel (axis -3 of (..., C, H, W))."""
    a, b = _affine(stats, method, like=x)
    return (x - a) / b


def denormalize(x, stats: dict, method: str):
    a, b = _affine(stats, method, like=x)
    return x * b + a


def _affine(stats: dict, method: str, like):
    if method == "zscore":
        a, b = np.asarray(stats["mean"]), np.asarray(stats["std"])
    elif method == "minmax":
        a, b = np.asarray(stats["min"]), np.asarray(stats["max"]) - np.asarray(stats["min"])
    else:
        raise ValueError(f"unknown normalization {method!r}")
    b = np.where(b > 0, b, 1.0)
    shape = (-1, 1, 1)
    if isinstance(like, torch.Tensor):
        return (torch.as_tensor(a, dtype=like.dtype, device=like.device).reshape(shape),
                torch.as_tensor(b, dtype=like.dtype, device=like.device).reshape(shape))
    return a.reshape(shape).astype(like.dtype), b.reshape(shape).astype(like.dtype)


def time_features(times: pd.DatetimeIndex, holiday: np.ndarray | None, weekly: bool) -> np.ndarray:
    """(T, F) cyclic hour-of-day encoding; day of week too for traffic (weekly rhythm), and the holiday flag
    when given. Weather gets the hour only: a day-of-week or day-of-year input lets a model memorize the
    few weeks of a short record instead of learning the diurnal cycle."""
    hour = (times.hour + times.minute / 60.0).to_numpy() / 24.0
    cols = [np.sin(2 * np.pi * hour), np.cos(2 * np.pi * hour)]
    if weekly:
        dow = times.day_of_week.to_numpy() / 7.0
        cols += [np.sin(2 * np.pi * dow), np.cos(2 * np.pi * dow)]
    if holiday is not None:
        cols.append(holiday.astype("float64"))
    return np.stack(cols, axis=1).astype("float32")


class Windows:
    """Samples of one split of a store, normalized; implements the trainer's WindowData protocol."""

    def __init__(self, store: str | Path | xr.Dataset, split: str, spec: WindowSpec | None = None,
                 device: str | torch.device = "cpu", in_memory: bool | None = None):
        if split not in SPLITS:
            raise UsageError("split", f"must be one of {', '.join(SPLITS)}, got {split!r}")
        self.ds = store if isinstance(store, xr.Dataset) else open_store(store)
        self.split = split
        self.spec = spec or WindowSpec.from_store(self.ds)
        self.device = torch.device(device)
        self.method = self.ds.attrs["normalization"]
        self.stats = store_stats(self.ds)
        self.times = pd.DatetimeIndex(self.ds["time"].values)
        self.step = pd.Timedelta(self.ds.attrs["time_step"])
        in_split = self.ds[f"in_{split}"].values.astype(bool)
        self.starts = window_starts(self.times, self.step, in_split, self.spec)
        self.channels = [str(c) for c in self.ds["channel"].values]
        holiday = self.ds["holiday"].values if "holiday" in self.ds else None
        self.weekly = weekly_rhythm(self.ds)
        self.features = time_features(self.times, holiday, self.weekly) if self.spec.time_features else None
        self.n_features = 0 if self.features is None else self.features.shape[1]

        # the frames this split's windows can touch: one contiguous range of time indices
        rows = np.flatnonzero(in_split)
        self.lo, self.hi = (int(rows[0]), int(rows[-1]) + 1) if rows.size else (0, 0)
        frame_bytes = 4 * int(np.prod(self.ds["data"].shape[1:]))
        self.in_memory = (self.hi - self.lo) * frame_bytes <= IN_MEMORY_LIMIT_BYTES if in_memory is None else in_memory
        if self.in_memory:
            frames = self.ds["data"][self.lo:self.hi].values.astype("float32")
            self._frames = torch.from_numpy(normalize(frames, self.stats, self.method)).to(self.device)
        else:
            self._cache = FrameCache(self.ds, transform=self._normalize)  # random access (`batch`)
            self._read = self._cache.read  # whole blocks (`batches`), through the same Zarr array
            # blocks of whole chunks from a chunk boundary at or before the split's first frame
            self.block = block_size(self._read.chunk, self.spec.length)
            self.origin = self.lo - self.lo % self._read.chunk
            self.group_blocks = max(1, GROUP_BYTES // (frame_bytes * (self.block + self.spec.length - 1)))
        self._starts = torch.from_numpy(self.starts - self.lo).to(self.device)
        self._offsets = torch.arange(self.spec.length, device=self.device)
        if self.features is not None:
            self._features = torch.from_numpy(self.features[self.lo:self.hi]).to(self.device)

    def __len__(self) -> int:
        return int(self.starts.size)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(T_in, C_in, H, W) of model inputs; C_in includes the time-feature channels."""
        return (self.spec.input, len(self.channels) + self.n_features, *self.ds["data"].shape[2:])

    def frame_index(self, index) -> np.ndarray:
        """Absolute time indices (B, T_in + T_out) of samples."""
        index = np.asarray(index.cpu() if isinstance(index, torch.Tensor) else index, dtype=np.int64)
        return self.starts[index][:, None] + np.arange(self.spec.length)[None, :]

    def frames(self, index) -> torch.Tensor:
        """Normalized frames (B, T_in + T_out, C, H, W) of samples, on the device."""
        if self.in_memory:
            return self._gather(self._on_device(index))
        raw = self._cache.take(self.frame_index(index))
        return torch.from_numpy(raw).to(self.device)

    def batch(self, index) -> tuple[torch.Tensor, torch.Tensor]:
        """(x (B, T_in, C_in, H, W), y (B, T_out, C, H, W)), normalized, on the device."""
        return self._assemble(self.frames(index), self._on_device(index))

    def epoch_order(self, seed: int, epoch: int) -> torch.Tensor:
        """The training shuffle of an epoch, a function of (seed, epoch): a uniform permutation in memory, a
        chunk-aware one when streaming (see `pipelines.streaming`)."""
        if self.in_memory:
            return epoch_permutation(len(self), seed, epoch)
        generator = torch.Generator().manual_seed(derive_seed(seed, "shuffle", epoch))
        return chunk_aware_order((self.starts - self.origin) // self.block, self.group_blocks, generator)

    def batches(self, index_batches: Sequence[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """`batch(i)` for each i of `index_batches`, assembled ahead of use: in memory, every index goes to
        the device in one copy (no synchronization per step); streaming, batches are read and gathered in
        background threads and copied to the device without blocking."""
        if not index_batches:
            return
        if self.in_memory:
            flat = self._on_device(torch.cat([torch.as_tensor(i) for i in index_batches]))
            for index in flat.split([len(i) for i in index_batches]):
                yield self._assemble(self._gather(index), index)
            return
        cuda = self.device.type == "cuda"
        stream = BatchStream(index_batches, self.starts - self.origin, self.block, self.spec.length,
                             self._load_block, max_loaded=2 * self.group_blocks, pin=cuda)
        for index, frames in stream:
            yield self._assemble(frames.to(self.device, non_blocking=True),
                                 self._on_device(index.pin_memory() if cuda else index))

    def _on_device(self, index) -> torch.Tensor:
        index = torch.as_tensor(index, dtype=torch.int64)
        return index.to(self.device, non_blocking=True)

    def _gather(self, index: torch.Tensor) -> torch.Tensor:
        """In-memory frames (B, T_in + T_out, C, H, W) of samples given on the device. On the CPU one contiguous
        copy per sample (several times faster than an indexed gather); elsewhere one gather kernel, with no
        synchronization."""
        if self.device.type != "cpu":
            return self._frames[self._split_rows(index)]
        length = self.spec.length
        out = torch.empty((len(index), length, *self._frames.shape[1:]), dtype=self._frames.dtype)
        for j, start in enumerate(self._starts[index].tolist()):
            out[j].copy_(self._frames[start:start + length])
        return out

    def _split_rows(self, index: torch.Tensor) -> torch.Tensor:
        """Rows (B, T_in + T_out), relative to the split's first frame, of samples given on the device."""
        return self._starts[index][:, None] + self._offsets

    def _assemble(self, frames: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = frames[:, : self.spec.input], frames[:, self.spec.input:]
        if self.features is not None:
            feat = self._features[self._split_rows(index)[:, : self.spec.input]]  # (B, T_in, F)
            feat = feat[..., None, None].expand(-1, -1, -1, *x.shape[-2:])
            x = torch.cat([x, feat], dim=2)
        return x, y

    def _normalize(self, frames: np.ndarray) -> np.ndarray:
        return normalize(frames, self.stats, self.method)

    def _load_block(self, b: int) -> torch.Tensor:
        """Normalized frames of block b: from its first window start to the end of its last window."""
        start = self.origin + b * self.block
        stop = min(start + self.block + self.spec.length - 1, self.hi)
        return torch.from_numpy(self._normalize(self._read(start, stop)))


def split_windows(store: str | Path | xr.Dataset, spec: WindowSpec | None = None, device="cpu",
                  in_memory: bool | None = None) -> dict[str, Windows]:
    ds = store if isinstance(store, xr.Dataset) else open_store(store)
    out = {s: Windows(ds, s, spec, device, in_memory) for s in SPLITS}
    if len(out["train"]) == 0:
        raise InputError(store if not isinstance(store, xr.Dataset) else ds.attrs.get("dataset", "store"),
                         f"the training split holds no complete window of {(spec or out['train'].spec).length} steps")
    return out
