"""Fill a local MBTiles cache from a tile server before driving (resumable, crash-safe).

The tiles to fetch are those of one zoom within `radius_m` of a drive's positions (from a
bag's NavSatFix messages) or of a WGS84 bounding box. `download.fetch_into` fetches them in
a bounded thread pool with retries, back-off, validation of every tile and a circuit
breaker; tiles are committed in SQLite transactions of `batch` tiles (WAL mode), so a
process killed at any moment - SIGKILL included - leaves a valid MBTiles file holding
exactly the tiles of the committed batches, and a rerun resumes.

A rerun does not trust "already cached": every wanted tile in the cache gets the cheap
header check (`validate.check_header`: format, tile size, whole container; no decode), and
those that fail it (a cut body stored by an older version, a damaged file) are fetched
again. `cvgl tiles verify` does the full decode of every tile.

The tile size (256 or 512 px) is the cache's: that of its stored tiles when it has any, else
`tile_size` (default 256, what `tiles.patch` reads).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cvgl_ros.errors import InputError
from cvgl_ros.geo.datum import check_lat_lon
from cvgl_ros.geo.mercator import (TILE_SIZE_PX, check_zoom, global_px_to_lonlat, lonlat_to_global_px,
                                   mercator_px_per_m, tiles_covering)
from cvgl_ros.tiles.codec import CorruptTileError, normalize_format
from cvgl_ros.tiles.download import (DEFAULT_MAX_CONNECTION_FAILURES, DEFAULT_SUBDOMAINS, FetchStats,
                                     check_url_template, fetch_into)
from cvgl_ros.tiles.mbtiles import MBTilesStore
from cvgl_ros.tiles.raster import write_extent_metadata
from cvgl_ros.tiles.store import MAX_TILE_BYTES
from cvgl_ros.tiles.validate import TILE_SIZES_PX, cache_tile_size, check_header

MAX_PREFETCH_TILES = 1_000_000


@dataclass
class PrefetchStats:
    wanted: int = 0
    already_cached: int = 0  # cached tiles that passed the header check
    cached_invalid: int = 0  # cached tiles that failed it and were fetched again
    downloaded: int = 0
    absent_at_source: int = 0
    failed: int = 0
    not_attempted: int = 0  # left when the circuit breaker stopped the run
    retries: int = 0
    stopped: str = ""  # the circuit breaker's reason; "" when the run went to the end
    errors: list[str] = field(default_factory=list)  # "z/x/y: reason" of every failed tile


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
    """Tiles intersecting a WGS84 box grown by `radius_m` on every side (`geo.tiles_covering` of
    the grown box; grown across the antimeridian, it goes on from the other side)."""
    zoom = check_zoom(zoom)
    check_lat_lon([south, north], [west, east])
    if west >= east or south >= north:
        raise InputError(f"bounding box W,S,E,N = {west},{south},{east},{north} is empty (need W < E, S < N)")
    if not (math.isfinite(radius_m) and radius_m >= 0):
        raise InputError(f"radius {radius_m} m must be >= 0")
    lat_ref = max(abs(south), abs(north))
    if lat_ref > 85.0:
        raise InputError("bounding box beyond |lat| 85 deg has no Web Mercator tiles")
    # The margin in global pixels at the box's most poleward latitude (the largest scale).
    sx, sy = mercator_px_per_m(lat_ref, zoom)
    x0, y1 = lonlat_to_global_px(west, south, zoom)
    x1, y0 = lonlat_to_global_px(east, north, zoom)
    grown_west, grown_north = (float(v) for v in global_px_to_lonlat(x0 - radius_m * sx, y0 - radius_m * sy, zoom))
    grown_east, grown_south = (float(v) for v in global_px_to_lonlat(x1 + radius_m * sx, y1 + radius_m * sy, zoom))
    spans = [(max(grown_west, -180.0), min(grown_east, 180.0))]
    if grown_west < -180.0:
        spans.append((grown_west + 360.0, 180.0))
    if grown_east > 180.0:
        spans.append((-180.0, grown_east - 360.0))
    out: set[tuple[int, int]] = set()
    for span_west, span_east in spans:
        covering = tiles_covering(span_west, grown_south, span_east, grown_north, zoom, max_tiles=MAX_PREFETCH_TILES)
        out.update((t.x, t.y) for t in covering)
    if len(out) > MAX_PREFETCH_TILES:
        raise InputError(f"{len(out)} tiles requested (more than {MAX_PREFETCH_TILES}); use a smaller box or zoom")
    return out


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


def prefetch(url_template: str, tiles: set[tuple[int, int]], out_path: str | Path, zoom: int, *,
             workers: int = 8, retries: int = 4, timeout_s: float = 10.0, backoff_s: float = 0.5,
             batch: int = 64, image_format: str | None = None, tile_size: int | None = None,
             subdomains: str = DEFAULT_SUBDOMAINS, max_tile_bytes: int = MAX_TILE_BYTES,
             max_connection_failures: int = DEFAULT_MAX_CONNECTION_FAILURES,
             progress: bool = True) -> PrefetchStats:
    """Download the missing or invalid `tiles` (XYZ x, y at `zoom`) into the MBTiles file `out_path`.

    Everything is checked before the file is created or opened: the URL template, the zoom
    and the numeric options (InputError)."""
    check_url_template(url_template, subdomains)
    zoom = check_zoom(zoom)
    if workers < 1 or retries < 0 or batch < 1 or max_connection_failures < 1:
        raise InputError("workers, batch and max connection failures must be >= 1, retries >= 0")
    if tile_size is not None and tile_size not in TILE_SIZES_PX:
        raise InputError(f"tile size {tile_size} px is not one of {', '.join(map(str, TILE_SIZES_PX))}")
    out_path = Path(out_path)
    if image_format is None:
        ext = re.search(r"\.(png|jpe?g|webp)(\?|$)", url_template.lower())
        image_format = ext.group(1) if ext else "png"
    fmt = normalize_format(image_format)
    if out_path.exists():
        store = MBTilesStore.open(out_path, writable=True)
    else:
        store = MBTilesStore.create(out_path, name=out_path.stem, image_format=fmt, atomic=False,
                                    description=f"prefetched from {url_template}")
    stats = PrefetchStats(wanted=len(tiles))
    try:
        fmt = store.image_format
        stored_size = cache_tile_size(store, store.tile_keys(zoom)) or cache_tile_size(store)
        if tile_size is not None and stored_size is not None and tile_size != stored_size:
            raise InputError(f"{out_path} holds {stored_size} px tiles; {tile_size} px tiles would not fit")
        size = stored_size or tile_size or TILE_SIZE_PX
        cached = {(x, y) for _, x, y in store.tile_keys(zoom)}
        todo = []
        for key in sorted(tiles):
            if key in cached:
                try:
                    check_header(store.get_tile(zoom, *key) or b"", size, fmt)
                    stats.already_cached += 1
                    continue
                except CorruptTileError:
                    stats.cached_invalid += 1
            todo.append(key)
        fetched = fetch_into(store, url_template, zoom, todo, tile_size=size, subdomains=subdomains,
                             workers=workers, retries=retries, timeout_s=timeout_s, backoff_s=backoff_s,
                             batch=batch, max_tile_bytes=max_tile_bytes,
                             max_connection_failures=max_connection_failures, progress=progress,
                             stats=FetchStats())
        for name in ("downloaded", "absent_at_source", "failed", "not_attempted", "retries", "stopped"):
            setattr(stats, name, getattr(fetched, name))
        stats.errors = [f"{z}/{x}/{y}: {reason}" for z, x, y, reason in fetched.failures]
        if store.tile_count(zoom):
            write_extent_metadata(store)
        store.close()
    except BaseException:
        store.close()  # commits what has been downloaded: a rerun resumes from there
        raise
    return stats
