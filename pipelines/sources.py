"""Finding an entry's source files and fingerprinting them, so an unchanged ingest can be skipped."""

from __future__ import annotations

import glob
import hashlib
import json
import os
from pathlib import Path

from data_catalog import DatasetEntry, source_root

from .errors import InputError


def find_files(pattern: str, root: Path | None = None) -> list[Path]:
    """Files matching a glob (absolute, or relative to root), sorted by name. None found is an error."""
    full = pattern if root is None or os.path.isabs(pattern) else str(root / pattern)
    files = sorted(Path(p) for p in glob.glob(os.path.expanduser(full)) if os.path.isfile(p))
    if not files:
        raise InputError(full, "no files match this pattern (check the data root, SIMCAST_DATA_ROOT or --source)")
    return files


def entry_files(entry: DatasetEntry, source: str | None = None) -> dict[str, list[Path]]:
    """Source files per variable name; the key '*' holds files shared by all variables.

    With an explicit --source glob every variable is looked for in all the files it matches.
    """
    root = source_root(entry)
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


def fingerprint(entry: DatasetEntry, files: list[dict], store_format: int) -> str:
    """Hash of everything the store's contents depend on: the entry, the files as they are, the format."""
    # training defaults and prose do not change the store's contents
    data_fields = entry.model_dump(mode="json", exclude={"training", "description"})
    payload = {"entry": data_fields, "files": files, "format": store_format}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
