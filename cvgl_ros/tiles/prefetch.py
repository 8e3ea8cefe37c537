"""Fill a local MBTiles cache from a tile server before driving (resumable, crash-safe).

The tiles to fetch are those of one zoom within `radius_m` of a drive's positions (from a
bag's NavSatFix messages) or of a WGS84 bounding box. Tiles already in the cache are
skipped, so a rerun resumes. Downloads run in a bounded thread pool (urllib) with retries
and exponential back-off with jitter; 404/204 means "the source has no such tile" and is
not retried. Only the main thread writes: tiles are committed in SQLite transactions of
`batch` tiles (WAL mode), so a process killed at any moment - SIGKILL included - leaves a
valid MBTiles file holding exactly the tiles of the committed batches.
"""
from __future__ import annotations

import http.client
import math
import random
import re
import time
import urllib.error
import urllib.request
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cvgl_ros.errors import InputError
from cvgl_ros.geo.datum import check_lat_lon
from cvgl_ros.geo.mercator import TILE_SIZE_PX, check_zoom, lonlat_to_global_px
from cvgl_ros.tiles.codec import normalize_format, sniff_format
from cvgl_ros.tiles.mbtiles import MBTilesStore
from cvgl_ros.geo.mercator import mercator_px_per_m
from cvgl_ros.tiles.raster import write_extent_metadata

USER_AGENT = "cvgl-tiles-prefetch/1"
_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}
MAX_PREFETCH_TILES = 1_000_000


@dataclass
class PrefetchStats:
    wanted: int = 0
    already_cached: int = 0
    downloaded: int = 0
    absent_at_source: int = 0
    failed: int = 0
    retries: int = 0
    errors: list[str] = field(default_factory=list)


def check_url_template(template: str) -> str:
    if not re.match(r"^https?://", template):
        raise InputError(f"tile URL {template!r} must start with http:// or https://")
    for part in ("{z}", "{x}", "{y}"):
        if part not in template:
            raise InputError(f"tile URL {template!r} lacks {part} (expected e.g. http://host/{{z}}/{{x}}/{{y}}.png)")
    return template


def tiles_near_points(lat_deg, lon_deg, radius_m: float, zoom: int) -> set[tuple[int, int]]:
    """XYZ (x, y) of the tiles at `zoom` with any part within `radius_m` of any point."""
    zoom = check_zoom(zoom)
    lat = np.atleast_1d(np.asarray(lat_deg, float))
    lon = np.atleast_1d(np.asarray(lon_deg, float))
    check_lat_lon(lat, lon)
    if not (math.isfinite(radius_m) and radius_m >= 0):
        raise InputError(f"radius {radius_m} m must be >= 0")
    if np.any(np.abs(lat) > 85.0):
        raise InputError("positions beyond |lat| 85 deg have no Web Mercator tiles")
    n_tiles = 1 << zoom
    gx, gy = lonlat_to_global_px(lon, lat, zoom)
    # Thin the points to one per ~tenth of the radius: neighbours add no new tiles.
    cell = max(radius_m / 10.0, 1.0) * mercator_px_per_m(float(np.median(lat)), zoom)[0]
    _, keep = np.unique(np.column_stack([np.floor(gx / cell), np.floor(gy / cell)]), axis=0, return_index=True)
    out: set[tuple[int, int]] = set()
    for i in np.sort(keep):
        sx, sy = mercator_px_per_m(float(lat[i]), zoom)
        rx, ry = radius_m * sx, radius_m * sy
        tx = np.arange(int((gx[i] - rx) // TILE_SIZE_PX), int((gx[i] + rx) // TILE_SIZE_PX) + 1)
        ty = np.arange(max(0, int((gy[i] - ry) // TILE_SIZE_PX)), min(n_tiles - 1, int((gy[i] + ry) // TILE_SIZE_PX)) + 1)
        txx, tyy = np.meshgrid(tx, ty)
        # Distance (metres) from the point to the nearest point of each tile rectangle.
        dx = np.maximum(0.0, np.maximum(txx * TILE_SIZE_PX - gx[i], gx[i] - (txx + 1) * TILE_SIZE_PX)) / sx
        dy = np.maximum(0.0, np.maximum(tyy * TILE_SIZE_PX - gy[i], gy[i] - (tyy + 1) * TILE_SIZE_PX)) / sy
        near = np.hypot(dx, dy) <= radius_m
        out.update((int(x) % n_tiles, int(y)) for x, y in zip(txx[near], tyy[near]))
        if len(out) > MAX_PREFETCH_TILES:
            raise InputError(f"more than {MAX_PREFETCH_TILES} tiles requested; use a smaller radius or zoom")
    return out


def tiles_in_bbox(west: float, south: float, east: float, north: float, radius_m: float, zoom: int) -> set[tuple[int, int]]:
    """Tiles intersecting a WGS84 box grown by `radius_m` on every side."""
    zoom = check_zoom(zoom)
    check_lat_lon([south, north], [west, east])
    if west >= east or south >= north:
        raise InputError(f"bounding box W,S,E,N = {west},{south},{east},{north} is empty (need W < E, S < N)")
    if not (math.isfinite(radius_m) and radius_m >= 0):
        raise InputError(f"radius {radius_m} m must be >= 0")
    lat_ref = max(abs(south), abs(north))
    if lat_ref > 85.0:
        raise InputError("bounding box beyond |lat| 85 deg has no Web Mercator tiles")
    x0, y1 = lonlat_to_global_px(west, south, zoom)
    x1, y0 = lonlat_to_global_px(east, north, zoom)
    sx, sy = mercator_px_per_m(lat_ref, zoom)
    n_tiles = 1 << zoom
    tx0, tx1 = int((x0 - radius_m * sx) // TILE_SIZE_PX), int((x1 + radius_m * sx) // TILE_SIZE_PX)
    ty0 = max(0, int((y0 - radius_m * sy) // TILE_SIZE_PX))
    ty1 = min(n_tiles - 1, int((y1 + radius_m * sy) // TILE_SIZE_PX))
    count = (tx1 - tx0 + 1) * (ty1 - ty0 + 1)
    if count > MAX_PREFETCH_TILES:
        raise InputError(f"{count} tiles requested (more than {MAX_PREFETCH_TILES}); use a smaller box or zoom")
    return {(tx % n_tiles, ty) for tx in range(tx0, tx1 + 1) for ty in range(ty0, ty1 + 1)}


def positions_from_bag(bag_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(lat, lon) arrays of every valid NavSatFix message in a bag (GNSS and ground truth)."""
    from cvgl_ros.datasets.bag import MSG_NAVSATFIX, bag_topics, read_messages

    topics = [t for t, (msgtype, _) in bag_topics(bag_path).items() if msgtype == MSG_NAVSATFIX]
    if not topics:
        raise InputError(f"bag {bag_path} has no sensor_msgs/NavSatFix topic to take positions from")
    lat, lon = [], []
    for _, _, _, msg in read_messages(bag_path, topics):
        if msg.status.status >= 0 and math.isfinite(msg.latitude) and math.isfinite(msg.longitude):
            lat.append(msg.latitude)
            lon.append(msg.longitude)
    if not lat:
        raise InputError(f"bag {bag_path} has no NavSatFix message with a valid fix")
    return np.array(lat), np.array(lon)


def fetch_tile(url: str, timeout_s: float, retries: int, backoff_s: float) -> tuple[str, bytes | None, int, str]:
    """GET one tile: ("ok", bytes) | ("absent", None) | ("failed", None), with retries used and a reason."""
    reason = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff_s * 2 ** (attempt - 1) * (0.5 + random.random()))
        try:
            req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                if resp.status == 204:
                    return "absent", None, attempt, "204"
                data = resp.read()
            if sniff_format(data) is None:
                reason = "response is not a PNG/JPEG/WebP image"
                continue
            return "ok", data, attempt, ""
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return "absent", None, attempt, "404"
            reason = f"HTTP {exc.code}"
            if exc.code not in _RETRY_STATUS:
                return "failed", None, attempt, reason
        except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException, OSError) as exc:
            reason = f"{exc.__class__.__name__}: {getattr(exc, 'reason', exc)}"
    return "failed", None, retries, reason


def prefetch(url_template: str, tiles: set[tuple[int, int]], out_path: str | Path, zoom: int, *,
             workers: int = 8, retries: int = 4, timeout_s: float = 10.0, backoff_s: float = 0.5,
             batch: int = 64, image_format: str | None = None, progress: bool = True) -> PrefetchStats:
    """Download the missing `tiles` (XYZ x, y at `zoom`) into the MBTiles file `out_path`."""
    from tqdm import tqdm

    check_url_template(url_template)
    zoom = check_zoom(zoom)
    if workers < 1 or retries < 0 or batch < 1:
        raise InputError("workers and batch must be >= 1, retries >= 0")
    out_path = Path(out_path)
    if image_format is None:
        ext = re.search(r"\.(png|jpe?g|webp)(\?|$)", url_template.lower())
        image_format = ext.group(1) if ext else "png"
    fmt = normalize_format(image_format)
    if out_path.exists():
        store = MBTilesStore.open(out_path, writable=True)
        fmt = store.image_format
    else:
        store = MBTilesStore.create(out_path, name=out_path.stem, image_format=fmt, atomic=False,
                                    description=f"prefetched from {url_template}")
    stats = PrefetchStats(wanted=len(tiles))
    try:
        cached = {(x, y) for _, x, y in store.tile_keys(zoom)}
        todo = sorted(t for t in tiles if t not in cached)
        stats.already_cached = len(tiles) - len(todo)
        bar = tqdm(total=len(todo), desc="prefetch", unit="tile", disable=not progress)
        pending = {}
        queue = iter(todo)
        uncommitted = 0
        last_commit = time.monotonic()
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="prefetch") as pool:
            def submit_more():
                while len(pending) < 4 * workers:
                    key = next(queue, None)
                    if key is None:
                        return
                    url = url_template.format(z=zoom, x=key[0], y=key[1])
                    pending[pool.submit(fetch_tile, url, timeout_s, retries, backoff_s)] = key

            submit_more()
            while pending:
                done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                for fut in done:
                    x, y = pending.pop(fut)
                    status, data, used, reason = fut.result()
                    stats.retries += used
                    if status == "ok" and sniff_format(data) != fmt:
                        status, reason = "failed", f"server sent {sniff_format(data)}, the cache holds {fmt}"
                    if status == "ok":
                        store.put_tile(zoom, x, y, data)
                        stats.downloaded += 1
                        uncommitted += 1
                    elif status == "absent":
                        stats.absent_at_source += 1
                    else:
                        stats.failed += 1
                        if len(stats.errors) < 10:
                            stats.errors.append(f"{zoom}/{x}/{y}: {reason}")
                    bar.update(1)
                if uncommitted >= batch or (uncommitted and time.monotonic() - last_commit > 1.0):
                    store.commit()
                    uncommitted, last_commit = 0, time.monotonic()
                submit_more()
        bar.close()
        store.commit()
        if store.tile_count(zoom):
            write_extent_metadata(store)
        store.close()
    except BaseException:
        store.close()  # commits what has been downloaded: a rerun resumes from there
        raise
    return stats
