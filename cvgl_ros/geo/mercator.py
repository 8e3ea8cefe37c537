"""Web Mercator (EPSG:3857) tile maths: tile indices, tile corners, and vectorized
global-pixel coordinates for cutting metric patches out of XYZ/MBTiles pyramids.

Global pixel coordinates at zoom z: the world is `tile_size * 2**z` pixels square, x to the
east from longitude -180, y to the south from latitude +85.0511 (the XYZ convention).
MBTiles rows are TMS (y to the north): `tms_row = 2**z - 1 - xyz_y`.

Tile indices (`tile_at`, `tiles_covering`, `tile_ul`) follow mercantile's formulas exactly
(a test compares them), so the vehicle needs no package without a rosdep key: with
u = lon / 360 + 1/2 and v = 1/2 - ln((1 + sin lat) / (1 - sin lat)) / (4 pi) in [0, 1],
the tile is (floor((u + 1e-14) 2^z), floor((v + 1e-14) 2^z)), clamped to [0, 2^z - 1];
the epsilon puts a point a rounding error left of a tile edge into the next tile, as
mercantile does. A tile's upper-left corner is lon = 360 x / 2^z - 180,
lat = atan(sinh(pi (1 - 2 y / 2^z))).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from cvgl_ros.geo.datum import check_lat_lon
from cvgl_ros.errors import InputError

EARTH_RADIUS_M = 6378137.0  # WGS84 semi-major axis, the sphere of Web Mercator
WGS84_A_M = EARTH_RADIUS_M
WGS84_E2 = 6.69437999014e-3  # first eccentricity squared of the WGS84 ellipsoid
MAX_LATITUDE_DEG = 85.0511287798066
TILE_SIZE_PX = 256
MIN_ZOOM = 0
MAX_ZOOM = 24


def check_zoom(zoom: int) -> int:
    if not isinstance(zoom, (int, np.integer)) or not MIN_ZOOM <= int(zoom) <= MAX_ZOOM:
        raise InputError(f"zoom {zoom} is outside [{MIN_ZOOM}, {MAX_ZOOM}]")
    return int(zoom)


def ground_resolution_m_per_px(lat_deg, zoom: int, tile_size: int = TILE_SIZE_PX):
    """Metres on the ground per Web Mercator pixel at a latitude and zoom (closed form)."""
    check_zoom(zoom)
    lat = np.asarray(lat_deg, dtype=float)
    return 2.0 * math.pi * EARTH_RADIUS_M * np.cos(np.radians(lat)) / (tile_size * 2.0**zoom)


def mercator_px_per_m(lat_deg: float, zoom: int) -> tuple[float, float]:
    """Global Web Mercator pixels per ground metre (east, north) at a latitude on the WGS84 ellipsoid.

    Web Mercator applies spherical formulas to ellipsoidal coordinates, so it is not conformal
    on the ellipsoid: east and north scales differ by up to 0.67 % (at the equator).
    `ground_resolution_m_per_px` is the usual spherical closed form; patches use this one.
    """
    phi = math.radians(lat_deg)
    s2 = math.sin(phi) ** 2
    w = 1.0 - WGS84_E2 * s2
    n_radius = WGS84_A_M / math.sqrt(w)
    m_radius = WGS84_A_M * (1.0 - WGS84_E2) / (w * math.sqrt(w))
    world = TILE_SIZE_PX * 2.0**zoom
    cos_phi = math.cos(phi)
    return world / (2 * math.pi * n_radius * cos_phi), world / (2 * math.pi * m_radius * cos_phi)


def zoom_for_resolution(m_per_px: float, lat_deg: float, tile_size: int = TILE_SIZE_PX) -> int:
    """Smallest zoom whose pixels are at least as fine as `m_per_px` at `lat_deg`."""
    res0 = 2.0 * math.pi * EARTH_RADIUS_M * math.cos(math.radians(lat_deg)) / tile_size
    return check_zoom(max(0, math.ceil(math.log2(res0 / m_per_px))))


def lonlat_to_global_px(lon_deg, lat_deg, zoom: int, tile_size: int = TILE_SIZE_PX):
    """Geodetic -> fractional global pixel (x right/east, y down/south) at `zoom`.

    Arrays in, arrays out; two Python floats in, two floats out (computed without numpy: a
    single point is the node's common case, and numpy's per-call overhead dominates it)."""
    check_zoom(zoom)
    check_lat_lon(lat_deg, lon_deg)
    world = tile_size * 2.0**zoom
    if isinstance(lat_deg, (float, int)) and isinstance(lon_deg, (float, int)):
        lat = min(max(float(lat_deg), -MAX_LATITUDE_DEG), MAX_LATITUDE_DEG)
        x = (lon_deg + 180.0) / 360.0 * world
        y = (0.5 - math.log(math.tan(math.pi / 4.0 + math.radians(lat) / 2.0)) / (2.0 * math.pi)) * world
        return x, y
    lat = np.clip(np.asarray(lat_deg, dtype=float), -MAX_LATITUDE_DEG, MAX_LATITUDE_DEG)
    lon = np.asarray(lon_deg, dtype=float)
    x = (lon + 180.0) / 360.0 * world
    y = (0.5 - np.log(np.tan(math.pi / 4.0 + np.radians(lat) / 2.0)) / (2.0 * math.pi)) * world
    return x, y


def global_px_to_lonlat(x_px, y_px, zoom: int, tile_size: int = TILE_SIZE_PX):
    """Fractional global pixel -> (lon deg, lat deg) at `zoom` (inverse of lonlat_to_global_px)."""
    check_zoom(zoom)
    world = tile_size * 2.0**zoom
    lon = np.asarray(x_px, dtype=float) / world * 360.0 - 180.0
    merc_y = math.pi * (1.0 - 2.0 * np.asarray(y_px, dtype=float) / world)
    lat = np.degrees(2.0 * np.arctan(np.exp(merc_y)) - math.pi / 2.0)
    return lon, lat


class Tile(NamedTuple):
    """An XYZ tile index (x to the east, y to the south, zoom z), like `mercantile.Tile`."""

    x: int
    y: int
    z: int


_TILE_EPSILON = 1e-14  # mercantile.EPSILON: a point this close left of an edge is in the next tile
_LL_EPSILON = 1e-11  # mercantile.LL_EPSILON: the south-east corner of a box is nudged inside
_BOX_MAX_LATITUDE_DEG = 85.051129  # mercantile.tiles clamps boxes to this latitude


def _tile_index(unit: float, n: int) -> int:
    if unit <= 0.0:
        return 0
    if unit >= 1.0:
        return n - 1
    return int(math.floor((unit + _TILE_EPSILON) * n))


def tile_at(lon_deg: float, lat_deg: float, zoom: int) -> Tile:
    """The XYZ tile containing a point (latitudes beyond +-85.0511 deg: the edge row)."""
    check_zoom(zoom)
    check_lat_lon(lat_deg, lon_deg)
    return _tile_at(float(lon_deg), float(lat_deg), int(zoom))


def _tile_at(lon_deg: float, lat_deg: float, zoom: int) -> Tile:
    """tile_at without the checks: a longitude a hair outside +-180 gives the edge column."""
    n = 1 << int(zoom)
    lat = min(max(float(lat_deg), -MAX_LATITUDE_DEG), MAX_LATITUDE_DEG)
    sin_lat = math.sin(math.radians(lat))
    u = float(lon_deg) / 360.0 + 0.5
    v = 0.5 - 0.25 * math.log((1.0 + sin_lat) / (1.0 - sin_lat)) / math.pi
    return Tile(_tile_index(u, n), _tile_index(v, n), int(zoom))


def tile_ul(x: int, y: int, zoom: int) -> tuple[float, float]:
    """(lon, lat) in degrees of the upper-left (north-west) corner of tile (x, y, zoom)."""
    n = float(1 << check_zoom(zoom))
    lon = x / n * 360.0 - 180.0
    lat = math.degrees(math.atan(math.sinh(math.pi * (1.0 - 2.0 * y / n))))
    return lon, lat


def tiles_covering(west: float, south: float, east: float, north: float, zoom: int,
                   max_tiles: int | None = None) -> list[Tile]:
    """All XYZ tiles at `zoom` that intersect a WGS84 bounding box (row by row within a column,
    columns west to east, as mercantile.tiles lists them); a tile that only touches the box's
    east or south edge is not in it. More than `max_tiles` tiles: InputError, before any is listed."""
    check_zoom(zoom)
    check_lat_lon([south, north], [west, east])
    if west > east or south > north:
        raise InputError(f"bounding box W,S,E,N = {west},{south},{east},{north} is empty")
    west, east = max(-180.0, float(west)), min(180.0, float(east))
    south = max(-_BOX_MAX_LATITUDE_DEG, float(south))
    north = min(_BOX_MAX_LATITUDE_DEG, float(north))
    first = _tile_at(west, north, zoom)
    last = _tile_at(east - _LL_EPSILON, south + _LL_EPSILON, zoom)
    count = (last.x - first.x + 1) * (last.y - first.y + 1)
    if max_tiles is not None and count > max_tiles:
        raise InputError(f"{count} tiles requested (more than {max_tiles}); use a smaller box or zoom")
    return [Tile(x, y, int(zoom)) for x in range(first.x, last.x + 1) for y in range(first.y, last.y + 1)]


def xyz_to_tms_row(y: int, zoom: int) -> int:
    """XYZ row (y to the south) <-> TMS row (y to the north) as MBTiles stores it; an involution."""
    return (1 << zoom) - 1 - y
