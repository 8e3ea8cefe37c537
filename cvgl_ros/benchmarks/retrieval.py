"""Benchmark of the satellite descriptor grid (seed 001 §III-D): build time and size per km^2 at
5 m spacing, and the query of a 3 sigma circle, also on a city-sized (10 km^2) grid.

The default descriptor network (untrained weights: the same compute as trained ones) is exported
to a temporary directory with torch, so this benchmark needs the training requirements; it is run
only when named (`cvgl bench --only retrieval`). The build is measured on a 200 m x 200 m box of a
z19 cache of a synthetic orthophoto and extrapolated linearly (cells are independent).
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from cvgl_ros.benchmarks.harness import benchmark, measure

BOX_M = 200.0
SPACING_M = 5.0
SIGMA_GPS_M = 15.0        # an urban GNSS error; the circle is 3 sigma
CITY_KM2 = 10.0


def _cache_and_model(root: Path):
    import torch

    from cvgl_ros.benchmarks.tiles import _orthophoto
    from cvgl_ros.geo import Datum
    from cvgl_ros.models.descriptor import DescriptorNet
    from cvgl_ros.tiles.mbtiles import MBTilesStore
    from cvgl_ros.tiles.raster import EnuRaster, add_enu_raster
    from cvgl_ros.train.retrieval import RetrievalConfig
    from cvgl_ros.train.retrieval_export import export_descriptor

    datum = Datum(49.0, 8.4, 0.0)
    with MBTilesStore.create(root / "cache.mbtiles", name="bench", image_format="jpg") as store:
        add_enu_raster(store, EnuRaster(_orthophoto(1600, seed=3), datum, 0.0, 0.0, 0.2), zoom=19)
    torch.manual_seed(0)
    config = RetrievalConfig()
    export_descriptor(DescriptorNet(config.model).eval(), config, root / "model", history=[], provenance={})
    return datum, root / "cache.mbtiles", root / "model"


@benchmark("retrieval", "descriptor grid: build time and size per km^2 at 5 m, 3-sigma circle query", by_default=False)
def bench_retrieval() -> dict:
    from cvgl_ros.retrieval.encoders import DescriptorModel
    from cvgl_ros.retrieval.index import build_index

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        datum, cache, model_dir = _cache_and_model(root)
        model = DescriptorModel(model_dir, intra_op_threads=2)
        half = BOX_M / 2
        e = np.arange(-half, half + 1e-9, SPACING_M)
        points = np.array([(x, y) for y in e for x in e])
        t0 = time.perf_counter()
        grid = build_index(cache, model, points, datum, SPACING_M, progress=False)
        build_s = time.perf_counter() - t0
        size = grid.save(root / "grid.npz").stat().st_size
        km2 = (len(e) * SPACING_M) ** 2 / 1e6
        radius = 3 * SIGMA_GPS_M
        query = grid.descriptors[len(grid) // 2].astype(np.float32)
        local = measure(lambda: grid.query(query, 0.0, 0.0, radius), repeats=200, warmup=5)
        cells = len(grid.cells_within(0.0, 0.0, radius))
        city = _city_grid(datum, grid.descriptor_dim, CITY_KM2)
        t0 = time.perf_counter()
        _ = city.tree
        tree_s = time.perf_counter() - t0
        city_query = measure(lambda: city.query(query, 100.0, -250.0, radius), repeats=200, warmup=5)
    return {
        "build": {"cells": len(grid), "area_km2": km2, "build_s": build_s, "build_s_per_km2": build_s / km2,
                  "ms_per_cell": build_s / len(grid) * 1e3, "size_bytes": size, "size_mb_per_km2": size / km2 / 1e6,
                  "descriptor_dim": grid.descriptor_dim, "city_km2": CITY_KM2,
                  "city_build_h": build_s / km2 * CITY_KM2 / 3600, "city_size_mb": size / km2 * CITY_KM2 / 1e6},
        "query_3sigma": dict(local, radius_m=radius, cells=cells),
        "query_3sigma_city": dict(city_query, cells_in_grid=len(city), kdtree_build_s=tree_s),
    }


def _city_grid(datum, dim: int, km2: float):
    """A grid of `km2` at SPACING_M with random unit float16 descriptors (query timing only)."""
    from cvgl_ros.retrieval.index import DescriptorIndex

    side = np.sqrt(km2) * 1e3
    e = np.arange(-side / 2, side / 2, SPACING_M)
    ee, nn = np.meshgrid(e, e)
    rng = np.random.default_rng(0)
    desc = rng.normal(size=(ee.size, dim)).astype(np.float32)
    desc /= np.linalg.norm(desc, axis=1, keepdims=True)
    return DescriptorIndex(np.column_stack([ee.ravel(), nn.ravel()]), desc.astype(np.float16), datum, SPACING_M)
