"""Serve a tile cache as XYZ over HTTP (standard-library ThreadingHTTPServer).

Routes: `GET /{z}/{x}/{y}.{png|jpg|jpeg|webp}` (the stored bytes, with their real MIME type,
an ETag and `304 Not Modified` for a matching If-None-Match) and `GET /metadata.json`.
Tiles are looked up by integer index in the store, never by file name, so no request
can read a file outside the cache. Requests with `..`, percent-escapes, backslashes, NUL,
an absolute URI or a doubled slash, or non-numeric tile indices get 400; well-formed paths
that name nothing (unknown route, index outside the zoom's grid, tile not stored) get 404.
"""
from __future__ import annotations

import hashlib
import json
import re
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cvgl_ros.tiles.codec import mime_type, sniff_format
from cvgl_ros.tiles.store import TileStore

_TILE_PATH = re.compile(r"^/(\d{1,3})/(\d{1,12})/(\d{1,12})\.(png|jpg|jpeg|webp)$")
_TILE_SHAPE = re.compile(r"^/[^/]*/[^/]*/[^/]*$")
MAX_ZOOM = 24


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


class TileRequestHandler(BaseHTTPRequestHandler):
    server_version = "cvgl-tiles/1"
    disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms delayed-ACK stall
    store: TileStore  # set on the subclass made by make_server
    quiet = True

    def log_message(self, fmt, *args):  # noqa: D401 - http.server API
        if not self.quiet:
            sys.stderr.write("%s - %s\n" % (self.address_string(), fmt % args))

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
            data = self.store.get_tile(*what)
        except Exception as exc:  # a damaged cache must not kill the server
            self._send(500, f"cannot read tile: {exc}\n".encode(), head_only=head_only)
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


class TileHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default backlog of 5 drops SYNs under concurrent clients (1 s stalls)


def make_server(store: TileStore, host: str = "127.0.0.1", port: int = 8080, quiet: bool = True) -> ThreadingHTTPServer:
    """A threading HTTP server for `store` (not started); port 0 picks a free port."""
    handler = type("BoundTileRequestHandler", (TileRequestHandler,), {"store": store, "quiet": quiet})
    return TileHTTPServer((host, port), handler)


def serve_in_thread(store: TileStore, host: str = "127.0.0.1", port: int = 0):
    """Start a server in a daemon thread; returns (server, base_url). Stop with server.shutdown()."""
    server = make_server(store, host, port)
    threading.Thread(target=server.serve_forever, name="tile-server", daemon=True).start()
    h, p = server.server_address[:2]
    return server, f"http://{h}:{p}"
