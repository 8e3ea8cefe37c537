"""The relocalizer of the particle filter: where the car is when the estimate is lost, from the
retrieval grid's scores over a wide circle, accumulated over frames.

Seed 001's filter ("Cross-View Matching for Vehicle Localization by Learning Geographically
Local Representations", Sec. III-D) only ever weighs particles inside the 3 sigma_gps circle of
each fix, so it trusts the receiver's sigma. A receiver locked onto a reflection, or a start in
a street canyon, reports a few metres while it is 50-200 m off; the filter then sits where GNSS
says, and the dense network (+-20 m around it) sees nothing it knows: cross-view never confirms
the estimate. That is when this runs (`ParticleFilter`: unverified for `relocalize_after_s`
with cross-view frames fused meanwhile, or an integrity re-lock cross-view has not confirmed):

1. `start`: hypotheses h_i on the grid's lattice (spacing h) in the circle of radius R
   (`relocalize_radius_m`) around the estimate, each with log-score L_i = 0.
2. `update`, per retrieval frame with scores s_j over cells j (the grid's e^{-d}, Eq. 5's
   matching term): every hypothesis moves by the vehicle's displacement since the last frame
   (dead reckoning: the particles' mean speed and yaw; its absolute position may be wrong, its
   motion is not), then
       L_i += log( s'(h_i) / sum_j s'_j ),   s'_j = s_j^(1/T)
   with s'(h_i) the bilinear interpolation of the tempered scores (1 / |cells| where no cell is
   near: no information) and T the temperature (`relocalize_temperature`). T = 1 is Eq. 5's
   matching term as it stands. Per frame, e^{-d} is far flatter than the evidence it holds: on
   the recorded frames of the ten biased trial drives the true cell's log-likelihood under
   softmax(-d / T) over the circle peaks at T ~ 0.06. Frames a few metres apart are not
   independent, so the sum over frames must not take that at face value. T = 0.5 (the
   default) was chosen on the relocalizer's decisions, replayed offline on the recorded frames
   and through the nodes on a tuning fleet of ten other biased drives; at T <= 0.35 the offline
   decisions began to pick wrong places (docs/retrieval.md). This is a histogram filter over
   the circle: the evidence of frames taken from different places adds up at the true position
   and not at a place that only looks like it once.
3. `decision`: with p_i = softmax(L), the best hypothesis h* and the mass of p within
   `relocalize_peak_m` of it. After at least `relocalize_min_frames` frames, a mass of at least
   `relocalize_mass` is a fix: the filter re-seeds its particles around h* (when h* is farther
   than `relocalize_min_shift_m` from the estimate; nearer, the estimate was right) and the
   dense network takes over there; its confirmation ends the search.

Cost: R = 200 m at h = 5 m is ~5 000 hypotheses, one interpolation each per frame (~1 ms).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cvgl_ros.filter.measurements import GridScores


@dataclass(frozen=True)
class RelocalizerDecision:
    """found: the evidence singles out `position_en_m` (None until then); mass: the posterior mass
    within the peak radius; frames: frames accumulated."""

    found: bool
    position_en_m: tuple[float, float] | None
    mass: float
    frames: int
    reason: str


class Relocalizer:
    """The accumulation of the module docstring; `start` begins a search, `update` adds a frame."""

    def __init__(self, radius_m: float, peak_m: float, min_frames: int, min_mass: float, temperature: float = 1.0):
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"relocalizer temperature {temperature} must be a positive number")
        self.radius_m, self.peak_m = float(radius_m), float(peak_m)
        self.min_frames, self.min_mass = int(min_frames), float(min_mass)
        self.temperature = float(temperature)
        self.hypotheses: np.ndarray | None = None     # (K, 2) positions now
        self.log_scores: np.ndarray | None = None
        self.frames = 0
        self.last_s: float | None = None              # stamp of the newest frame (the motion's start)

    @property
    def active(self) -> bool:
        return self.hypotheses is not None

    def start(self, stamp_s: float, east_m: float, north_m: float, spacing_m: float) -> None:
        """Hypotheses on the lattice of `spacing_m` within the radius around (east, north)."""
        r = self.radius_m
        e = np.arange(math.floor((east_m - r) / spacing_m), math.ceil((east_m + r) / spacing_m) + 1) * spacing_m
        n = np.arange(math.floor((north_m - r) / spacing_m), math.ceil((north_m + r) / spacing_m) + 1) * spacing_m
        ee, nn = np.meshgrid(e, n)
        points = np.column_stack([ee.ravel(), nn.ravel()])
        keep = ((points - [east_m, north_m]) ** 2).sum(axis=1) <= r * r
        self.hypotheses, self.log_scores = points[keep], np.zeros(int(keep.sum()))
        self.frames, self.last_s = 0, float(stamp_s)

    def stop(self) -> None:
        self.hypotheses = self.log_scores = None
        self.frames, self.last_s = 0, None

    def update(self, grid: GridScores, stamp_s: float, velocity_en_mps: tuple[float, float]) -> None:
        """Move the hypotheses by the velocity times the time since the last frame (a frame older
        than it moves nothing), add this frame's evidence."""
        if not self.active:
            return
        dt = max(stamp_s - self.last_s, 0.0)
        self.last_s = max(self.last_s, float(stamp_s))
        if len(grid) == 0:
            return
        self.hypotheses = self.hypotheses + dt * np.asarray(velocity_en_mps, np.float64)
        if not float(grid.scores.sum()) > 0:
            return
        if self.temperature != 1.0:
            grid = grid.tempered(self.temperature)
        p = grid.normalized_at(self.hypotheses[:, 0], self.hypotheses[:, 1])
        with np.errstate(divide="ignore"):
            self.log_scores = self.log_scores + np.maximum(np.log(p), -50.0)
        self.frames += 1

    def decision(self) -> RelocalizerDecision:
        if not self.active:
            return RelocalizerDecision(False, None, 0.0, 0, "not searching")
        lw = self.log_scores - self.log_scores.max()
        p = np.exp(lw)
        p /= p.sum()
        best = int(np.argmax(p))
        near = ((self.hypotheses - self.hypotheses[best]) ** 2).sum(axis=1) <= self.peak_m ** 2
        mass = float(p[near].sum())
        position = (float(self.hypotheses[best, 0]), float(self.hypotheses[best, 1]))
        if self.frames < self.min_frames:
            return RelocalizerDecision(False, position, mass, self.frames,
                                       f"{self.frames} of {self.min_frames} frames")
        if mass < self.min_mass:
            return RelocalizerDecision(False, position, mass, self.frames,
                                       f"peak mass {mass:.2f} < {self.min_mass:g} after {self.frames} frames")
        return RelocalizerDecision(True, position, mass, self.frames,
                                   f"peak mass {mass:.2f} within {self.peak_m:g} m after {self.frames} frames")
