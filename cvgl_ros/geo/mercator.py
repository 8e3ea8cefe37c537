"""Web Mercator (EPSG:3857) tile maths: tile indices via mercantile, and vectorized
global-pixel coordinates for cutting metric patches out of XYZ/MBTiles pyramids.

Global pixel coordinates at zoom z: the world is `tile_size * 2**z` pixels square, x to the
east from longitude -180, y to the south from latitude +85.0511 (the XYZ convention).
MBTiles rows are TMS (y to the north): `tms_row = 2**z - 1 - xyz_y`.
"""
from __future__ import annotations

import math

import mercantile
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


def mercator_scale(lat_deg):
    """Scale factor of Web Mercator at a latitude: projected metres per ground metre."""
    return 1.0 / np.cos(np.radians(np.asarray(lat_deg, dtype=float)))


def zoom_for_resolution(m_per_px: float, lat_deg: float, tile_size: int = TILE_SIZE_PX) -> int:
    """Smallest zoom whose pixels are at least as fine as `m_per_px` at `lat_deg`."""
    res0 = 2.0 * math.pi * EARTH_RADIUS_M * math.cos(math.radians(lat_deg)) / tile_size
    return check_zoom(max(0, math.ceil(math.log2(res0 / m_per_px))))


def lonlat_to_global_px(lon_deg, lat_deg, zoom: int, tile_size: int = TILE_SIZE_PX):
    """Geodetic -> fractional global pixel (x right/east, y down/south) at `zoom`.

    Arrays in, arrays out; two Python floats in, two floats out (without numpy: ~1 us, not 15)."""
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


def tile_at(lon_deg: float, lat_deg: float, zoom: int) -> mercantile.Tile:
    """The XYZ tile containing a point."""
    check_zoom(zoom)
    check_lat_lon(lat_deg, lon_deg)
    return mercantile.tile(lon_deg, lat_deg, zoom)


def tiles_covering(west: float, south: float, east: float, north: float, zoom: int) -> list[mercantile.Tile]:
    """All XYZ tiles at `zoom` that intersect a WGS84 bounding box."""
    check_zoom(zoom)
    check_lat_lon([south, north], [west, east])
    if west > east or south > north:
        raise InputError(f"bounding box W,S,E,N = {west},{south},{east},{north} is empty")
    return list(mercantile.tiles(west, south, east, north, zooms=[zoom]))


def xyz_to_tms_row(y: int, zoom: int) -> int:
    """XYZ row (y to the south) <-> TMS row (y to the north) as MBTiles stores it; an involution."""
    return (1 << zoom) - 1 - y
