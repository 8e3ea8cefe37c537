"""The likelihood volume over (yaw, y, x): what the pose network produces and the particle
filter consumes (and what the cross-view node publishes as a PointCloud2).

Grid convention (one place, used by runtime, filter, nodes):

* `log_likelihood[k, r, c]`: float32 log-likelihood (unnormalized is fine) of the vehicle
  being at cell (r, c) with yaw `yaw_bins_rad[k]`.
* Columns go east, rows go south (a north-up image) with cell size `cell_m`, centred at
  (center_e_m, center_n_m) in the `map` frame (ENU at the world datum, REP-103/105): the
  grid convention of `cvgl_ros.geo.grid`.
* `yaw_bins_rad`: K uniformly spaced ENU yaws (counter-clockwise from east). When they cover
  the full circle, interpolation wraps around; otherwise they span [yaw_bins[0], yaw_bins[-1]].
* `stamp_ns`: ROS time of the camera frame it was computed from.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cvgl_ros.errors import InputError
from cvgl_ros.geo.grid import grid_to_en


@dataclass
class LikelihoodVolume:
    log_likelihood: np.ndarray  # (K, H, W) float32
    center_e_m: float
    center_n_m: float
    cell_m: float
    yaw_bins_rad: np.ndarray  # (K,) uniform ENU yaws
    stamp_ns: int = 0

    def __post_init__(self):
        ll = np.asarray(self.log_likelihood, dtype=np.float32)
        if ll.ndim != 3:
            raise InputError(f"likelihood volume must be (yaw, y, x), got shape {ll.shape}")
        yaws = np.asarray(self.yaw_bins_rad, dtype=np.float64).reshape(-1)
        if yaws.shape[0] != ll.shape[0]:
            raise InputError(f"{yaws.shape[0]} yaw bins for a volume with {ll.shape[0]} yaw slices")
        if not np.all(np.isfinite(ll)):
            raise InputError("likelihood volume holds NaN or Inf")
        if not (math.isfinite(self.cell_m) and self.cell_m > 0):
            raise InputError(f"cell size {self.cell_m} must be a positive number")
        if not (math.isfinite(self.center_e_m) and math.isfinite(self.center_n_m)):
            raise InputError("likelihood volume centre must be finite")
        self.log_likelihood = ll
        self.yaw_bins_rad = yaws

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.log_likelihood.shape)

    @property
    def yaw_step_rad(self) -> float:
        return float(self.yaw_bins_rad[1] - self.yaw_bins_rad[0]) if len(self.yaw_bins_rad) > 1 else 2 * math.pi

    @property
    def wraps_yaw(self) -> bool:
        """True when the yaw bins cover the whole circle (uniform step, K * step = 2 pi)."""
        k = len(self.yaw_bins_rad)
        return k > 1 and abs(k * self.yaw_step_rad - 2 * math.pi) < 1e-6

    def cell_centres(self) -> tuple[np.ndarray, np.ndarray]:
        """(east, north) metres of the cell centres, each of shape (H, W)."""
        _, h, w = self.shape
        cols, rows = np.meshgrid(np.arange(w), np.arange(h))
        return grid_to_en(cols, rows, self.center_e_m, self.center_n_m, w, h, self.cell_m)

    def argmax_pose(self) -> tuple[float, float, float]:
        """(east, north, yaw) of the most likely cell."""
        k, r, c = np.unravel_index(int(np.argmax(self.log_likelihood)), self.shape)
        _, h, w = self.shape
        east, north = grid_to_en(c, r, self.center_e_m, self.center_n_m, w, h, self.cell_m)
        return float(east), float(north), float(self.yaw_bins_rad[k])
