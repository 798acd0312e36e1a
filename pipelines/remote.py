"""Zarr stores named by a URL or a local path, read lazily through fsspec: gs:// and s3:// anonymously (gcsfs and
s3fs come with `pip install simcast[cloud]`), http(s):// (aiohttp), a local folder.

One place for: where a store is (`resolve`), its fingerprint from its consolidated metadata (`describe`: unchanged
metadata, unchanged store, as published stores such as WeatherBench2's never rewrite data under the same metadata),
opening it lazily with the store's own chunks (`open_zarr`), and what goes wrong as one line naming the store.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

from .errors import InputError

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
CLOUD_EXTRA = "pip install 'simcast[cloud]'"
# consolidated metadata: Zarr 2's .zmetadata, or Zarr 3's root zarr.json holding consolidated_metadata
METADATA_FILES = (".zmetadata", "zarr.json")


def protocol(location: str) -> str | None:
    """The URL scheme ('gs', 'https', ...), None for a local path (file:// included)."""
    m = _SCHEME.match(str(location))
    return None if m is None or m.group(1).lower() == "file" else m.group(1).lower()


def resolve(location: str, root: Path | None = None) -> str:
    """A URL as given (trailing slashes dropped); a local path (or file:// URL) made absolute, a relative one taken
    from root."""
    location = str(location).strip()
    if protocol(location) is not None:
        return location.rstrip("/")
    if location.lower().startswith("file://"):
        location = location[len("file://"):]
    path = Path(os.path.expanduser(location))
    if not path.is_absolute():
        path = (root or Path.cwd()) / path
    return str(path.absolute())


def storage_options(location: str) -> dict | None:
    """fsspec options for a URL: anonymous access to public buckets."""
    proto = protocol(location)
    if proto in ("gs", "gcs"):
        return {"token": "anon"}
    if proto in ("s3", "s3a"):
        return {"anon": True}
    return {} if proto is not None else None


def _filesystem(location: str):
    import fsspec

    try:
        return fsspec.core.url_to_fs(location, **(storage_options(location) or {}))
    except ImportError as e:
        raise InputError(location, f"reading {protocol(location)}:// needs an optional package "
                                   f"({str(e).splitlines()[0]}): {CLOUD_EXTRA}") from None
    except ValueError as e:
        raise InputError(location, f"not a URL fsspec can read: {str(e).splitlines()[0]}") from None


def _unreachable(location: str, e: BaseException) -> InputError:
    detail = str(e).splitlines()[0] if str(e) else type(e).__name__
    return InputError(location, f"cannot reach the Zarr store ({type(e).__name__}: {detail})")


def read_metadata(location: str) -> tuple[str, bytes, dict]:
    """(file name, contents, local stat or {}) of the store's consolidated metadata. A store without it, a
    missing store and an unreachable URL are each one line."""
    if protocol(location) is None:
        path = Path(location)
        if not path.exists():
            raise InputError(location, "no such Zarr store (the folder does not exist)")
        if not path.is_dir():
            raise InputError(location, "not a Zarr store (a file, not a folder)")
        for name in METADATA_FILES:
            f = path / name
            if f.is_file():
                data = f.read_bytes()
                if _consolidated(name, data):
                    st = f.stat()
                    return name, data, {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
        return _no_metadata(location, any((path / n).is_file() for n in (*METADATA_FILES, ".zgroup")))
    fs, path = _filesystem(location)
    seen = False
    for name in METADATA_FILES:
        try:
            data = fs.cat_file(f"{path.rstrip('/')}/{name}")
        except FileNotFoundError:
            continue
        except Exception as e:  # noqa: BLE001 - network and auth errors of every fsspec backend: one line
            raise _unreachable(location, e) from None
        seen = True
        if _consolidated(name, data):
            return name, data, {}
    return _no_metadata(location, seen)


def _consolidated(name: str, data: bytes) -> bool:
    if name == ".zmetadata":
        return True
    import json

    try:
        return bool(json.loads(data).get("consolidated_metadata"))
    except (ValueError, AttributeError):
        return False


def _no_metadata(location: str, zarr_like: bool):
    if zarr_like:
        raise InputError(location, "Zarr store without consolidated metadata: consolidate it "
                                   "(zarr.consolidate_metadata) so that it can be read lazily and fingerprinted")
    raise InputError(location, "not a Zarr store (no .zmetadata or zarr.json)")


def describe(location: str, arrays=()) -> dict:
    """Provenance and fingerprint of a store: where it is, the hash of its consolidated metadata (and, for a local
    store, the metadata file's size and modification time), and the state of the chunks of `arrays` (names, those
    absent skipped): see `chunk_state`."""
    name, data, stat = read_metadata(location)
    return {"path": location, "metadata": name, "metadata_sha256": hashlib.sha256(data).hexdigest(),
            "metadata_bytes": len(data), **stat, **chunk_state(location, arrays)}


# what a file system's listing says of a file that changes when it is rewritten: a local file's modification
# time and inode, GCS's crc32c / md5 / generation, S3's ETag and modification time
CHANGE_KEYS = ("mtime", "ino", "crc32c", "md5Hash", "generation", "ETag", "LastModified", "updated")
SAMPLED_CHUNKS = 8  # chunks read per array where no listing can be had (http://)


def chunk_state(location: str, arrays) -> dict:
    """What can be known cheaply of the chunk files of `arrays`: where the file system lists files (a local
    folder, gs://, s3://), every chunk's size and what the listing says changes with its contents (CHANGE_KEYS);
    over http(s)://, where nothing lists, the contents of a sample of chunks (SAMPLED_CHUNKS per array, spread
    over its first axis). Returns {"chunks_sha256", "chunks_checked": a line saying what was and was not}."""
    arrays = list(dict.fromkeys(arrays))
    if not arrays:
        return {}
    proto = protocol(location)
    if proto in ("http", "https"):
        return _sampled(location, arrays)
    import fsspec

    fs, root = _filesystem(location) if proto is not None else (fsspec.filesystem("file"), location)
    root = root.rstrip("/")
    listed, keys = {}, set()
    for name in arrays:
        try:
            found = fs.find(f"{root}/{name}", detail=True)
        except FileNotFoundError:
            continue
        except Exception as e:  # noqa: BLE001 - network and auth errors of every fsspec backend: one line
            raise _unreachable(location, e) from None
        for path, info in found.items():
            marks = {k: str(info[k]) for k in CHANGE_KEYS if info.get(k) is not None}
            keys |= set(marks)
            listed[path[len(root):].lstrip("/")] = [info.get("size"), marks]
    by = ", ".join(["size", *sorted(keys)])
    names = sorted({k.split("/")[0] for k in listed})
    return {"chunks_sha256": _digest(listed),
            "chunks_checked": f"every file of {', '.join(names)} ({len(listed)} files) by {by}"}


def _sampled(location: str, arrays) -> dict:
    import zarr

    fs, root = _filesystem(location)
    root = root.rstrip("/")
    try:
        group = zarr.open_group(location, mode="r", storage_options=storage_options(location))
        present = [(n, group[n]) for n in arrays if n in group]
    except Exception as e:  # noqa: BLE001 - network errors of every fsspec backend: one line
        raise _unreachable(location, e) from None
    read, total = {}, 0
    for name, array in present:
        grid = [-(-s // c) for s, c in zip(array.shape, array.chunks)]
        rows = sorted({round(i * (grid[0] - 1) / max(SAMPLED_CHUNKS - 1, 1)) for i in range(SAMPLED_CHUNKS)}
                      if grid and grid[0] else set())
        total += int(np.prod(grid)) if grid else 1
        for row in rows or [None]:
            key = array.metadata.encode_chunk_key(() if row is None else (row,) + (0,) * (len(grid) - 1))
            try:
                data = fs.cat_file(f"{root}/{name}/{key}")
            except FileNotFoundError:
                data = b""  # a chunk holding only the fill value
            except Exception as e:  # noqa: BLE001
                raise _unreachable(location, e) from None
            read[f"{name}/{key}"] = hashlib.sha256(data).hexdigest()
    return {"chunks_sha256": _digest(read),
            "chunks_checked": f"the contents of {len(read)} of {total} chunks of {', '.join(n for n, _ in present)} "
                              f"({protocol(location)}:// lists no files: values rewritten in other chunks are not "
                              "seen; --force rebuilds)"}


def _digest(data: dict) -> str:
    import json

    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def open_zarr(location: str, check: bool = True) -> xr.Dataset:
    """The store as a lazy Dataset, dask chunks = the store's chunks, times and lead times decoded."""
    if check:
        read_metadata(location)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=RuntimeWarning)
            return xr.open_zarr(location, storage_options=storage_options(location), consolidated=True, chunks={},
                                decode_timedelta=True)
    except ImportError as e:
        raise InputError(location, f"reading it needs an optional package ({str(e).splitlines()[0]}): "
                                   f"{CLOUD_EXTRA}") from None
    except (KeyError, ValueError, TypeError) as e:
        raise InputError(location, f"not a readable Zarr store: {str(e).splitlines()[0] if str(e) else e!r}") from None
    except Exception as e:  # noqa: BLE001 - network errors of every fsspec backend: one line
        raise _unreachable(location, e) from None
