"""Serve a tile cache as XYZ over HTTP, confined and bounded.

Routes: `GET /{z}/{x}/{y}.{png|jpg|jpeg|webp}` (the stored bytes, with their real MIME type,
an ETag and `304 Not Modified` for a matching If-None-Match) and `GET /metadata.json`.
Tiles are looked up by integer index in the store, never by the request's file name.
Requests with `..`, percent-escapes, backslashes, NUL, an absolute URI or a doubled slash, or
non-numeric tile indices get 400; well-formed paths that name nothing (unknown route, index
outside the zoom's grid, tile not stored) get 404. A tile the store refuses to read (an
XYZ file or directory that is a symlink resolving outside the cache root, a FIFO, a device,
a file over the size cap; see `xyz.XYZStore`) gets 403 and one log line.

Against slow or hostile clients:
- a bounded pool of `workers` threads handles connections; at most `max_connections` are
  open (queued or in a worker) at once, and one more is answered 503 and closed;
- the request line and headers must arrive within `read_timeout_s` of the connection being
  accepted (time spent queued counts: a stalled connection does not get a fresh allowance
  when a worker picks it up, while a complete request already in the socket buffer is
  still read); every receive waits at most for what is left of that allowance;
- each write (headers, body) must finish within `write_timeout_s`;
- a dropped or timed-out client costs one log line, never a traceback.
Binding anything but a loopback address needs `allow_remote=True`: the server has no
authentication and no TLS.
"""
from __future__ import annotations

import hashlib
import io
import ipaddress
import json
import re
import socket
import socketserver
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer

from cvgl_ros.errors import InputError
from cvgl_ros.tiles.codec import mime_type, sniff_format
from cvgl_ros.tiles.store import MAX_TILE_BYTES, TileRefusedError, TileStore

_TILE_PATH = re.compile(r"^/(\d{1,3})/(\d{1,12})/(\d{1,12})\.(png|jpg|jpeg|webp)$")
_TILE_SHAPE = re.compile(r"^/[^/]*/[^/]*/[^/]*$")
MAX_ZOOM = 24
DEFAULT_WORKERS = 16
DEFAULT_MAX_CONNECTIONS = 256
DEFAULT_READ_TIMEOUT_S = 10.0
DEFAULT_WRITE_TIMEOUT_S = 10.0


def parse_request_path(raw: str) -> tuple[int, object]:
    """Classify a request target: (200, (z, x, y)) | (200, "metadata") | (400|404, reason)."""
    if not raw.startswith("/") or raw.startswith("//"):
        return 400, "absolute or malformed request target"
    path = raw.split("?", 1)[0].split("#", 1)[0]
    if any(bad in path for bad in ("..", "%", "\\", "\x00", "//")):
        return 400, "path traversal or escaped characters are not allowed"
    if path in ("/metadata.json", "/"):
        return 200, "metadata"
    match = _TILE_PATH.match(path)
    if match is None:
        if _TILE_SHAPE.match(path):
            return 400, "tile paths are /{z}/{x}/{y}.png|jpg|webp with integer z, x, y"
        return 404, "no such route"
    z, x, y = (int(v) for v in match.groups()[:3])
    if z > MAX_ZOOM or x >= (1 << z) or y >= (1 << z):
        return 404, "tile index outside the grid of its zoom"
    return 200, (z, x, y)


def _etag(data: bytes) -> str:
    return '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    tags = [t.strip() for t in header.split(",")]
    return "*" in tags or any(t.removeprefix("W/") == etag for t in tags)


def bind_addresses(host: str) -> list[str]:
    """The IP addresses `host` names (InputError when it names none)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise InputError(f"cannot resolve host {host!r} to bind: {exc}") from None
    return sorted({info[4][0] for info in infos})


def is_loopback_host(host: str) -> bool:
    """True when every address `host` names is a loopback address (127.0.0.0/8, ::1)."""
    return all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in bind_addresses(host))


class _DeadlineReader(io.RawIOBase):
    """Socket reads that end at the handler's deadline (a total, not a per-receive, timeout)."""

    def __init__(self, sock: socket.socket, handler: "TileRequestHandler"):
        self._sock = sock
        self._handler = handler

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        remaining = self._handler.read_deadline - time.monotonic()
        if remaining > 0:
            self._sock.settimeout(remaining)
            return self._sock.recv_into(buf)
        self._sock.setblocking(False)  # past the deadline: only what has already arrived
        try:
            return self._sock.recv_into(buf)
        except BlockingIOError:
            raise TimeoutError("request not complete within the read timeout") from None


class TileRequestHandler(BaseHTTPRequestHandler):
    server_version = "cvgl-tiles/1"
    disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms delayed-ACK stall
    timeout = None  # the socket's timeouts are set per read (deadline) and per write below
    store: TileStore  # set on the subclass made by make_server
    quiet = True
    server: "TileHTTPServer"

    def setup(self):
        super().setup()
        self.read_deadline = self.server.accepted_at() + self.server.read_timeout_s
        self.rfile.close()  # the plain socket file: replaced by one that honours the deadline
        self.rfile = io.BufferedReader(_DeadlineReader(self.connection, self), self.rbufsize
                                       if self.rbufsize > 0 else io.DEFAULT_BUFFER_SIZE)

    def log_message(self, fmt, *args):  # noqa: D401 - http.server API: the request log
        if not self.quiet:
            self.server.log_line(f"{self.address_string()} - {fmt % args}")

    def log_error(self, fmt, *args):  # noqa: D401 - http.server API: always one line
        self.server.log_line(f"{self.address_string()} - {fmt % args}")

    def send_response_only(self, code, message=None):  # every response starts here
        self.connection.settimeout(self.server.write_timeout_s)
        super().send_response_only(code, message)

    def _send(self, status: int, body: bytes = b"", content_type: str = "text/plain; charset=utf-8",
              headers: dict | None = None, head_only: bool = False):
        self.send_response(status)
        if status != HTTPStatus.NOT_MODIFIED:
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if body and not head_only and status != HTTPStatus.NOT_MODIFIED:
            self.wfile.write(body)

    def _raw_target(self) -> str:
        """The request target exactly as sent (http.server rewrites a leading '//')."""
        parts = self.requestline.split()
        return parts[1] if len(parts) >= 2 else self.path

    def _handle(self, head_only: bool):
        status, what = parse_request_path(self._raw_target())
        if status != 200:
            self._send(status, (str(what) + "\n").encode(), head_only=head_only)
            return
        if what == "metadata":
            meta = dict(self.store.metadata)
            meta["tiles"] = [f"/{{z}}/{{x}}/{{y}}.{self.store.image_format}"]
            body = (json.dumps(meta, sort_keys=True) + "\n").encode()
            self._send(200, body, "application/json", head_only=head_only)
            return
        try:
            data = self.store.read_tile(*what)
            if data is not None and len(data) > self.server.max_tile_bytes:
                raise TileRefusedError(f"tile of {len(data)} bytes, over the {self.server.max_tile_bytes} cap")
        except TileRefusedError as exc:
            self.log_error("refused %s: %s", self._raw_target(), exc)
            self._send(403, b"tile refused\n", head_only=head_only)
            return
        except Exception as exc:  # a damaged cache must not kill the server
            self.log_error("cannot read %s: %s", self._raw_target(), exc)
            self._send(500, b"cannot read tile\n", head_only=head_only)
            return
        if data is None:
            self._send(404, b"tile not in cache\n", head_only=head_only)
            return
        etag = _etag(data)
        headers = {"ETag": etag, "Cache-Control": "public, max-age=3600"}
        if _etag_matches(self.headers.get("If-None-Match"), etag):
            self._send(HTTPStatus.NOT_MODIFIED, headers=headers, head_only=True)
            return
        fmt = sniff_format(data) or self.store.image_format
        self._send(200, data, mime_type(fmt), headers=headers, head_only=head_only)

    def do_GET(self):  # noqa: N802 - http.server API
        self._handle(head_only=False)

    def do_HEAD(self):  # noqa: N802 - http.server API
        self._handle(head_only=True)


_STDERR_LOCK = threading.Lock()


def _write_stderr_line(line: str) -> None:
    """One whole line per call, even from many worker threads at once (print() writes the
    text and its newline separately, so two threads' lines could run together)."""
    with _STDERR_LOCK:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


class TileHTTPServer(HTTPServer):
    """An HTTPServer whose connections run in a bounded thread pool (see the module docstring)."""

    request_queue_size = 128  # the default backlog of 5 drops SYNs under concurrent clients (1 s stalls)

    def __init__(self, address, handler, *, workers: int = DEFAULT_WORKERS,
                 max_connections: int = DEFAULT_MAX_CONNECTIONS, read_timeout_s: float = DEFAULT_READ_TIMEOUT_S,
                 write_timeout_s: float = DEFAULT_WRITE_TIMEOUT_S, max_tile_bytes: int = MAX_TILE_BYTES,
                 log=None):
        if workers < 1 or max_connections < workers:
            raise InputError(f"workers ({workers}) must be >= 1 and max connections ({max_connections}) >= workers")
        if not (read_timeout_s > 0 and write_timeout_s > 0):
            raise InputError("read and write timeouts must be > 0 s")
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.read_timeout_s = float(read_timeout_s)
        self.write_timeout_s = float(write_timeout_s)
        self.max_tile_bytes = int(max_tile_bytes)
        self.max_connections = int(max_connections)
        self._log = log or _write_stderr_line
        self._slots = threading.BoundedSemaphore(max_connections)
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tile-serve")
        super().__init__(address, handler)

    def server_bind(self):
        socketserver.TCPServer.server_bind(self)  # no getfqdn(): a reverse DNS lookup at start-up
        self.server_name, self.server_port = self.server_address[:2]

    def log_line(self, line: str) -> None:
        self._log(line)

    def accepted_at(self) -> float:
        return self._local.accepted_at

    def process_request(self, request, client_address):
        """Queue the connection for a worker, or answer 503 when `max_connections` are open."""
        if not self._slots.acquire(blocking=False):
            self.log_line(f"{client_address[0]} - refused: {self.max_connections} connections open (503)")
            try:
                request.setblocking(False)
                request.send(b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            self._pool.submit(self._work, request, client_address, time.monotonic())
        except RuntimeError:  # the pool is shut down: the server is closing
            self._slots.release()
            self.shutdown_request(request)

    def _work(self, request, client_address, accepted_at: float) -> None:
        self._local.accepted_at = accepted_at
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            self._slots.release()

    def handle_error(self, request, client_address):
        """A client that went away is one log line; anything else keeps its traceback."""
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            self.log_line(f"{client_address[0]} - dropped: {exc.__class__.__name__}: {exc}")
        else:
            super().handle_error(request, client_address)

    def server_close(self):
        super().server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)


def make_server(store: TileStore, host: str = "127.0.0.1", port: int = 8080, quiet: bool = True, *,
                allow_remote: bool = False, **limits) -> TileHTTPServer:
    """A tile server for `store` (not started); port 0 picks a free port.

    `limits`: workers, max_connections, read_timeout_s, write_timeout_s, max_tile_bytes, log.
    A host that is not loopback raises InputError unless `allow_remote`."""
    if not allow_remote and not is_loopback_host(host):
        raise InputError(f"host {host} is not a loopback address: anyone who can reach it could read the cache "
                         "and hold its connections; pass --allow-remote to serve it anyway")
    handler = type("BoundTileRequestHandler", (TileRequestHandler,), {"store": store, "quiet": quiet})
    return TileHTTPServer((host, port), handler, **limits)


def serve_in_thread(store: TileStore, host: str = "127.0.0.1", port: int = 0, **limits):
    """Start a server in a daemon thread; returns (server, base_url). Stop with server.shutdown()."""
    server = make_server(store, host, port, **limits)
    threading.Thread(target=server.serve_forever, name="tile-server", daemon=True).start()
    h, p = server.server_address[:2]
    return server, f"http://{h}:{p}"
