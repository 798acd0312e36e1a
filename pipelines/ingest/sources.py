"""Finding an entry's source files and fingerprinting them, so an unchanged ingest can be skipped.

An entry with `source.url` (weatherbench2) has one source, a Zarr store (a URL or a local path): it is fingerprinted
by its consolidated metadata and the state of the chunks it is read from (pipelines.remote.describe: sizes and
modification times or checksums where the file system lists them, a sample of chunk contents over http), and its
location stands where the files would."""

from __future__ import annotations

import glob
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from data_catalog import DatasetEntry

from ..errors import InputError


def find_files(pattern: str, root: Path | None = None) -> list[Path]:
    """Files matching a glob (absolute, or relative to root), sorted by name. None found is an error."""
    full = pattern if root is None or os.path.isabs(pattern) else str(root / pattern)
    files = sorted(Path(p) for p in glob.glob(os.path.expanduser(full)) if os.path.isfile(p))
    if not files:
        raise InputError(full, "no files match this pattern (check the data root, SIMCAST_DATA_ROOT or --source)")
    return files


def entry_files(entry: DatasetEntry, root: Path, source: str | None = None) -> dict[str, list[Path]]:
    """Source files per variable name; the key '*' holds files shared by all variables.

    root: where the catalog's patterns are relative to. With an explicit source glob every variable is looked
    for in all the files it matches.
    """
    if source is not None:
        return {"*": find_files(source, Path.cwd())}
    out: dict[str, list[Path]] = {}
    for var in entry.variables:
        if var.pattern is not None:
            out[var.name] = find_files(var.pattern, root)
    if len(out) < len(entry.variables):
        out["*"] = find_files(entry.source.pattern, root)
    return out


def describe_files(files: list[Path]) -> list[dict]:
    """Provenance of source files: absolute path, size and modification time."""
    out = []
    for f in files:
        st = f.stat()
        out.append({"path": str(f.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    return out


# catalog fields that do not change a store's contents: training defaults, prose, where the files come from
NOT_DATA_FIELDS = frozenset({"training", "description", "download"})


def data_fields(entry_dump: dict) -> dict:
    """The fields of a dumped catalog entry (entry.model_dump(mode="json")) that the store's contents depend on."""
    return {k: v for k, v in entry_dump.items() if k not in NOT_DATA_FIELDS}


def fingerprint(entry: DatasetEntry, files: list[dict], store_format: int) -> str:
    """Hash of everything the store's contents depend on: the entry, the files as they are, the format."""
    payload = {"entry": data_fields(entry.model_dump(mode="json")), "files": files, "format": store_format}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Sources:
    by_variable: dict[str, list[Path]]  # source files per variable ('*': shared by all); a store: {'*': [location]}
    files: list[Path]                   # every data file, sorted (a store: its location, a str)
    holidays: Path | None
    described: list[dict]               # provenance: path, size, mtime of each file (holidays included)
    fingerprint: str                    # what the store's contents depend on


def find_sources(entry: DatasetEntry, root: Path, source: str | None, store_format: int) -> Sources:
    """An entry's source files as they are now, and the fingerprint a store built from them carries."""
    if entry.source.url is not None:
        return zarr_source(entry, root, source, store_format)
    by_variable = entry_files(entry, root, source)
    files = sorted({f for fs in by_variable.values() for f in fs})
    holidays = root / entry.holidays if entry.holidays else None
    if holidays is not None and not holidays.is_file():
        raise InputError(holidays, "holiday file named in the catalog does not exist")
    described = describe_files(files + ([holidays] if holidays else []))
    return Sources(by_variable, files, holidays, described, fingerprint(entry, described, store_format))


def zarr_source(entry: DatasetEntry, root: Path, source: str | None, store_format: int) -> Sources:
    """The Zarr store of an entry with source.url (or --source: a URL or a path relative to the working folder)."""
    from ..remote import describe, resolve

    from .readers import store_names

    location = resolve(source, Path.cwd()) if source is not None else resolve(entry.source.url, root)
    # the chunks the store is read from: the entry's variables (under any of their names) and the times
    arrays = [n for var in entry.variables for n in store_names(var.name, var.aliases)] + ["time"]
    described = [describe(location, arrays)]
    return Sources({"*": [location]}, [location], None, described, fingerprint(entry, described, store_format))
