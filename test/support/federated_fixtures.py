"""A tiny fleet for tests and quick trials: a small pair set with several drives and worlds,
and a model configuration small enough that a federation of a few rounds runs in seconds
of compute per round on one CPU core.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cvgl_ros.datasets.pairs import PairWriter

# The smallest pose network PoseNetConfig accepts: 32x64 camera images,
# 64 px satellite patches at 0.5 m/px, one refinement iteration.
TINY_MODEL_YAML = """\
model:
  image_hw: [32, 64]
  patch_px: 64
  patch_mpp: 0.5
  ground_channels: [4, 8, 8]
  satellite_channels: [4, 8, 8]
  feature_dim: 8
  context_dim: 8
  hidden_dim: 8
  bev_forward_m: 16.0
  bev_half_width_m: 8.0
  volume_cells: 6
  yaw_bins: 3
  yaw_window_deg: 6.0
  iterations: 1
  corr_levels: 2
  corr_radius: 1
train:
  batch_size: 2
  photometric_jitter: 0.0
"""


def write_tiny_model_config(path: str | Path) -> Path:
    path = Path(path)
    path.write_text(TINY_MODEL_YAML)
    return path


def write_tiny_pairs(path: str | Path, worlds: int = 2, drives_per_world: int = 3, pairs_per_drive: int = 4,
                     eval_pairs: int = 4, seed: int = 0) -> Path:
    """Random-texture pairs: `worlds` x `drives_per_world` training drives, an unseen world for cross_area."""
    rng = np.random.default_rng(seed)
    k = np.array([[32.0, 0, 31.5], [0, 32.0, 15.5], [0, 0, 1]])

    def sample(world: str, drive: int, frame: int, origin: float) -> dict:
        return {"ground": rng.integers(0, 255, (32, 64, 3), dtype=np.uint8),
                "satellite": rng.integers(0, 255, (64, 64, 3), dtype=np.uint8),
                "K": k, "camera_height_m": 1.65, "offset_en_m": rng.uniform(-3, 3, 2),
                "yaw_enu_rad": float(rng.uniform(-3, 3)), "yaw_prior_enu_rad": 0.0,
                "position_en_m": np.array([origin + 5.0 * frame, 40.0 * drive]),
                "world": world, "drive": drive, "frame": frame}

    with PairWriter(path, {"patch_mpp": 0.5, "source": "federated tiny fixture"}, shard_size=8) as writer:
        for w in range(worlds + 1):
            writer.add_world(f"tiny{w}", {"seed": seed + w})
        for w in range(worlds):
            for d in range(drives_per_world):
                for f in range(pairs_per_drive):
                    writer.add("train", sample(f"tiny{w}", d, f, 1000.0 * w))
        for f in range(eval_pairs):
            writer.add("cross_area", sample(f"tiny{worlds}", 0, f, 0.0))
            writer.add("same_area", sample("tiny0", drives_per_world, f, 0.0))
    return Path(path)
