"""Benchmark of the whole on-vehicle pipeline: a simulated drive replayed through the real nodes.

The replay runs in lockstep, i.e. at full speed: every camera frame is decoded, its patch
cut, the network run and the filter updated before the next message is played, with no
frame dropped. It runs twice: one frame at a time (the reproducible mode, ORT on both
cores) and two frames in flight (two inference workers of one ORT thread each: the network
scales poorly across threads, so one frame per core does more; the bench JSON has both).
The real-time factor is bag seconds per wall second (target >= 1.5x on 2 cores); per-stage
latencies come from the cross-view node's frame statuses (decode, patch, inference, total)
and the filter node's /diagnostics (filter); the lockstep waits say where the wall time goes.

Data: a 30 s urban_canyon drive (10 Hz camera; the demo's is 5 Hz) generated once under
data/bench, through the demo's world when `make demo` made it, else a small world.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from cvgl_ros.benchmarks.harness import benchmark

REPO = Path(__file__).resolve().parents[2]


def _drive_and_tiles(card) -> tuple[Path, Path]:
    """A 30 s urban_canyon drive at the model's image size: through the demo's world when
    `make demo` made it, else through a small (400 m) world made once under data/bench."""
    height, width = (int(v) for v in card["image_hw"])
    cvgl = [sys.executable, "-m", "cvgl_ros.cli.main"]
    world = REPO / "data" / "demo" / "world"
    if not (world / "tiles.mbtiles").is_file():
        world = REPO / "data" / "bench" / "world"
        if not (world / "tiles.mbtiles").is_file():
            subprocess.run(cvgl + ["sim", "world", "--seed", "7", "--style", "urban", "--size-m", "400", "--quiet",
                                   "--out", str(world)], check=True)
    drive = REPO / "data" / "bench" / f"drive_{world.parent.name}_30s_{width}x{height}"
    if not (drive / "metadata.yaml").is_file():
        subprocess.run(cvgl + ["sim", "drive", "--world", str(world), "--seed", "1", "--duration-s", "30",
                               "--gnss", "urban_canyon", "--width", str(width), "--height", str(height), "--quiet",
                               "--out", str(drive)], check=True)
    return drive, world / "tiles.mbtiles"


@benchmark("pipeline", "replay real-time factor at full speed (lockstep; 1 and 2 frames in flight) and "
                       "per-stage latency of the nodes")
def pipeline_benchmark() -> dict:
    from cvgl_ros.nodes.cross_view_node import default_model_path
    from cvgl_ros.replay import replay_bag
    from cvgl_ros.runtime.card import read_card

    model = default_model_path()
    if model is None:
        raise RuntimeError("no shipped model in models/*.onnx")
    drive, tiles = _drive_and_tiles(read_card(model))
    cases = {}
    # 1 in flight: the reproducible lockstep, one frame at a time with 2 ORT threads; 2 in
    # flight: two inference workers of one ORT thread each, one frame per core.
    for name, in_flight, threads in (("replay_lockstep", 1, 2), ("replay_2_in_flight", 2, 1)):
        with tempfile.TemporaryDirectory(prefix="cvgl-bench-pipeline-") as tmp:
            s = replay_bag(drive, Path(tmp) / "out", tiles=tiles, model=model, lockstep=True, progress=False,
                           frames_in_flight=in_flight, log_dir=Path(tmp) / "logs",
                           overrides={"providers": ["cpu"], "intra_op_threads": threads,
                                      "inference_workers": in_flight})
        prefix = "" if in_flight == 1 else f"{name}_"
        cases[name] = {
            "real_time_factor": s.real_time_factor, "bag_duration_s": s.bag_duration_s, "wall_s": s.wall_s,
            "frames": s.frames, "frames_processed": s.frames_processed, "frames_skipped": s.frames_skipped,
            "poses": s.poses, "lockstep_timeouts": s.lockstep_timeouts, "frames_resent": s.frames_resent,
            "inference_workers": in_flight, "intra_op_threads": threads, "drive": str(drive),
        }
        for stage, stats in s.stage_latency_ms.items():
            cases[f"{prefix}stage_{stage}"] = {f"{k}_ms": v for k, v in stats.items()}
        for wait, stats in s.lockstep_wait_ms.items():
            cases[f"{prefix}lockstep_{wait}"] = {f"{k}_ms" if k != "n" else k: v for k, v in stats.items()}
    return cases
