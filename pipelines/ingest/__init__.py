"""Ingest: raw files -> validated, canonical, checksummed Zarr store with training-period statistics.

    result = pipelines.ingest.run(IngestSpec.from_catalog("era5-uk-t2m"))

One lazy pass over the data, streamed by dask in bounded memory: the store is written beside its target while
per-frame moments (counts of NaN and infinite values, statistics, value ranges) are computed from the same reads.
Everything is checked before the new store is swapped in (atomically); nothing existing is touched before then.
Only when the checks leave times out (`gaps: record`, incomplete days) is the data read a second time.

When a store exists and its sources only grew (new files after its last time, or a longer last file), the new
times are appended instead (`append.py`: checked the same way, built beside the store from hard links to its
chunks, swapped in the same way); otherwise, or with --force, the store is rebuilt, and the summary says why.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import xarray as xr
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec

from data_catalog import DatasetEntry

from .. import __version__, cf
from ..errors import InputError, OutputError
from ..outputs import claim, ensure_writable, recover_interrupted, write_atomic
from ..specs import IngestSpec
from ..store import STORE_FORMAT, read_attrs
from ..timefmt import format_step, iso_minutes
from ..timeaxis import data_step, find_gaps, missing_ranges, on_step_grid, resolve_splits, split_mask
from .readers import reader_for
from .readers.taxibj import read_holidays
from .sources import Sources, find_sources
from .stats import combine_moments, frame_moments

CHUNK_BYTES = 2 * 2**20  # uncompressed bytes per chunk: small enough for cheap random window reads
# lz4 with bit shuffling: encodes 6x and decodes 2-3x as fast as zstd level 5 (ingest and streamed training reads),
# for 8% more bytes on the ERA5 sample (ratio 2.60 vs 2.83); count data compress less well (NYBike 4.3 vs 7.0)
COMPRESSORS = (BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle"), Crc32cCodec())


@dataclass
class IngestResult:
    store: Path
    skipped: bool
    summary: dict = field(default_factory=dict)
    appended: bool = False  # the new times were appended to the existing store (summary["appended_steps"])


def time_chunk(frame_bytes: int, window_length: int, n_times: int) -> int:
    """Frames per chunk: about CHUNK_BYTES, never fewer than a window, so a window touches at most two chunks."""
    return max(1, min(n_times, max(window_length, CHUNK_BYTES // max(frame_bytes, 1))))


def run(spec: IngestSpec, progress: bool = True) -> IngestResult:
    """Build (or confirm current) the store of a catalog entry. Returns the store path and a summary."""
    target = spec.store
    claim(target, "store")
    existing = read_attrs(target)
    if existing is not None and existing.get("dataset") != spec.dataset:
        raise OutputError(target, f"holds data set {existing.get('dataset')!r}, not {spec.dataset!r}; simcast "
                                  "does not replace one data set's store with another's: choose another --store")
    ensure_writable(target.parent)
    sources = find_sources(spec.entry, spec.source_root, spec.source, STORE_FORMAT)
    recover_interrupted(target)
    existing = read_attrs(target)
    checked = source_check(sources)
    if existing is not None and existing.get("fingerprint") == sources.fingerprint and not spec.force:
        return IngestResult(target, skipped=True, summary={**json.loads(existing["summary"]), **checked})
    reader = reader_for(spec.entry)
    rebuilt = None
    if existing is not None:
        from .append import try_append

        appended = "--force was given" if spec.force else try_append(spec, sources, existing, reader, progress)
        if isinstance(appended, IngestResult):
            appended.summary.update(checked)
            return appended
        rebuilt = appended
        if progress:
            print(f"rebuilding the whole store: {rebuilt}")
    with reader.read(spec.entry, sources.by_variable) as raw:
        result = _ingest(spec, raw, sources, reader.properties(spec.entry), progress)
    if rebuilt is not None:
        result.summary["rebuilt"] = rebuilt  # why the existing store was not appended to (this run only)
    result.summary.update(checked)
    return result


def source_check(sources) -> dict:
    """What this run compared to tell changed sources from unchanged ones, in one line (the summary's
    "source_check", this run only)."""
    if sources.described and "chunks_checked" in sources.described[0]:
        return {"source_check": f"consolidated metadata and {sources.described[0]['chunks_checked']}"}
    if sources.described and "metadata_sha256" in sources.described[0]:
        return {"source_check": "consolidated metadata only"}
    return {"source_check": f"{len(sources.described)} files by size and modification time (contents not read; "
                            "--force rebuilds)"}


@contextlib.contextmanager
def _cluster(address: str | None):
    if not address:
        yield
        return
    from distributed import Client

    from .readers.weatherbench import limit_netcdf_cache

    with Client(address) as client:
        client.run(limit_netcdf_cache)
        yield


def _computing(progress: bool, address: str | None):
    """A dask progress bar around a computation (not around cheap metadata reads, which it would slow)."""
    if progress and not address:
        from dask.diagnostics import ProgressBar

        return ProgressBar(minimum=1.0, dt=0.5)
    return contextlib.nullcontext()


def _resample_to_step(ds: xr.Dataset, entry: DatasetEntry) -> xr.Dataset:
    times = pd.DatetimeIndex(ds["time"].values)
    step = data_step(times)
    if step is None or step == entry.step:
        return ds
    files = ds.attrs["source_files"]
    if step > entry.step or entry.step % step:
        raise InputError(files[0], f"time step of the files is {format_step(step)}; catalog entry {entry.name!r} "
                                   f"expects {entry.time_step} (a whole multiple of the files' step can be subsampled)")
    return ds.isel(time=on_step_grid(times, entry.step))


def _refuse_gaps(gaps: list, entry: DatasetEntry) -> None:
    """A gap in the raw time axis is an error unless the entry records gaps."""
    if gaps and entry.gaps == "error":
        g = gaps[0]
        raise InputError(g.after_source, f"gap in time: {g.count} missing {entry.time_step} steps "
                                         f"{g.as_pair()[0]} .. {g.as_pair()[1]} ({len(gaps)} gaps in all; "
                                         f"set gaps: record to allow)")


def _check_grid(ds: xr.Dataset, entry: DatasetEntry) -> None:
    shape = tuple(ds["data"].shape[2:])
    if entry.grid is not None and shape != tuple(entry.grid):
        raise InputError(ds.attrs["source_files"][0], f"grid is {shape[0]}x{shape[1]}; catalog entry "
                                                      f"{entry.name!r} expects {entry.grid[0]}x{entry.grid[1]}")


def _source_of(ds: xr.Dataset, t: int) -> str:
    return ds.attrs["source_files"][int(ds["source"].values[t])]


def _nonfinite(moments: xr.Dataset, ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Counts of NaN and of infinite values per (time, channel)."""
    n_space = int(np.prod(ds["data"].shape[2:]))
    nan = moments["nan"].values  # (time, channel)
    return nan, n_space - moments["count"].values - nan


def _bad_times(moments: xr.Dataset, ds: xr.Dataset, entry: DatasetEntry) -> np.ndarray:
    """Mask of times with a NaN or infinite value; an error when the entry does not allow gaps."""
    nan, inf = _nonfinite(moments, ds)
    bad = (nan + inf).sum(axis=1) > 0
    if bad.any() and entry.gaps == "error":
        t_idx = np.flatnonzero(bad)
        c_idx = int(np.flatnonzero((nan + inf)[t_idx[0]])[0])
        kinds = " and ".join(k for k, n in (("NaN", nan.sum()), ("infinite", inf.sum())) if n)
        raise InputError(_source_of(ds, t_idx[0]),
                         f"{int(nan.sum() + inf.sum())} {kinds} values in {str(ds['channel'].values[c_idx])!r} at "
                         f"{t_idx.size} times ({iso_minutes(ds['time'].values[t_idx[0]])} .. "
                         f"{iso_minutes(ds['time'].values[t_idx[-1]])}); set gaps: record to skip those times")
    return bad


def _check_ranges(moments: xr.Dataset, ds: xr.Dataset, entry: DatasetEntry) -> None:
    """Values outside a variable's valid range (the catalog's, or the known physical one) are refused."""
    variables = {v.name: v for v in entry.variables}
    for c, channel in enumerate(ds["channel"].values):
        var = variables[str(ds["variable"].values[c])]
        units = str(ds["units"].values[c])
        bounds = cf.valid_range(var, units)
        if bounds is None:
            continue
        lo, hi = bounds
        low = moments["min"].values[:, c]
        high = moments["max"].values[:, c]
        for side, limit, values, outside in (("below", lo, low, lambda v, b: v < b),
                                             ("above", hi, high, lambda v, b: v > b)):
            if limit is None:
                continue
            hits = np.flatnonzero(outside(values, limit))
            if hits.size:
                t = int(hits[0])
                rng = f"[{'' if lo is None else f'{lo:g}'}, {'' if hi is None else f'{hi:g}'}]"
                raise InputError(_source_of(ds, t),
                                 f"{str(channel)!r} has values {side} its valid range {rng} {units} at {hits.size} "
                                 f"times (first {iso_minutes(ds['time'].values[t])}: {values[t]:g}); fix the file, "
                                 f"or set valid_range for {var.name!r} in the catalog")


def _drop_incomplete_days(times: pd.DatetimeIndex, keep: np.ndarray, step: pd.Timedelta) -> np.ndarray:
    """DeepST's policy: a day missing any slot is dropped whole."""
    per_day = pd.Timedelta(days=1) // step
    days = times.normalize()
    counts = pd.Series(keep.astype(int), index=days).groupby(level=0).sum()
    complete = counts[counts == per_day].index
    return keep & np.asarray(days.isin(complete))


def _provenance(spec: IngestSpec, sources: Sources) -> dict:
    return {
        "source_files": sources.described,
        "catalog": str(spec.catalog),
        "simcast_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _build(ds: xr.Dataset, spec: IngestSpec, sources: Sources, keep: np.ndarray, splits: dict, stats: xr.Dataset,
           attrs: dict) -> xr.Dataset:
    out = ds.isel(time=slice(None) if keep.all() else keep).drop_vars("source")  # a slice: no gather when all stay
    out.attrs = {}
    times = pd.DatetimeIndex(out["time"].values)
    for name in ("mean", "std", "min", "max"):
        out[f"stat_{name}"] = stats[name].astype("float64")
        out[f"stat_{name}"].attrs = {"long_name": f"training-period {name} per channel"}
    out["stat_count"] = stats["count"]
    if sources.holidays is not None:
        holidays = read_holidays(sources.holidays)
        out["holiday"] = ("time", np.asarray(times.normalize().isin(list(holidays)), dtype="int8"))
        out["holiday"].attrs = {"long_name": "1 on public holidays", "source": spec.entry.holidays}
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


def _ingest(spec: IngestSpec, ds: xr.Dataset, sources: Sources, properties: dict, progress: bool) -> IngestResult:
    """One pass over the data: the store is written to its temporary path while the per-frame moments (NaN and
    infinite counts, value ranges, statistics) are computed from the same reads; the checks run on the moments
    before the swap, the training statistics go into the temporary store, and only then is it swapped in. When
    the checks drop times (`gaps: record`, incomplete days) the store is written again without them."""
    entry, target = spec.entry, spec.store
    ds = _resample_to_step(ds, entry)
    _check_grid(ds, entry)
    times = pd.DatetimeIndex(ds["time"].values)
    codes = ds["source"].values
    _refuse_gaps(find_gaps(times, pd.Categorical.from_codes(codes, ds.attrs["source_files"]), entry.step), entry)
    every_time = np.ones(len(times), dtype=bool)
    layout = _Layout(spec, ds, sources, properties, every_time)  # refuses splits without training data early
    result: dict = {}

    def write(tmp: Path) -> None:
        if progress:
            print(f"reading {len(sources.files)} files, {len(times)} time steps: checking them, computing the "
                  f"training statistics and writing {target} ({layout.time_chunk} steps per chunk) in one pass")
        with _computing(progress, spec.dask_address), dask.config.set({"optimization.fuse.active": False}):
            # unfused, the write and the moments share the read tasks: each file is read once
            _, moments = dask.compute(layout.write(tmp, compute=False), frame_moments(ds["data"]))
        keep = ~_bad_times(moments, ds, entry)
        _check_ranges(moments.isel(time=np.flatnonzero(keep)), ds.isel(time=np.flatnonzero(keep)), entry)
        if entry.incomplete_days == "drop":
            keep = _drop_incomplete_days(times, keep, entry.step)
        final = layout
        if not keep.all():
            final = _Layout(spec, ds, sources, properties, keep)
            if progress:
                print(f"writing again without the {int((~keep).sum())} time steps left out")
            shutil.rmtree(tmp)
            with _computing(progress, spec.dask_address):
                final.write(tmp)
        result["summary"] = final.finish(tmp, combine_moments(moments.isel(time=final.train_rows)))

    with _cluster(spec.dask_address):
        write_atomic(target, write, "store")
    return IngestResult(target, skipped=False, summary=result["summary"])


class _Layout:
    """The store of the kept times, all but the training statistics, which `finish` adds once computed."""

    def __init__(self, spec: IngestSpec, ds: xr.Dataset, sources: Sources, properties: dict, keep: np.ndarray):
        entry = spec.entry
        self.spec, self.ds = spec, ds
        times = pd.DatetimeIndex(ds["time"].values)
        kept = times[keep]
        if len(kept) == 0:
            raise InputError(sources.files[0], "no valid time steps left after removing gaps and NaNs")
        self.splits = resolve_splits(entry, kept)
        train = split_mask(kept, self.splits["train"])
        if not train.any():
            s, e = (iso_minutes(t) for t in self.splits["train"])
            raise InputError(sources.files[0], f"no data in the training period {s} .. {e} (files cover "
                                               f"{iso_minutes(kept[0])} .. {iso_minutes(kept[-1])})")
        self.train_rows = np.flatnonzero(keep)[train]  # rows of ds whose moments give the statistics
        self.kept = kept
        self.missing = missing_ranges(kept, entry.step)
        placeholder = _statistics_placeholder(ds)
        self.attrs = {
            "simcast_format": STORE_FORMAT,
            "Conventions": "CF-1.8",
            "title": f"simcast store for {entry.name}",
            "dataset": entry.name,
            "kind": entry.kind,
            "properties": json.dumps(properties),
            "time_step": entry.time_step,
            "normalization": entry.normalization,
            "splits": json.dumps({k: [a.isoformat(), b.isoformat()] for k, (a, b) in self.splits.items()}),
            "window": json.dumps(entry.window.model_dump()),
            "missing_times": json.dumps([g.as_pair() for g in self.missing]),
            "missing_count": int(sum(g.count for g in self.missing)),
            "extent": json.dumps(entry.extent.model_dump(mode="json") if entry.extent else None),
            "catalog_entry": json.dumps(entry.model_dump(mode="json")),
            "provenance": json.dumps(_provenance(spec, sources)),
            "fingerprint": sources.fingerprint,
            "summary": "{}",  # with the statistics, in finish()
        }
        out = _build(ds, spec, sources, keep, self.splits, placeholder, self.attrs)
        frame_bytes = 4 * int(np.prod(out["data"].shape[1:]))
        self.time_chunk = tc = time_chunk(frame_bytes, entry.window.length, out.sizes["time"])
        out = out.chunk({d: (tc if d == "time" else -1) for d in out.dims})
        for name in ("channel", "variable", "units", "standard_name", "long_name"):
            # variable-length strings: Zarr v3 has a spec for them, not for fixed-width numpy unicode
            out[name] = (out[name].dims, np.asarray(out[name].values, dtype=object), out[name].attrs)
        self.encoding = {name: {"compressors": COMPRESSORS} for name in out.variables}
        self.encoding["data"]["chunks"] = (tc, *out["data"].shape[1:])
        self.out = out

    def write(self, tmp: Path, compute: bool = True):
        """Write the store at tmp; with compute=False, return the dask computation that writes the data."""
        return write_store(self.out, tmp, self.encoding, compute)

    def finish(self, tmp: Path, stats: xr.Dataset) -> dict:
        """Put the training statistics and the summary into the store written at tmp; returns the summary."""
        summary = _summary(self.spec.entry, self.ds, self.kept, self.splits, self.missing, stats, self.spec.store)
        group = zarr.open_group(str(tmp), mode="r+")
        for name in ("mean", "std", "min", "max"):
            group[f"stat_{name}"][:] = stats[name].values.astype("float64")
        group["stat_count"][:] = stats["count"].values
        group.attrs.update({"summary": json.dumps(summary)})
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
            zarr.consolidate_metadata(str(tmp))
        return summary


def _statistics_placeholder(ds: xr.Dataset) -> xr.Dataset:
    """Statistics of the right shape before they are known (NaN; written over in `_Layout.finish`)."""
    nan = ("channel", np.full(ds.sizes["channel"], np.nan))
    return xr.Dataset({"mean": nan, "std": nan, "min": nan, "max": nan,
                       "count": ("channel", np.zeros(ds.sizes["channel"], dtype="int64"))},
                      coords={"channel": ds["channel"]})


def write_store(ds: xr.Dataset, path: Path, encoding: dict, compute: bool = True):
    """Every chunk written (also those of fill values only: a missing chunk then means damage), every chunk
    checksummed, metadata consolidated. With compute=False: the dask computation that writes the data."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        return ds.to_zarr(path, mode="w-", zarr_format=3, consolidated=True, write_empty_chunks=True,
                          encoding=encoding, compute=compute)


def _summary(entry, ds, kept, splits, missing, stats, target) -> dict:
    counts = {k: int(split_mask(kept, v).sum()) for k, v in splits.items()}
    return {
        "dataset": entry.name,
        "store": str(target),
        "time_steps": int(len(kept)),
        "start": iso_minutes(kept[0]),
        "end": iso_minutes(kept[-1]),
        "time_step": entry.time_step,
        "channels": [str(c) for c in ds["channel"].values],
        "grid": [int(n) for n in ds["data"].shape[2:]],
        "dims": list(ds["data"].dims),
        "missing_steps": int(sum(g.count for g in missing)),
        "gaps": len(missing),
        "split_steps": counts,
        "splits": {k: [iso_minutes(a), iso_minutes(b)] for k, (a, b) in splits.items()},
        "stats": {str(c): {k: float(stats[k].sel(channel=c)) for k in ("mean", "std", "min", "max")}
                  for c in ds["channel"].values},
        "units": {str(c): str(u) for c, u in zip(ds["channel"].values, ds["units"].values)},
    }
