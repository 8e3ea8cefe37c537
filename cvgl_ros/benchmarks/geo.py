"""Benchmarks of the geodesy core."""
from __future__ import annotations

import numpy as np

from cvgl_ros.benchmarks.harness import benchmark, measure
from cvgl_ros.geo import Datum, lonlat_to_global_px


@benchmark("geo", "WGS84 <-> ENU and Web Mercator pixel conversion of 10^6 points")
def geo_benchmark() -> dict:
    rng = np.random.default_rng(0)
    n = 1_000_000
    datum = Datum(49.0, 8.4, 110.0)
    lat = 49.0 + rng.uniform(-0.1, 0.1, n)
    lon = 8.4 + rng.uniform(-0.1, 0.1, n)
    alt = 110.0 + rng.uniform(-20, 20, n)
    e, nn, u = datum.to_enu(lat, lon, alt)
    return {
        "wgs84_to_enu_1e6": measure(lambda: datum.to_enu(lat, lon, alt), repeats=5, items=n),
        "enu_to_wgs84_1e6": measure(lambda: datum.to_wgs84(e, nn, u), repeats=5, items=n),
        "lonlat_to_global_px_z19_1e6": measure(lambda: lonlat_to_global_px(lon, lat, 19), repeats=5, items=n),
    }
