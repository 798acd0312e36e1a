"""Downloads: a catalog entry's raw files fetched into the data root, in the layout its source patterns expect.

    result = pipelines.download.run(DownloadSpec.from_catalog("weatherbench-t2m-5.625deg"))

The catalog says where each file or archive comes from (the entry's `download.files`: url, zip or not, its place
under the data root, and size and sha256 where they are known in advance). For each one:

- **resumable**: the transfer goes to `<data root>/.simcast-downloads/<name>.part`; a rerun, or an automatic retry
  after a dropped connection, asks for the rest with an HTTP Range request (with If-Range: only from the same
  version of the file); a server that answers with the whole file instead starts it again from the beginning;
- **checked**: an HTTP error, a connection refused, an HTML page instead of an archive, a size or sha256 other than
  the catalog's (or than the one recorded at the first download), a corrupt zip: each ends in one line naming the
  URL, and nothing is unpacked;
- **atomic**: a transfer is renamed from `.part` only when complete and checked; an archive is unpacked into a
  temporary folder beside its place and moved into place (in one rename when the folder is new), so a partial
  download never looks like data;
- **recorded**: the size and sha256 of the download and of every file put in place go into
  `<data root>/.simcast-downloads.json`; a rerun that finds every file present and matching its record does
  nothing, without the network (a file whose size and modification time are unchanged counts as matching;
  `check` hashes every file again);
- **careful**: a file in the way that differs from the downloaded one, and that simcast did not put there, is
  refused in one line and left as it is (simcast replaces only what it wrote itself); a file simcast downloaded
  that has changed since is refused the same way.

Files without a url (TaxiBJ's) are only checked to be in place: while any is missing, one line says which files go
where and where to get them (the entry's `download.instructions`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import glob
import hashlib
import json
import os
import re
import sys
import time
import urllib.parse
import uuid
import zipfile
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable

from data_catalog.schema import DatasetEntry, DownloadFile

from .errors import InputError, OutputError
from .outputs import _fsync_dir, _remove, ensure_writable, recover_interrupted, write_text_atomic, writing
from .specs import DownloadSpec

MANIFEST = ".simcast-downloads.json"   # in the data root: what simcast downloaded, with sizes and sha256
PARTIAL_DIR = ".simcast-downloads"     # in the data root, while needed: transfers under way (.part), archives
MANIFEST_FORMAT = 1
BLOCK = 1 << 20
RETRY_DELAY = 2.0  # seconds before the first automatic resume of an interrupted transfer; doubled each time
CONNECT_TIMEOUT, READ_TIMEOUT = 30.0, 120.0
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip's first local header; an empty zip's end record


@dataclass
class Placed:
    """One file or archive of an entry, as this run left it."""

    path: str              # its place under the data root
    status: str            # "present" (downloaded earlier, verified), "downloaded", "in place" (put there by hand)
    url: str | None
    files: int             # files it put in place (an archive's members)
    transferred: int = 0   # bytes transferred by this run


@dataclass
class DownloadResult:
    dataset: str
    data_root: Path
    items: list[Placed] = field(default_factory=list)
    manifest: Path | None = None
    note: str | None = None  # why there was nothing to download (bundled files, a Zarr store read by URL)

    @property
    def downloaded(self) -> bool:
        return any(p.status == "downloaded" for p in self.items)

    def as_dict(self) -> dict:
        return {"dataset": self.dataset, "data_root": str(self.data_root), "downloaded": self.downloaded,
                "manifest": None if self.manifest is None else str(self.manifest), "note": self.note,
                "items": [asdict(p) for p in self.items]}


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(spec: DownloadSpec, progress: bool = True, log: Callable[[str], None] | None = None) -> DownloadResult:
    """Put the entry's source files in place under the data root (a no-op when they are there and verified)."""
    log = log or _stderr
    entry, root = spec.entry, spec.data_root
    result = DownloadResult(spec.dataset, root)
    if entry.source.url is not None:
        result.note = f"reads its Zarr store {entry.source.url} at ingest: nothing to download"
        return result
    if entry.source.root == "bundled":
        result.note = "its files are bundled with simcast: nothing to download"
        return result
    if entry.download is None:
        _check_patterns(entry, root, "the catalog entry has no download section: put the files there yourself "
                                     "(or add download: to the entry, see the bundled catalog)")
        result.note = "the catalog names no download for it; its files are in place"
        return result
    by_hand = [f for f in entry.download.files if f.url is None]
    remote = [f for f in entry.download.files if f.url is not None]
    placed = _check_by_hand(entry, by_hand, root)  # first: nothing is fetched for an entry that lacks them
    if remote:
        placed.update(_fetch_all(remote, spec, progress, log))
        result.manifest = root / MANIFEST
    result.items = [placed[f.path] for f in entry.download.files]
    _check_patterns(entry, root, "the downloaded files are not where the catalog's pattern looks (check the entry's "
                                 "source pattern and its download paths)")
    return result


# ---- files put in place by hand -------------------------------------------------------------------------

def _check_by_hand(entry: DatasetEntry, files: list[DownloadFile], root: Path) -> dict[str, Placed]:
    missing = [f for f in files if not (root / f.path).is_file()]
    if missing:
        where = ", ".join(str(root / f.path) for f in missing)
        pattern = f" (the catalog's pattern {entry.source.pattern} under the data root, SIMCAST_DATA_ROOT)" \
            if entry.source.pattern else ""
        count = f"{len(missing)} of its {len(files)}" if len(missing) < len(files) else f"its {len(files)}"
        raise InputError(root, f"{entry.name}: {count} files are missing; put them at "
                               f"{where}{pattern}. {' '.join((entry.download.instructions or '').split())}".rstrip())
    for f in files:
        path = root / f.path
        if f.size is not None and path.stat().st_size != f.size:
            raise InputError(path, f"is {path.stat().st_size} bytes; the catalog expects {f.size}: not the file "
                                   f"{entry.name} needs")
        if f.sha256 is not None and _sha256(path) != f.sha256:
            raise InputError(path, f"sha256 differs from the catalog's {f.sha256}: not the file {entry.name} needs")
    return {f.path: Placed(f.path, "in place", None, 1) for f in files}


def _check_patterns(entry: DatasetEntry, root: Path, problem: str) -> None:
    """The entry's source patterns match files under the data root; else one line naming the pattern."""
    patterns = [v.pattern for v in entry.variables if v.pattern is not None]
    if len(patterns) < len(entry.variables) and entry.source.pattern is not None:
        patterns.append(entry.source.pattern)
    for pattern in patterns:
        full = str(root / pattern)
        if not any(os.path.isfile(p) for p in glob.glob(full)):
            raise InputError(full, f"no files match this pattern: {problem}")


# ---- downloads ------------------------------------------------------------------------------------------

def _fetch_all(files: list[DownloadFile], spec: DownloadSpec, progress: bool, log) -> dict[str, Placed]:
    root = spec.data_root
    manifest = root / MANIFEST
    placed, todo = {}, []
    records = _load_manifest(manifest)
    for f in files:  # without the network and without writing: what is there and verified
        record = records.get(f.path)
        if _current(f, record, root, spec.check):
            placed[f.path] = Placed(f.path, "present", f.url, len(record["files"]))
        else:
            todo.append(f)
    if not todo:
        return placed
    ensure_writable(root)
    with _lock(root):
        try:
            records = _load_manifest(manifest)  # as it is now that this process holds the data root
            for f in todo:
                record = records.get(f.path)
                if _current(f, record, root, spec.check):
                    placed[f.path] = Placed(f.path, "present", f.url, len(record["files"]))
                    continue
                record, transferred, complete = _download(f, spec, records, progress, log)
                records[f.path] = record
                _save_manifest(manifest, records)
                if complete is not None:
                    _remove(complete)  # the archive, once its files are in place and recorded
                placed[f.path] = Placed(f.path, "downloaded", f.url, len(record["files"]), transferred)
        finally:
            with contextlib.suppress(OSError):
                (root / PARTIAL_DIR).rmdir()  # when nothing is under way any more
    return placed


def _download(f: DownloadFile, spec: DownloadSpec, records: dict, progress: bool, log):
    """Fetch (or take up the fetch of) one file or archive and put it in place: (record, bytes, archive to drop)."""
    root = spec.data_root
    dest = root / f.path
    _check_place(f, dest)
    cache = root / PARTIAL_DIR
    name = _file_name(f)
    key = hashlib.sha256(f.url.encode()).hexdigest()[:8]
    part, complete = cache / f"{key}-{name}.part", cache / f"{key}-{name}"
    transferred = 0
    if complete.is_file():  # complete and checked by an earlier run that stopped before putting it in place
        log(f"{f.url}: taking up the complete download {complete}")
        size, sha = complete.stat().st_size, _sha256(complete)
        _check_content(f, complete, size, sha, records, root)
    else:
        transferred = _fetch(f, part, spec.retries, progress, log, root)
        size, sha = part.stat().st_size, _sha256(part)
        _check_content(f, part, size, sha, records, root)
        with writing(root):
            os.replace(part, complete)
            _remove(_meta_path(part))
    if f.archive == "zip":
        files = _unpack(complete, f, root, records, log)
        drop = complete
    else:
        files = _place_file(complete, f, root, records, size, sha)
        drop = None
    record = {"url": f.url, "archive": f.archive, "size": size, "sha256": sha,
              "downloaded": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "files": files}
    return record, transferred, drop


def _check_place(f: DownloadFile, dest: Path) -> None:
    """Before any transfer: the place is usable (a folder for an archive, a file otherwise)."""
    if f.archive is not None and os.path.lexists(dest) and (dest.is_symlink() or not dest.is_dir()):
        raise OutputError(dest, f"exists and is a file, not the folder {f.url} is unpacked into; simcast replaces "
                                "only what it wrote itself: move it away and run again")
    if f.archive is None and os.path.lexists(dest) and not dest.is_symlink() and dest.is_dir():
        raise OutputError(dest, f"is a folder, not the file {f.url}; move it away and run again")


def _fetch(f: DownloadFile, part: Path, retries: int, progress: bool, log, root: Path) -> int:
    """Transfer the url into part, taking up what part holds; returns the bytes transferred by this call."""
    import httpx

    from . import __version__

    url, meta_path = f.url, _meta_path(part)
    moved = [0]  # bytes transferred by this call (kept by _receive when a transfer breaks off)
    resumes, restarts = 0, 0
    headers = {"User-Agent": f"simcast/{__version__}", "Accept-Encoding": "identity"}
    timeout = httpx.Timeout(CONNECT_TIMEOUT, read=READ_TIMEOUT)
    with httpx.Client(follow_redirects=True, timeout=timeout, headers=headers) as client:
        while True:
            have = part.stat().st_size if part.is_file() else 0
            meta = _read_json(meta_path) if have else {}
            if have and meta.get("url") != url:  # not this url's transfer: start again
                _drop(part)
                have, meta = 0, {}
            request = {}
            if have:
                request["Range"] = f"bytes={have}-"
                etag, modified = meta.get("etag"), meta.get("last_modified")
                validator = etag if etag and not etag.startswith("W/") else modified
                if validator:
                    request["If-Range"] = validator  # the rest of the same version, or the whole new one
            total = meta.get("total")
            try:
                with client.stream("GET", url, headers=request) as r:
                    if r.status_code == 416 and have:
                        if _content_range(r.headers.get("content-range"))[2] == have:
                            return moved[0]  # the transfer was complete
                        restarts += 1
                        if restarts > 2:
                            raise InputError(url, "the server refuses every range request; try again later")
                        log(f"{url}: the partial transfer does not fit the file served; starting again")
                        _drop(part)
                        continue
                    _check_response(r, f, part)
                    if r.status_code == 206:
                        start, _, total = _content_range(r.headers.get("content-range"))
                        if start != have:
                            restarts += 1
                            if restarts > 2:
                                raise InputError(url, f"the server answers a request from byte {have} with "
                                                      f"bytes from {start}; try again later")
                            _drop(part)
                            continue
                        mode = "ab"
                    else:
                        if have:
                            log(f"{url}: the server sends the whole file (no resume); starting again")
                        have, mode = 0, "wb"
                        length = r.headers.get("content-length")
                        total = int(length) if length and length.isdigit() else None
                    log(f"{'resuming' if mode == 'ab' else 'downloading'} {url} -> {root / f.path}")
                    if f.size is not None and total is not None and total != f.size:
                        _drop(part)
                        raise InputError(url, f"serves {total} bytes; the catalog expects {f.size}: not the file "
                                              "the catalog names (check its download url)")
                    with writing(root):
                        part.parent.mkdir(exist_ok=True)
                        _write_json(meta_path, {"url": url, "etag": r.headers.get("etag"),
                                                "last_modified": r.headers.get("last-modified"), "total": total})
                        have = _receive(r, f, part, mode, have, total, moved, progress)
                    if total is not None and have < total:
                        raise _Cut(f"the connection closed at byte {have}")
                    return moved[0]
            except (httpx.TransportError, _Cut) as e:
                reason = _reason(e)
                connect = isinstance(e, (httpx.ConnectError, httpx.ConnectTimeout))
                if isinstance(e, httpx.UnsupportedProtocol) or (connect and not moved[0]):
                    raise InputError(url, f"cannot connect: {reason}") from None
                have = part.stat().st_size if part.is_file() else 0
                of = f" of {_size(total)}" if total else ""
                if resumes < retries:
                    resumes += 1
                    delay = RETRY_DELAY * 2 ** (resumes - 1)
                    log(f"{url}: transfer interrupted at {_size(have)}{of} ({reason}); resuming in {delay:g} s "
                        f"({resumes} of {retries})")
                    time.sleep(delay)
                    continue
                raise InputError(url, f"transfer interrupted at {_size(have)}{of} ({reason}); run the command again "
                                      "to resume it") from None
            except httpx.InvalidURL as e:
                raise InputError(url, f"not a valid address: {e}") from None
            except httpx.HTTPError as e:  # too many redirects, an undecodable response
                raise InputError(url, _reason(e)) from None


class _Cut(Exception):
    """The body ended before its announced length (a server that does not say why)."""


def _receive(r, f: DownloadFile, part: Path, mode: str, have: int, total: int | None, moved: list[int],
             progress: bool) -> int:
    """Append the body to part (or write it afresh); returns the bytes part holds. moved[0] counts the bytes."""
    from tqdm import tqdm

    head = b""
    with open(part, mode) as out, tqdm(total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                                       desc=_file_name(f), disable=not progress, file=sys.stderr, dynamic_ncols=True,
                                       mininterval=0.5) as bar:
        try:
            for chunk in r.iter_bytes():  # as received: a cut loses nothing already here
                if f.archive == "zip" and have + len(head) < 4 and have == 0:
                    head += chunk
                    if len(head) < 4:
                        continue
                    chunk, head = head, b""
                    if not chunk.startswith(ZIP_MAGIC):
                        _drop(part)
                        raise _not_zip(f.url, chunk)
                out.write(chunk)
                have += len(chunk)
                moved[0] += len(chunk)
                bar.update(len(chunk))
            if head:  # a body of fewer than 4 bytes
                _drop(part)
                raise _not_zip(f.url, head)
        finally:
            out.flush()
            os.fsync(out.fileno())
    return have


def _not_zip(url: str, head: bytes) -> InputError:
    return InputError(url, f"is not a zip archive: it begins with {_describe(head)}")


def _describe(head: bytes) -> str:
    text = head[:64].decode("utf-8", "replace")
    html = text.lstrip().lower().startswith(("<!doctype html", "<html", "<?xml", "<head", "<body"))
    return f"{text[:40]!r}" + (" (an HTML page: the link may have moved or need a login)" if html else "")


def _check_response(r, f: DownloadFile, part: Path) -> None:
    status = r.status_code
    if status >= 400:
        hint = {401: "a login is needed", 403: "access denied", 404: "the file is not at this address (the catalog's "
                "download url may be out of date)", 410: "the file was removed from this address",
                429: "too many requests; try again later"}.get(status)
        if hint is None and status >= 500:
            hint = "the server failed; try again later"
        if status < 500:
            _drop(part)  # the file is not there any more: a partial transfer of it is of no use
        raise InputError(f.url, f"HTTP {status} {r.reason_phrase}" + (f": {hint}" if hint else ""))
    if status not in (200, 206):
        raise InputError(f.url, f"unexpected HTTP {status} {r.reason_phrase}")
    ctype = r.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype in ("text/html", "application/xhtml+xml") and not f.path.lower().endswith((".html", ".htm")):
        _drop(part)
        what = "a zip archive" if f.archive == "zip" else "the data file"
        raise InputError(f.url, f"served an HTML page (Content-Type {ctype}), not {what}: the link may have moved "
                                "or need a login (open it in a browser to see)")


def _content_range(value: str | None) -> tuple[int | None, int | None, int | None]:
    """'bytes 100-199/1000' -> (100, 199, 1000); 'bytes */1000' -> (None, None, 1000)."""
    m = re.match(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)", value or "")
    if not m:
        return None, None, None
    num = [None if g in (None, "*") else int(g) for g in m.groups()]
    return num[0], num[1], num[2]


def _check_content(f: DownloadFile, path: Path, size: int, sha: str, records: dict, root: Path) -> None:
    """A complete download is what the catalog (or the first download) says it is; else it is deleted."""
    problem = None
    recorded = records.get(f.path) or {}
    if f.size is not None and size != f.size:
        problem = f"the download is {size} bytes; the catalog expects {f.size}"
    elif f.sha256 is not None and sha != f.sha256:
        problem = f"sha256 mismatch: the download has {sha}, the catalog expects {f.sha256}"
    elif recorded.get("url") == f.url and recorded.get("sha256") not in (None, sha):
        problem = (f"sha256 mismatch: the download has {sha}, its first download had {recorded['sha256']} (recorded in "
                   f"{root / MANIFEST}; remove that record to accept the new file)")
    elif f.archive == "zip":
        with open(path, "rb") as fh:
            head = fh.read(64)
        if not head.startswith(ZIP_MAGIC):
            _drop(path)
            raise _not_zip(f.url, head)
    if problem:
        _drop(path)
        raise InputError(f.url, f"{problem}; the download was deleted and nothing was put in place")


# ---- putting files in place -----------------------------------------------------------------------------

def _unpack(archive: Path, f: DownloadFile, root: Path, records: dict, log) -> dict:
    """Unpack a zip into a temporary folder beside its place, then move its files into place; their records."""
    dest = root / f.path
    with writing(dest):
        made = _missing_folders(dest.parent)
        dest.parent.mkdir(parents=True, exist_ok=True)
        recover_interrupted(dest)
        tmp = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            members = _extract(archive, f, tmp)
            keep = _refuse_conflicts(f, dest, members, root, records)
            if not os.path.lexists(dest):
                os.rename(tmp, dest)  # a new folder: every file in place at once
            else:
                for rel in members:
                    if rel in keep:
                        continue  # the same file is there already (the user's, or simcast's)
                    (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                    os.replace(tmp / rel, dest / rel)
                _remove(tmp)
            _fsync_dir(dest.parent)
        except BaseException:
            _remove(tmp)
            for folder in made:  # the empty folders made for it (deepest first): nothing is left where data goes
                with contextlib.suppress(OSError):
                    folder.rmdir()
            raise
    log(f"{f.url}: {len(members)} files in {dest}")
    return {(PurePosixPath(f.path) / rel).as_posix(): {**info, "mtime_ns": (dest / rel).stat().st_mtime_ns}
            for rel, info in members.items()}


def _extract(archive: Path, f: DownloadFile, tmp: Path) -> dict:
    """The archive's files written under tmp, each hashed: {member path: {size, sha256}}."""
    out = {}
    try:
        with zipfile.ZipFile(archive) as z:
            members = [m for m in z.infolist() if not m.is_dir()]
            if not members:
                raise InputError(f.url, "the zip archive holds no files")
            for m in members:
                rel = _safe_member(m.filename, f.url)
                target = tmp / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                h, n = hashlib.sha256(), 0
                with z.open(m) as src, open(target, "wb") as dst:
                    while block := src.read(BLOCK):
                        h.update(block)
                        dst.write(block)
                        n += len(block)
                out[rel] = {"size": n, "sha256": h.hexdigest()}
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        _drop(archive)
        raise InputError(f.url, f"the zip archive is corrupt ({_reason(e)}); it was deleted and nothing was put in "
                                "place: run again to download it afresh") from None
    except (NotImplementedError, RuntimeError) as e:  # a compression method or encryption zipfile cannot read
        raise InputError(f.url, f"the zip archive cannot be unpacked: {_reason(e)}") from None
    return out


def _safe_member(name: str, url: str) -> str:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if not parts or name.startswith(("/", "\\")) or ".." in parts or re.match(r"^[A-Za-z]:", name):
        raise InputError(url, f"the zip archive holds {name!r}, which would land outside its folder; refused")
    return PurePosixPath(*parts).as_posix()


def _refuse_conflicts(f: DownloadFile, dest: Path, members: dict, root: Path, records: dict) -> set:
    """The members whose place already holds the same file (left as it is); one line naming the first place that
    holds something else that simcast did not download (or that changed since)."""
    ours = {name: rec for r in records.values() for name, rec in r.get("files", {}).items()}
    same, refused = set(), []
    for rel, info in members.items():
        target = dest / rel
        if not os.path.lexists(target):
            continue
        if target.is_symlink() or not target.is_file():
            refused.append(target)
            continue
        key = (PurePosixPath(f.path) / rel).as_posix()
        if target.stat().st_size == info["size"] and _sha256(target) == info["sha256"]:
            same.add(rel)
        elif not (key in ours and _state(target, ours[key], check=False) == "ok"):
            refused.append(target)
    if refused:
        more = f" ({len(refused) - 1} more files in its way differ too)" if len(refused) > 1 else ""
        raise OutputError(refused[0], f"exists and differs from the file {f.url} holds; simcast replaces only what it "
                                      f"downloaded itself: move it away and run again{more}")
    return same


def _missing_folders(folder: Path) -> list[Path]:
    """The folders mkdir(parents=True) would make for folder, deepest first."""
    out = []
    while not os.path.lexists(folder) and folder != folder.parent:
        out.append(folder)
        folder = folder.parent
    return out


def _place_file(complete: Path, f: DownloadFile, root: Path, records: dict, size: int, sha: str) -> dict:
    dest = root / f.path
    ours = {name: rec for r in records.values() for name, rec in r.get("files", {}).items()}
    with writing(dest):
        dest.parent.mkdir(parents=True, exist_ok=True)
        if os.path.lexists(dest):
            same = dest.is_file() and not dest.is_symlink() and dest.stat().st_size == size and _sha256(dest) == sha
            if not same and not (f.path in ours and _state(dest, ours[f.path], check=False) == "ok"):
                raise OutputError(dest, f"exists and differs from the file at {f.url}; simcast replaces only what it "
                                        "downloaded itself: move it away and run again")
            if same:
                _remove(complete)
                return {f.path: {"size": size, "sha256": sha, "mtime_ns": dest.stat().st_mtime_ns}}
        os.replace(complete, dest)
        _fsync_dir(dest.parent)
    return {f.path: {"size": size, "sha256": sha, "mtime_ns": dest.stat().st_mtime_ns}}


# ---- the record of what was downloaded ------------------------------------------------------------------

def _current(f: DownloadFile, record: dict | None, root: Path, check: bool) -> bool:
    """Whether a download is in place as recorded; a file that changed since is refused in one line."""
    if not record or not record.get("files"):
        return False
    if record.get("url") != f.url and not (f.sha256 and record.get("sha256") == f.sha256):
        return False  # the catalog now names another source
    if (f.sha256 and record.get("sha256") != f.sha256) or (f.size is not None and record.get("size") != f.size):
        return False
    missing = False
    for name, rec in record["files"].items():
        state = _state(root / name, rec, check)
        if state == "changed":
            raise OutputError(root / name, f"differs from the file simcast downloaded from {f.url} (recorded in "
                                           f"{root / MANIFEST}); move it away and run again to download it afresh")
        missing = missing or state == "missing"
    return not missing


def _state(path: Path, rec: dict, check: bool) -> str:
    """'ok', 'missing' or 'changed' against a record {size, sha256, mtime_ns}."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return "missing"
    if not path.is_file() or path.is_symlink() or st.st_size != rec.get("size"):
        return "changed"
    if not check and st.st_mtime_ns == rec.get("mtime_ns"):
        return "ok"
    return "ok" if _sha256(path) == rec.get("sha256") else "changed"


def _load_manifest(path: Path) -> dict:
    try:
        raw = json.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError):
        return {}
    except (OSError, ValueError) as e:
        raise InputError(path, f"download record not readable ({_reason(e)}); move it away (simcast then takes the "
                               "files it lists for files it did not download)") from None
    if not isinstance(raw, dict) or raw.get("format") != MANIFEST_FORMAT or not isinstance(raw.get("downloads"), dict):
        raise InputError(path, f"not a simcast download record (format {MANIFEST_FORMAT}); move it away")
    return raw["downloads"]


def _save_manifest(path: Path, records: dict) -> None:
    body = {"format": MANIFEST_FORMAT, "about": "files simcast downloaded into this data root (simcast download); "
            "paths are relative to it", "downloads": records}
    write_text_atomic(path, json.dumps(body, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def _lock(root: Path):
    """One download at a time into a data root (they share the record and the partial transfers): a lock on the
    folder itself, which leaves nothing behind."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputError(root, "another simcast download is writing into this data root; run again when it "
                                    "has finished") from None
        yield
    finally:
        os.close(fd)


# ---- small helpers --------------------------------------------------------------------------------------

def _file_name(f: DownloadFile) -> str:
    """The name of what the url serves: its `files=` parameter (WeatherBench's share links), the last part of
    its path, or the name of its place."""
    parsed = urllib.parse.urlparse(f.url or "")
    query = urllib.parse.parse_qs(parsed.query)
    name = (query.get("files") or [""])[0] or PurePosixPath(urllib.parse.unquote(parsed.path)).name
    if not name or name in ("download", "file"):
        name = PurePosixPath(f.path).name + (".zip" if f.archive == "zip" else "")
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:120]


def _meta_path(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def _drop(path: Path) -> None:
    for p in (path, _meta_path(path)):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _write_json(path: Path, value: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(BLOCK):
            h.update(block)
    return h.hexdigest()


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    if n < 1024:
        return f"{n} bytes"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"
    return ""


def _reason(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return re.sub(r"^\[Errno -?\d+\]\s*", "", text)
