"""Zarr stores: atomic writes (temporary path, then rename), recovery after a kill, and reading back."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import xarray as xr
import zarr

from .errors import InputError

STORE_FORMAT = 1


def _siblings(target: Path, tag: str) -> list[Path]:
    return sorted(target.parent.glob(f".{target.name}.{tag}-*"))


def recover_interrupted(target: Path) -> None:
    """Undo what a killed write left behind: drop half-written temporaries, restore a store moved aside."""
    for tmp in _siblings(target, "tmp"):
        shutil.rmtree(tmp, ignore_errors=True)
    old = _siblings(target, "old")
    if old and not target.exists():
        os.rename(old[-1], target)
        old = old[:-1]
    for o in old:
        shutil.rmtree(o, ignore_errors=True)


def write_atomic(target: Path, write) -> None:
    """Call write(tmp_path) to build the result beside target, then swap it in with renames.

    The previous target stays untouched until the new one is complete; a kill at any point leaves
    either the old or the new result in place (recover_interrupted cleans up the rest).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_interrupted(target)
    token = uuid.uuid4().hex[:8]
    tmp = target.parent / f".{target.name}.tmp-{token}"
    try:
        write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
        raise
    if target.exists():
        old = target.parent / f".{target.name}.old-{token}"
        os.rename(target, old)
        os.rename(tmp, target)
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)
    else:
        os.rename(tmp, target)


def read_attrs(path: Path) -> dict | None:
    """A store's attributes, or None when there is no readable simcast store at path."""
    try:
        attrs = dict(zarr.open_group(str(path), mode="r").attrs)
    except Exception:  # missing, half-written or foreign: all mean "no usable store here"
        return None
    return attrs if "simcast_format" in attrs else None


def open_store(path: str | Path) -> xr.Dataset:
    """Open a simcast store lazily; a missing or foreign store is a one-line error."""
    path = Path(path)
    attrs = read_attrs(path)
    if attrs is None:
        what = "does not exist" if not path.exists() else "is not a simcast Zarr store (or is damaged)"
        raise InputError(path, f"{what}; run `simcast ingest` first")
    if attrs["simcast_format"] != STORE_FORMAT:
        raise InputError(path, f"store format {attrs['simcast_format']} is not {STORE_FORMAT}; ingest again")
    return xr.open_zarr(path, consolidated=False)


def store_json(ds: xr.Dataset, key: str):
    """Attributes holding structured values are stored as JSON text (portable to NetCDF tools)."""
    return json.loads(ds.attrs[key])
