"""North-up metric satellite patches cut from a tile cache.

A patch is an N x N image with `mpp` metres per pixel, north up, centred at a WGS84 point
(`patch_wgs84`: axes east/north at that point) or at an ENU point of a datum
(`patch_enu`: axes of the datum's `map` frame, grid convention of `cvgl_ros.geo.grid`).

How it is cut. Web Mercator (EPSG:3857) applies the spherical formulas to WGS84 geodetic
coordinates, so on the ellipsoid it is conformal only to first order in e^2: at latitude
phi one metre east spans W / (2 pi N cos phi) global pixels and one metre north
W / (2 pi M cos phi) (W = 256 * 2**zoom, N and M the prime-vertical and meridian radii of
curvature), a 0.67 % anisotropy at the equator that the spherical "ground resolution"
formula ignores (1.7 px at the edge of a 512 px patch). `patch_wgs84` uses these exact
local scales; `patch_enu` fits the affine map from patch pixels to global pixels through a
3x3 lattice of points converted exactly (ENU -> WGS84 -> Mercator via PROJ), which also
absorbs the meridian convergence between the datum and the patch.

Error bound of the local affine map: the neglected second-order terms grow with the
square of the patch extent L; their size is about (L/2)^2 * tan(phi) / R metres
(R = 6378 km). For L = 200 m at |phi| <= 70 deg that is < 0.0043 m, i.e. < 0.03 px at
0.2 m/px (and < 0.01 px for the 102 m of a 512 px, 0.2 m/px patch).

The needed tiles (decoded once into a bounded LRU) are stitched into a mosaic of just the
footprint and resampled bilinearly with one `cv2.warpAffine`. Missing tiles (and tiles
whose blob cannot be decoded, counted separately) leave their pixels invalid in
`Patch.valid`, black in `Patch.rgb`; they never raise. A pixel is valid when every source
pixel its bilinear interpolation uses is valid.

Thread-safety: any number of threads may call the same sampler (the LRU and the store's
connection pool are locked); the store may be written by one other thread or process.
"""
from __future__ import annotations

import functools
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from cvgl_ros.errors import InputError
from cvgl_ros.geo.datum import Datum, check_lat_lon
from cvgl_ros.geo.grid import grid_to_en
from cvgl_ros.geo.mercator import TILE_SIZE_PX, lonlat_to_global_px, mercator_px_per_m
from cvgl_ros.tiles.codec import CorruptTileError, DecodedTile, decode_tile
from cvgl_ros.tiles.lru import TileLRU
from cvgl_ros.tiles.store import TileStore, open_store

MAX_PATCH_PX = 8192
MAX_FOOTPRINT_PX = 16384


def _warp_hint_kwargs() -> dict:
    """`{"hint": cv2.ALGO_HINT_APPROX}` where this OpenCV's warpAffine accepts it, else `{}`.

    OpenCV 5 takes the hint (same uint8 result, faster on some CPUs); 4.6 (Ubuntu 24.04's
    python3-opencv) lacks the constant and 4.12 has the constant but no `hint=` argument.
    Checked once, on a 2x2 image, when this module is imported."""
    hint = getattr(cv2, "ALGO_HINT_APPROX", None)
    if hint is None:
        return {}
    try:
        cv2.warpAffine(np.zeros((2, 2), np.uint8), np.eye(2, 3), (2, 2), hint=hint)
    except (cv2.error, TypeError):
        return {}
    return {"hint": hint}


WARP_HINT_KWARGS = _warp_hint_kwargs()


class _Corrupt:
    """LRU sentinel for a tile whose blob does not decode (so it is not decoded again)."""

    nbytes = 0


_CORRUPT = _Corrupt()


@dataclass(frozen=True)
class Patch:
    """A north-up metric patch.

    rgb: (N, N, 3) uint8, black where invalid; valid: (N, N) bool; missing_tiles: tiles of the
    footprint absent from the cache; corrupt_tiles: tiles present but undecodable (skipped).
    """

    rgb: np.ndarray
    valid: np.ndarray
    missing_tiles: int
    corrupt_tiles: int
    zoom: int
    mpp: float
    complete: bool = False  # every pixel valid (then `valid` is a shared read-only all-True mask)

    @property
    def valid_fraction(self) -> float:
        return 1.0 if self.complete else float(self.valid.mean())


def _check_patch_args(size_px, mpp) -> tuple[int, float]:
    if isinstance(size_px, bool) or not isinstance(size_px, (int, np.integer)) or not 1 <= size_px <= MAX_PATCH_PX:
        raise InputError(f"patch size {size_px} px must be an integer in [1, {MAX_PATCH_PX}]")
    mpp = float(mpp)
    if not (math.isfinite(mpp) and mpp > 0):
        raise InputError(f"patch resolution {mpp} m/px must be a positive number")
    return int(size_px), mpp


@functools.lru_cache(maxsize=8)
def _all_true(size_px: int) -> np.ndarray:
    """A read-only all-True (N, N) mask, shared by every complete patch of that size."""
    mask = np.ones((size_px, size_px), bool)
    mask.flags.writeable = False
    return mask


class PatchSampler:
    """Cut north-up metric patches from a tile store (MBTiles file, XYZ directory or store).

    cache_mb bounds the decoded-tile LRU; zoom None uses the store's highest zoom.
    decode_threads > 1 decodes the tiles of a cold patch in parallel.
    """

    def __init__(self, store_or_path: TileStore | str | Path, cache_mb: float = 256, zoom: int | None = None,
                 decode_threads: int = 2):
        if isinstance(store_or_path, TileStore):
            self.store, self._owns_store = store_or_path, False
        else:
            self.store, self._owns_store = open_store(store_or_path), True
        zooms = self.store.zoom_levels()
        if not zooms:
            raise InputError(f"tile cache {self.store.path} holds no tiles")
        if zoom is None:
            zoom = zooms[-1]
        elif int(zoom) not in zooms:
            raise InputError(f"tile cache {self.store.path} has no zoom {zoom} (zooms: {', '.join(map(str, zooms))})")
        self.zoom = int(zoom)
        self.lru = TileLRU(cache_mb)
        self.decode_threads = max(1, int(decode_threads))
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._scratch = threading.local()  # per-thread mosaic/warp buffers and block, reused between patches
        self._generation = 0               # bumped by clear_cache: every thread's block is then stale

    # -- public ---------------------------------------------------------------------

    def patch_wgs84(self, lat_deg: float, lon_deg: float, size_px: int, mpp: float) -> Patch:
        """Patch centred at (lat, lon); columns go east and rows south at that point."""
        check_lat_lon(lat_deg, lon_deg)
        size_px, mpp = _check_patch_args(size_px, mpp)
        if abs(lat_deg) > 85.0:
            raise InputError(f"latitude {lat_deg:g} deg is beyond the Web Mercator tiles' reach (|lat| <= 85)")
        x0, y0 = lonlat_to_global_px(lon_deg, lat_deg, self.zoom)
        sx, sy = mercator_px_per_m(lat_deg, self.zoom)
        affine = np.array([[sx * mpp, 0.0], [0.0, sy * mpp]])
        return self._sample(affine, float(x0), float(y0), size_px, mpp)

    def patch_enu(self, datum: Datum, east_m: float, north_m: float, size_px: int, mpp: float) -> Patch:
        """Patch centred at ENU (east, north) of `datum`, in the `map` frame's axes (geo.grid)."""
        size_px, mpp = _check_patch_args(size_px, mpp)
        if not (math.isfinite(east_m) and math.isfinite(north_m)):
            raise InputError("patch centre east/north must be finite")
        half = (size_px - 1) / 2.0
        ticks = np.array([0.0, half, 2 * half]) if size_px > 1 else np.array([-1.0, 0.0, 1.0])
        cc, rr = np.meshgrid(ticks, ticks)
        e, n = grid_to_en(cc.ravel(), rr.ravel(), east_m, north_m, size_px, size_px, mpp)
        lat, lon, _ = datum.to_wgs84(e, n)
        if np.any(np.abs(lat) > 85.0):
            raise InputError("patch reaches beyond the Web Mercator tiles' reach (|lat| <= 85)")
        x, y = lonlat_to_global_px(lon, lat, self.zoom)
        design = np.column_stack([cc.ravel() - half, rr.ravel() - half, np.ones(9)])
        coef, *_ = np.linalg.lstsq(design, np.column_stack([x, y]), rcond=None)
        affine = coef[:2].T  # [[dx/dc, dx/dr], [dy/dc, dy/dr]]
        return self._sample(affine, float(coef[2, 0]), float(coef[2, 1]), size_px, mpp)

    def clear_cache(self) -> None:
        self._generation += 1
        self.lru.clear()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._owns_store:
            self.store.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # -- tiles ----------------------------------------------------------------------

    def _load(self, key: tuple[int, int, int]):
        """Decoded tile, _CORRUPT, or None when missing (missing tiles are not cached)."""
        blob = self.store.get_tile(*key)
        if blob is None:
            return None
        try:
            return decode_tile(blob)
        except CorruptTileError:
            return _CORRUPT

    def _tiles(self, keys: list[tuple[int, int, int]]) -> dict:
        out = {}
        todo = []
        for key in keys:
            entry = self.lru.get(key)
            if entry is None:
                todo.append(key)
            else:
                out[key] = entry
        if not todo:
            return out
        if len(todo) > 1 and self.decode_threads > 1:
            with self._pool_lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self.decode_threads, thread_name_prefix="tile-decode")
            loaded = list(self._pool.map(self._load, todo))
        else:
            loaded = [self._load(k) for k in todo]
        for key, entry in zip(todo, loaded):
            out[key] = entry
            if entry is not None:
                self.lru.put(key, entry)
        return out

    # -- sampling -------------------------------------------------------------------

    def _buffer(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """A per-thread uint8 scratch array of `shape` (reused: no allocation or page faults).

        The footprint of a patch varies by a pixel or two with its centre, so the storage is
        a flat array that only grows, and `shape` is a contiguous view of its start."""
        buffers = getattr(self._scratch, "buffers", None)
        if buffers is None:
            buffers = self._scratch.buffers = {}
        need = math.prod(shape)
        buf = buffers.get(name)
        if buf is None or buf.size < need:
            buf = buffers[name] = np.empty(need + need // 8, np.uint8)   # headroom for slightly larger footprints
        return buf[:need].reshape(shape)

    def _mosaic(self, xa: int, xb: int, ya: int, yb: int):
        """Source pixels for the global pixel window [xa, xb) x [ya, yb): (RGBA array covering
        it, its global origin (x, y), missing tiles, corrupt tiles, every pixel valid).

        Patches along a drive keep asking for the same few tiles, so when two requests in a
        row need the same tile range and all of its tiles are present and opaque, the whole
        range is stitched once per thread (a block) and later windows inside it are views
        of the block: no copy at all until the drive leaves it. Otherwise just the window
        is stitched."""
        gen = self._generation
        block = self._block_view(xa, xb, ya, yb)
        if block is not None:
            return block, (xa, ya), 0, 0, True
        n_tiles = 1 << self.zoom
        tx_range = range(xa // TILE_SIZE_PX, (xb - 1) // TILE_SIZE_PX + 1)
        ty_range = range(ya // TILE_SIZE_PX, (yb - 1) // TILE_SIZE_PX + 1)
        keys = {}
        for ty in ty_range:
            for tx in tx_range:
                keys[(tx, ty)] = (self.zoom, tx % n_tiles, ty) if 0 <= ty < n_tiles else None
        entries = self._tiles(sorted({k for k in keys.values() if k is not None}))
        tile_range = (gen, tx_range, ty_range)
        as_block = getattr(self._scratch, "last_range", None) == tile_range and all(
            isinstance(entries.get(key), DecodedTile) and entries[key].opaque for key in keys.values())
        self._scratch.last_range = tile_range
        window = (xa, xb, ya, yb)
        if as_block:   # the whole tile range
            xa, xb = tx_range.start * TILE_SIZE_PX, tx_range.stop * TILE_SIZE_PX
            ya, yb = ty_range.start * TILE_SIZE_PX, ty_range.stop * TILE_SIZE_PX
        mosaic = self._buffer("block" if as_block else "mosaic", (yb - ya, xb - xa, 4))
        all_valid = True
        missing = corrupt = 0
        for (tx, ty), key in keys.items():
            entry = entries.get(key) if key is not None else None
            # Intersection of this tile with the mosaic window, in global pixels.
            gx0, gx1 = max(xa, tx * TILE_SIZE_PX), min(xb, (tx + 1) * TILE_SIZE_PX)
            gy0, gy1 = max(ya, ty * TILE_SIZE_PX), min(yb, (ty + 1) * TILE_SIZE_PX)
            dst = (slice(gy0 - ya, gy1 - ya), slice(gx0 - xa, gx1 - xa))
            if isinstance(entry, DecodedTile):
                mosaic[dst] = entry.rgba[gy0 - ty * TILE_SIZE_PX:gy1 - ty * TILE_SIZE_PX,
                                         gx0 - tx * TILE_SIZE_PX:gx1 - tx * TILE_SIZE_PX]
                all_valid &= entry.opaque
                continue
            if entry is _CORRUPT:
                corrupt += 1
            else:
                missing += 1
            mosaic[dst] = 0
            all_valid = False
        if as_block:
            self._scratch.block = (gen, xa, xb, ya, yb, mosaic)
            return self._block_view(*window), window[::2], 0, 0, True
        self._scratch.block = None
        return mosaic, (xa, ya), missing, corrupt, all_valid

    def _block_view(self, xa: int, xb: int, ya: int, yb: int) -> np.ndarray | None:
        """The window [xa, xb) x [ya, yb) as a view of this thread's block, None when it has none
        that is current and holds the window."""
        block = getattr(self._scratch, "block", None)
        if block is None:
            return None
        gen, bxa, bxb, bya, byb, pixels = block
        if gen != self._generation or not (bxa <= xa and xb <= bxb and bya <= ya and yb <= byb):
            return None
        return pixels[ya - bya:yb - bya, xa - bxa:xb - bxa]

    def _sample(self, affine: np.ndarray, x0: float, y0: float, size_px: int, mpp: float) -> Patch:
        """Resample: global px = (x0, y0) + affine @ (c - half, r - half) for patch pixel (c, r)."""
        half = (size_px - 1) / 2.0
        (a00, a01), (a10, a11) = affine.tolist()
        # The patch corners (+-half, +-half) reach x0 +- reach_x and y0 +- reach_y in global px.
        reach_x = half * (abs(a00) + abs(a01))
        reach_y = half * (abs(a10) + abs(a11))
        # Source pixel i has its centre at global i + 0.5; bilinear needs floor(g - 0.5) .. +1.
        xa = math.floor(x0 - reach_x - 0.5)
        xb = math.floor(x0 + reach_x - 0.5) + 2
        ya = math.floor(y0 - reach_y - 0.5)
        yb = math.floor(y0 + reach_y - 0.5) + 2
        if xb - xa > MAX_FOOTPRINT_PX or yb - ya > MAX_FOOTPRINT_PX:
            raise InputError(f"a {size_px} px patch at {mpp:g} m/px covers {xb - xa}x{yb - ya} tile pixels at "
                             f"zoom {self.zoom}; use a coarser zoom or a smaller patch")
        mosaic, (mx, my), missing, corrupt, all_valid = self._mosaic(xa, xb, ya, yb)
        # Inverse map, patch (c, r) -> mosaic index (u, v) = global - (mx, my) - 0.5.
        m = np.array([[a00, a01, x0 - (a00 + a01) * half - mx - 0.5],
                      [a10, a11, y0 - (a10 + a11) * half - my - 0.5]])
        # The mosaic holds every source pixel the interpolation reads, so the border mode only
        # decides what a zero weight multiplies: BORDER_REPLICATE is OpenCV's faster path
        # (0.45 vs 0.51 ms for 512 px) and a coordinate rounded a hair outside the mosaic does
        # not pull alpha below 255. ALGO_HINT_APPROX where this OpenCV takes it (WARP_HINT_KWARGS).
        out = cv2.warpAffine(mosaic, m, (size_px, size_px), dst=self._buffer("warped", (size_px, size_px, 4)),
                             flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE,
                             **WARP_HINT_KWARGS)
        rgb = cv2.cvtColor(out, cv2.COLOR_RGBA2RGB)
        if all_valid:
            valid = _all_true(size_px)
        else:
            valid = out[:, :, 3] == 255
            rgb[~valid] = 0
        return Patch(rgb=rgb, valid=valid, missing_tiles=missing, corrupt_tiles=corrupt, zoom=self.zoom, mpp=mpp,
                     complete=all_valid)
