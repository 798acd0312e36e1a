"""Everything simcast writes goes through here: it replaces only what it wrote itself, atomically.

Each output is recognized by its own marker: a store, forecast or forecast archive by its attributes
(`simcast_format`, `simcast_forecast_format`, `simcast_archive_format`), a folder (run, evaluation, report,
GeoTIFF set, verification) by a `.simcast` file naming its kind, a synthetic source file by its
`simcast_synthetic` attribute. Anything else at an output path (a user's folder or file, or a simcast output of
another kind) is refused with one line, before any work is done.

Writes build the result beside the target (`.<name>.tmp-<token>`) and swap it into place in one step (Linux's
renameat2 RENAME_EXCHANGE), so the target path holds the complete old or the complete new result at every moment.
Where the file system cannot exchange, two renames are used and `recover_interrupted` puts the old result back if a
kill came between them.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import functools
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Callable

from .errors import OutputError

MARKER = ".simcast"
KINDS = ("store", "forecast", "run", "evaluation", "report", "geotiff", "archive", "verification", "synthetic",
         "replay")
_LEGACY_MARKERS = {".simcast-report": "report"}


def _zarr_kind(path: Path) -> str | None:
    meta = path / "zarr.json"
    if not meta.is_file():
        return None
    try:
        attrs = json.loads(meta.read_text()).get("attributes", {})
    except (OSError, ValueError):
        return None
    if "simcast_forecast_format" in attrs:
        return "forecast"
    if "simcast_archive_format" in attrs:
        return "archive"
    if "simcast_format" in attrs:
        return "store"
    return None


def _file_kind(path: Path) -> str | None:
    if path.suffix == ".nc":
        try:
            import netCDF4

            with netCDF4.Dataset(path) as ds:
                names = set(ds.ncattrs())
        except Exception:  # noqa: BLE001 - unreadable means: not ours
            return None
        if "simcast_forecast_format" in names:
            return "forecast"
        return "synthetic" if "simcast_synthetic" in names else None
    if path.suffix == ".h5":
        try:
            import h5py

            with h5py.File(path, "r") as f:
                return "synthetic" if "simcast_synthetic" in f.attrs else None
        except Exception:  # noqa: BLE001
            return None
    return None


def owner_kind(path: str | Path) -> str | None:
    """The kind of simcast output at path, or None when simcast did not write what is there."""
    path = Path(path)
    if path.is_dir():
        marker = path / MARKER
        if marker.is_file():
            with contextlib.suppress(OSError, ValueError, AttributeError):
                return json.loads(marker.read_text()).get("kind")
        for name, kind in _LEGACY_MARKERS.items():
            if (path / name).is_file():
                return kind
        if (path / "last.pt").is_file() and (path / "history.json").is_file():
            return "run"  # a run folder from before run markers
        return _zarr_kind(path)
    if path.is_file():
        return _file_kind(path)
    return None


def _what(path: Path) -> str:
    if path.is_symlink():
        return "a symbolic link"
    if path.is_dir():
        return "a folder" if any(path.iterdir()) else "an empty folder"
    return "a file"


def claim(path: str | Path, kind: str, empty_folder_ok: bool = True) -> None:
    """Refuse, in one line, to write a `kind` at path when something simcast did not write as a `kind` is there.

    An empty folder may be taken for a folder-like output (simcast creates nothing of value in it)."""
    path = Path(path)
    if not os.path.lexists(path):
        return
    found = None if path.is_symlink() else owner_kind(path)
    if found == kind:
        return
    if empty_folder_ok and found is None and path.is_dir() and not path.is_symlink() and not any(path.iterdir()):
        return
    what = f"a simcast {found}" if found else _what(path)
    raise OutputError(path, f"exists and is {what}, not a simcast {kind}; simcast replaces only what it wrote "
                            "itself: choose another path, or move it away yourself")


def mark(folder: str | Path, kind: str, **details) -> None:
    """Put a folder's marker in place (inside a folder that is being built, or one simcast owns)."""
    from . import __version__

    (Path(folder) / MARKER).write_text(json.dumps({"kind": kind, "simcast_version": __version__, **details}) + "\n")


# ---- writing ------------------------------------------------------------------------------------------

WRITE_PROBLEMS = {errno.EACCES: "permission denied", errno.EPERM: "not permitted", errno.EROFS: "read-only file system",
                  errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
                  errno.ENOTDIR: "a part of the path is a file, not a folder", errno.ENAMETOOLONG: "name too long"}


@contextlib.contextmanager
def writing(target: str | Path):
    """OS errors that mean the target cannot be written (permissions, a full disk, a read-only file system)
    become one line naming it; other errors pass unchanged."""
    try:
        yield
    except OSError as e:
        if e.errno not in WRITE_PROBLEMS:
            raise
        raise OutputError(target, f"cannot write here: {WRITE_PROBLEMS[e.errno]}") from None


def ensure_writable(folder: str | Path) -> Path:
    """Create `folder` (and its parents) if needed and check that files can be created in it; one line if not.
    Called before any work, so that a run does not end in a failed write."""
    folder = Path(folder)
    with writing(folder):
        if folder.exists() and not folder.is_dir():
            raise OutputError(folder, "is a file, not a folder")
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".simcast-probe-{uuid.uuid4().hex[:8]}"
        probe.write_bytes(b"")
        probe.unlink()
    return folder


def _siblings(target: Path, tag: str) -> list[Path]:
    return sorted(target.parent.glob(f".{target.name}.{tag}-*"))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        _remove_tree(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _remove_tree(path: Path, threads: int = 8) -> None:
    """shutil.rmtree(path, ignore_errors=True), with the unlinks and rmdirs of a big tree (a store's thousands of
    chunk folders) spread over threads: where each waits on the disk (ext4 with online discard frees folder
    blocks synchronously) that is several times faster. Files first, then folders from the deepest level up."""
    from concurrent.futures import ThreadPoolExecutor

    files, levels, stack = [], [], [(str(path), 0)]
    while stack:
        folder, depth = stack.pop()
        levels += [[] for _ in range(depth + 1 - len(levels))]
        levels[depth].append(folder)
        with contextlib.suppress(OSError), os.scandir(folder) as entries:
            for e in entries:
                (stack.append((e.path, depth + 1)) if e.is_dir(follow_symlinks=False) else files.append(e.path))
    if len(files) + sum(map(len, levels)) > 512:
        def each(fn, paths):
            for p in paths:
                with contextlib.suppress(OSError):
                    fn(p)

        with ThreadPoolExecutor(threads) as pool:
            for fn, paths in [(os.unlink, files)] + [(os.rmdir, level) for level in reversed(levels[1:])]:
                list(pool.map(lambda part, fn=fn: each(fn, part), [paths[i::threads * 4] for i in range(threads * 4)]))
    shutil.rmtree(path, ignore_errors=True)  # the rest (a small tree; or anything that appeared meanwhile)


def recover_interrupted(target: str | Path) -> None:
    """Undo what a killed write left beside target: drop half-written temporaries, restore a result that was
    moved aside when the kill came between the two renames of the swap."""
    target = Path(target)
    if not target.parent.is_dir():
        return
    for tmp in _siblings(target, "tmp"):
        _remove(tmp)
    old = _siblings(target, "old")
    if old and not os.path.lexists(target):
        os.rename(old[-1], target)
        old = old[:-1]
    for o in old:
        _remove(o)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


@functools.cache
def _renameat2():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return fn


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths; False where the system or file system cannot."""
    fn = _renameat2()
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _swap_into_place(tmp: Path, target: Path, token: str) -> None:
    """tmp becomes target; the previous target (if any) is dropped once the new one is in place."""
    if not os.path.lexists(target):
        os.rename(tmp, target)
    elif _exchange(tmp, target):
        _remove(tmp)  # now the previous result
    else:
        old = target.parent / f".{target.name}.old-{token}"
        os.rename(target, old)
        os.rename(tmp, target)
        _remove(old)


def write_atomic(target: str | Path, build: Callable[[Path], None], kind: str) -> Path:
    """Build a `kind` output with build(tmp) at a temporary path beside target, then swap it into place.

    Refuses a target that is not a simcast `kind` (see `claim`). The previous target stays untouched until the
    new one is complete; a kill at any point leaves the old or the new result (recover_interrupted tidies up).
    """
    target = Path(target)
    claim(target, kind)
    with writing(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        recover_interrupted(target)
        token = uuid.uuid4().hex[:8]
        tmp = target.parent / f".{target.name}.tmp-{token}"
        try:
            build(tmp)
            if tmp.is_dir() and kind not in ("store", "forecast", "archive"):
                mark(tmp, kind)
        except BaseException:
            _remove(tmp)
            raise
        _swap_into_place(tmp, target, token)
        _fsync_dir(target.parent)
    return target


def write_text_atomic(target: str | Path, text: str) -> Path:
    """A small file inside a folder simcast owns (a run folder's spec, a marker's neighbour)."""
    target = Path(target)
    with writing(target):
        tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            _remove(tmp)
            raise
    return target
