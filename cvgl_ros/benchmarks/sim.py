"""Benchmarks of the simulator: world generation (layout, orthophoto, MBTiles) and the ground
camera's frame rate at training resolution. CPU seconds are reported beside wall-clock times
(on a shared machine the wall clock also counts other processes' load)."""
from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np

from cvgl_ros.benchmarks.harness import benchmark, measure, peak_rss_mb


@benchmark("sim", "1000 m urban world (layout + orthophoto + MBTiles z14-19) and ground frames/s at 512x128")
def sim_benchmark() -> dict:
    from cvgl_ros.sim.ground_camera import GroundRenderer, default_camera
    from cvgl_ros.sim.world import World

    cases = {}
    with tempfile.TemporaryDirectory(prefix="cvgl-bench-sim-") as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        world = World.generate(7, "urban", 1000.0)
        t_layout = time.perf_counter() - t0
        world.save(Path(tmp) / "w")
        t_total, cpu_total = time.perf_counter() - t0, time.process_time() - c0
        conn = sqlite3.connect(Path(tmp) / "w" / "tiles.mbtiles")
        try:
            n_tiles = conn.execute("SELECT COUNT(*) FROM tiles").fetchone()[0]
        finally:
            conn.close()
        cases["world_urban_1000m"] = {
            "layout_s": t_layout, "total_s": t_total, "total_cpu_s": cpu_total, "tiles": n_tiles,
            "buildings": len(world.layout.buildings),
            "trees": len(world.layout.trees), "streets_km": world.roads.total_length_m() / 1000.0,
            "peak_rss_mb_after": peak_rss_mb(),
        }
        world = World.load(Path(tmp) / "w")
        camera = default_camera(512, 128)
        t0 = time.perf_counter()
        renderer = GroundRenderer(world, camera, appearance_seed=1)
        t_setup = time.perf_counter() - t0
        route = world.route(1, 1500.0)
        s_values = np.arange(0.0, 1500.0, 10.0)
        poses = [tuple(float(v) for v in route.pose_at(s)) for s in s_values]
        state = {"i": 0}

        def frame():
            e, n, yaw = poses[state["i"] % len(poses)]
            renderer.render(e, n, yaw, time_s=state["i"] * 0.1)
            state["i"] += 1

        c0 = time.process_time()
        result = measure(frame, repeats=60, warmup=3, items=1)
        cpu_ms = (time.process_time() - c0) / 63 * 1000.0
        result.update({"frames_per_s": result["throughput_per_s"], "cpu_ms_per_frame": cpu_ms,
                       "ray_threads": renderer.threads, "renderer_setup_s": t_setup,
                       "triangles": int(len(renderer.mesh.tris)), "peak_rss_mb_after": peak_rss_mb()})
        cases["ground_frame_512x128"] = result
    return cases
