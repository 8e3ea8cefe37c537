"""Cross-view likelihood volumes simulated from ground truth, standing in for the pose
network when testing and benchmarking the particle filter.

A volume is what the cross-view node publishes (`cvgl_ros.likelihood.LikelihoodVolume`):
log-likelihoods over (yaw, y, x) on a north-up grid centred at the position prior, the
point around which the node cut the satellite patch (the filter's estimate, in closed loop).

The default grid is 64 yaw bins (5.625 deg, covering the circle) x 128 x 128 cells of
0.4 m: a 51.2 m square patch, the size of the network's output (a 512 px satellite patch
at ~0.1 m/px, down-sampled 4x) and wide enough to hold the truth at the GNSS errors of
`urban_canyon` (up to ~25 m off) most of the time.

Per frame (seeded, reproducible):

* a *true* frame, with probability 1 - `false_peak_fraction`: the network's answer
  c = truth + noise, noise ~ N(0, sigma_xy^2) per axis and N(0, sigma_yaw^2) in yaw, and
  the volume is the Gaussian log-likelihood around it,
      log L(k, r, col) = -|p(r, col) - c_xy|^2 / (2 sigma_xy^2) - dyaw(k)^2 / (2 sigma_yaw^2),
  so that, seen as a function of the pose, it is the likelihood of a measurement with
  that spread (wrapped yaw differences);
* a *false-peak* frame: the same Gaussian, but around a point drawn uniformly on the grid
  at least `false_peak_min_distance_m` from the truth, with a uniform random yaw; the true
  pose gets no peak (the network is confidently wrong, the worst case).

When the truth lies outside the patch a true frame still peaks at c, which may then lie
outside the grid too: the volume is just the Gaussian's tail, as a network would give a
weak, flat answer.

Yaw window (`yaw_window_deg` > 0, the real node's narrow search): the bins then span
prior_yaw +- yaw_window_deg only (or a wider half-width that the prior asks for, at the same
bin width: `cvgl_ros.localization.prior`'s widened search). When the true yaw lies outside that window, the network
cannot see the right heading; the model is the worst case seen on real drives: the volume
*confirms the prior* (a Gaussian around the prior position, at the prior yaw), as a
network does that matches the straight road it is told to look along.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cvgl_ros.errors import InputError
from cvgl_ros.geo.grid import grid_to_en
from cvgl_ros.geo.yaw import wrap_angle
from cvgl_ros.likelihood import LikelihoodVolume


@dataclass(frozen=True)
class SimulatedCrossViewConfig:
    sigma_xy_m: float = 1.0
    sigma_yaw_deg: float = 2.0
    false_peak_fraction: float = 0.1
    false_peak_min_distance_m: float = 8.0
    num_yaw_bins: int = 64
    size_cells: int = 128
    cell_m: float = 0.4
    yaw_window_deg: float = 0.0  # > 0: bins over prior_yaw +- this only (0: the whole circle)

    def __post_init__(self):
        for name in ("sigma_xy_m", "sigma_yaw_deg", "cell_m"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise InputError(f"simulated cross-view {name} must be > 0, got {value}")
        if not 0.0 <= self.false_peak_fraction <= 1.0:
            raise InputError(f"false_peak_fraction must be in [0, 1], got {self.false_peak_fraction}")
        if self.num_yaw_bins < 2 or self.size_cells < 2:
            raise InputError("the simulated volume needs at least 2 yaw bins and 2 x 2 cells")

    @property
    def yaw_bins_rad(self) -> np.ndarray:
        """Uniform bins over the whole circle, starting at -pi."""
        return -math.pi + np.arange(self.num_yaw_bins) * (2.0 * math.pi / self.num_yaw_bins)


class SimulatedCrossView:
    """Seeded generator of likelihood volumes; see the module docstring for the model."""

    def __init__(self, config: SimulatedCrossViewConfig | None = None, seed: int = 0):
        self.config = config or SimulatedCrossViewConfig()
        self.rng = np.random.default_rng(seed)
        c = self.config
        cols = np.arange(c.size_cells)
        offsets_e, _ = grid_to_en(cols, cols, 0.0, 0.0, c.size_cells, c.size_cells, c.cell_m)
        self._offsets_m = offsets_e  # cell-centre offsets from the grid centre, east (= -north by rows)
        self.false_peaks = 0
        self.blind_frames = 0
        self.frames = 0

    def volume(self, stamp_s: float, true_east_m: float, true_north_m: float, true_yaw_enu_rad: float,
               prior_east_m: float, prior_north_m: float, prior_yaw_enu_rad: float | None = None,
               yaw_half_width_rad: float | None = None) -> LikelihoodVolume:
        """One volume for the camera frame at `stamp_s`, on a grid centred at the prior (and,
        with a yaw window, around the prior yaw)."""
        values = (stamp_s, true_east_m, true_north_m, true_yaw_enu_rad, prior_east_m, prior_north_m)
        if not all(math.isfinite(v) for v in values):
            raise InputError("simulated cross-view needs finite truth, prior and stamp")
        c = self.config
        sigma_yaw = math.radians(c.sigma_yaw_deg)
        self.frames += 1
        yaw_bins = c.yaw_bins_rad
        windowed = c.yaw_window_deg > 0 and prior_yaw_enu_rad is not None and math.isfinite(prior_yaw_enu_rad)
        half = math.radians(c.yaw_window_deg)
        if windowed:  # a widened search keeps the bin width: more bins
            step = 2.0 * half / max(c.num_yaw_bins - 1, 1)
            if yaw_half_width_rad is not None and yaw_half_width_rad > half:
                half = step * math.ceil(yaw_half_width_rad / step)
            yaw_bins = float(wrap_angle(prior_yaw_enu_rad)) + np.arange(-half, half + 0.5 * step, step)
        elif c.yaw_window_deg > 0:  # no yaw prior: the whole circle in windows of the same bin width
            step = 2.0 * math.radians(c.yaw_window_deg) / max(c.num_yaw_bins - 1, 1)
            yaw_bins = -math.pi + np.arange(int(math.ceil(2 * math.pi / step))) * step
        if windowed and abs(float(wrap_angle(true_yaw_enu_rad - prior_yaw_enu_rad))) > half:
            self.blind_frames += 1  # the right heading is outside the window: the prior is confirmed
            peak_e = prior_east_m + c.sigma_xy_m * self.rng.standard_normal()
            peak_n = prior_north_m + c.sigma_xy_m * self.rng.standard_normal()
            peak_yaw = float(prior_yaw_enu_rad)
        elif self.rng.random() < c.false_peak_fraction:
            self.false_peaks += 1
            peak_e, peak_n, peak_yaw = self._false_peak(true_east_m, true_north_m, prior_east_m, prior_north_m)
        else:
            peak_e = true_east_m + c.sigma_xy_m * self.rng.standard_normal()
            peak_n = true_north_m + c.sigma_xy_m * self.rng.standard_normal()
            peak_yaw = true_yaw_enu_rad + sigma_yaw * self.rng.standard_normal()
        east = prior_east_m + self._offsets_m            # (W,) cell centres, columns
        north = prior_north_m - self._offsets_m          # (H,) cell centres, rows go south
        # Separable: log L = a(yaw) + b(north) + c(east); so is its normalizer.
        term_e = -0.5 * ((east - peak_e) / c.sigma_xy_m) ** 2
        term_n = -0.5 * ((north - peak_n) / c.sigma_xy_m) ** 2
        term_yaw = -0.5 * (wrap_angle(yaw_bins - peak_yaw) / sigma_yaw) ** 2
        plane = (term_n[:, None] + term_e[None, :]).astype(np.float32)
        ll = np.empty((len(yaw_bins), c.size_cells, c.size_cells), dtype=np.float32)
        np.add(term_yaw.astype(np.float32)[:, None, None], plane[None], out=ll)
        volume = LikelihoodVolume(ll, float(prior_east_m), float(prior_north_m), c.cell_m, yaw_bins,
                                  stamp_ns=int(round(stamp_s * 1e9)))
        volume.set_log_normalizer(_logsumexp(term_yaw) + _logsumexp(term_n) + _logsumexp(term_e))
        return volume

    def _false_peak(self, true_e, true_n, prior_e, prior_n) -> tuple[float, float, float]:
        c = self.config
        half = 0.5 * c.size_cells * c.cell_m
        for _ in range(100):
            e = prior_e + self.rng.uniform(-half, half)
            n = prior_n + self.rng.uniform(-half, half)
            if math.hypot(e - true_e, n - true_n) >= c.false_peak_min_distance_m:
                break
        return e, n, float(self.rng.uniform(-math.pi, math.pi))


def _logsumexp(x: np.ndarray) -> float:
    peak = float(x.max())
    return peak + math.log(float(np.exp(x - peak).sum()))
