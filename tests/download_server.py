"""A local HTTP server for the download tests, and WeatherBench-layout archives to serve.

The server (http.server in a thread, on 127.0.0.1 and a free port) serves bytes by request path (query included),
honours Range requests (with If-Range against its ETag), records every request, and can be told to cut a transfer
midway, to answer with an error status, to serve an HTML page instead, or to ignore ranges (send the whole file).
"""

from __future__ import annotations

import hashlib
import io
import re
import threading
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# WeatherBench's share link for the 5.625 degree 2 m temperature archive, as the catalog names it (path and query)
T2M_PATH = "/s/m1524895/download?path=%2F5.625deg%2F2m_temperature&files=2m_temperature_5.625deg.zip"
T2M_FOLDER = "weatherbench/5.625deg/2m_temperature"
T2M_PATTERN = T2M_FOLDER + "/2m_temperature_*_5.625deg.nc"
HTML_PAGE = b"<!DOCTYPE html>\n<html><head><title>Log in</title></head><body>Please log in.</body></html>\n"


@dataclass
class Request:
    path: str
    headers: dict


@dataclass
class FileServer:
    files: dict[str, bytes] = field(default_factory=dict)      # path with query -> body
    requests: list[Request] = field(default_factory=list)
    cut: dict[str, list[int]] = field(default_factory=dict)    # path -> [byte offset to stop at, times]
    status: dict[str, int] = field(default_factory=dict)       # path -> error status to answer with
    html: set[str] = field(default_factory=set)                # paths answered with an HTML page (200, text/html)
    ranges: bool = True                                        # False: every answer is the whole file (200)
    content_type: str = "application/zip"

    def start(self) -> "FileServer":
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):  # noqa: N802 - http.server's name
                owner.requests.append(Request(self.path, {k.lower(): v for k, v in self.headers.items()}))
                if self.path in owner.status:
                    body = f"error {owner.status[self.path]}".encode()
                    self.send_response(owner.status[self.path])
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                if self.path in owner.html:
                    self._send(200, HTML_PAGE, {"Content-Type": "text/html; charset=utf-8"})
                    return
                data = owner.files.get(self.path)
                if data is None:
                    self._send(404, b"not found", {"Content-Type": "text/plain"})
                    return
                etag = '"' + hashlib.sha1(data).hexdigest()[:16] + '"'
                headers = {"Content-Type": owner.content_type, "ETag": etag, "Accept-Ranges": "bytes"}
                start, status = 0, 200
                wanted = self.headers.get("Range")
                if_range = self.headers.get("If-Range")
                if wanted and owner.ranges and if_range in (None, etag):
                    m = re.match(r"bytes=(\d+)-(\d*)$", wanted.strip())
                    start = int(m.group(1))
                    end = int(m.group(2)) if m.group(2) else len(data) - 1
                    if start >= len(data):
                        self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                        return
                    status = 206
                    headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                    data = data[start:end + 1]
                elif not owner.ranges:
                    headers.pop("Accept-Ranges")
                cut = owner.cut.get(self.path)
                if cut and cut[1] > 0 and start < cut[0]:
                    cut[1] -= 1
                    self.send_response(status)
                    for k, v in {**headers, "Content-Length": str(len(data))}.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data[:cut[0] - start])  # then the connection closes: the body is short
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self._send(status, data, headers)

            def _send(self, status, body, headers):
                self.send_response(status)
                for k, v in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def url(self, path: str = T2M_PATH) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def weatherbench_zip(folder: Path) -> tuple[bytes, dict[str, bytes]]:
    """WeatherBench's 5.625 degree 2 m temperature archive in miniature: synthetic files in the exact layout
    (`2m_temperature_<year>_5.625deg.nc`, at the top of the archive) for a week across two years (32 x 64 grid).
    Returns (the archive, its members by name)."""
    from pipelines import synth

    paths = synth.write_weatherbench(folder, "2010-12-29", "2011-01-04", ["t2m"], resolution=5.625)
    members = {p.name: p.read_bytes() for p in sorted(paths)}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, body in members.items():
            z.writestr(name, body)
    return buf.getvalue(), members


def weatherbench_entry(url: str, **download) -> dict:
    """A catalog entry like weatherbench-t2m-5.625deg (same pattern and grid), over the week of weatherbench_zip,
    downloading from url."""
    return {
        "kind": "weatherbench",
        "source": {"pattern": T2M_PATTERN},
        "variables": [{"name": "t2m"}],
        "time_step": "1h",
        "splits": {"train": {"start": "2010-12-29", "end": "2011-01-01"},
                   "validation": {"start": "2011-01-02", "end": "2011-01-02"},
                   "test": {"start": "2011-01-03", "end": "2011-01-04"}},
        "window": {"input": 6, "output": 6, "stride": 3},
        "grid": [32, 64],
        "store": "wb-t2m.zarr",
        "download": {"files": [{"path": T2M_FOLDER, "archive": "zip", "url": url, **download}]},
    }


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
