"""simcast download: a catalog entry's files fetched from a local HTTP server into the data root, in WeatherBench's
exact layout; then ingested as usual. Resumed transfers, no-op reruns, one-line errors, refusals of a user's files."""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from data_catalog import load_catalog
from pipelines import download as dl
from pipelines.cli import app
from pipelines.errors import InputError, OutputError
from pipelines.specs import DownloadSpec
from pipelines.store import open_store

from ..conftest import ingest, write_catalog
from ..download_server import (
    T2M_FOLDER,
    T2M_PATH,
    FileServer,
    free_port,
    weatherbench_entry,
    weatherbench_zip,
)

runner = CliRunner()


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> tuple[bytes, dict[str, bytes]]:
    return weatherbench_zip(tmp_path_factory.mktemp("weatherbench"))


@pytest.fixture
def server(archive, monkeypatch):
    monkeypatch.setattr(dl, "RETRY_DELAY", 0.0)
    srv = FileServer(files={T2M_PATH: archive[0]}).start()
    yield srv
    srv.stop()


@pytest.fixture
def catalog(isolated, server, monkeypatch):
    """SIMCAST_CATALOG with the entry wb-t2m downloading from the local server; returns a function that rewrites
    the entry (another url, a sha256, ...)."""
    def write(url=None, **download):
        path = write_catalog(isolated / "catalog.yaml", {"wb-t2m": weatherbench_entry(url or server.url(), **download)})
        monkeypatch.setenv("SIMCAST_CATALOG", str(path))
        return path

    write()
    return write


def fetch(**overrides):
    logs = []
    result = dl.run(DownloadSpec.from_catalog("wb-t2m", **overrides), progress=False, log=logs.append)
    return result, logs


def data(isolated) -> Path:
    return isolated / "data"


def leftovers(root: Path) -> list[str]:
    """Partial transfers, complete archives awaiting unpacking, temporary folders."""
    return [str(p) for p in root.rglob(f"{dl.PARTIAL_DIR}*") if p.name != dl.MANIFEST] + \
        [str(p) for p in root.rglob(".*.tmp-*")]


def sha(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def test_download_then_ingest(catalog, server, archive, isolated):
    body, members = archive
    result, logs = fetch()
    root = data(isolated)
    assert [(p.path, p.status, p.files, p.transferred) for p in result.items] == \
        [(T2M_FOLDER, "downloaded", 2, len(body))]
    for name, content in members.items():  # WeatherBench's layout, exactly where the catalog's pattern looks
        assert (root / T2M_FOLDER / name).read_bytes() == content
    assert sorted(members) == ["2m_temperature_2010_5.625deg.nc", "2m_temperature_2011_5.625deg.nc"]
    record = json.loads((root / dl.MANIFEST).read_text())["downloads"][T2M_FOLDER]
    assert record["url"] == server.url() and record["size"] == len(body) and record["sha256"] == sha(body)
    assert {Path(k).name: v["sha256"] for k, v in record["files"].items()} == {n: sha(c) for n, c in members.items()}
    assert leftovers(root) == []
    assert any(line.startswith("downloading http://127.0.0.1") for line in logs)

    summary = ingest("wb-t2m").summary
    assert summary["time_steps"] == 168 and summary["grid"] == [32, 64]
    assert open_store(isolated / "stores/wb-t2m.zarr").sizes["time"] == 168

    # the checksum learnt at the first download, written into the catalog: the files still count as verified, and
    # the store stays current (where the files come from is not part of what a store depends on)
    catalog(size=len(body), sha256=sha(body))
    server.requests.clear()
    assert fetch()[0].items[0].status == "present" and server.requests == []
    assert ingest("wb-t2m").skipped


def test_a_second_run_is_a_noop_without_the_network(catalog, server, isolated):
    fetch()
    server.stop()  # nothing listens any more: a request would fail
    result, _ = fetch()
    assert [(p.status, p.transferred) for p in result.items] == [("present", 0)]
    out = runner.invoke(app, ["download", "wb-t2m"])
    assert out.exit_code == 0, out.output
    assert "present and verified (2 files)" in out.output and "next: simcast ingest wb-t2m" in out.output
    assert fetch(check=True)[0].items[0].status == "present"  # every file hashed again: still the same

    # a downloaded file changed since: refused, named, left as it is
    f = data(isolated) / T2M_FOLDER / "2m_temperature_2011_5.625deg.nc"
    stat = f.stat()
    changed = bytearray(f.read_bytes())
    changed[-10] ^= 0xFF
    f.write_bytes(bytes(changed))
    os.utime(f, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size, same time: only --check notices
    assert fetch()[0].items[0].status == "present"
    with pytest.raises(OutputError) as e:
        fetch(check=True)
    assert str(e.value).startswith(f"{f}: differs from the file simcast downloaded from http://127.0.0.1:")
    assert f.read_bytes() == bytes(changed)
    f.touch()  # a new modification time: noticed without --check
    with pytest.raises(OutputError, match="differs from the file simcast downloaded"):
        fetch()


def test_an_interrupted_transfer_is_resumed_by_the_next_run(catalog, server, archive, isolated):
    body, members = archive
    half = len(body) // 2
    server.cut[T2M_PATH] = [half, 1]
    with pytest.raises(InputError) as e:
        fetch(retries=0)
    msg = str(e.value)
    assert msg.startswith(server.url() + ": transfer interrupted at ") and "run the command again" in msg
    assert "\n" not in msg
    root = data(isolated)
    assert not (root / "weatherbench").exists()  # nothing where the data goes
    parts = list((root / dl.PARTIAL_DIR).glob("*.part"))
    assert len(parts) == 1 and parts[0].stat().st_size == half

    server.requests.clear()
    result, logs = fetch(retries=0)
    assert [r.headers.get("range") for r in server.requests] == [f"bytes={half}-"]
    assert server.requests[0].headers.get("if-range", "").startswith('"')
    assert result.items[0].transferred == len(body) - half
    for name, content in members.items():
        assert (root / T2M_FOLDER / name).read_bytes() == content
    assert json.loads((root / dl.MANIFEST).read_text())["downloads"][T2M_FOLDER]["sha256"] == sha(body)
    assert leftovers(root) == [] and any(line.startswith("resuming ") for line in logs)


def test_a_dropped_connection_is_resumed_within_the_run(catalog, server, archive, isolated):
    body, members = archive
    server.cut[T2M_PATH] = [len(body) // 3, 1]
    result, logs = fetch()
    assert [r.headers.get("range") for r in server.requests] == [None, f"bytes={len(body) // 3}-"]
    assert sum("resuming in 0 s (1 of 3)" in line for line in logs) == 1
    assert result.items[0].transferred == len(body)
    assert sorted(p.name for p in (data(isolated) / T2M_FOLDER).iterdir()) == sorted(members)


def test_a_server_without_ranges_restarts_cleanly(catalog, server, archive, isolated):
    body, members = archive
    server.ranges = False
    server.cut[T2M_PATH] = [len(body) // 2, 1]
    with pytest.raises(InputError, match="transfer interrupted"):
        fetch(retries=0)
    result, logs = fetch(retries=0)  # asks for the rest, gets the whole file: starts again, does not append
    assert server.requests[-1].headers.get("range") == f"bytes={len(body) // 2}-"
    assert any("no resume" in line for line in logs)
    assert result.items[0].transferred == len(body)
    assert json.loads((data(isolated) / dl.MANIFEST).read_text())["downloads"][T2M_FOLDER]["size"] == len(body)
    for name, content in members.items():
        assert (data(isolated) / T2M_FOLDER / name).read_bytes() == content


def _corrupt(body: bytes) -> bytes:
    broken = bytearray(body)
    for i in range(len(body) // 4, len(body) // 4 + 64):  # inside the first member's compressed data
        broken[i] ^= 0x5A
    return bytes(broken)


@pytest.mark.parametrize("case", ["404", "500", "html", "html-as-zip", "corrupt", "truncated", "sha256", "size",
                                  "refused"])
def test_bad_downloads_end_in_one_line_and_leave_nothing(case, catalog, server, archive, isolated):
    body = archive[0]
    url = server.url()
    if case in ("404", "500"):
        server.status[T2M_PATH] = int(case)
        expected = f"{url}: HTTP {case} "
    elif case == "html":
        server.html.add(T2M_PATH)
        expected = f"{url}: served an HTML page (Content-Type text/html), not a zip archive"
    elif case == "html-as-zip":  # a login page that calls itself a zip
        server.files[T2M_PATH] = b"<!DOCTYPE html>\n<html><body>Please log in</body></html>\n"
        expected = f"{url}: is not a zip archive: it begins with '<!DOCTYPE html>"
    elif case == "corrupt":
        server.files[T2M_PATH] = _corrupt(body)
        expected = f"{url}: the zip archive is corrupt ("
    elif case == "truncated":  # a server that stops early without saying so, and no length to tell
        server.files[T2M_PATH] = body[: len(body) // 2]
        expected = f"{url}: the zip archive is corrupt ("
    elif case == "sha256":
        catalog(sha256="0" * 64)
        expected = f"{url}: sha256 mismatch: the download has {sha(body)}, the catalog expects {'0' * 64}"
    elif case == "size":
        catalog(size=len(body) + 1)
        expected = f"{url}: serves {len(body)} bytes; the catalog expects {len(body) + 1}"
    else:
        url = f"http://127.0.0.1:{free_port()}{T2M_PATH}"
        catalog(url=url)
        expected = f"{url}: cannot connect: "
    with pytest.raises(InputError) as e:
        fetch()
    msg = str(e.value)
    assert msg.startswith(expected) and "\n" not in msg, msg
    root = data(isolated)
    assert not (root / "weatherbench").exists()
    assert leftovers(root) == [] and not (root / dl.MANIFEST).exists()


def test_the_command_says_it_in_one_line_with_exit_code_1(catalog, server):
    server.status[T2M_PATH] = 404
    out = runner.invoke(app, ["download", "wb-t2m"])
    assert out.exit_code == 1
    lines = [ln for ln in out.output.splitlines() if ln.strip()]
    assert lines == [f"error: {server.url()}: HTTP 404 Not Found: the file is not at this address (the catalog's "
                     "download url may be out of date)"]


def test_a_users_file_in_the_way_is_refused_and_left_untouched(catalog, server, archive, isolated):
    body, members = archive
    root = data(isolated)
    mine = root / T2M_FOLDER / "2m_temperature_2010_5.625deg.nc"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"my own file")
    with pytest.raises(OutputError) as e:
        fetch()
    msg = str(e.value)
    assert msg.startswith(f"{mine}: exists and differs from the file {server.url()} holds; simcast replaces only")
    assert mine.read_bytes() == b"my own file"
    assert sorted(p.name for p in mine.parent.iterdir()) == [mine.name]  # the other year was not put in place
    assert not (root / dl.MANIFEST).exists() and not list(root.rglob(".*.tmp-*"))

    # the same file put there by hand is kept as it is, and recorded; the rerun takes up the complete archive
    mine.write_bytes(members[mine.name])
    server.requests.clear()
    result, _ = fetch()
    assert result.items[0].status == "downloaded" and server.requests == []
    assert sorted(p.name for p in mine.parent.iterdir()) == sorted(members)
    assert leftovers(root) == []


def test_a_file_where_the_folder_goes_is_refused_before_any_request(catalog, server, isolated):
    place = data(isolated) / T2M_FOLDER
    place.parent.mkdir(parents=True)
    place.write_text("not a folder")
    with pytest.raises(OutputError, match="exists and is a file, not the folder"):
        fetch()
    assert server.requests == [] and place.read_text() == "not a folder"


def test_an_unwritable_data_root_and_a_full_disk(catalog, server, archive, isolated, monkeypatch):
    root = data(isolated)
    root.write_text("a file, not a folder")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        fetch()
    assert server.requests == []
    root.unlink()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    real = dl._extract
    monkeypatch.setattr(dl, "_extract", lambda *a: (real(*a), full())[1])  # the disk fills while unpacking
    with pytest.raises(OutputError) as e:
        fetch()
    assert str(e.value) == f"{root / T2M_FOLDER}: cannot write here: no space left on the device"
    assert not (root / "weatherbench" / "5.625deg" / "2m_temperature").exists()
    assert not list(root.rglob(".*.tmp-*"))
    monkeypatch.setattr(dl, "_extract", real)
    server.requests.clear()
    assert fetch()[0].items[0].status == "downloaded" and server.requests == []  # the complete archive is reused

    monkeypatch.setattr(dl, "_receive", full)  # and while transferring
    (root / dl.MANIFEST).unlink()
    for f in (root / T2M_FOLDER).iterdir():
        f.unlink()
    with pytest.raises(OutputError) as e:
        fetch()
    assert str(e.value) == f"{root}: cannot write here: no space left on the device"


def test_taxibj_says_where_to_get_the_files_and_where_they_go(isolated):
    out = runner.invoke(app, ["download", "taxibj"])
    assert out.exit_code == 1
    lines = [ln for ln in out.output.splitlines() if ln.strip()]
    assert len(lines) == 1, out.output
    root = isolated / "data"
    names = [f"BJ{y}_M32x32_T30_InOut.h5" for y in (13, 14, 15, 16)] + ["BJ_Holiday.txt"]
    assert lines[0].startswith(f"error: {root}: taxibj: its 5 files are missing; put them at ")
    for name in names:
        assert str(root / "taxibj" / name) in lines[0]
    assert "https://github.com/lucktroy/DeepST" in lines[0] and "OpenSTL" in lines[0]
    assert "taxibj/BJ1[3-6]_M32x32_T30_InOut.h5" in lines[0]

    (root / "taxibj").mkdir(parents=True)
    for name in names[:-1]:
        (root / "taxibj" / name).write_bytes(b"")
    out = runner.invoke(app, ["download", "taxibj"])
    assert out.exit_code == 1 and "taxibj: 1 of its 5 files are missing" in out.output
    (root / "taxibj" / "BJ_Holiday.txt").write_text("20130101\n")
    out = runner.invoke(app, ["download", "taxibj"])
    assert out.exit_code == 0, out.output
    assert f"{root / 'taxibj' / 'BJ13_M32x32_T30_InOut.h5'}: in place" in out.output


def test_entries_without_downloads(isolated):
    assert "bundled with simcast" in runner.invoke(app, ["download", "nybike"]).output
    out = runner.invoke(app, ["download", "weatherbench2-t2m-5.625deg"])
    assert out.exit_code == 0 and "reads its Zarr store gs://weatherbench2/" in out.output


def test_download_help():
    out = runner.invoke(app, ["download", "--help"], env={"COLUMNS": "120"})
    assert out.exit_code == 0
    for text in ("Usage:", "download", "catalog entry", "--check", "--retries"):
        assert text in out.output, text
    assert "download" in runner.invoke(app, ["--help"]).output


def test_the_bundled_catalog_names_every_weatherbench_archive_and_the_taxibj_files():
    catalog = load_catalog()
    url = "https://dataserv.ub.tum.de/s/m1524895/download?path=%2F5.625deg%2F{0}&files={0}_5.625deg.zip"
    for name in ("weatherbench-t2m-5.625deg", "weatherbench-multi-5.625deg"):
        entry = catalog[name]
        by_folder = {f.path: f for f in entry.download.files}
        for var in entry.variables:
            pattern = var.pattern or entry.source.pattern
            folder = str(Path(pattern).parent)
            item = by_folder[folder]  # every variable's files come from an archive unpacked where its pattern looks
            assert item.archive == "zip" and item.url == url.format(Path(folder).name)
            assert item.variable in (None, var.name)
    taxibj = catalog["taxibj"]
    assert all(f.url is None for f in taxibj.download.files) and "lucktroy/DeepST" in taxibj.download.instructions
    data = [f.path for f in taxibj.download.files if f.path.endswith(".h5")]
    assert all(fnmatch.fnmatch(p, taxibj.source.pattern) for p in data) and len(data) == 4
    assert taxibj.holidays in [f.path for f in taxibj.download.files]


def test_download_entries_are_checked_by_the_catalog(isolated, monkeypatch):
    from data_catalog import CatalogError

    bad = {"path": "../outside", "archive": "zip", "url": "https://example.org/a.zip"}
    for files, message in [([bad], "must be a path inside the data root"),
                           ([{**bad, "path": "x", "url": "ftp://example.org/a.zip"}], "http:// or https://"),
                           ([{"path": "x", "archive": "zip"}], "give its url"),
                           ([{"path": "x"}], "need instructions"),
                           ([{**bad, "path": "x", "variable": "nope"}], "variable 'nope' is not one of")]:
        entry = weatherbench_entry("https://example.org/a.zip")
        entry["download"] = {"files": files}
        monkeypatch.setenv("SIMCAST_CATALOG", str(write_catalog(isolated / "c.yaml", {"bad": entry})))
        with pytest.raises(CatalogError, match=message):
            load_catalog(isolated / "c.yaml")


def test_one_download_at_a_time_into_a_data_root(catalog, server, isolated):
    import fcntl

    root = data(isolated)
    root.mkdir()
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)  # another download holds the data root
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(OutputError, match="another simcast download is writing into this data root"):
            fetch()
        assert server.requests == []
    finally:
        os.close(fd)
    assert fetch()[0].items[0].status == "downloaded"
