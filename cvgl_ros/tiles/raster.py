"""Painting north-up metric ENU rasters into Web Mercator tiles, and building overviews.

An `EnuRaster` is an image in the ENU `map` frame of a `Datum`, laid out by the one grid
convention of `cvgl_ros.geo.grid` (rows south, columns east, cell (r, c) centred at
east = ce + (c - (W-1)/2) * mpp, north = cn - (r - (H-1)/2) * mpp).

`add_enu_raster` resamples it into the XYZ tiles of one zoom. For every tile pixel the
exact ENU position of its centre (Web Mercator -> WGS84 -> ENU through PROJ, ellipsoidal)
is computed on a 17x17 lattice per tile (every 16 px) and interpolated bilinearly in
between; the mapping is smooth to ~1e-6 of its value over 16 px, so the interpolation
error is far below 1e-3 px. Colours are sampled bilinearly (after an area-averaging
pre-shrink when the raster is more than 1.5x finer than the tiles) over valid raster
pixels only. A tile pixel is painted where its nearest raster pixel is valid, so rasters
with complementary masks meet without gaps; pixels outside the raster or nearest to an
invalid raster pixel keep what the tile held; a tile with some pixels never
painted is stored as RGBA PNG with alpha 0 there (JPEG/WebP stores hold them as black).

Tiles are processed and written in sorted (x, y) order with fixed encoder settings, so the
same inputs give byte-identical tiles.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from cvgl_ros.errors import InputError
from cvgl_ros.geo.datum import Datum
from cvgl_ros.geo.mercator import TILE_SIZE_PX, check_zoom, global_px_to_lonlat, lonlat_to_global_px, tile_ul
from cvgl_ros.tiles.codec import CorruptTileError, decode_tile, encode_tile
from cvgl_ros.tiles.store import TileStore

_LATTICE_STEP_PX = 16


@dataclass(frozen=True)
class EnuRaster:
    """A north-up metric raster in the ENU frame of `datum` (grid convention of geo.grid).

    rgb: (H, W, 3) uint8; center_e_m/center_n_m: ENU position of the grid centre (fractional
    pixel ((W-1)/2, (H-1)/2)); mpp: metres per pixel; valid: (H, W) bool or None (all valid).
    """

    rgb: np.ndarray
    datum: Datum
    center_e_m: float
    center_n_m: float
    mpp: float
    valid: np.ndarray | None = None

    def __post_init__(self):
        rgb = np.asarray(self.rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or min(rgb.shape[:2]) < 2:
            raise InputError(f"EnuRaster.rgb must be an HxWx3 uint8 array (H, W >= 2), got {rgb.shape} {rgb.dtype}")
        if not (math.isfinite(self.mpp) and self.mpp > 0):
            raise InputError(f"EnuRaster.mpp must be a positive number, got {self.mpp}")
        if not (math.isfinite(self.center_e_m) and math.isfinite(self.center_n_m)):
            raise InputError("EnuRaster centre must be finite")
        if self.valid is not None:
            valid = np.asarray(self.valid)
            if valid.shape != rgb.shape[:2]:
                raise InputError(f"EnuRaster.valid has shape {valid.shape}, expected {rgb.shape[:2]}")

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    def corners_en(self) -> tuple[np.ndarray, np.ndarray]:
        """ENU (east, north) of the four outer corners of the raster (not cell centres)."""
        half_w = self.width / 2.0 * self.mpp
        half_h = self.height / 2.0 * self.mpp
        e = self.center_e_m + np.array([-half_w, half_w, half_w, -half_w])
        n = self.center_n_m + np.array([half_h, half_h, -half_h, -half_h])
        return e, n


def _interp_matrix(n_out: int, step: int) -> np.ndarray:
    """(n_out, n_lattice) weights interpolating lattice samples at 0, step, 2*step, ... linearly."""
    n_lat = n_out // step + 1
    pos = np.arange(n_out) / step
    i0 = np.minimum(np.floor(pos).astype(int), n_lat - 2)
    frac = pos - i0
    w = np.zeros((n_out, n_lat))
    w[np.arange(n_out), i0] = 1.0 - frac
    w[np.arange(n_out), i0 + 1] = frac
    return w


def _footprint_tiles(raster: EnuRaster, zoom: int) -> list[tuple[int, int]]:
    """Sorted (x, y) of the tiles at `zoom` that the raster can touch."""
    # Sample the raster outline densely: ENU straight edges are slightly curved in Mercator.
    t = np.linspace(0.0, 1.0, 33)
    e_c, n_c = raster.corners_en()
    e = np.concatenate([e_c[i] + t * (e_c[(i + 1) % 4] - e_c[i]) for i in range(4)])
    n = np.concatenate([n_c[i] + t * (n_c[(i + 1) % 4] - n_c[i]) for i in range(4)])
    lat, lon, _ = raster.datum.to_wgs84(e, n)
    if lon.max() - lon.min() > 180.0:
        raise InputError("rasters that cross the antimeridian (longitude 180) are not supported")
    if np.abs(lat).max() > 85.0:
        raise InputError("raster reaches beyond the Web Mercator tiles' reach (|lat| <= 85)")
    x, y = lonlat_to_global_px(lon, lat, zoom)
    n_tiles = 1 << zoom
    tx0 = max(0, int(math.floor(x.min() / TILE_SIZE_PX)))
    tx1 = min(n_tiles - 1, int(math.floor(x.max() / TILE_SIZE_PX)))
    ty0 = max(0, int(math.floor(y.min() / TILE_SIZE_PX)))
    ty1 = min(n_tiles - 1, int(math.floor(y.max() / TILE_SIZE_PX)))
    return [(tx, ty) for tx in range(tx0, tx1 + 1) for ty in range(ty0, ty1 + 1)]


def _prepared_source(raster: EnuRaster, tile_mpp: float):
    """(rgb uint8, valid bool or None, mpp_x, mpp_y), area-shrunk first if much finer than the tiles.

    No float copy of the whole raster is made: a 5 km orthophoto is gigabytes already.
    """
    rgb = raster.rgb
    valid = None if raster.valid is None else np.asarray(raster.valid, dtype=bool)
    mpp_x = mpp_y = raster.mpp
    factor = tile_mpp / raster.mpp
    if factor > 1.5:
        w = max(2, int(round(raster.width / factor)))
        h = max(2, int(round(raster.height / factor)))
        rgb = cv2.resize(np.ascontiguousarray(rgb), (w, h), interpolation=cv2.INTER_AREA)
        if valid is not None:
            valid = cv2.resize(valid.view(np.uint8) * np.uint8(255), (w, h), interpolation=cv2.INTER_AREA) >= 128
        mpp_x = raster.mpp * raster.width / w
        mpp_y = raster.mpp * raster.height / h
    return rgb, valid, mpp_x, mpp_y


def add_enu_raster(store: TileStore, raster: EnuRaster, zoom: int = 19) -> int:
    """Paint `raster` into the tiles of `zoom`, merging with tiles already stored.

    Tile pixels whose nearest raster pixel is valid are written (colour: bilinear over the
    valid neighbours); others keep what the tile held. Returns the number of tiles written. Tiles are
    written in sorted (x, y) order; call `store.commit()` / `close()` to make them durable.
    """
    zoom = check_zoom(zoom)
    if not store.writable:
        raise InputError(f"tile store {store.path} is open read-only")
    fmt = store.image_format
    lat_c, _, _ = raster.datum.to_wgs84(raster.center_e_m, raster.center_n_m)
    tile_mpp = 2 * math.pi * 6378137.0 * math.cos(math.radians(float(lat_c))) / (TILE_SIZE_PX * 2**zoom)
    src_rgb, src_valid, mpp_x, mpp_y = _prepared_source(raster, tile_mpp)
    h_src, w_src = src_rgb.shape[:2]
    step = _LATTICE_STEP_PX
    weights = _interp_matrix(TILE_SIZE_PX, step)
    lattice = np.arange(0, TILE_SIZE_PX + 1, step) + 0.5  # pixel centres at 0.5, 16.5, ..., 256.5
    written = []
    for tx, ty in _footprint_tiles(raster, zoom):
        gx, gy = np.meshgrid(tx * TILE_SIZE_PX + lattice, ty * TILE_SIZE_PX + lattice)
        lon, lat = global_px_to_lonlat(gx, gy, zoom)
        e, n, _ = raster.datum.to_enu(lat, lon)
        col = weights @ ((e - raster.center_e_m) / mpp_x + (w_src - 1) / 2.0) @ weights.T
        row = weights @ ((raster.center_n_m - n) / mpp_y + (h_src - 1) / 2.0) @ weights.T
        # The window of the source this tile reads (bilinear and nearest neighbours, +1 margin).
        c0, c1 = max(0, int(math.floor(col.min())) - 1), min(w_src, int(math.floor(col.max())) + 3)
        r0, r1 = max(0, int(math.floor(row.min())) - 1), min(h_src, int(math.floor(row.max())) + 3)
        if c0 >= c1 or r0 >= r1:
            continue
        map_c = (col - c0).astype(np.float32)
        map_r = (row - r0).astype(np.float32)
        win_valid = (np.ones((r1 - r0, c1 - c0), np.float32) if src_valid is None
                     else src_valid[r0:r1, c0:c1].astype(np.float32))
        win_premul = src_rgb[r0:r1, c0:c1].astype(np.float32) * win_valid[:, :, None]
        # A tile pixel belongs to the raster where its nearest raster pixel is valid (so rasters
        # with complementary masks tile the plane without gaps or overlaps); its colour is the
        # bilinear mean over the valid neighbours only. Outside the raster counts as invalid.
        near = cv2.remap(win_valid, map_c, map_r, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        weight = cv2.remap(win_valid, map_c, map_r, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        paint = (near > 0.5) & (weight > 1e-6)
        if not paint.any():
            continue
        premul = cv2.remap(win_premul, map_c, map_r, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        new_rgb = np.clip(np.rint(premul / np.maximum(weight, 1e-6)[:, :, None]), 0, 255).astype(np.uint8)
        rgba = np.zeros((TILE_SIZE_PX, TILE_SIZE_PX, 4), np.uint8)
        old = store.get_tile(zoom, tx, ty)
        if old is not None:
            try:
                rgba[:] = decode_tile(old).rgba
            except CorruptTileError:
                pass  # a broken tile is replaced by what we paint
        rgba[paint, :3] = new_rgb[paint]
        rgba[paint, 3] = 255
        pixels = rgba[:, :, :3] if rgba[:, :, 3].min() == 255 else rgba
        store.put_tile(zoom, tx, ty, encode_tile(pixels, fmt))
        written.append((tx, ty))
    if written:
        _merge_extent_metadata(store, zoom, written)
    return len(written)


def _downsample_2x(rgba: np.ndarray) -> np.ndarray:
    """(512, 512, 4) -> (256, 256, 4): alpha-weighted 2x2 mean; valid where >= half the children are."""
    a = rgba[:, :, 3:4].astype(np.float32) / 255.0
    premul = rgba[:, :, :3].astype(np.float32) * a
    s_rgb = premul.reshape(256, 2, 256, 2, 3).sum(axis=(1, 3))
    s_a = a.reshape(256, 2, 256, 2, 1).sum(axis=(1, 3))
    rgb = np.where(s_a > 0, s_rgb / np.maximum(s_a, 1e-6), 0.0)
    out = np.zeros((256, 256, 4), np.uint8)
    out[:, :, :3] = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    out[:, :, 3] = np.where(s_a[:, :, 0] >= 2.0, 255, 0).astype(np.uint8)
    return out


def build_overviews(store: TileStore, min_zoom: int) -> int:
    """Fill zooms max_zoom-1 .. min_zoom by 2x downsampling; write extent metadata.

    Returns the number of overview tiles written. Parents are built in sorted order from
    the (possibly just written) children, so results are deterministic.
    """
    min_zoom = check_zoom(min_zoom)
    if not store.writable:
        raise InputError(f"tile store {store.path} is open read-only")
    zooms = store.zoom_levels()
    if not zooms:
        raise InputError(f"tile store {store.path} holds no tiles to build overviews from")
    max_zoom = zooms[-1]
    if min_zoom > max_zoom:
        raise InputError(f"min zoom {min_zoom} is above the store's max zoom {max_zoom}")
    fmt = store.image_format
    written = 0
    for z in range(max_zoom - 1, min_zoom - 1, -1):
        children = store.tile_keys(z + 1)
        parents = sorted({(x // 2, y // 2) for _, x, y in children})
        for px, py in parents:
            mosaic = np.zeros((512, 512, 4), np.uint8)
            for dx in (0, 1):
                for dy in (0, 1):
                    blob = store.get_tile(z + 1, 2 * px + dx, 2 * py + dy)
                    if blob is None:
                        continue
                    try:
                        dec = decode_tile(blob)
                    except CorruptTileError:
                        continue
                    mosaic[dy * 256:(dy + 1) * 256, dx * 256:(dx + 1) * 256] = dec.rgba
            tile = _downsample_2x(mosaic)
            if tile[:, :, 3].max() == 0:
                continue
            pixels = tile[:, :, :3] if tile[:, :, 3].min() == 255 else tile
            store.put_tile(z, px, py, encode_tile(pixels, fmt))
            written += 1
    write_extent_metadata(store)
    return written


def _set_extent(store: TileStore, west: float, south: float, east: float, north: float,
                min_zoom: int, max_zoom: int) -> None:
    store.set_metadata(
        bounds=f"{west:.8f},{south:.8f},{east:.8f},{north:.8f}",
        center=f"{(west + east) / 2:.8f},{(south + north) / 2:.8f},{max_zoom}",
        minzoom=str(min_zoom),
        maxzoom=str(max_zoom),
    )


def _merge_extent_metadata(store: TileStore, zoom: int, tiles: list[tuple[int, int]]) -> None:
    """Grow the stored bounds/minzoom/maxzoom by `tiles` of `zoom` (O(1) in the store's size,
    so painting thousands of small rasters one by one stays linear)."""
    xs = [t[0] for t in tiles]
    ys = [t[1] for t in tiles]
    west, north = tile_ul(min(xs), min(ys), zoom)
    east, south = tile_ul(max(xs) + 1, max(ys) + 1, zoom)
    min_zoom = max_zoom = zoom
    meta = store.metadata
    try:
        w0, s0, e0, n0 = (float(v) for v in meta["bounds"].split(","))
        west, south, east, north = min(west, w0), min(south, s0), max(east, e0), max(north, n0)
        min_zoom, max_zoom = min(zoom, int(meta["minzoom"])), max(zoom, int(meta["maxzoom"]))
    except (KeyError, ValueError):
        pass  # no (usable) extent yet
    _set_extent(store, west, south, east, north, min_zoom, max_zoom)


def write_extent_metadata(store: TileStore) -> None:
    """Set MBTiles `bounds`, `center`, `minzoom`, `maxzoom` from the tiles a store holds."""
    zooms = store.zoom_levels()
    if not zooms:
        return
    max_zoom = zooms[-1]
    keys = store.tile_keys(max_zoom)
    xs = [k[1] for k in keys]
    ys = [k[2] for k in keys]
    west, north = tile_ul(min(xs), min(ys), max_zoom)
    east, south = tile_ul(max(xs) + 1, max(ys) + 1, max_zoom)
    _set_extent(store, west, south, east, north, zooms[0], max_zoom)
