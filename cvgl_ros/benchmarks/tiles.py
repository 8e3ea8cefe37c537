"""Benchmarks of the tile cache: warm and cold 512 px patches at 0.2 m/px, and the LRU cap
under 10 000 random patches (peak RSS reported)."""
from __future__ import annotations

import os
import tempfile
from itertools import cycle
from pathlib import Path

import cv2
import numpy as np

from cvgl_ros.benchmarks.harness import benchmark, measure, peak_rss_mb
from cvgl_ros.geo import Datum
from cvgl_ros.tiles.mbtiles import MBTilesStore
from cvgl_ros.tiles.patch import PatchSampler
from cvgl_ros.tiles.raster import EnuRaster, add_enu_raster

LAT, LON = 49.0, 8.4
WORLD_M = 400.0
WORLD_MPP = 0.2
PATCH_PX = 512
PATCH_MPP = 0.2


def _orthophoto(size_px: int, seed: int = 0) -> np.ndarray:
    """Satellite-like texture: coloured noise at several scales plus 'roofs' (JPEG/PNG-realistic)."""
    rng = np.random.default_rng(seed)
    img = np.zeros((size_px, size_px, 3), np.float32)
    for cells, weight in ((size_px // 64, 50.0), (size_px // 8, 25.0), (size_px, 12.0)):
        noise = rng.normal(size=(cells, cells, 3)).astype(np.float32)
        img += weight * cv2.resize(noise, (size_px, size_px), interpolation=cv2.INTER_CUBIC)
    img += 120
    for _ in range(size_px // 4):
        x, y = (int(v) for v in rng.integers(0, size_px, 2))
        w, h = (int(v) for v in rng.integers(20, 120, 2))
        cv2.rectangle(img, (x, y), (x + w, y + h), tuple(float(v) for v in rng.uniform(30, 230, 3)), -1)
    return np.clip(img, 0, 255).astype(np.uint8)


def _rss_mb() -> float:
    """Current resident set size of this process, MiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def _centres(n: int, seed: int) -> list[tuple[float, float]]:
    """Random patch centres (WGS84) whose whole patch lies inside the world."""
    rng = np.random.default_rng(seed)
    margin = WORLD_M / 2 - PATCH_PX * PATCH_MPP * 0.75
    e, nn = rng.uniform(-margin, margin, (2, n))
    lat, lon, _ = Datum(LAT, LON).to_wgs84(e, nn)
    return list(zip(lat.tolist(), lon.tolist()))


def _drive_centres() -> list[tuple[float, float]]:
    """Patch centres (WGS84) 1 m apart along a straight drive through the world at 30 deg."""
    half = WORLD_M / 2 - PATCH_PX * PATCH_MPP * 0.75     # the whole patch stays inside
    s = np.arange(-half, half, 1.0)
    lat, lon, _ = Datum(LAT, LON).to_wgs84(s * np.cos(np.radians(30.0)), s * np.sin(np.radians(30.0)))
    return list(zip(lat.tolist(), lon.tolist()))


@benchmark("tiles", "512 px patches at 0.2 m/px from z19 MBTiles: warm (LRU; random centres and along a drive) and "
                    "cold (SQLite + decode), "
                    "LRU cap under 10 000 random patches")
def tiles_benchmark() -> dict:
    datum = Datum(LAT, LON)
    size = int(WORLD_M / WORLD_MPP)
    raster = EnuRaster(_orthophoto(size), datum, 0.0, 0.0, WORLD_MPP)
    out: dict = {"setup": {"rss_mb_after_building_world": _rss_mb(), "loadavg_1min_at_start": os.getloadavg()[0]}}
    with tempfile.TemporaryDirectory(prefix="cvgl-bench-tiles-") as tmp:
        paths = {}
        for fmt in ("png", "jpg"):
            paths[fmt] = Path(tmp) / f"world_{fmt}.mbtiles"
            with MBTilesStore.create(paths[fmt], name="bench", image_format=fmt) as store:
                add_enu_raster(store, raster, zoom=19)
        with MBTilesStore.open(paths["png"]) as store:
            n_tiles = store.tile_count(19)
        centres = _centres(200, 1)

        for fmt in ("png", "jpg"):
            with PatchSampler(paths[fmt], cache_mb=512) as sampler:
                for lat, lon in centres:  # warm every tile
                    sampler.patch_wgs84(lat, lon, PATCH_PX, PATCH_MPP)
                it = cycle(centres)
                out[f"warm_patch_wgs84_{fmt}"] = measure(
                    lambda: sampler.patch_wgs84(*next(it), PATCH_PX, PATCH_MPP), repeats=400, warmup=5)
                # What the cross-view node asks for: centres 1 m apart along a drive (10 m/s at
                # 10 Hz), served from the thread's stitched block while the drive stays in it.
                drive = cycle(_drive_centres())
                out[f"warm_patch_drive_wgs84_{fmt}"] = measure(
                    lambda: sampler.patch_wgs84(*next(drive), PATCH_PX, PATCH_MPP), repeats=400, warmup=5)
                enu = [tuple(float(v) for v in datum.to_enu(la, lo)[:2]) for la, lo in centres]
                it_enu = cycle(enu)
                out[f"warm_patch_enu_{fmt}"] = measure(
                    lambda: sampler.patch_enu(datum, *next(it_enu), PATCH_PX, PATCH_MPP), repeats=400, warmup=5)

                def cold():
                    sampler.clear_cache()
                    return sampler.patch_wgs84(*next(it), PATCH_PX, PATCH_MPP)

                tiles_per_patch = []
                it = cycle(centres)
                for _ in range(20):
                    sampler.clear_cache()
                    sampler.patch_wgs84(*next(it), PATCH_PX, PATCH_MPP)
                    tiles_per_patch.append(len(sampler.lru))
                out[f"cold_patch_wgs84_{fmt}"] = dict(
                    measure(cold, repeats=100, warmup=2),
                    tiles_decoded_per_patch=float(np.mean(tiles_per_patch)))

        # LRU cap: 10 000 random patches through a cache smaller than the world.
        cap_mb = 8
        rss_start = _rss_mb()
        with PatchSampler(paths["jpg"], cache_mb=cap_mb) as sampler:
            stress = _centres(10_000, 2)
            max_used, rss_max = 0, rss_start
            for i, (lat, lon) in enumerate(stress):
                sampler.patch_wgs84(lat, lon, PATCH_PX, PATCH_MPP)
                max_used = max(max_used, sampler.lru.bytes_used)
                if i % 50 == 0:
                    rss_max = max(rss_max, _rss_mb())
            lru = sampler.lru
            out["lru_10000_random_patches_jpg"] = {
                "patches": len(stress),
                "cap_mb": cap_mb,
                "max_bytes_used_mb": max_used / 2**20,
                "stayed_under_cap": bool(max_used <= lru.cap_bytes),
                "hits": lru.hits,
                "misses": lru.misses,
                "world_tiles": n_tiles,
                "rss_mb_at_start": rss_start,
                "rss_mb_max_during": rss_max,
                "rss_mb_at_end": _rss_mb(),
                "peak_rss_mb_process": peak_rss_mb(),
            }
    out["setup"]["loadavg_1min_at_end"] = os.getloadavg()[0]  # other work on the machine skews medians
    return out
