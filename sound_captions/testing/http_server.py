"""Loopback HTTP media server for tests: a directory of files → ``http://127.0.0.1:PORT/<name>``.

It behaves like a plain static file host (a CDN or a private mirror) so that the real yt-dlp and
the real ffmpeg can download from it: ``GET`` and ``HEAD``, byte ranges (``Range: bytes=a-b``,
``a-``, ``-n``) answered with ``206`` and ``Content-Range``, ``416`` when unsatisfiable,
``Accept-Ranges: bytes`` everywhere. On top, scripted faults per path:

- :meth:`MediaServer.missing` — ``404`` for the path, even if the file exists;
- :meth:`MediaServer.throttle` — ``429 Too Many Requests`` with ``Retry-After`` for the first
  *times* requests to the path (``times=None``: forever), then served normally;
- :meth:`MediaServer.fail` — any status for the path, for the first *times* requests (or forever);
- :meth:`MediaServer.slow` — serve the path at a limited byte rate (to kill a client mid-way).

Every request is counted per path (:meth:`MediaServer.request_count`), so a test can assert that
a rerun fetched nothing.

Example::

    with MediaServer(media_dir) as server:
        server.throttle("/abc.mp4", times=2)
        url = server.url_template.format(ytid="abc")
"""

from __future__ import annotations

import collections
import mimetypes
import os
import re
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass(frozen=True)
class RequestRecord:
    """One request as the server saw it (headers as sent, e.g. ``Range``, ``Cookie``)."""

    method: str
    path: str
    headers: dict[str, str]


@dataclass
class _Fault:
    status: int
    remaining: int | None  # None: forever
    retry_after_s: int | None = None


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib signature)
        pass  # keep test output clean; requests are counted instead

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _serve(self, *, head: bool) -> None:
        # absolute-form targets ("GET http://host/x.mp4") arrive when the server is used as an
        # HTTP proxy: serve the path, so tests can check that a proxy option is honoured
        path = urlsplit(self.path).path if "://" in self.path else self.path.split("?", 1)[0]
        owner = self.server.owner
        owner._log_request(self.command, path, dict(self.headers.items()))
        fault = owner._next_fault(path)
        if fault is not None:
            self._send_status(fault.status, retry_after_s=fault.retry_after_s, head=head)
            return
        file = owner._resolve(path)
        if file is None:
            self._send_status(HTTPStatus.NOT_FOUND, head=head)
            return
        size = file.stat().st_size
        ctype = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        start, end = 0, size - 1
        status = HTTPStatus.OK
        range_header = self.headers.get("Range")
        if range_header:
            span = _parse_range(range_header, size)
            if span is None:
                self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start, end = span
            status = HTTPStatus.PARTIAL_CONTENT
        length = end - start + 1
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(length))
        if status == HTTPStatus.PARTIAL_CONTENT:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if head:
            return
        rate = owner._rate(path)
        chunk_size = 64 * 1024 if rate is None else max(1, min(64 * 1024, rate // 10))
        try:
            with open(file, "rb") as f:
                f.seek(start)
                remaining = length
                while remaining > 0:
                    chunk = f.read(min(chunk_size, remaining))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    remaining -= len(chunk)
                    if rate is not None:
                        self.wfile.flush()
                        time.sleep(len(chunk) / rate)
        except (BrokenPipeError, ConnectionResetError):
            # Clients (yt-dlp's probe, ffmpeg seeking) often hang up mid-body; that is normal.
            self.close_connection = True

    def _send_status(self, status: int, *, retry_after_s: int | None = None, head: bool) -> None:
        body = f"{int(status)} {HTTPStatus(status).phrase}\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Accept-Ranges", "bytes")
        if retry_after_s is not None:
            self.send_header("Retry-After", str(retry_after_s))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """``bytes=a-b`` → inclusive (start, end) clipped to the file, or None if unsatisfiable.

    Only single ranges are supported (what ffmpeg and yt-dlp send).
    """
    m = _RANGE_RE.match(header.strip())
    if m is None or size == 0:
        return None
    first, last = m.group(1), m.group(2)
    if first == "" and last == "":
        return None
    if first == "":  # suffix range: the last n bytes
        n = int(last)
        if n == 0:
            return None
        return max(0, size - n), size - 1
    start = int(first)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if start >= size or end < start:
        return None
    return start, end


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: MediaServer

    def handle_error(self, request: object, client_address: object) -> None:
        # Clients that hang up (yt-dlp's probe request, ffmpeg seeking) are normal, not errors.
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError):
            return
        super().handle_error(request, client_address)


class MediaServer:
    """Threaded static file server on 127.0.0.1 (an ephemeral port) with scripted faults.

    Args:
        root: directory whose files are served at ``/<relative path>``.
        retry_after_s: value of the ``Retry-After`` header sent with scripted ``429`` answers.
    """

    def __init__(self, root: str | os.PathLike[str], *, retry_after_s: int = 1) -> None:
        self.root = Path(root).resolve()
        self.retry_after_s = retry_after_s
        self._lock = threading.Lock()
        self._faults: dict[str, _Fault] = {}
        self._counts: collections.Counter[str] = collections.Counter()
        self._log: list[RequestRecord] = []
        self._rates: dict[str, int] = {}
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> MediaServer:
        if self._httpd is not None:
            return self
        httpd = _Server(("127.0.0.1", 0), _Handler)
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> MediaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses -------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("MediaServer is not running")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url_template(self) -> str:
        """``http://127.0.0.1:{port}/{ytid}.mp4`` with the port filled in and ``{ytid}`` left."""
        return f"{self.base_url}/{{ytid}}.mp4"

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name.lstrip('/')}"

    # -- content and faults ----------------------------------------------------------------
    def add_file(self, src: str | os.PathLike[str], name: str | None = None) -> str:
        """Copy *src* into the served directory (as *name*); returns its URL path."""
        dest = self.root / (name or Path(src).name)
        shutil.copyfile(src, dest)
        return "/" + dest.relative_to(self.root).as_posix()

    def missing(self, path: str) -> None:
        """Answer ``404 Not Found`` for *path* from now on."""
        self.fail(path, HTTPStatus.NOT_FOUND)

    def throttle(self, path: str, times: int | None = 1) -> None:
        """Answer ``429`` (with ``Retry-After``) for the next *times* requests (None: forever)."""
        with self._lock:
            self._faults[_norm(path)] = _Fault(
                HTTPStatus.TOO_MANY_REQUESTS, times, retry_after_s=self.retry_after_s
            )

    def fail(self, path: str, status: int, times: int | None = None) -> None:
        """Answer *status* for the next *times* requests to *path* (None: forever)."""
        with self._lock:
            self._faults[_norm(path)] = _Fault(int(status), times)

    def slow(self, path: str, bytes_per_s: int | None) -> None:
        """Serve *path* at about *bytes_per_s* (None: full speed again), e.g. to kill a client
        mid-download."""
        with self._lock:
            if bytes_per_s is None:
                self._rates.pop(_norm(path), None)
            else:
                self._rates[_norm(path)] = int(bytes_per_s)

    def clear_faults(self) -> None:
        """Forget scripted faults and slow paths."""
        with self._lock:
            self._faults.clear()
            self._rates.clear()

    # -- accounting ------------------------------------------------------------------------
    def request_count(self, path: str | None = None) -> int:
        """Requests received for *path* (any method, faults included), or in total."""
        with self._lock:
            if path is None:
                return sum(self._counts.values())
            return self._counts[_norm(path)]

    def request_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def requests_log(self, path: str | None = None) -> list[RequestRecord]:
        """Every request received (or those for *path*), in arrival order."""
        with self._lock:
            log = list(self._log)
        return log if path is None else [r for r in log if r.path == _norm(path)]

    # -- used by the handler ---------------------------------------------------------------
    def _log_request(self, method: str, path: str, headers: dict[str, str]) -> None:
        with self._lock:
            self._log.append(RequestRecord(method, _norm(path), headers))

    def _next_fault(self, path: str) -> _Fault | None:
        path = _norm(path)
        with self._lock:
            self._counts[path] += 1
            fault = self._faults.get(path)
            if fault is None:
                return None
            if fault.remaining is not None:
                if fault.remaining <= 0:
                    return None
                fault.remaining -= 1
            return fault

    def _rate(self, path: str) -> int | None:
        with self._lock:
            return self._rates.get(_norm(path))

    def _resolve(self, path: str) -> Path | None:
        rel = _norm(path).lstrip("/")
        candidate = (self.root / rel).resolve()
        if self.root not in candidate.parents or not candidate.is_file():
            return None
        return candidate


def _norm(path: str) -> str:
    return "/" + unquote(path.split("?", 1)[0]).lstrip("/")
