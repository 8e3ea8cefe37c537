"""`cvgl tiles serve` (paths, ETag/304, nothing outside the cache: no symlink out of the root, FIFO
or device; stalled clients dropped by a bounded pool; loopback unless --allow-remote) and
`cvgl tiles prefetch` (kill -9 and rerun, retries with back-off, positions from a bag), as real
subprocesses on loopback."""
import http.client
import os
import random
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import mercantile
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from cvgl_ros.datasets.bag import MSG_NAVSATFIX, TOPIC_GNSS_FIX, BagWriter, navsatfix_msg
from cvgl_ros.errors import InputError
from cvgl_ros.geo import Datum
from cvgl_ros.tiles.codec import encode_tile
from cvgl_ros.tiles.mbtiles import MBTilesStore
from cvgl_ros.tiles.prefetch import MAX_PREFETCH_TILES, prefetch, tiles_in_bbox, tiles_near_points
from cvgl_ros.tiles.serve import parse_request_path, serve_in_thread
from cvgl_ros.tiles.xyz import XYZStore

Z = 19
X0, Y0 = mercantile.tile(8.4, 49.0, Z)[:2]
SIDE = 20  # the source holds SIDE x SIDE tiles


def tile_png(x: int, y: int) -> bytes:
    """A small, unique tile per index (cheap to encode)."""
    img = np.full((256, 256, 3), ((x * 37) % 256, (y * 53) % 256, ((x + y) * 11) % 256), np.uint8)
    cv2.putText(img, f"{x % 1000}/{y % 1000}", (20, 130), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (255, 255, 255), 3)
    return encode_tile(img, "png")


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    path = tmp_path_factory.mktemp("src") / "source.mbtiles"
    with MBTilesStore.create(path, name="source") as store:
        for x in range(X0, X0 + SIDE):
            for y in range(Y0, Y0 + SIDE):
                store.put_tile(Z, x, y, tile_png(x, y))
    return path


def start_server(cvgl_bin, cache):
    proc = subprocess.Popen([cvgl_bin, "tiles", "serve", str(cache), "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.startswith("serving"), (line, proc.stderr.read() if proc.poll() is not None else "")
    port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
    return proc, port


def stop(proc):
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    for stream in (proc.stdout, proc.stderr):
        if stream:
            stream.close()


@pytest.fixture(scope="module")
def server(cvgl_bin_module, source):
    proc, port = start_server(cvgl_bin_module, source)
    yield port
    stop(proc)


@pytest.fixture(scope="module")
def cvgl_bin_module():
    from pathlib import Path
    return str(Path(sys.executable).with_name("cvgl"))


def request(port, target, method="GET", headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.putrequest(method, target, skip_host=False, skip_accept_encoding=True)
    for k, v in (headers or {}).items():
        conn.putheader(k, v)
    conn.endheaders()
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, dict(resp.getheaders()), body


def test_serve_tiles_etag_and_304(server):
    status, headers, body = request(server, f"/{Z}/{X0 + 1}/{Y0 + 2}.png")
    assert status == 200 and body == tile_png(X0 + 1, Y0 + 2)
    assert headers["Content-Type"] == "image/png"
    etag = headers["ETag"]
    status, headers2, body = request(server, f"/{Z}/{X0 + 1}/{Y0 + 2}.png", headers={"If-None-Match": etag})
    assert status == 304 and body == b"" and headers2["ETag"] == etag
    status, _, body = request(server, f"/{Z}/{X0 + 1}/{Y0 + 2}.png", headers={"If-None-Match": '"other"'})
    assert status == 200 and body
    status, headers, body = request(server, f"/{Z}/{X0 + 1}/{Y0 + 2}.png", method="HEAD")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 0
    assert request(server, f"/{Z}/{X0 - 5}/{Y0}.png")[0] == 404  # not in the cache
    assert request(server, "/metadata.json")[0] == 200


@pytest.mark.parametrize("target,expected", [
    ("/../../etc/passwd", 400), ("/19/../../../etc/passwd", 400), ("/%2e%2e/%2e%2e/etc/passwd", 400),
    ("//etc/passwd", 400), ("http://127.0.0.1/19/1/1.png", 400), ("/19/abc/1.png", 400),
    ("/19/1/-1.png", 400), ("/a/b/c.png", 400), ("/19/1/1.png\\..", 400), ("/etc/passwd", 404),
    ("/19/999999999/1.png", 404), ("/25/1/1.png", 404), ("/19/1/1.exe", 400), ("/", 200),
])
def test_serve_rejects_bad_paths(server, target, expected):
    assert parse_request_path(target)[0] == expected
    assert request(server, target)[0] == expected


def test_serve_never_reads_outside_an_xyz_cache(cvgl_bin_module, tmp_path):
    secret = b"\x89PNG\r\n\x1a\nSECRET"
    (tmp_path / "1.png").write_bytes(secret)
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_bytes(secret)
    root = tmp_path / "cache"
    with XYZStore.create(root, name="x") as store:
        store.put_tile(1, 0, 0, tile_png(0, 0))
    proc, port = start_server(cvgl_bin_module, root)
    try:
        for target in ["/../1.png", "/1/0/../../../1.png", "/%2e%2e/1.png", "//etc/passwd", "/../etc/passwd",
                       "/1/0/..%2f..%2f..%2f1.png", "/1/0/0.png/../../../1.png", "/metadata.json/../../1.png"]:
            status, _, body = request(port, target)
            assert status in (400, 404) and b"SECRET" not in body, target
        assert request(port, "/1/0/0.png")[2] == tile_png(0, 0)
    finally:
        stop(proc)


def committed_tiles(path) -> dict:
    """Open (and so recover) the MBTiles like a rerun would, check integrity, return its tiles."""
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    with MBTilesStore.open(path) as store:
        return {k: store.get_tile(*k) for k in store.tile_keys()}


def test_prefetch_killed_and_rerun_ends_with_exactly_the_source(cvgl_bin_module, server, source, tmp_path):
    west, north = mercantile.ul(X0, Y0, Z)
    east, south = mercantile.ul(X0 + SIDE, Y0 + SIDE, Z)
    # A box a little larger than the source: the server answers 404 for the extra ring.
    bbox = f"{west:.7f},{south:.7f},{east:.7f},{north:.7f}"
    out = tmp_path / "cache.mbtiles"
    cmd = [cvgl_bin_module, "tiles", "prefetch", "--url", f"http://127.0.0.1:{server}/{{z}}/{{x}}/{{y}}.png",
           "--bbox", bbox, "--radius-m", "30", "--zoom", str(Z), "--out", str(out), "--workers", "1",
           "--batch", "4", "--quiet"]
    with MBTilesStore.open(source) as src:
        source_tiles = {k: src.get_tile(*k) for k in src.tile_keys()}
    rng = random.Random(1234)
    killed_running = 0
    for _ in range(3):
        before = len(committed_tiles(out)) if out.exists() else 0
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # Wait for a new commit (or the end), then kill at once: the 400 tiles over loopback take well
        # under a second, and a kill a random 0-0.3 s later found all of them committed in CI.
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                with MBTilesStore.open(out) as store:
                    if store.tile_count() > before:
                        break
            except Exception:  # not created yet
                pass
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.01))
        if proc.poll() is None:
            killed_running += 1
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stderr.close()
        tiles = committed_tiles(out)
        print(f"after kill: {len(tiles)} of {len(source_tiles)} tiles committed")
        assert tiles, "nothing committed before the kill"
        for key, blob in tiles.items():
            assert source_tiles[key] == blob  # only complete, correct tiles
    assert killed_running >= 1
    final = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stderr
    assert "0 failed" in final.stdout
    assert committed_tiles(out) == source_tiles
    with MBTilesStore.open(out) as store:
        assert store.metadata["maxzoom"] == str(Z)
    # A further rerun has nothing to do.
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and " 0 downloaded" in again.stdout


class FlakyHandler(BaseHTTPRequestHandler):
    """Answers 503 (or drops the connection) on the first two requests of every tile."""

    counts: dict = {}
    lock = threading.Lock()

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802
        with self.lock:
            n = self.counts[self.path] = self.counts.get(self.path, 0) + 1
        if n == 1:
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if n == 2:
            self.connection.close()  # a reset mid-request
            return
        z, x, y = (int(v) for v in self.path.strip("/").split(".")[0].split("/"))
        body = tile_png(x, y)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_prefetch_retries_with_backoff(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakyHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/{{z}}/{{x}}/{{y}}.png"
    try:
        wanted = {(X0 + i, Y0) for i in range(6)}
        failed = prefetch(url, {(X0 + 100, Y0)}, tmp_path / "f.mbtiles", Z, retries=1, backoff_s=0.01,
                          progress=False)
        assert failed.failed == 1 and failed.downloaded == 0
        stats = prefetch(url, wanted, tmp_path / "c.mbtiles", Z, workers=3, retries=3, backoff_s=0.01,
                         progress=False)
        assert stats.downloaded == 6 and stats.failed == 0 and stats.retries == 12
        with MBTilesStore.open(tmp_path / "c.mbtiles") as store:
            assert {(x, y) for _, x, y in store.tile_keys()} == wanted
    finally:
        server.shutdown()
        server.server_close()


def test_tiles_near_points_matches_brute_force():
    datum = Datum(49.0, 8.4)
    radius = 120.0
    got = tiles_near_points([49.0], [8.4], radius, Z)
    for x in range(X0 - 6, X0 + 7):
        for y in range(Y0 - 6, Y0 + 7):
            b = mercantile.bounds(x, y, Z)
            t = np.linspace(0, 1, 64)
            lon = np.concatenate([b.west + t * (b.east - b.west), np.full(64, b.east),
                                  b.west + t * (b.east - b.west), np.full(64, b.west)])
            lat = np.concatenate([np.full(64, b.north), b.south + t * (b.north - b.south),
                                  np.full(64, b.south), b.south + t * (b.north - b.south)])
            e, n, _ = datum.to_enu(lat, lon)
            inside = b.west <= 8.4 <= b.east and b.south <= 49.0 <= b.north
            d = 0.0 if inside else np.hypot(e, n).min()
            if d <= radius - 0.5:
                assert (x, y) in got, (x, y, d)
            elif d > radius + 0.5:
                assert (x, y) not in got, (x, y, d)
    assert len(got) >= 9 and got <= {(x, y) for x in range(X0 - 6, X0 + 7) for y in range(Y0 - 6, Y0 + 7)}


def test_tiles_in_bbox_are_mercantiles_tiles_of_the_box_grown_by_the_radius():
    west, north = mercantile.ul(X0, Y0, Z)
    east, south = mercantile.ul(X0 + 3, Y0 + 2, Z)  # exactly on tile edges
    box_tiles = {(t.x, t.y) for t in mercantile.tiles(west, south, east, north, zooms=[Z])}
    assert tiles_in_bbox(west, south, east, north, 0.0, Z) == box_tiles == {
        (x, y) for x in range(X0, X0 + 3) for y in range(Y0, Y0 + 2)}  # tiles that only touch the edge are out
    # A tile at z19 is ~50 m wide here: a 30 m margin adds exactly one ring, 80 m two.
    assert tiles_in_bbox(west, south, east, north, 30.0, Z) == {
        (x, y) for x in range(X0 - 1, X0 + 4) for y in range(Y0 - 1, Y0 + 3)}
    assert tiles_in_bbox(west, south, east, north, 80.0, Z) == {
        (x, y) for x in range(X0 - 2, X0 + 5) for y in range(Y0 - 2, Y0 + 4)}
    # Grown across the antimeridian, the box goes on from the other side.
    n_tiles = 1 << Z
    wrapped = tiles_in_bbox(179.9999, 10.0, 180.0, 10.0001, 100.0, Z)
    assert {x for x, _ in wrapped} == {n_tiles - 2, n_tiles - 1, 0, 1}  # 100 m: 1.3 tiles east of 180 deg
    with pytest.raises(InputError, match=f"more than {MAX_PREFETCH_TILES}"):
        tiles_in_bbox(8.0, 49.0, 9.0, 50.0, 0.0, Z)


def test_prefetch_from_bag(cvgl_bin_module, server, tmp_path):
    bag = tmp_path / "drive"
    datum = Datum(49.0, 8.4)
    east = np.linspace(-30.0, 40.0, 30)
    lat, lon, _ = datum.to_wgs84(east, np.zeros_like(east))
    with BagWriter(bag) as writer:
        writer.set_datum(datum)
        for i, (la, lo) in enumerate(zip(lat, lon)):
            writer.write(TOPIC_GNSS_FIX, MSG_NAVSATFIX, 10**9 + i * 10**8,
                         navsatfix_msg(float(la), float(lo), 100.0, 10**9 + i * 10**8, sigma_m=2.0))
    out = tmp_path / "route.mbtiles"
    proc = subprocess.run([cvgl_bin_module, "tiles", "prefetch", "--url",
                           f"http://127.0.0.1:{server}/{{z}}/{{x}}/{{y}}.png", "--bag", str(bag), "--radius-m", "60",
                           "--zoom", str(Z), "--out", str(out), "--quiet"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    wanted = tiles_near_points(lat, lon, 60.0, Z)
    with MBTilesStore.open(out) as store:
        got = {(x, y) for _, x, y in store.tile_keys(Z)}
    in_source = {(x, y) for x, y in wanted if X0 <= x < X0 + SIDE and Y0 <= y < Y0 + SIDE}
    assert got == in_source and len(got) >= 4


def test_prefetch_bad_input(cvgl_bin_module, tmp_path):
    def run(*args):
        return subprocess.run([cvgl_bin_module, "tiles", "prefetch", *args], capture_output=True, text=True,
                              timeout=60)
    for args, needle in [
        (["--url", "http://127.0.0.1:1/{z}/{x}.png", "--bbox", "8.4,49,8.401,49.001"], "lacks {y}"),
        (["--url", "ftp://x/{z}/{x}/{y}.png", "--bbox", "8.4,49,8.401,49.001"], "http"),
        (["--url", "http://127.0.0.1:1/{z}/{x}/{y}.png", "--bbox", "8.5,49,8.4,49.001"], "empty"),
        (["--url", "http://127.0.0.1:1/{z}/{x}/{y}.png", "--bbox", "8.4,49,8.401,49.001", "--zoom", "26"], "zoom"),
    ]:
        proc = run(*args, "--out", str(tmp_path / "o.mbtiles"))
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert needle in proc.stderr
    notmb = tmp_path / "n.mbtiles"
    sqlite3.connect(notmb).execute("CREATE TABLE a (b)").connection.commit()
    proc = run("--url", "http://127.0.0.1:1/{z}/{x}/{y}.png", "--bbox", "8.4,49,8.401,49.001", "--out", str(notmb))
    # Refused either as not MBTiles or, by the one --out rule, as a file cvgl did not write.
    assert proc.returncode == 2 and ("not MBTiles" in proc.stderr or "did not write" in proc.stderr), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("/.%2e\\0123456789abcpngjw?:-_")), max_size=40))
def test_request_path_parser_is_total_and_safe(target):
    """Any target gets 200/400/404; only plain tile or metadata paths get 200; '..' never does."""
    status, what = parse_request_path(target)
    assert status in (200, 400, 404)
    if ".." in target.split("?")[0] or "%" in target.split("?")[0]:
        assert status == 400
    if status == 200:
        assert what == "metadata" or (isinstance(what, tuple) and len(what) == 3)


def start_serve(cvgl_bin, cache, *extra):
    """`cvgl tiles serve` on a free port with `extra` options: (process, port)."""
    proc = subprocess.Popen([cvgl_bin, "tiles", "serve", str(cache), "--port", "0", *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.startswith("serving"), (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc, int(line.rsplit(":", 1)[1].split("/")[0])


def stop_and_read_stderr(proc) -> str:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
    proc.wait(timeout=10)
    err = proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    return err


def test_serve_refuses_links_out_fifos_and_devices(cvgl_bin_module, tmp_path):
    secret = tile_png(7, 7)  # a valid tile, so only the confinement can stop it
    (tmp_path / "secret.png").write_bytes(secret)
    (tmp_path / "elsewhere" / "0").mkdir(parents=True)
    (tmp_path / "elsewhere" / "0" / "0.png").write_bytes(secret)
    root = tmp_path / "cache"
    with XYZStore.create(root, name="x") as store:
        store.put_tile(1, 0, 0, tile_png(0, 0))
        store.put_tile(1, 1, 1, tile_png(1, 1))
    (root / "1" / "0" / "1.png").symlink_to(tmp_path / "secret.png")      # a file link out of the root
    (root / "2").symlink_to(tmp_path / "elsewhere")                     # a directory link out of the root
    os.mkfifo(root / "1" / "1" / "0.png")                               # would block an open() for reading
    (root / "3" / "1").mkdir(parents=True)
    (root / "3" / "1" / "1.png").symlink_to("/dev/zero")                 # an endless read
    (root / "3" / "1" / "2.png").symlink_to(root / "1" / "1" / "1.png")  # a link inside the root: fine
    store = XYZStore.open(root)
    for key in [(1, 0, 1), (2, 0, 0), (1, 1, 0), (3, 1, 1)]:
        assert store.get_tile(*key) is None, key  # refused reads count as missing for patch readers
    proc, port = start_serve(cvgl_bin_module, root)
    try:
        for target in ["/1/0/1.png", "/2/0/0.png", "/1/1/0.png", "/3/1/1.png"]:
            status, _, body = request(port, target)
            assert status == 403 and secret not in body, target
        assert request(port, "/3/1/2.png")[2] == tile_png(1, 1)
        assert request(port, "/1/0/0.png")[2] == tile_png(0, 0)
    finally:
        err = stop_and_read_stderr(proc)
    assert err.count("refused") == 4 and "Traceback" not in err, err


def _threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))


def _open_sockets(pid: int) -> int:
    return sum(os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:") for fd in os.listdir(f"/proc/{pid}/fd"))


def test_serve_drops_stalled_connections_and_keeps_serving(cvgl_bin_module, source):
    proc, port = start_serve(cvgl_bin_module, source, "--read-timeout-s", "1", "--workers", "4")
    stalled = []
    try:
        assert request(port, f"/{Z}/{X0}/{Y0}.png")[0] == 200
        baseline = _threads(proc.pid)  # main, one pool worker, and whatever numpy/OpenCV started
        for i in range(100):  # each sends half a request, then nothing
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            s.sendall(f"GET /{Z}/{X0}/{Y0 + i % SIDE}.png HTTP/1.1\r\nHost: x\r\n".encode())
            stalled.append(s)
        rst = socket.create_connection(("127.0.0.1", port), timeout=30)  # a client that resets mid-request
        rst.sendall(b"GET /19/1/1.png HTTP/1.1\r\n")
        rst.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        rst.close()
        while _open_sockets(proc.pid) < 50:  # the server holds them now (listening socket + accepted ones)
            time.sleep(0.01)
        assert _threads(proc.pid) <= baseline + 3  # at most 4 workers, not a thread per connection
        status, _, body = request(port, f"/{Z}/{X0 + 3}/{Y0 + 4}.png")
        assert status == 200 and body == tile_png(X0 + 3, Y0 + 4)
        for s in stalled:  # every stalled connection is closed by the server
            try:
                assert s.recv(1024) == b""
            except ConnectionResetError:
                pass
    finally:
        for s in stalled:
            s.close()
        err = stop_and_read_stderr(proc)
    lines = err.strip().splitlines()
    assert sum("Request timed out" in line for line in lines) == 100 and "Traceback" not in err, err
    assert sum("dropped: ConnectionResetError" in line for line in lines) == 1
    assert len(lines) == 101  # one line per dropped client, nothing else


def test_serve_needs_allow_remote_for_other_hosts(cvgl_bin_module, source):
    refused = subprocess.run([cvgl_bin_module, "tiles", "serve", str(source), "--port", "0", "--host", "0.0.0.0"],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "--allow-remote" in refused.stderr and "Traceback" not in refused.stderr
    proc, port = start_serve(cvgl_bin_module, source, "--host", "0.0.0.0", "--allow-remote")
    try:
        assert request(port, f"/{Z}/{X0}/{Y0}.png")[2] == tile_png(X0, Y0)
    finally:
        err = stop_and_read_stderr(proc)
    assert "WARNING" in err and "NOT loopback" in err
