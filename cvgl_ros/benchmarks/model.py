"""Benchmark of the shipped pose network on CPU ONNX Runtime (2 threads), as the node runs it."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from cvgl_ros.benchmarks.harness import benchmark, measure, peak_rss_mb
from cvgl_ros.errors import InputError

MODELS_DIR = Path(__file__).resolve().parents[2] / "models"


def shipped_model() -> Path:
    models = sorted(MODELS_DIR.glob("*.onnx"))
    if not models:
        raise InputError(f"no shipped model in {MODELS_DIR}")
    return models[0]


def _inputs(est):
    rng = np.random.default_rng(0)
    h, w = 128, 512
    k = np.array([[w / 2, 0, (w - 1) / 2], [0, w / 2, (h - 1) / 2], [0, 0, 1]])
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    patch = rng.integers(0, 256, (est.patch_px, est.patch_px, 3), dtype=np.uint8)
    return image, k, patch


# the estimate() modes whose memory is measured: (yaw prior, yaw half-width, windows per run)
RSS_MODES = {
    "one_window": (0.3, None, 2),
    "widened_40deg": (0.3, math.radians(40.0), 2),
    "no_yaw_prior": (None, None, 2),
    "no_yaw_prior_one_run": (None, None, 64),   # every window of the circle in one batch (before chunking)
}


def _mode_rss(mode: str, queue) -> None:
    """In a fresh process: peak RSS (MiB) of loading the model and running `mode` 5 times."""
    from cvgl_ros.runtime import PoseEstimator, Prior

    yaw, half_width, per_run = RSS_MODES[mode]
    est = PoseEstimator(shipped_model(), providers=("cpu",), intra_op_threads=2, max_windows_per_run=per_run)
    image, k, patch = _inputs(est)
    for _ in range(5):
        windows = est.estimate(image, k, patch, Prior(10.0, -5.0, yaw, half_width)).yaw_windows
    queue.put({"peak_rss_mb": peak_rss_mb(), "yaw_windows": windows, "windows_per_run": min(per_run, windows)})


def mode_peak_rss() -> dict:
    """Each RSS mode's peak RSS, each in a process of its own (ru_maxrss only ever grows)."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    out = {}
    for mode in RSS_MODES:
        queue = ctx.Queue()
        proc = ctx.Process(target=_mode_rss, args=(mode, queue))
        proc.start()
        out[mode] = queue.get(timeout=600)
        proc.join()
    return out


@benchmark("model", "pose network per frame on CPU ONNX Runtime, 2 threads: estimate() at the sim camera "
                    "size (128x512, resized by the runtime), raw session.run, the no-yaw-prior mode, and "
                    "each mode's peak RSS in a process of its own")
def model_benchmark() -> dict:
    from cvgl_ros.geo.pinhole import scale_intrinsics
    from cvgl_ros.runtime import PoseEstimator, Prior
    from cvgl_ros.runtime.preprocess import to_nchw_float

    path = shipped_model()
    est = PoseEstimator(path, providers=("cpu",), intra_op_threads=2)
    image, k, patch = _inputs(est)
    prior = Prior(10.0, -5.0, 0.3)
    k_model = scale_intrinsics(k, est.image_hw[1] / w, est.image_hw[0] / h)  # what estimate() feeds
    feeds = {"ground": to_nchw_float(np.zeros((*est.image_hw, 3), np.uint8)),
             "satellite": to_nchw_float(patch), "intrinsics": k_model[None].astype(np.float32),
             "camera_height_m": np.array([1.6], np.float32), "yaw_prior_rad": np.array([0.3], np.float32)}
    cases = {"estimate_128x512": measure(lambda: est.estimate(image, k, patch, prior), repeats=50, warmup=3)}
    cases["session_run_batch1"] = measure(lambda: est.session.run(None, feeds), repeats=50, warmup=3)
    cases["estimate_no_yaw_prior"] = measure(lambda: est.estimate(image, k, patch, Prior(10.0, -5.0, None)),
                                             repeats=5, warmup=1)
    cases["peak_rss_by_mode"] = mode_peak_rss()
    cases["model"] = {"size_mb": path.stat().st_size / 1e6, "windows_without_yaw_prior":
                      math.ceil(2 * math.pi / (est.yaw_offsets[-1] - est.yaw_offsets[0]) - 1e-9)}
    return cases
