"""Append instead of re-ingest: when the sources only grew, add the new times to the store.

`pipelines.ingest.run` calls `try_append` when a store exists whose fingerprint no longer matches the sources
(and --force was not given). It appends when

  - the store is of this format, whole (every chunk present), and its chunk length is the one a full ingest of
    the grown sources would choose (a store shorter than one chunk is rebuilt: that costs no more);
  - the catalog entry's data fields and the reader's declared properties are unchanged;
  - every previously ingested file is still there with the same size and modification time, except the last
    file (by name) of each variable, which may have grown: its times up to the store's last time must then read
    back exactly as the store holds them (same kept times, same values);
  - the new times all come after the store's last time;
  - the split periods are unchanged by the new end of the data (a split given as `last: 28D`, or a validation or
    test split given as `rest`, moves with every append: such entries are always rebuilt) and no new time falls
    in the training period (the statistics stay those of the store);
  - a changed holiday file flags the store's days as before.

Anything else is a full ingest, and `try_append` returns the reason (the summary's "rebuilt"); so is any change of
an entry whose source is a Zarr store (source.url, weatherbench2): its fingerprint is its consolidated metadata,
which does not tell which times are new. The new part is
validated as a full ingest validates (grid and channels against the store, regular step, continuity with the
store's last time under the entry's `gaps` rule, NaN / infinite values, valid ranges, duplicates); a problem is
one line naming the file, and the store is untouched.

The appended store is built beside the store: a folder of hard links to the store's chunk files (no data is
copied), private copies of the small metadata files, then the new and the rewritten chunks (the last, partial
chunk of each array along time) written as new files, so that nothing the live store holds is ever written to.
It is swapped into place with `outputs.write_atomic` like a full ingest; a kill at any point leaves the previous
store (the temporary is tidied by the next run) and a reader that opened the previous store reads its values to
the end (the chunk files it names are the same files, or, for the rewritten last chunk, hold the same leading
values). The result equals a full ingest of the same files (data, times, masks, missing times, statistics,
summary); only the provenance differs (its times, and `ingested` / `appends`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import xarray as xr
import zarr
from xarray.coding.times import decode_cf_datetime, encode_cf_datetime

from ..errors import InputError
from ..outputs import write_atomic
from ..specs import IngestSpec
from ..store import STORE_FORMAT, _chunk_keys
from ..timeaxis import find_gaps, missing_ranges, ns, on_step_grid, resolve_splits, split_mask
from ..timefmt import iso_minutes
from . import (IngestResult, _bad_times, _check_grid, _check_ranges, _cluster, _computing, _drop_incomplete_days,
               _nonfinite, _provenance, _refuse_gaps, _resample_to_step, time_chunk)
from .readers import Reader
from .readers.taxibj import read_holidays
from .sources import Sources, data_fields
from .stats import frame_moments

BATCH_BYTES = 32 * 2**20  # uncompressed bytes read or written at a time (whole chunks)
SPLITS = ("train", "validation", "test")


class _Rebuild(Exception):
    """Only a full ingest gives the store a full ingest would: the message says why."""


@dataclass
class _Plan:
    live: zarr.Group                   # the current store, read only
    n_old: int                         # its time steps
    first: pd.Timestamp                # its first and last time
    last: pd.Timestamp
    new: set[str]                      # source files not in the store's provenance (as the reader names them)
    changed: list[str]                 # previously ingested files that changed (each the last of its variable)
    to_read: dict[str, list[Path]]     # what to read: new and changed files (and the other variables' last files)
    holidays_changed: bool
    time_arrays: list[str]             # the store's arrays along time


def try_append(spec: IngestSpec, sources: Sources, attrs: dict, reader: Reader,
               progress: bool) -> IngestResult | str:
    """Append what the sources gained to the store at spec.store, or say (a string) why it must be rebuilt."""
    try:
        plan = _plan(spec, sources, attrs, reader.properties(spec.entry))
        if not plan.to_read:
            return _append(spec, sources, attrs, plan, None, progress)
        try:
            raw = reader.read(spec.entry, plan.to_read)
        except InputError as e:
            if not plan.changed:
                raise
            # the grown file read with fewer neighbours than a full ingest reads it: let the full ingest judge
            raise _Rebuild(f"reading the changed last file with the new files failed ({e})") from None
        with raw:
            return _append(spec, sources, attrs, plan, raw, progress)
    except _Rebuild as why:
        return str(why)


# ---- what changed --------------------------------------------------------------------------------------

def _differs(a: dict, b: dict) -> bool:
    return (a["size"], a["mtime_ns"]) != (b["size"], b["mtime_ns"])


def _relative_split(entry) -> str | None:
    """A split whose period moves with the end of the data, whatever is appended."""
    for name in SPLITS:
        p = getattr(entry.splits, name)
        if p.last is not None:
            return f"split {name} is the last {p.last} of the data"
        if p.rest and name != "train":
            return f"split {name} is the rest of the data up to its end"
    return None


def _plan(spec: IngestSpec, sources: Sources, attrs: dict, properties: dict) -> _Plan:
    entry, target = spec.entry, spec.store
    if entry.source.url is not None:
        raise _Rebuild("the source is a Zarr store (source.url), whose changes are not followed file by file: "
                       "a changed store is ingested whole")
    if attrs.get("simcast_format") != STORE_FORMAT:
        raise _Rebuild(f"the store has format {attrs.get('simcast_format')}, this simcast writes {STORE_FORMAT}")
    try:
        stored_entry = json.loads(attrs["catalog_entry"])
        provenance = json.loads(attrs["provenance"])
        stored_properties = json.loads(attrs["properties"])
        old = {d["path"]: d for d in provenance["source_files"]}
    except (KeyError, TypeError, ValueError):
        raise _Rebuild("the store's attributes are incomplete") from None
    if json.dumps(data_fields(stored_entry), sort_keys=True) != \
            json.dumps(data_fields(entry.model_dump(mode="json")), sort_keys=True):
        raise _Rebuild(f"catalog entry {entry.name!r} changed since the store was written")
    if stored_properties != properties:
        raise _Rebuild("the reader declares other data-set properties than the store's")
    if (why := _relative_split(entry)) is not None:
        raise _Rebuild(f"{why}: appending moves it (and what the statistics are computed on)")

    now = {d["path"]: d for d in sources.described}
    holidays = str(sources.holidays.resolve()) if sources.holidays is not None else None
    holidays_changed = holidays is not None and (holidays not in old or _differs(old[holidays], now[holidays]))
    resolved = {f: str(f.resolve()) for f in sources.files}
    old_data = [p for p in old if p != holidays]
    if gone := [p for p in old_data if p not in now]:
        raise _Rebuild(f"{gone[0]} was ingested and is no longer among the source files")
    changed = {p for p in old_data if _differs(old[p], now[p])}
    new = {f for f, p in resolved.items() if p not in old}

    # the previously ingested file of each variable that comes last by name: the only one that may grow
    last_old = {key: [f for f in files if resolved[f] in old][-1:] for key, files in sources.by_variable.items()}
    lasts = {resolved[f] for fs in last_old.values() for f in fs}
    if stray := sorted(changed - lasts):
        raise _Rebuild(f"{stray[0]} changed since it was ingested (only the last file may grow)")
    to_read = {}
    for key, files in sources.by_variable.items():
        pick = [f for f in files if f in new or resolved[f] in changed or (changed and f in last_old[key])]
        if pick:
            to_read[key] = pick
    if to_read and len(to_read) < len(sources.by_variable):
        raise _Rebuild("some variables have new files and others not")
    if not to_read and not holidays_changed:
        raise _Rebuild("the sources differ from the store's in a way an append cannot follow")

    live = zarr.open_group(str(target), mode="r", use_consolidated=False)
    expected = {"data", "time", *(f"in_{k}" for k in SPLITS), *(["holiday"] if holidays else [])}
    time_arrays = sorted(n for n, a in live.arrays() if (a.metadata.dimension_names or ("",))[0] == "time")
    if set(time_arrays) != expected:
        raise _Rebuild(f"the store's arrays along time are {time_arrays}, this simcast writes {sorted(expected)}")
    data = live["data"]
    n_old = int(live["time"].shape[0])
    tc = time_chunk(4 * int(np.prod(data.shape[1:])), entry.window.length, 2**62)
    if data.chunks[0] != tc:
        if data.chunks[0] == n_old < tc:
            raise _Rebuild(f"the store's {n_old} steps are less than one chunk ({tc}): a full ingest costs no more")
        raise _Rebuild(f"the store's chunks hold {data.chunks[0]} steps, a full ingest now writes {tc}")
    times = _decode(live["time"], [0, n_old - 1])
    return _Plan(live, n_old, times[0], times[-1], {str(f) for f in new},
                 sorted(str(f) for f in sources.files if resolved[f] in changed), to_read, holidays_changed,
                 time_arrays)


def _decode(time: zarr.Array, sel) -> pd.DatetimeIndex:
    num = np.asarray(time.get_orthogonal_selection(np.asarray(sel)) if isinstance(sel, list) else time[sel])
    return pd.DatetimeIndex(decode_cf_datetime(num, time.attrs["units"], time.attrs.get("calendar")))


def _store_values(live: zarr.Group, name: str) -> list:
    values = live[name][...]
    return [str(v) for v in values] if values.dtype.kind not in "biuf" else values.tolist()


def _check_like_store(ds: xr.Dataset, live: zarr.Group) -> None:
    """The new part's grid and channels are the store's."""
    where = ds.attrs["source_files"][0]
    shape = tuple(live["data"].shape[1:])
    if tuple(ds["data"].shape[1:]) != shape:
        raise InputError(where, f"data are {'x'.join(map(str, ds['data'].shape[1:]))} (channel x grid); the store "
                                f"holds {'x'.join(map(str, shape))}")
    for name in ("channel", "variable", "level", "units", "standard_name", "long_name", "lat", "lon", "y", "x"):
        if name not in ds.coords or name not in live:
            continue
        values, stored = ds[name].values, _store_values(live, name)
        here = [str(v) for v in values] if values.dtype.kind not in "biuf" else values.tolist()
        if here != stored:
            def show(v: list) -> str:
                return f"{v[0]:g} .. {v[-1]:g}" if values.dtype.kind == "f" else ", ".join(map(str, v))

            raise InputError(where, f"{name} ({show(here)}) differs from the store's ({show(stored)})")


# ---- the append ----------------------------------------------------------------------------------------

def _append(spec: IngestSpec, sources: Sources, attrs: dict, plan: _Plan, raw: xr.Dataset | None,
            progress: bool) -> IngestResult:
    entry, target, live, last = spec.entry, spec.store, plan.live, plan.last
    step = entry.step
    empty = pd.DatetimeIndex([], dtype="datetime64[ns]")
    kept, columns = empty, {}
    with _cluster(spec.dask_address):
        if raw is not None:
            if raw.sizes["time"] == 1 and not on_step_grid(pd.DatetimeIndex(raw["time"].values), step).all():
                # a full ingest drops it if the files are finer than the entry's step, else refuses it
                raise _Rebuild("one new time, off the step grid: the files' own step cannot be told from it")
            raw = _resample_to_step(raw, entry)
            _check_grid(raw, entry)
            _check_like_store(raw, live)
            times = pd.DatetimeIndex(raw["time"].values)
            src = np.asarray(raw.attrs["source_files"], dtype=object)[raw["source"].values]
            old = np.asarray(times <= last)
            if (early := old & np.isin(src, list(plan.new))).any():
                i = int(np.flatnonzero(early)[0])
                raise _Rebuild(f"{src[i]} holds times up to the store's end ({iso_minutes(times[i])} <= "
                               f"{iso_minutes(last)})")
            fresh = np.flatnonzero(~old)
            if fresh.size:
                _refuse_gaps(find_gaps(pd.DatetimeIndex([last]).append(times[fresh]),
                                       np.array([f"{target} (the store)", *src[fresh]], dtype=object), step), entry)
            if progress:
                print(f"checking {len(raw.attrs['source_files'])} new or grown files, {fresh.size} new time steps")
            with _computing(progress, spec.dask_address):
                (moments,) = dask.compute(frame_moments(raw["data"]))
            nan, inf = _nonfinite(moments, raw)
            keep = (nan + inf).sum(axis=1) == 0
            # the new part: the checks of a full ingest, in its order
            _bad_times(moments.isel(time=fresh), raw.isel(time=fresh), entry)  # an error unless gaps: record
            checked = np.flatnonzero(keep & ~old)
            _check_ranges(moments.isel(time=checked), raw.isel(time=checked), entry)
            if entry.incomplete_days == "drop":
                keep = _drop_incomplete_days(times, keep, step)
            if old.any():
                _same_as_store(raw, times, np.flatnonzero(old & keep), plan)
            kn = np.flatnonzero(keep & ~old)
            kept = times[kn]
            columns["data"] = lambda a, b, raw=raw, kn=kn: raw["data"].isel(time=kn[a:b]).values

        splits = _same_splits(entry, attrs, plan, kept)
        if (train := split_mask(kept, splits["train"])).any():
            raise _Rebuild(f"{int(train.sum())} new steps fall in the training period "
                           f"({iso_minutes(kept[train][0])} ..): the statistics change")
        columns["time"] = _encode_times(live["time"], kept)
        for name, period in splits.items():
            columns[f"in_{name}"] = split_mask(kept, period).astype("int8")
        if sources.holidays is not None:
            holidays = list(read_holidays(sources.holidays))
            if plan.holidays_changed:
                stored = live["holiday"][...]
                now = _decode(live["time"], slice(None)).normalize().isin(holidays)
                if not np.array_equal(stored.astype(bool), np.asarray(now)):
                    raise _Rebuild(f"the holiday file {sources.holidays} changed for days already in the store")
            columns["holiday"] = np.asarray(kept.normalize().isin(holidays), dtype="int8")

        new_attrs, summary = _attributes(spec, sources, attrs, splits, kept, last)
        n_new = len(kept)
        if progress:
            print(f"appending {n_new} steps to {target} ({iso_minutes(kept[0])} .. {iso_minutes(kept[-1])})"
                  if n_new else f"no new steps; updating the sources recorded in {target}")

        def build(tmp: Path) -> None:
            with _computing(progress and n_new > 0, spec.dask_address):
                _write_appended(target, tmp, plan, columns, n_new, new_attrs)

        write_atomic(target, build, "store")
    return IngestResult(target, skipped=False, summary={**summary, "appended_steps": n_new}, appended=True)


def _same_as_store(raw: xr.Dataset, times: pd.DatetimeIndex, kept_old: np.ndarray, plan: _Plan) -> None:
    """The grown files' times up to the store's end, kept as a full ingest keeps them, are the store's last
    times, value for value."""
    store_times = _decode(plan.live["time"], slice(None))
    i0 = int(store_times.searchsorted(times[0]))
    what = f"{', '.join(plan.changed)} changed in times already in the store"
    if not np.array_equal(ns(times[kept_old]), ns(store_times[i0:])):
        raise _Rebuild(what)
    data = plan.live["data"]
    rows = data.chunks[0] * max(1, BATCH_BYTES // (data.chunks[0] * 4 * int(np.prod(data.shape[1:]))))
    for a in range(0, kept_old.size, rows):
        b = min(a + rows, kept_old.size)
        here = raw["data"].isel(time=kept_old[a:b]).values
        if not np.array_equal(here, data[i0 + a:i0 + b], equal_nan=True):
            raise _Rebuild(what)


def _same_splits(entry, attrs: dict, plan: _Plan, kept: pd.DatetimeIndex) -> dict:
    """The split periods, which the new end of the data must leave as they are."""
    before = resolve_splits(entry, pd.DatetimeIndex([plan.first, plan.last]))
    after = resolve_splits(entry, pd.DatetimeIndex([plan.first, kept[-1] if len(kept) else plan.last]))
    as_text = {k: [a.isoformat(), b.isoformat()] for k, (a, b) in before.items()}
    if json.loads(attrs["splits"]) != as_text:
        raise _Rebuild("the store's split periods are not the catalog entry's")
    if moved := [k for k in SPLITS if before[k] != after[k]]:
        raise _Rebuild(f"split {moved[0]} depends on the end of the data: appending moves it")
    return before


def _encode_times(time: zarr.Array, kept: pd.DatetimeIndex) -> np.ndarray:
    """The new times in the store's own encoding (units, calendar, integer type)."""
    if not len(kept):
        return np.zeros(0, dtype=time.dtype)
    units, calendar = time.attrs["units"], time.attrs.get("calendar")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            num, _, _ = encode_cf_datetime(kept, units, calendar, dtype=np.dtype(time.dtype.str))
        except (ValueError, OverflowError, TypeError):
            num = None
    if num is None or not np.array_equal(ns(pd.DatetimeIndex(decode_cf_datetime(num, units, calendar))), ns(kept)):
        raise _Rebuild(f"the new times cannot be written in the store's time units ({units})")
    return np.asarray(num, dtype=time.dtype)


def _attributes(spec: IngestSpec, sources: Sources, attrs: dict, splits: dict, kept: pd.DatetimeIndex,
                last: pd.Timestamp) -> tuple[dict, dict]:
    """The store's attributes after the append, and its summary (a full ingest's, field for field)."""
    step = spec.entry.step
    missing = json.loads(attrs["missing_times"])
    count = int(attrs["missing_count"])
    if len(kept):
        gaps = missing_ranges(pd.DatetimeIndex([last]).append(kept), step)
        missing += [g.as_pair() for g in gaps]
        count += sum(g.count for g in gaps)
    summary = json.loads(attrs["summary"])
    summary.update({
        "store": str(spec.store),
        "time_steps": summary["time_steps"] + len(kept),
        "end": iso_minutes(kept[-1]) if len(kept) else summary["end"],
        "missing_steps": count,
        "gaps": len(missing),
        "split_steps": {k: summary["split_steps"][k] + int(split_mask(kept, v).sum()) for k, v in splits.items()},
    })
    before = json.loads(attrs["provenance"])
    provenance = {**_provenance(spec, sources), "ingested": before.get("ingested", before.get("created")),
                  "appends": int(before.get("appends", 0)) + 1}
    new = dict(attrs)
    new.update({
        "missing_times": json.dumps(missing),
        "missing_count": count,
        "catalog_entry": json.dumps(spec.entry.model_dump(mode="json")),
        "provenance": json.dumps(provenance),
        "fingerprint": sources.fingerprint,
        "summary": json.dumps(summary),
    })
    return new, summary


# ---- writing the appended store beside the live one -----------------------------------------------------

_NO_LINKS = {errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS}


def _linked_copy(src: Path, dst: Path, skip: set[str]) -> set[str]:
    """dst: the folder tree of src with hard links to its chunk files (except `skip`, relative paths) and
    private copies of its metadata files; copies instead of links where the file system has no hard links.
    Returns the relative paths of the files src holds. (Spreading this over threads was slower: creating
    entries is serialized by the file system.)"""
    link, seen = True, set()
    for folder, _, files in os.walk(src):
        rel = os.path.relpath(folder, src)
        out = dst if rel == "." else dst / rel
        out.mkdir()
        for name in files:
            key = name if rel == "." else f"{rel}/{name}"
            seen.add(key)
            if key in skip or name.endswith(".partial"):
                continue
            if link and name != "zarr.json":  # the metadata is rewritten for the new shape: never a link
                try:
                    os.link(os.path.join(folder, name), out / name)
                    continue
                except OSError as e:
                    if e.errno not in _NO_LINKS:
                        raise
                    link = False
            shutil.copyfile(os.path.join(folder, name), out / name)
    return seen


def _chunk_path(root: Path, arr: zarr.Array, index: int) -> Path:
    return root / arr.path / arr.metadata.encode_chunk_key((index,) + (0,) * (arr.ndim - 1))


def _write_region(root: Path, arr: zarr.Array, start: int, values: np.ndarray) -> None:
    """Write whole chunks from `start` (a chunk boundary) into the temporary store at root. A file there that is
    a link would be a live chunk: it is unlinked first (zarr then writes a file of its own)."""
    c = arr.chunks[0]
    for k in range(start // c, -(-(start + len(values)) // c)):
        with contextlib.suppress(FileNotFoundError):
            _chunk_path(root, arr, k).unlink()
    arr[start:start + len(values)] = values


def _write_appended(target: Path, tmp: Path, plan: _Plan, columns: dict, n_new: int, attrs: dict) -> None:
    live, n_old = plan.live, plan.n_old
    # the partial last chunk of each array along time is rewritten whole: not linked
    skip = set()
    if n_new:
        for name in plan.time_arrays:
            arr = live[name]
            if n_old % arr.chunks[0]:
                skip.add(str(_chunk_path(Path(), arr, n_old // arr.chunks[0])))
    seen = _linked_copy(target, tmp, skip)
    # the store must be whole (as open_store checks it, from the same listing): what is linked is then whole too
    for name, arr in live.arrays():
        for _, key in _chunk_keys(arr):
            if f"{name}/{key}" not in seen:
                raise _Rebuild(f"the store is damaged: array {name!r} chunk {key} is missing")
    with zarr.config.set({"array.write_empty_chunks": True}):
        group = zarr.open_group(str(tmp), mode="r+", use_consolidated=False)
        if n_new:
            for name in plan.time_arrays:
                _extend(tmp, group[name], live[name], n_old, n_new, columns[name])
        group.attrs.update(attrs)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        zarr.consolidate_metadata(str(tmp))
    for name in plan.time_arrays if n_new else ():
        arr = group[name]
        for k in range(n_old // arr.chunks[0], -(-(n_old + n_new) // arr.chunks[0])):
            if not _chunk_path(tmp, arr, k).is_file():
                raise RuntimeError(f"appended store lacks chunk {k} of {name!r}")  # a bug, not bad input


def _extend(tmp: Path, arr: zarr.Array, live: zarr.Array, n_old: int, n_new: int, new) -> None:
    """Grow arr along time by n_new rows: the old rows of its partial last chunk, then the new rows, written in
    whole chunks, a batch at a time."""
    c = arr.chunks[0]
    start = n_old // c * c
    tail = live[start:n_old]
    arr.resize((n_old + n_new, *arr.shape[1:]))
    row_bytes = arr.dtype.itemsize * int(np.prod(arr.shape[1:]))
    rows = c * max(1, BATCH_BYTES // (c * row_bytes))
    s = start
    while s < n_old + n_new:
        e = min(s + rows, n_old + n_new)
        a, b = max(s, n_old) - n_old, e - n_old
        part = new(a, b) if callable(new) else new[a:b]
        values = np.concatenate([tail, part]) if s < n_old else part
        _write_region(tmp, arr, s, np.asarray(values, dtype=arr.dtype))
        s = e
