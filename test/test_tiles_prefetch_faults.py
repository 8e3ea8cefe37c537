"""Prefetch against a fault-injecting tile server: only valid tiles are ever committed, bad ones
are reported and fetched again by a rerun; `tiles verify` finds and mends bad tiles; `{s}`
subdomains; unknown placeholders refused before any file exists; the circuit breaker."""
import os
import socket
import struct
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import mercantile
import numpy as np
import pytest

from cvgl_ros.errors import InputError
from cvgl_ros.tiles.codec import encode_tile
from cvgl_ros.tiles.download import check_url_template, tile_url
from cvgl_ros.tiles.mbtiles import MBTilesStore
from cvgl_ros.tiles.prefetch import prefetch
from cvgl_ros.tiles.validate import validate_tile
from cvgl_ros.tiles.xyz import XYZStore

Z = 19
X0, Y0 = mercantile.tile(8.4, 49.0, Z)[:2]
WANTED = {(X0 + i, Y0 + j) for i in range(4) for j in range(3)}  # 12 tiles
MAX_BYTES = 100_000  # the tile cap the tests run with (a source tile is ~5 kB)


def tile_png(x: int, y: int, size: int = 256) -> bytes:
    img = np.full((size, size, 3), ((x * 37) % 256, (y * 53) % 256, ((x + y) * 11) % 256), np.uint8)
    cv2.putText(img, f"{x % 1000}/{y % 1000}", (10, size // 2), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2)
    return encode_tile(img, "png")


# Every fault the server can inject, and what the failure reason then says.
FAULT_REASONS = {
    "cut_no_length": "truncated PNG",       # half the body, no Content-Length, connection closed
    "signature_junk": "IHDR",               # a PNG signature followed by junk
    "wrong_size": "128x128",                # a valid PNG of the wrong size
    "length_too_long": "Content-Length",    # Content-Length larger than the body sent
    "length_too_short": "truncated PNG",    # the client reads Content-Length bytes: a cut PNG
    "reset": "onnection",                   # TCP reset before any response
    "oversized": "cap",                     # a 300 kB junk "PNG" without Content-Length
    "jpeg": "server sent jpg",              # a valid tile of another format
}
PERMANENT = dict(zip(sorted(WANTED)[:8], FAULT_REASONS))  # bad on every attempt
TRANSIENT = dict(zip(sorted(WANTED)[8:10], ["cut_no_length", "reset"]))  # bad on the first attempt only


class FaultHandler(BaseHTTPRequestHandler):
    """Serves /[{s}/]{z}/{x}/{y}.png, injecting the fault that `plan(x, y, attempt)` names."""

    def log_message(self, *args):
        pass

    def _reply(self, body: bytes, length: int | None):
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802
        parts = self.path.strip("/").split(".")[0].split("/")
        sub, (z, x, y) = (parts[0] if len(parts) == 4 else None), (int(v) for v in parts[-3:])
        srv = self.server
        with srv.lock:
            attempt = srv.attempts[(x, y)] = srv.attempts.get((x, y), 0) + 1
            srv.subdomains_seen[(x, y)] = sub
        fault = srv.plan(x, y, attempt)
        good = tile_png(x, y)
        if fault is None:
            self._reply(good, len(good))
        elif fault == "cut_no_length":
            self._reply(good[:len(good) // 2], None)
        elif fault == "signature_junk":
            junk = b"\x89PNG\r\n\x1a\n" + os.urandom(3000)
            self._reply(junk, len(junk))
        elif fault == "wrong_size":
            small = tile_png(x, y, 128)
            self._reply(small, len(small))
        elif fault == "length_too_long":
            self._reply(good, len(good) + 500)
        elif fault == "length_too_short":
            self._reply(good, len(good) // 2)
        elif fault == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        elif fault == "oversized":
            self._reply(b"\x89PNG\r\n\x1a\n" + b"\x00" * 300_000, None)
        elif fault == "jpeg":
            img = cv2.imdecode(np.frombuffer(good, np.uint8), cv2.IMREAD_COLOR)
            jpg = encode_tile(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), "jpg")
            self._reply(jpg, len(jpg))
        self.close_connection = True


@pytest.fixture
def fault_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FaultHandler)
    server.daemon_threads = True
    server.lock = threading.Lock()
    server.attempts = {}
    server.subdomains_seen = {}
    server.broken = True

    def plan(x, y, attempt):
        if server.broken and (x, y) in PERMANENT:
            return PERMANENT[(x, y)]
        if server.broken and (x, y) in TRANSIENT and attempt == 1:
            return TRANSIENT[(x, y)]
        return None

    server.plan = plan
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}/{{z}}/{{x}}/{{y}}.png"
    yield server
    server.shutdown()
    server.server_close()


def stored(path) -> dict:
    with MBTilesStore.open(path) as store:
        return {(x, y): store.get_tile(z, x, y) for z, x, y in store.tile_keys()}


def run_prefetch(url, out, **kw):
    opts = dict(workers=3, retries=2, backoff_s=0.01, max_tile_bytes=MAX_BYTES, max_connection_failures=50,
                progress=False)
    opts.update(kw)
    return prefetch(url, WANTED, out, Z, **opts)


def test_faults_never_committed_and_a_rerun_fetches_them(fault_server, tmp_path):
    out = tmp_path / "c.mbtiles"
    stats = run_prefetch(fault_server.url, out)
    assert stats.failed == len(PERMANENT) and stats.downloaded == len(WANTED) - len(PERMANENT)
    tiles = stored(out)
    assert set(tiles) == WANTED - set(PERMANENT)  # the transient ones made it on a retry
    for (x, y), blob in tiles.items():
        assert blob == tile_png(x, y)
        validate_tile(blob, 256, "png")
    reasons = dict(line.split(": ", 1) for line in stats.errors)
    for (x, y), fault in PERMANENT.items():
        assert FAULT_REASONS[fault] in reasons[f"{Z}/{x}/{y}"], (fault, reasons[f"{Z}/{x}/{y}"])
    # A format mismatch is not retried; the other faults are (retries=2: three attempts each).
    jpeg_tile = next(k for k, f in PERMANENT.items() if f == "jpeg")
    assert fault_server.attempts[jpeg_tile] == 1
    assert all(fault_server.attempts[k] == 3 for k, f in PERMANENT.items() if f != "jpeg")

    fault_server.broken = False
    again = run_prefetch(fault_server.url, out)
    assert again.already_cached == len(WANTED) - len(PERMANENT) and again.downloaded == len(PERMANENT)
    assert again.failed == 0 and again.cached_invalid == 0
    assert stored(out) == {(x, y): tile_png(x, y) for x, y in WANTED}


def test_rerun_refetches_a_cached_tile_that_fails_the_check(fault_server, tmp_path):
    fault_server.broken = False
    out = tmp_path / "c.mbtiles"
    assert run_prefetch(fault_server.url, out).downloaded == len(WANTED)
    (bx, by), (cx, cy) = sorted(WANTED)[:2]
    with MBTilesStore.open(out, writable=True) as store:  # as an older prefetch stored them
        store.put_tile(Z, bx, by, tile_png(bx, by)[:len(tile_png(bx, by)) // 2])
        store.put_tile(Z, cx, cy, tile_png(cx, cy, 512))
    again = run_prefetch(fault_server.url, out)
    assert again.cached_invalid == 2 and again.downloaded == 2 and again.already_cached == len(WANTED) - 2
    assert stored(out) == {(x, y): tile_png(x, y) for x, y in WANTED}


def test_subdomains_fill_s(fault_server, tmp_path):
    fault_server.broken = False
    port = fault_server.server_address[1]
    url = f"http://127.0.0.1:{port}/{{s}}/{{z}}/{{x}}/{{y}}.png"
    stats = run_prefetch(url, tmp_path / "s.mbtiles")
    assert stats.downloaded == len(WANTED)
    assert fault_server.subdomains_seen == {(x, y): "abc"[(x + y) % 3] for x, y in WANTED}
    assert tile_url(url, Z, 5, 8, ["t0", "t1"]) == f"http://127.0.0.1:{port}/t1/{Z}/5/8.png"
    stats = run_prefetch(url, tmp_path / "t.mbtiles", subdomains="t0,t1")
    assert stats.downloaded == len(WANTED)
    assert set(fault_server.subdomains_seen.values()) == {"t0", "t1"}


@pytest.mark.parametrize("template,needle", [
    ("http://h/{z}/{x}/{y}.png?key={apikey}", "{apikey}"),
    ("http://h/{z}/{x}/{-y}.png", "{-y}"),
    ("http://h/{z}/{x}/{y}.png{", "unmatched"),
    ("http://h/{z}/{x}.png", "lacks {y}"),
])
def test_bad_templates_are_refused(template, needle):
    with pytest.raises(InputError, match=None) as err:
        check_url_template(template)
    assert needle in str(err.value)
    with pytest.raises(InputError):
        check_url_template("http://{s}.h/{z}/{x}/{y}.png", subdomains="a.b")
    assert check_url_template("https://{s}.tile.example.org/{z}/{x}/{y}.png") is not None


def test_cli_refuses_unknown_placeholder_before_creating_a_file(cvgl_bin, tmp_path):
    out = tmp_path / "o.mbtiles"
    proc = subprocess.run([cvgl_bin, "tiles", "prefetch", "--url", "http://127.0.0.1:1/{z}/{x}/{y}.png?k={key}",
                           "--bbox", "8.4,49,8.401,49.001", "--out", str(out)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "{key}" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == []


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nothing listens there


def test_circuit_breaker_stops_against_a_dead_server(tmp_path):
    url = f"http://127.0.0.1:{dead_port()}/{{z}}/{{x}}/{{y}}.png"
    many = {(X0 + i, Y0 + j) for i in range(10) for j in range(10)}
    result = {}

    def run():
        # 100 tiles x 4 retries backing off 2, 4, 8, 16 s would take over 10 min on 4 workers
        # without the breaker; with it, the second round of attempts trips it.
        result["stats"] = prefetch(url, many, tmp_path / "d.mbtiles", Z, workers=4, retries=4, backoff_s=2.0,
                                   max_connection_failures=8, progress=False)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=120)
    assert not worker.is_alive(), "prefetch kept backing off against a dead server"
    stats = result["stats"]
    assert stats.stopped and "8 connection failures in a row" in stats.stopped and "Connection" in stats.stopped
    assert stats.downloaded == 0 and stats.not_attempted >= 90
    assert stats.failed + stats.not_attempted == len(many)


def test_cli_circuit_breaker_is_one_line(cvgl_bin, tmp_path):
    proc = subprocess.run([cvgl_bin, "tiles", "prefetch", "--url", f"http://127.0.0.1:{dead_port()}/{{z}}/{{x}}/{{y}}.png",
                           "--bbox", "8.4,49,8.41,49.01", "--zoom", "18", "--radius-m", "0", "--retries", "3",
                           "--max-connection-failures", "3", "--workers", "2", "--quiet",
                           "--out", str(tmp_path / "d.mbtiles")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "stopped" in lines[0] and "3 connection failures in a row" in lines[0], proc.stderr


def bad_blobs(x, y):
    """Three kinds of damage a cache can hold."""
    good = tile_png(x, y)
    return [good[:len(good) // 3], b"\x89PNG\r\n\x1a\n" + b"junk" * 100, tile_png(x, y, 128)]


def verify(cvgl_bin, cache, *extra):
    return subprocess.run([cvgl_bin, "tiles", "verify", str(cache), "--quiet", *map(str, extra)],
                          capture_output=True, text=True, timeout=120)


def test_verify_finds_bad_tiles_and_repair_mends_them(cvgl_bin, fault_server, tmp_path):
    fault_server.broken = False
    cache = tmp_path / "c.mbtiles"
    assert run_prefetch(fault_server.url, cache).downloaded == len(WANTED)
    victims = sorted(WANTED)[3:6]

    def damage():
        with MBTilesStore.open(cache, writable=True) as store:
            for (x, y), blob in zip(victims, bad_blobs(*victims[0])):
                store.put_tile(Z, x, y, blob)

    damage()
    found = verify(cvgl_bin, cache)
    assert found.returncode == 1, found.stdout + found.stderr
    bad = dict(line.split(": ", 1) for line in found.stdout.splitlines() if line.startswith("bad "))
    assert set(bad) == {f"bad {Z}/{x}/{y}" for x, y in victims}  # one line each, nothing else
    assert len([line for line in found.stdout.splitlines() if line.startswith("bad ")]) == 3
    for (x, y), needle in zip(victims, ["truncated PNG", "IHDR", "128x128"]):
        assert needle in bad[f"bad {Z}/{x}/{y}"]
    assert f"{len(WANTED)} tiles checked (256 px), 3 bad" in found.stdout
    assert len(found.stderr.strip().splitlines()) == 1 and "Traceback" not in found.stderr

    # --repair deletes them; the next prefetch fetches them again.
    repaired = verify(cvgl_bin, cache, "--repair")
    assert repaired.returncode == 0 and "3 deleted" in repaired.stdout, repaired.stdout + repaired.stderr
    assert set(stored(cache)) == WANTED - set(victims)
    assert run_prefetch(fault_server.url, cache).downloaded == 3
    assert stored(cache) == {(x, y): tile_png(x, y) for x, y in WANTED}

    # --repair --url fetches them again at once.
    damage()
    refetched = verify(cvgl_bin, cache, "--repair", "--url", fault_server.url)
    assert refetched.returncode == 0 and "3 fetched again" in refetched.stdout, refetched.stdout + refetched.stderr
    assert stored(cache) == {(x, y): tile_png(x, y) for x, y in WANTED}


def test_verify_an_xyz_cache_with_links_out_and_a_fifo(cvgl_bin, tmp_path):
    outside = tmp_path / "outside.png"
    outside.write_bytes(tile_png(9, 9))  # a valid tile, but not the cache's to serve or delete
    root = tmp_path / "xyz"
    with XYZStore.create(root, name="x") as store:
        store.put_tile(1, 0, 0, tile_png(0, 0))
        store.put_tile(1, 1, 1, tile_png(1, 1)[:500])
    (root / "1" / "0" / "1.png").symlink_to(outside)
    os.mkfifo(root / "1" / "1" / "0.png")
    found = verify(cvgl_bin, root)
    assert found.returncode == 1
    bad = {line.split(":")[0]: line for line in found.stdout.splitlines() if line.startswith("bad ")}
    assert set(bad) == {"bad 1/0/1", "bad 1/1/0", "bad 1/1/1"}, found.stdout
    assert "outside the cache root" in bad["bad 1/0/1"] and "not a regular file" in bad["bad 1/1/0"]
    repaired = verify(cvgl_bin, root, "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert outside.read_bytes() == tile_png(9, 9)  # the link went, not its target
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png")) == ["1/0/0.png"]


def test_cli_format_for_a_new_cache(cvgl_bin, fault_server, tmp_path):
    """A URL without an extension: the default png cache refuses JPEG tiles, --format jpg takes them."""
    fault_server.broken = False
    fault_server.plan = lambda x, y, attempt: "jpeg"
    url = fault_server.url.replace(".png", "")
    west, north = mercantile.ul(X0, Y0, Z)
    east, south = mercantile.ul(X0 + 2, Y0 + 1, Z)
    cmd = [cvgl_bin, "tiles", "prefetch", "--url", url, "--bbox", f"{west + 1e-6},{south + 1e-6},{east - 1e-6},"
           f"{north - 1e-6}", "--radius-m", "0", "--zoom", str(Z), "--retries", "0", "--quiet"]
    refused = subprocess.run(cmd + ["--out", str(tmp_path / "p.mbtiles")], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "--format jpg" in refused.stderr, refused.stderr
    taken = subprocess.run(cmd + ["--format", "jpg", "--out", str(tmp_path / "j.mbtiles")], capture_output=True,
                           text=True, timeout=60)
    assert taken.returncode == 0 and " 2 downloaded" in taken.stdout, taken.stdout + taken.stderr
    with MBTilesStore.open(tmp_path / "j.mbtiles") as store:
        assert store.image_format == "jpg" and store.tile_count() == 2
