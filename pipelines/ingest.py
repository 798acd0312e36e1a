"""Ingest: raw files -> validated, canonical, compressed Zarr store with training-period statistics.

Two lazy passes over the data, both streamed by dask in bounded memory: one computes per-frame moments
(NaN counts and statistics), the other writes the store. Everything is checked before anything is written.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import xarray as xr
from zarr.codecs import BloscCodec

import data_catalog
from data_catalog import DatasetEntry

from . import __version__, cf
from .errors import InputError
from .readers import read_source
from .readers.taxibj import read_holidays
from .sources import describe_files, entry_files, fingerprint
from .stats import combine_moments, frame_moments
from .store import STORE_FORMAT, read_attrs, recover_interrupted, write_atomic
from .timeaxis import data_step, find_gaps, missing_ranges, on_step_grid, resolve_splits, split_mask

CHUNK_BYTES = 2 * 2**20  # uncompressed bytes per chunk: small enough for cheap random window reads


@dataclass
class IngestResult:
    store: Path
    skipped: bool
    summary: dict = field(default_factory=dict)


def time_chunk(frame_bytes: int, window_length: int, n_times: int) -> int:
    """Frames per chunk: about CHUNK_BYTES, never fewer than a window, so a window touches at most two chunks."""
    return max(1, min(n_times, max(window_length, CHUNK_BYTES // max(frame_bytes, 1))))


@contextlib.contextmanager
def _dask_scheduler(address: str | None, progress: bool):
    if address:
        from distributed import Client

        from .readers.weatherbench import limit_netcdf_cache

        with Client(address) as client:
            client.run(limit_netcdf_cache)
            yield client
    elif progress:
        from dask.diagnostics import ProgressBar

        with ProgressBar(minimum=1.0, dt=0.5):
            yield None
    else:
        yield None


def _resample_to_step(ds: xr.Dataset, entry: DatasetEntry) -> xr.Dataset:
    times = pd.DatetimeIndex(ds["time"].values)
    step = data_step(times)
    if step is None or step == entry.step:
        return ds
    files = ds.attrs["source_files"]
    if step > entry.step or entry.step % step:
        raise InputError(files[0], f"time step of the files is {step}; catalog entry {entry.name!r} expects "
                                   f"{entry.step} (a whole multiple of the files' step can be subsampled)")
    return ds.isel(time=on_step_grid(times, entry.step))


def _check_grid(ds: xr.Dataset, entry: DatasetEntry) -> None:
    shape = tuple(ds["data"].shape[2:])
    if entry.grid is not None and shape != tuple(entry.grid):
        raise InputError(ds.attrs["source_files"][0], f"grid is {shape[0]}x{shape[1]}; catalog entry "
                                                      f"{entry.name!r} expects {entry.grid[0]}x{entry.grid[1]}")


def _nan_times(moments: xr.Dataset, ds: xr.Dataset, entry: DatasetEntry) -> np.ndarray:
    """Mask of times with any NaN; an error when the entry does not allow gaps."""
    n_space = int(np.prod(ds["data"].shape[2:]))
    nan_count = n_space - moments["count"].values  # (time, channel)
    bad = nan_count.sum(axis=1) > 0
    if bad.any() and entry.gaps == "error":
        t_idx = np.flatnonzero(bad)
        c_idx = int(np.flatnonzero(nan_count[t_idx[0]])[0])
        src = ds.attrs["source_files"][int(ds["source"].values[t_idx[0]])]
        first, last = (pd.Timestamp(ds["time"].values[i]).isoformat(timespec="minutes") for i in (t_idx[0], t_idx[-1]))
        raise InputError(src, f"{int(nan_count.sum())} NaN values in {str(ds['channel'].values[c_idx])!r} at "
                              f"{t_idx.size} times ({first} .. {last}); set gaps: record to skip them")
    return bad


def _drop_incomplete_days(times: pd.DatetimeIndex, keep: np.ndarray, step: pd.Timedelta) -> np.ndarray:
    """DeepST's policy: a day missing any slot is dropped whole."""
    per_day = pd.Timedelta(days=1) // step
    days = times.normalize()
    counts = pd.Series(keep.astype(int), index=days).groupby(level=0).sum()
    complete = counts[counts == per_day].index
    return keep & np.asarray(days.isin(complete))


def _provenance(described: list[dict]) -> dict:
    return {
        "source_files": described,
        "catalog": str(data_catalog.loader.catalog_path()),
        "simcast_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _build(ds: xr.Dataset, entry: DatasetEntry, keep: np.ndarray, splits: dict, stats: xr.Dataset,
           attrs: dict) -> xr.Dataset:
    out = ds.isel(time=keep).drop_vars("source")
    out.attrs = {}
    times = pd.DatetimeIndex(out["time"].values)
    for name in ("mean", "std", "min", "max"):
        out[f"stat_{name}"] = stats[name].astype("float64")
        out[f"stat_{name}"].attrs = {"long_name": f"training-period {name} per channel"}
    out["stat_count"] = stats["count"]
    if entry.holidays:
        holidays = read_holidays(data_catalog.source_root(entry) / entry.holidays)
        out["holiday"] = ("time", np.asarray(times.normalize().isin(list(holidays)), dtype="int8"))
        out["holiday"].attrs = {"long_name": "1 on public holidays", "source": entry.holidays}
    for name, (start, end) in splits.items():
        out[f"in_{name}"] = ("time", split_mask(times, (start, end)).astype("int8"))
    out["time"].attrs = dict(cf.TIME)
    if "lat" in out.coords:
        out["lat"].attrs = dict(cf.LAT)
        out["lon"].attrs = dict(cf.LON)
    if out.sizes["channel"] == 1:
        out["data"].attrs = {k: str(out[k].values[0]) for k in ("units", "standard_name", "long_name")
                             if str(out[k].values[0])}
    out.attrs = attrs
    return out


def ingest(name: str | DatasetEntry, source: str | None = None, store: str | Path | None = None,
           dask_address: str | None = None, progress: bool = True, force: bool = False) -> IngestResult:
    """Build (or confirm current) the Zarr store of a catalog entry. Returns the store path and a summary."""
    entry = name if isinstance(name, DatasetEntry) else data_catalog.get_entry(name)
    target = Path(store) if store is not None else data_catalog.store_path(entry)
    files_by_var = entry_files(entry, source)
    files = sorted({f for fs in files_by_var.values() for f in fs})
    extra = [data_catalog.source_root(entry) / entry.holidays] if entry.holidays else []
    for f in extra:
        if not f.is_file():
            raise InputError(f, "holiday file named in the catalog does not exist")
    described = describe_files(files + extra)
    fp = fingerprint(entry, described, STORE_FORMAT)

    recover_interrupted(target)
    existing = read_attrs(target)
    if existing is not None and existing.get("fingerprint") == fp and not force:
        return IngestResult(target, skipped=True, summary=json.loads(existing["summary"]))

    with read_source(entry, files_by_var) as raw:
        return _ingest(entry, raw, files, described, fp, target, dask_address, progress)


def _ingest(entry, ds, files, described, fp, target, dask_address, progress) -> IngestResult:
    ds = _resample_to_step(ds, entry)
    _check_grid(ds, entry)
    times = pd.DatetimeIndex(ds["time"].values)
    sources = pd.Categorical.from_codes(ds["source"].values, ds.attrs["source_files"])
    gaps = find_gaps(times, sources, entry.step)
    if gaps and entry.gaps == "error":
        g = gaps[0]
        raise InputError(g.after_source, f"gap in time: {g.count} missing {entry.time_step} steps "
                                         f"{g.as_pair()[0]} .. {g.as_pair()[1]} ({len(gaps)} gaps in all; "
                                         f"set gaps: record to allow)")

    with _dask_scheduler(dask_address, progress):
        if progress:
            print(f"checking {len(files)} files, {len(times)} time steps")
        (moments,) = dask.compute(frame_moments(ds["data"]))
        keep = ~_nan_times(moments, ds, entry)
        if entry.kind == "taxibj" and entry.incomplete_days == "drop":
            keep = _drop_incomplete_days(times, keep, entry.step)
        kept = times[keep]
        if len(kept) == 0:
            raise InputError(files[0], "no valid time steps left after removing gaps and NaNs")
        splits = resolve_splits(entry, kept)
        train = split_mask(kept, splits["train"])
        if not train.any():
            s, e = (t.isoformat(timespec="minutes") for t in splits["train"])
            raise InputError(files[0], f"no data in the training period {s} .. {e} (files cover "
                                       f"{kept[0].isoformat(timespec='minutes')} .. {kept[-1].isoformat(timespec='minutes')})")
        stats = combine_moments(moments.isel(time=np.flatnonzero(keep)[train]))
        missing = missing_ranges(kept, entry.step)

        summary = _summary(entry, ds, kept, splits, missing, stats, target)
        attrs = {
            "simcast_format": STORE_FORMAT,
            "Conventions": "CF-1.8",
            "title": f"simcast store for {entry.name}",
            "dataset": entry.name,
            "kind": entry.kind,
            "time_step": entry.time_step,
            "normalization": entry.normalization,
            "splits": json.dumps({k: [a.isoformat(), b.isoformat()] for k, (a, b) in splits.items()}),
            "window": json.dumps(entry.window.model_dump()),
            "missing_times": json.dumps([g.as_pair() for g in missing]),
            "missing_count": int(sum(g.count for g in missing)),
            "extent": json.dumps(entry.extent.model_dump(mode="json") if entry.extent else None),
            "catalog_entry": json.dumps(entry.model_dump(mode="json")),
            "provenance": json.dumps(_provenance(described)),
            "fingerprint": fp,
            "summary": json.dumps(summary),
        }
        out = _build(ds, entry, keep, splits, stats, attrs)
        frame_bytes = 4 * int(np.prod(out["data"].shape[1:]))
        tc = time_chunk(frame_bytes, entry.window.length, out.sizes["time"])
        out = out.chunk({d: (tc if d == "time" else -1) for d in out.dims})
        for name in ("channel", "variable", "units", "standard_name", "long_name"):
            # variable-length strings: Zarr v3 has a spec for them, not for fixed-width numpy unicode
            out[name] = (out[name].dims, np.asarray(out[name].values, dtype=object), out[name].attrs)
        out["data"].encoding = {"chunks": (tc, *out["data"].shape[1:]),
                                "compressors": (BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle"),)}
        if progress:
            print(f"writing {target} ({out.sizes['time']} steps, {tc} per chunk)")
        write_atomic(target, lambda tmp: out.to_zarr(tmp, mode="w-", zarr_format=3, consolidated=False))
    return IngestResult(target, skipped=False, summary=summary)


def _summary(entry, ds, kept, splits, missing, stats, target) -> dict:
    def iso(t):
        return pd.Timestamp(t).isoformat(timespec="minutes")

    counts = {k: int(split_mask(kept, v).sum()) for k, v in splits.items()}
    return {
        "dataset": entry.name,
        "store": str(target),
        "time_steps": int(len(kept)),
        "start": iso(kept[0]),
        "end": iso(kept[-1]),
        "time_step": entry.time_step,
        "channels": [str(c) for c in ds["channel"].values],
        "grid": [int(n) for n in ds["data"].shape[2:]],
        "dims": list(ds["data"].dims),
        "missing_steps": int(sum(g.count for g in missing)),
        "gaps": len(missing),
        "split_steps": counts,
        "splits": {k: [iso(a), iso(b)] for k, (a, b) in splits.items()},
        "stats": {str(c): {k: float(stats[k].sel(channel=c)) for k in ("mean", "std", "min", "max")}
                  for c in ds["channel"].values},
        "units": {str(c): str(u) for c, u in zip(ds["channel"].values, ds["units"].values)},
    }
