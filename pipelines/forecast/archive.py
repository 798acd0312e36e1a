"""The forecast archive of a data set: every archived forecast of it in one Zarr store with an `init_time`
dimension (WeatherBench 2's forecast layout), with the CF variables and attributes of a single forecast
(output.py):

    <channel>(init_time, lead_time, lat, lon)   float32, physical units   (y, x with lat(y), lon(x): traffic)
    valid_time(init_time, lead_time)            init_time + lead_time
    has_forecast(init_time, lead_time)          1 where a forecast was made; 0 (and NaN values) beyond the
                                                horizon of a forecast shorter than the archive's longest
    checkpoint(init_time)                       the checkpoint that made each forecast
    lat_bnds, lon_bnds, crs                     as in a single forecast

    add_to_archive(forecast, "outputs/archive/era5-uk-t2m.zarr")   # adds every init time of the forecast
    ds = open_archive("outputs/archive/era5-uk-t2m.zarr", dataset="era5-uk-t2m")

Every init time is kept; adding one that is already there replaces that one only. A chunk holds one init time
(all leads, the whole grid) in one flat file (`<channel>/c.<row>.0.0.0`); chunks are checksummed (crc32c) and all
written, as in the stores, and the metadata is consolidated. The zarr attribute `simcast_archive_format` marks the store as simcast's (outputs.claim refuses
anything else at the path).

A write builds the next version beside the archive and swaps it into place (outputs.write_atomic): the chunk
files of the init times it keeps are hard links to the current ones and are never written to (zarr writes files
in place), only the added init times' chunks and the small coordinate arrays are written, so an addition costs
the same however long the archive is. A kill leaves the old or the new archive whole; a lock file beside it
(`.<name>.lock`) makes concurrent writers wait for each other.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import itertools
import json
import os
import shutil
import warnings
from pathlib import Path

import dask.array as da
import google_crc32c
import numpy as np
import pandas as pd
import xarray as xr
import zarr

from .. import __version__
from ..errors import InputError, OutputError, StoreError
from ..ingest import COMPRESSORS  # the stores' codecs
from ..outputs import claim, ensure_writable, owner_kind, recover_interrupted, write_atomic, writing
from ..store import missing_chunks
from ..timefmt import iso_minutes
from .output import INIT_TIME, LEAD_TIME, VALID_TIME, _time_units, forecast_variables

ARCHIVE_FORMAT = 1
HAS_FORECAST = {"long_name": "1 where a forecast was made for this init time and lead time",
                "flag_values": np.array([0, 1], dtype="int8"), "flag_meanings": "not_forecast forecast"}
CHECKPOINT = {"long_name": "checkpoint that made the forecast"}
FLAT_KEYS = {"name": "default", "configuration": {"separator": "."}}
# global attributes of a forecast that describe the data set and grid, and so the archive too
_DATASET_ATTRS = ("Conventions", "dataset", "kind", "properties", "source_store", "channels", "time_step", "extent",
                  "geospatial_lat_min", "geospatial_lat_max", "geospatial_lon_min", "geospatial_lon_max")


def _zarr_attrs(path: Path) -> dict:
    try:
        return json.loads((path / "zarr.json").read_text()).get("attributes", {})
    except (OSError, ValueError, AttributeError):
        return {}


def check_archive_target(path: str | Path, dataset: str) -> None:
    """Refuse, before any work, an archive path holding something else than this data set's archive."""
    path = Path(path)
    claim(path, "archive")
    if owner_kind(path) == "archive":
        held = _zarr_attrs(path).get("dataset")
        if held != dataset:
            raise OutputError(path, f"is the forecast archive of {held!r}, not {dataset!r}; one archive holds one "
                                    "data set: choose another archive path")
        check_archive(path, OutputError)  # a damaged archive is said before the forecast, and never added to


def open_archive(path: str | Path, dataset: str | None = None) -> xr.Dataset:
    """Open a forecast archive lazily, after checking that it is one (of `dataset`, when given) and whole."""
    path = Path(path)
    if not os.path.lexists(path):
        raise InputError(path, "no forecast archive here yet; `simcast forecast NAME --archive` adds forecasts to it")
    kind = None if path.is_symlink() else owner_kind(path)
    if kind != "archive":
        what = f"is a simcast {kind}, not a forecast archive" if kind else "is not a simcast forecast archive"
        raise InputError(path, f"{what} (one is written by `simcast forecast NAME --archive`)")
    attrs = _zarr_attrs(path)
    if attrs.get("simcast_archive_format") != ARCHIVE_FORMAT:
        raise InputError(path, f"archive format {attrs.get('simcast_archive_format')} is not this simcast's "
                               f"({ARCHIVE_FORMAT}); move it away and archive the forecasts again")
    if dataset is not None and attrs.get("dataset") != dataset:
        raise InputError(path, f"is the forecast archive of {attrs.get('dataset')!r}, not {dataset!r}")
    check_archive(path, StoreError)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        ds = xr.open_zarr(path, consolidated=True)
    ds.encoding["source"] = str(path)
    return ds


MOVE_AWAY = "move it away (the next archived forecast starts a new one)"


def check_archive(path: str | Path, error=StoreError) -> None:
    """Check that the archive at path is whole, reading every file but decoding nothing: each array's metadata
    (`<array>/zarr.json`) readable and the same as the consolidated metadata readers use, every chunk present,
    and every chunk's bytes matching its crc32c checksum. `error` (StoreError for readers, OutputError for a
    forecast that would add to it) names the first damaged array and chunk in one line."""
    path = Path(path)

    def damaged(problem):
        return error(path, f"damaged archive: {problem}; {MOVE_AWAY}")

    try:
        consolidated = json.loads((path / "zarr.json").read_text())["consolidated_metadata"]["metadata"]
        group = zarr.open_group(str(path), mode="r")
        arrays = dict(group.arrays())
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise damaged(f"its metadata (zarr.json) cannot be read ({e})") from None
    for name in sorted(consolidated):
        try:
            own = json.loads((path / name / "zarr.json").read_text())
        except (OSError, ValueError) as e:
            problem = "is missing" if isinstance(e, FileNotFoundError) else "cannot be read"
            raise damaged(f"array {name!r}: its metadata ({name}/zarr.json) {problem}") from None
        if own != consolidated[name]:
            raise damaged(f"array {name!r}: its metadata ({name}/zarr.json) differs from the archive's "
                          "consolidated metadata")
    missing = missing_chunks(path)
    if missing:
        name, key = missing[0]
        more = f" ({len(missing)} chunks in all)" if len(missing) > 1 else ""
        raise damaged(f"array {name!r} chunk {key} is missing{more}")
    for name, array in sorted(arrays.items()):
        if not array.metadata.codecs or array.metadata.codecs[-1].to_dict().get("name") != "crc32c":
            continue  # written by simcast with a checksum on every array; nothing to check without one
        for key in _chunk_keys(array):
            raw = (path / name / key).read_bytes()
            if len(raw) < 4 or google_crc32c.value(raw[:-4]) != int.from_bytes(raw[-4:], "little"):
                raise damaged(f"array {name!r} chunk {key} is corrupt (its checksum does not match)")


def _chunk_keys(array: zarr.Array):
    grid = [range(-(-s // c)) for s, c in zip(array.shape, array.chunks)]
    for coords in itertools.product(*grid):
        yield array.metadata.encode_chunk_key(coords)


@contextlib.contextmanager
def _locked(path: Path):
    """One writer at a time per archive (a scheduled run and a manual forecast may add at once), and no writer
    while a reader holds `reading_archive`."""
    lock = path.parent / f".{path.name}.lock"
    with writing(lock):
        f = open(lock, "a")
    try:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield
    finally:
        f.close()  # releases the lock


@contextlib.contextmanager
def reading_archive(path: str | Path):
    """Hold off writers while the archive is read: an addition of an earlier init time renumbers the rows of a
    lazily opened archive. Only for an existing archive; where no lock can be taken (read-only), no writer can
    write either."""
    path = Path(path)
    f = None
    if owner_kind(path) == "archive":
        with contextlib.suppress(OSError):
            f = open(path.parent / f".{path.name}.lock", "a")
    try:
        if f is not None:
            fcntl.flock(f, fcntl.LOCK_SH)
        yield
    finally:
        if f is not None:
            f.close()


def add_to_archive(forecast: xr.Dataset, path: str | Path) -> Path:
    """Add every init time of a forecast (as built by output.forecast_dataset) to the archive at path, creating
    it if needed; an init time already archived is replaced, all others are kept as they are."""
    path = Path(path)
    dataset = str(forecast.attrs.get("dataset", ""))
    check_archive_target(path, dataset)
    ensure_writable(path.parent)
    with _locked(path):
        recover_interrupted(path)
        check_archive_target(path, dataset)  # again, under the lock
        old = _open_current(path, forecast) if os.path.lexists(path) else None
        try:
            write_atomic(path, lambda tmp: _build(tmp, forecast, path if old is not None else None, old), "archive")
        finally:
            if old is not None:
                old.close()
    return path


def _open_current(path: Path, fc: xr.Dataset) -> xr.Dataset:
    """The archive as it is, checked to hold forecasts of the same kind as fc (channels, grid, time step)."""
    attrs = _zarr_attrs(path)
    if attrs.get("simcast_archive_format") != ARCHIVE_FORMAT:
        raise OutputError(path, f"archive format {attrs.get('simcast_archive_format')} is not this simcast's "
                                f"({ARCHIVE_FORMAT}); move it away (the next archived forecast starts a new one)")
    check_archive(path, OutputError)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        old = xr.open_zarr(path, consolidated=True)
    names, old_names = forecast_variables(fc), forecast_variables(old)
    problem = None
    if names != old_names:
        problem = f"channels {old_names}, this forecast {names}"
    elif fc[names[0]].dims[2:] != old[names[0]].dims[2:] or fc[names[0]].shape[2:] != old[names[0]].shape[2:]:
        problem = f"grid {dict(old[names[0]].sizes)}, this forecast {dict(fc[names[0]].sizes)}"
    elif old.attrs.get("time_step") != fc.attrs.get("time_step"):
        problem = f"time step {old.attrs.get('time_step')}, this forecast {fc.attrs.get('time_step')}"
    elif any(c in fc.coords and not np.allclose(fc[c].values, old[c].values) for c in ("lat", "lon")):
        problem = "other latitudes or longitudes"
    if problem:
        old.close()
        raise OutputError(path, f"holds forecasts of another layout ({problem}); move it away or choose another "
                                "archive path")
    return old


def _coords_and_attrs(fc: xr.Dataset, inits: pd.DatetimeIndex, leads: pd.TimedeltaIndex, has: np.ndarray,
                      checkpoints: np.ndarray, old: xr.Dataset | None) -> tuple[dict, dict]:
    coords: dict = {
        "init_time": ("init_time", inits.values, INIT_TIME),
        "lead_time": ("lead_time", leads.values, LEAD_TIME),
        "valid_time": (("init_time", "lead_time"), inits.values[:, None] + leads.values[None, :], VALID_TIME),
        "has_forecast": (("init_time", "lead_time"), has, HAS_FORECAST),
        "checkpoint": ("init_time", checkpoints, CHECKPOINT),
    }
    for name in ("lat", "lon", "y", "x"):
        if name in fc.coords:
            coords[name] = (fc[name].dims, fc[name].values, dict(fc[name].attrs))
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    created = old.attrs.get("created", now) if old is not None else now
    attrs = {"Conventions": fc.attrs.get("Conventions", "CF-1.8"),
             "title": f"simcast forecast archive for {fc.attrs.get('dataset', 'unknown data set')}",
             "simcast_archive_format": ARCHIVE_FORMAT}
    attrs.update({k: fc.attrs[k] for k in _DATASET_ATTRS if k in fc.attrs and k != "Conventions"})
    added = [iso_minutes(t) for t in fc["init_time"].values]
    attrs.update({
        "simcast_version": __version__,
        "created": created,
        "updated": now,
        "history": f"{created} simcast archive created; {now} added init time(s) "
                   + (", ".join(added) if len(added) <= 4 else f"{added[0]} .. {added[-1]} ({len(added)})"),
        "init_time_count": len(inits),
        "time_coverage_start": inits[0].isoformat(),
        "time_coverage_end": (inits[-1] + leads[-1]).isoformat(),
    })
    return coords, attrs


def _build(tmp: Path, fc: xr.Dataset, current: Path | None, old: xr.Dataset | None) -> None:
    names = forecast_variables(fc)
    new_inits = pd.DatetimeIndex(fc["init_time"].values)
    new_leads = pd.TimedeltaIndex(fc["lead_time"].values)
    old_inits = pd.DatetimeIndex(old["init_time"].values) if old is not None else pd.DatetimeIndex([])
    old_leads = pd.TimedeltaIndex(old["lead_time"].values) if old is not None else new_leads
    inits, leads = old_inits.union(new_inits), old_leads.union(new_leads)
    n, space_dims = len(inits), fc[names[0]].dims[2:]
    space = fc[names[0]].shape[2:]
    row_new = inits.get_indexer(new_inits)          # where each new init time goes
    row_old = inits.get_indexer(old_inits)          # where each kept init time goes (replaced ones: overwritten)
    lead_new, lead_old = leads.get_indexer(new_leads), leads.get_indexer(old_leads)
    replaced = np.isin(row_old, row_new)

    has = np.zeros((n, len(leads)), dtype="int8")
    checkpoints = np.full(n, "", dtype=object)
    if old is not None:
        has[np.ix_(row_old, lead_old)] = old["has_forecast"].values
        checkpoints[row_old] = np.asarray(old["checkpoint"].values, dtype=object)
    has[row_new] = 0
    has[np.ix_(row_new, lead_new)] = 1
    checkpoints[row_new] = str(fc.attrs.get("checkpoint", ""))
    coords, attrs = _coords_and_attrs(fc, inits, leads, has, checkpoints, old)

    data_vars = {v: (("init_time", "lead_time", *space_dims),
                     da.full((n, len(leads), *space), np.nan, dtype="float32", chunks=-1), dict(fc[v].attrs))
                 for v in names}
    for v in ("crs", "lat_bnds", "lon_bnds"):
        if v in fc.data_vars:
            data_vars[v] = (fc[v].dims, fc[v].values, dict(fc[v].attrs))
    template = xr.Dataset(data_vars, coords=coords, attrs=attrs)
    units = _time_units(inits.values, leads.values)
    for name in ("init_time", "valid_time"):
        template[name].encoding = {"units": f"{units} since 1970-01-01 00:00:00", "calendar": "proleptic_gregorian",
                                   "dtype": "int64"}
    template["lead_time"].encoding = {"units": units, "dtype": "int64"}
    encoding = {}
    for name, var in template.variables.items():
        enc = {**var.encoding, "compressors": COMPRESSORS}
        enc["chunks"] = (1, len(leads), *space) if name in names else (var.shape or None)
        if name in names:  # flat chunk files (c.<row>.0.0.0): a kept init time is one hard link, no folders
            enc["chunk_key_encoding"] = FLAT_KEYS
        if enc["chunks"] is None:
            enc.pop("chunks")
        if name in ("lat", "lon", "lat_bnds", "lon_bnds", "y", "x"):
            enc["_FillValue"] = None
        encoding[name] = enc
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        template.to_zarr(tmp, mode="w-", zarr_format=3, consolidated=True, compute=False, encoding=encoding,
                         write_empty_chunks=True)  # metadata and coordinates; the data chunks follow

    group = zarr.open_group(str(tmp), mode="r+")
    before = zarr.open_group(str(current), mode="r") if current is not None else None
    for v in names:
        new_arr = group[v].with_config({"write_empty_chunks": True})
        old_arr = before[v] if before is not None else None
        link = old_arr is not None and leads.equals(old_leads) and _same_chunk_format(old_arr, new_arr)
        for i, j in zip(np.flatnonzero(~replaced), row_old[~replaced]):
            if link:
                _link(current / v / old_arr.metadata.encode_chunk_key((int(i),) + (0,) * (1 + len(space))),
                      tmp / v / new_arr.metadata.encode_chunk_key((int(j),) + (0,) * (1 + len(space))))
            else:  # another lead axis (or chunk format): the kept forecast is rewritten, padded with NaN
                block = np.full((1, len(leads), *space), np.nan, dtype="float32")
                block[0, lead_old] = old_arr[int(i)]
                _write_row(new_arr, tmp / v, int(j), block)
        values = np.asarray(fc[v].values, dtype="float32")
        for k, j in enumerate(row_new):
            block = np.full((1, len(leads), *space), np.nan, dtype="float32")
            block[0, lead_new] = values[k]
            _write_row(new_arr, tmp / v, int(j), block)
    missing = missing_chunks(tmp)
    if missing:  # every chunk is linked or written above: a missing one is a bug, never swapped in
        raise RuntimeError(f"archive build left chunk {missing[0]} unwritten ({len(missing)} in all)")


def _same_chunk_format(a: zarr.Array, b: zarr.Array) -> bool:
    """Chunk files of a can serve as b's: same chunk shape, data type, fill value, codecs and key encoding."""
    def fmt(arr):
        d = dict(arr.metadata.to_dict())
        return {k: v for k, v in d.items() if k not in ("shape", "attributes")}
    return fmt(a) == fmt(b)


def _write_row(array: zarr.Array, folder: Path, row: int, block: np.ndarray) -> None:
    """Write one init time's chunk; a file already there (a hard link into the previous archive) is unlinked
    first, so that the previous archive is never written to."""
    key = array.metadata.encode_chunk_key((row,) + (0,) * (block.ndim - 1))
    with contextlib.suppress(FileNotFoundError):
        (folder / key).unlink()
    array[row:row + 1] = block


def _link(src: Path, dst: Path) -> None:
    if not dst.parent.is_dir():
        dst.parent.mkdir(parents=True)
    try:
        os.link(src, dst)
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        shutil.copyfile(src, dst)  # a file system without hard links: copy (same bytes, more I/O)
