"""Benchmark of the satellite descriptor grid (seed 001 §III-D) and of the coarse stage per frame.

With the shipped geo-local descriptor model (`models/retrieval/local`, ONNX Runtime, 2 threads):

* build: the grid of a simulated 1 km^2 world (urban, seed 21: its z19 tile cache) at 5 m
  spacing, timed end to end (cutting each patch, the polar resampling, the satellite encoder),
  and its size on disk (int8, the default);
* the coarse stage of one camera frame (`CoarseSearch.search`: the ground encoder on a
  512 x 128 frame, the cells of a 30 m circle, their scores), and the same over a 3 sigma circle
  of sigma 15 m, and over the relocalizer's 200 m circle (~5 000 cells);
* a 10 km^2 city: a grid of 400 000 cells (random unit descriptors, int8) is saved (its size
  measured) and queried (the cKDTree's build and a 45 m circle measured); its build time is
  the 1 km^2 one times ten (cells are independent), reported as extrapolated.

Run only when named (`cvgl bench --only retrieval`): the world takes about a minute to render.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from cvgl_ros.benchmarks.harness import benchmark, measure

WORLD_SEED, WORLD_STYLE, WORLD_M = 21, "urban", 1000.0
SPACING_M = 5.0
FRAME_CIRCLE_M = 30.0
SIGMA_GPS_M = 15.0        # an urban GNSS error; the circle is 3 sigma
CITY_KM2 = 10.0
RELOCALIZER_RADIUS_M = 200.0  # the particle filter's relocalize_radius_m (the node's circle while lost)
FRAME_K = np.array([[297.4, 0.0, 251.0], [0.0, 246.3, 58.7], [0.0, 0.0, 1.0]])   # `cvgl sim pairs`' camera


def shipped_model_dir() -> Path:
    from cvgl_ros.errors import InputError
    from cvgl_ros.share import default_descriptor_path

    card = default_descriptor_path()
    if card is None:
        raise InputError("no shipped descriptor model (models/retrieval/local/descriptor.json)")
    return card


def _world_grid(root: Path, model) -> tuple:
    from cvgl_ros.retrieval.index import build_index, grid_in_bbox
    from cvgl_ros.sim.world import TILES_FILE, World

    world = World.generate(WORLD_SEED, WORLD_STYLE, WORLD_M)
    world.save(root / "world")
    half = WORLD_M / 2
    lat, lon, _ = world.datum.to_wgs84(np.array([-half, half]), np.array([-half, half]))
    points = grid_in_bbox(world.datum, lon[0], lat[0], lon[1], lat[1], SPACING_M)
    t0 = time.perf_counter()
    grid = build_index(root / "world" / TILES_FILE, model, points, world.datum, SPACING_M, progress=False)
    return world, grid, time.perf_counter() - t0, len(points)


@benchmark("retrieval", "descriptor grid of a 1 km^2 world (build, size), the coarse stage per frame, a 10 km^2 city",
           by_default=False)
def bench_retrieval() -> dict:
    from cvgl_ros.localization.coarse_stage import CoarseSearch, CoarseStage
    from cvgl_ros.retrieval.encoders import DescriptorModel

    model = DescriptorModel(shipped_model_dir(), intra_op_threads=2)
    rgb = np.random.default_rng(0).integers(0, 256, (128, 512, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        world, grid, build_s, points = _world_grid(root, model)
        size = grid.save(root / "grid.npz").stat().st_size
        search = CoarseSearch(grid, model, max_cells=10_000, stage=CoarseStage(20.8))
        frames = {}
        for name, radius in (("frame_30m_circle", FRAME_CIRCLE_M), ("frame_3sigma_circle", 3 * SIGMA_GPS_M),
                             ("frame_relocalizer_circle", RELOCALIZER_RADIUS_M)):
            search.note_gnss_sigma(radius / search.circle_sigmas)
            cells = len(search.search(rgb, FRAME_K, 0.3, 0.0, 0.0, None, 0))
            frames[name] = dict(measure(lambda: search.search(rgb, FRAME_K, 0.3, 0.0, 0.0, None, 0), repeats=50,
                                        warmup=3), radius_m=radius, cells=cells)
        encode = measure(lambda: model.encode_ground(rgb, FRAME_K, 0.3), repeats=50, warmup=3)
        city = _city_grid(grid.datum, grid.descriptor_dim, CITY_KM2)
        city_size = city.save(root / "city.npz").stat().st_size
        t0 = time.perf_counter()
        _ = city.tree
        tree_s = time.perf_counter() - t0
        query = grid.vectors(len(grid) // 2)
        city_query = measure(lambda: city.query(query, 100.0, -250.0, 3 * SIGMA_GPS_M), repeats=200, warmup=5)
    km2 = (WORLD_M / 1e3) ** 2
    return {
        "model": {"card": str(model.card_path), "descriptor_dim": grid.descriptor_dim, "dtype": str(grid.descriptors.dtype)},
        "world_1km2": {"world": f"{WORLD_STYLE} seed {WORLD_SEED}, {WORLD_M:g} m", "grid_points": points,
                       "cells": len(grid), "cells_without_complete_patch": grid.meta["skipped_cells"],
                       "build_s": build_s, "ms_per_cell": build_s / points * 1e3, "size_bytes": size,
                       "size_mb": size / 1e6, "limits": {"build_s": 180.0, "size_mb": 20.0}},
        "coarse_stage": frames | {"ground_encoder": encode, "limit_ms": 30.0},
        "city_10km2": {"cells": len(city), "size_bytes": city_size, "size_mb": city_size / 1e6,
                       "build_s_extrapolated": build_s / km2 * CITY_KM2, "kdtree_build_s": tree_s,
                       "query_3sigma": dict(city_query, radius_m=3 * SIGMA_GPS_M)},
    }


def _city_grid(datum, dim: int, km2: float):
    """A grid of `km2` at SPACING_M with random unit int8 descriptors (size and query timing only)."""
    from cvgl_ros.retrieval.index import DescriptorIndex

    side = np.sqrt(km2) * 1e3
    e = np.arange(-side / 2, side / 2, SPACING_M)
    ee, nn = np.meshgrid(e, e)
    rng = np.random.default_rng(0)
    desc = rng.normal(size=(ee.size, dim)).astype(np.float32)
    desc /= np.linalg.norm(desc, axis=1, keepdims=True)
    stored, meta = DescriptorIndex.quantize(desc, "int8")
    return DescriptorIndex(np.column_stack([ee.ravel(), nn.ravel()]), stored, datum, SPACING_M, meta)
