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

Interpolation (`LikelihoodVolume.interpolate`, what the particle filter evaluates at every
particle): bilinear in (x, y) between the four surrounding cell centres and linear in yaw
between the two neighbouring bins, on the log-likelihood; yaw wraps around when the bins
cover the circle. Inside the grid's footprint but beyond the outermost cell centres (the
outer half cell) the edge value is used. Outside the footprint (or outside the yaw span of
bins that do not wrap, taking the query's yaw modulo 2 pi, so a window reaching past +-pi
still holds the wrapped yaws there; or for a non-finite query) the result is the *floor*: by default the
smallest log-likelihood in the volume (a pose the network never saw is no more likely than
the least likely pose it did see), or `outside_log_likelihood` when given. Never NaN.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from cvgl_ros.errors import InputError
from cvgl_ros.geo.grid import grid_to_en

INTERPOLATION_CHUNK = 16384  # queries interpolated per block


@dataclass
class LikelihoodVolume:
    log_likelihood: np.ndarray  # (K, H, W) float32
    center_e_m: float
    center_n_m: float
    cell_m: float
    yaw_bins_rad: np.ndarray  # (K,) uniform ENU yaws
    stamp_ns: int = 0
    _floor: float | None = field(default=None, init=False, repr=False, compare=False)
    _log_normalizer: float | None = field(default=None, init=False, repr=False, compare=False)

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

    @property
    def floor_log_likelihood(self) -> float:
        """The value `interpolate` returns outside the grid by default: the volume's minimum."""
        if self._floor is None:
            self._floor = float(self.log_likelihood.min())
        return self._floor

    @property
    def log_normalizer(self) -> float:
        """log of the sum of exp(log_likelihood) over all cells (computed once, cached).

        `log_likelihood - log_normalizer` is the log-probability of each cell.
        """
        if self._log_normalizer is None:
            ll = self.log_likelihood
            peak = float(ll.max())
            self._log_normalizer = peak + math.log(float(np.exp(ll - np.float32(peak)).sum(dtype=np.float64)))
        return self._log_normalizer

    def set_log_normalizer(self, value: float) -> None:
        """Give `log_normalizer` when it is known in closed form (saves a pass over the volume)."""
        if not math.isfinite(value):
            raise InputError(f"log normalizer must be finite, got {value}")
        self._log_normalizer = float(value)

    def interpolate(self, east_m, north_m, yaw_enu_rad, outside_log_likelihood: float | None = None) -> np.ndarray:
        """Log-likelihood at arbitrary poses: bilinear in (east, north), linear in yaw.

        Arrays broadcast; returns float64 of the broadcast shape. Poses outside the grid (see
        the module docstring) get `outside_log_likelihood`, by default `floor_log_likelihood`.
        """
        east, north, yaw = np.broadcast_arrays(np.asarray(east_m, dtype=np.float64),
                                               np.asarray(north_m, dtype=np.float64),
                                               np.asarray(yaw_enu_rad, dtype=np.float64))
        shape = east.shape
        east, north, yaw = east.reshape(-1), north.reshape(-1), yaw.reshape(-1)
        if east.size <= INTERPOLATION_CHUNK:
            return self._interpolate_flat(east, north, yaw, outside_log_likelihood).reshape(shape)
        # Blocks small enough for the temporaries to stay in cache (~35 % faster at 10^5).
        out = np.empty(east.size)
        for start in range(0, east.size, INTERPOLATION_CHUNK):
            block = slice(start, start + INTERPOLATION_CHUNK)
            out[block] = self._interpolate_flat(east[block], north[block], yaw[block], outside_log_likelihood)
        return out.reshape(shape)

    def _interpolate_flat(self, east, north, yaw, outside_log_likelihood) -> np.ndarray:
        k_bins, h, w = self.shape
        # Fractional (col, row, yaw bin) of every query; NaN compares False, so a
        # non-finite query is never inside.
        with np.errstate(over="ignore", invalid="ignore"):  # huge queries become inf: outside
            col = (east - self.center_e_m) * (1.0 / self.cell_m)
            col += (w - 1) * 0.5
            row = (north - self.center_n_m) * (-1.0 / self.cell_m)
            row += (h - 1) * 0.5
            if not self.wraps_yaw:  # a heading is itself +- 2 pi: take the turn from half a bin before the first bin
                start = self.yaw_bins_rad[0] - 0.5 * self.yaw_step_rad
                yaw = yaw - (2 * math.pi) * np.floor((yaw - start) * (1.0 / (2 * math.pi)))
            yaw_pos = (yaw - self.yaw_bins_rad[0]) * (1.0 / self.yaw_step_rad)
        inside = (col >= -0.5) & (col <= w - 0.5) & (row >= -0.5) & (row <= h - 0.5)
        if self.wraps_yaw:
            inside &= np.isfinite(yaw_pos)
        else:
            inside &= (yaw_pos >= -0.5) & (yaw_pos <= k_bins - 0.5)
        all_inside = bool(inside.all())
        if not all_inside:  # park the outside queries on cell (0, 0, 0); they get the floor below
            outside = ~inside
            col[outside] = 0.0
            row[outside] = 0.0
            yaw_pos[outside] = 0.0
        if self.wraps_yaw:
            yaw_pos -= np.floor(yaw_pos * (1.0 / k_bins)) * k_bins  # now in [0, K]
        else:
            np.clip(yaw_pos, 0.0, k_bins - 1, out=yaw_pos)
        np.clip(col, 0.0, w - 1, out=col)
        np.clip(row, 0.0, h - 1, out=row)

        # Lower corner (c0, r0, k0) and the fractions towards the upper one; all >= 0 here,
        # so truncation is floor.
        c0 = col.astype(np.intp)
        r0 = row.astype(np.intp)
        k0 = yaw_pos.astype(np.intp)
        np.minimum(c0, max(w - 2, 0), out=c0)
        np.minimum(r0, max(h - 2, 0), out=r0)
        if self.wraps_yaw:
            np.minimum(k0, k_bins - 1, out=k0)
            k1 = k0 + 1
            k1[k1 == k_bins] = 0
        else:
            np.minimum(k0, max(k_bins - 2, 0), out=k0)
            k1 = np.minimum(k0 + 1, k_bins - 1)
        fc = col - c0
        fr = row - r0
        fk = yaw_pos - k0
        step_c = 1 if w > 1 else 0
        step_r = w if h > 1 else 0

        flat = self.log_likelihood.reshape(-1)
        plane = h * w
        xy = r0 * w
        xy += c0

        def bilinear(k):
            base = k * plane
            base += xy
            top = flat[base]
            top += (flat[base + step_c] - top) * fc
            base += step_r
            bottom = flat[base]
            bottom += (flat[base + step_c] - bottom) * fc
            bottom -= top
            bottom *= fr
            return top + bottom  # float32 mixed with float64 fractions -> float64

        value = bilinear(k0)
        upper = bilinear(k1)
        upper -= value
        upper *= fk
        value += upper
        value = value.astype(np.float64, copy=False)
        if not all_inside:
            value[outside] = self.floor_log_likelihood if outside_log_likelihood is None else float(outside_log_likelihood)
        return value
