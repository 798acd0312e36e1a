"""The canonical Zarr store: opening it, checking it is whole, and the data-set properties later stages read.

A store is written with a CRC-32C checksum on every chunk of every array and with every chunk present (also
those holding only the fill value), so that damage is detectable: a missing chunk is found when the store is
opened (a directory listing), a corrupt one when it is read. Both end as one line naming the array and chunk.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import warnings
from pathlib import Path

import numpy as np
import xarray as xr
import zarr

from .errors import InputError, StoreError

STORE_FORMAT = 2  # 2: checksummed chunks, all chunks written, consolidated metadata, data-set properties
REBUILD = "ingest it again (simcast ingest NAME --force)"


def read_attrs(path: str | Path) -> dict | None:
    """A store's attributes, or None when there is no readable simcast store at path."""
    meta = Path(path) / "zarr.json"
    try:
        attrs = json.loads(meta.read_text()).get("attributes", {})
    except (OSError, ValueError, AttributeError):  # missing, half-written or foreign: no usable store here
        return None
    return attrs if isinstance(attrs, dict) and "simcast_format" in attrs else None


def _chunk_keys(array: zarr.Array):
    grid = [range(math.ceil(s / c)) for s, c in zip(array.shape, array.chunks)]
    for coords in itertools.product(*grid):
        yield coords, array.metadata.encode_chunk_key(coords)


def missing_chunks(path: str | Path) -> list[tuple[str, str]]:
    """(array, chunk key) of every chunk that should be in the store and is not (a listing, no reads)."""
    path = Path(path)
    group = zarr.open_group(str(path), mode="r")
    missing = []
    for name, array in group.arrays():
        for _, key in _chunk_keys(array):
            if not (path / name / key).is_file():
                missing.append((name, key))
    return missing


def _damage(path: Path, name: str, key: str, what: str) -> StoreError:
    return StoreError(path, f"damaged store: array {name!r} chunk {key} is {what}; {REBUILD}")


def open_store(path: str | Path) -> xr.Dataset:
    """Open a simcast store lazily, after checking that it is one, of this format, and whole (every chunk
    present). Corrupt chunks are found when read: wrap reads in `reading(path)`."""
    path = Path(path)
    attrs = read_attrs(path)
    if attrs is None:
        what = "does not exist" if not path.exists() else "is not a simcast Zarr store (or is damaged)"
        raise InputError(path, f"{what}; run `simcast ingest` first")
    if attrs["simcast_format"] != STORE_FORMAT:
        raise InputError(path, f"store format {attrs['simcast_format']} is older than this simcast's "
                               f"({STORE_FORMAT}); {REBUILD}")
    try:
        missing = missing_chunks(path)
    except (OSError, ValueError, KeyError) as e:
        raise StoreError(path, f"damaged store: its metadata cannot be read ({e}); {REBUILD}") from None
    if missing:
        name, key = missing[0]
        more = f" ({len(missing)} chunks missing in all)" if len(missing) > 1 else ""
        raise StoreError(path, f"damaged store: array {name!r} chunk {key} is missing{more}; {REBUILD}")
    with reading(path), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        ds = xr.open_zarr(path, consolidated=True)
    ds.encoding["source"] = str(path)
    return ds


def _is_corruption(error: BaseException) -> bool:
    text = str(error).lower()
    return isinstance(error, (ValueError, RuntimeError, OSError)) and (
        "checksum" in text or "blosc" in text or "decompress" in text or "codec" in text)


def first_corrupt_chunk(path: str | Path) -> tuple[str, str] | None:
    """(array, chunk key) of the first chunk that fails to decode or to match its checksum."""
    group = zarr.open_group(str(path), mode="r")
    for name, array in group.arrays():
        for coords, key in _chunk_keys(array):
            sel = tuple(slice(c * n, (c + 1) * n) for c, n in zip(coords, array.chunks))
            try:
                array[sel]
            except Exception as e:  # noqa: BLE001 - whatever the codec raises, this chunk is the damage
                if _is_corruption(e):
                    return name, key
                raise
    return None


@contextlib.contextmanager
def reading(path: str | Path):
    """Reads from the store at path inside this block: a corrupt chunk becomes one line naming it."""
    try:
        yield
    except Exception as e:
        if not _is_corruption(e):
            raise
        found = first_corrupt_chunk(path)
        if found is None:
            raise
        raise _damage(Path(path), *found, "corrupt (its checksum does not match)") from None


def verify_store(path: str | Path) -> dict:
    """Check a whole store: every chunk present and matching its checksum, the data finite. Raises StoreError
    on the first problem; returns counts of what was checked."""
    path = Path(path)
    ds = open_store(path)
    corrupt = first_corrupt_chunk(path)
    if corrupt:
        raise _damage(path, *corrupt, "corrupt (its checksum does not match)")
    group = zarr.open_group(str(path), mode="r")
    chunks = sum(sum(1 for _ in _chunk_keys(a)) for _, a in group.arrays())
    data = group["data"]
    step = data.chunks[0]
    for start in range(0, data.shape[0], step):
        block = data[start:start + step]
        if not np.isfinite(block).all():
            t = start + int(np.flatnonzero(~np.isfinite(block).reshape(len(block), -1).all(axis=1))[0])
            raise StoreError(path, f"damaged store: array 'data' holds non-finite values at time index {t} "
                                   f"({ds['time'].values[t]}); {REBUILD}")
    return {"arrays": len(list(group.array_keys())), "chunks": chunks, "time_steps": int(data.shape[0])}


# ---- data-set properties ---------------------------------------------------------------------------

def properties(ds: xr.Dataset) -> dict:
    """What later stages need to know about the data, declared by the reader at ingest (never the kind):
    physical_floor (smallest physical value, or None), weekly_rhythm (day of week as an input), time_zone of
    the time stamps ("UTC", an IANA name, or "" for an unnamed local time), image_metrics (SSIM/PSNR on data
    scaled to [0, 1] by the training min/max)."""
    return json.loads(ds.attrs.get("properties", "{}"))


def physical_floor(ds: xr.Dataset) -> float | None:
    return properties(ds).get("physical_floor")


def weekly_rhythm(ds: xr.Dataset) -> bool:
    return bool(properties(ds).get("weekly_rhythm", False))


def store_stats(ds: xr.Dataset) -> dict:
    """The training-period statistics stored with the data, as plain lists per channel."""
    return {k: [float(v) for v in ds[f"stat_{k}"].values] for k in ("mean", "std", "min", "max")}
