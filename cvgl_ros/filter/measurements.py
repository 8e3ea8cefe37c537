"""Measurement models of the particle filter that are more than one line: the retrieval grid's
matching scores (Eq. 5 of "Cross-View Matching for Vehicle Localization by Learning
Geographically Local Representations", seed 001, Sec. III-D).

The dense cross-view factor (the pose network's likelihood volume) is
`ParticleFilter.update_cross_view` with `cvgl_ros.likelihood`; the GNSS factor and its circle
are `ParticleFilter.update_gnss` with `cvgl_ros.filter.gnss_gate`.

Retrieval grid (`GridScores`, `grid_log_factor`)
------------------------------------------------
A camera frame's descriptor g(G_q) compared with the satellite descriptors f(S_j) of grid cells
j (`cvgl_ros.retrieval.index`) gives the matching scores s_j = exp(-d_{j,q}). The cells lie on
one square lattice of spacing h (multiples of h in the map frame). For a particle m at
pi(m) = (E, N), with the circle C of radius r = circle_sigmas * sigma_gps around the
(outlier-checked) GNSS position pi(G_q) and S_local the cells whose centre lies in C:

    s(m)  = bilinear interpolation of s_j at pi(m) between the 4 lattice cells around it
            (weights (1 - u)(1 - v), u(1 - v), (1 - u) v, u v; exact at a cell centre)
    w^[m] = s(m) / sum_{j in S_local} s_j * exp(-|pi(m) - pi(G_q)|^2 / (2 sigma_gps^2))     (Eq. 5)

and a particle outside C is discarded (w = 0: the paper's "directly discarded"; it is not
re-drawn there, the resampling that follows replaces it). Where some of the 4 lattice cells
around a particle are not in S_local (the circle's rim, a cell the index skipped, the cap on
cells per frame) the interpolation weights of those present are renormalized; with none of
them present the particle gets the mean of the normalized scores, 1 / |S_local|: no
information there, neither favoured nor discarded.

`grid_log_factor` returns log w per particle (-inf outside C) and, when it cannot weigh at
all, a reason instead (no cell in the circle, no particle in it): the caller then leaves the
weights as they are. It never returns NaN.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cvgl_ros.errors import InputError

LATTICE_TOLERANCE = 0.02  # cell centres farther than this fraction of h from the lattice: not one grid


@dataclass
class GridScores:
    """Matching scores e^{-d} (M,) of grid cells at positions_en_m (M, 2) of the map frame, for
    the camera frame stamped `stamp_ns`. `spacing_m`: the lattice's h; None: the smallest
    positive gap between the cells' coordinates (at least 2 cells needed then)."""

    positions_en_m: np.ndarray
    scores: np.ndarray
    stamp_ns: int = 0
    spacing_m: float | None = None

    def __post_init__(self):
        pos = np.asarray(self.positions_en_m, dtype=np.float64).reshape(-1, 2) \
            if np.size(self.positions_en_m) else np.empty((0, 2))
        scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        if len(pos) != len(scores):
            raise InputError(f"{len(pos)} grid cells with {len(scores)} scores")
        if not (np.isfinite(pos).all() and np.isfinite(scores).all()):
            raise InputError("grid scores hold NaN or Inf")
        if np.any(scores < 0):
            raise InputError("grid scores e^{-d} must be >= 0")
        self.positions_en_m, self.scores = pos, scores
        if self.spacing_m is None and len(pos) >= 2:
            self.spacing_m = _smallest_gap(pos)
        if self.spacing_m is not None and not (math.isfinite(self.spacing_m) and self.spacing_m > 0):
            raise InputError(f"grid spacing {self.spacing_m} must be a positive number")
        self._keys = None
        if self.spacing_m is not None and len(pos):
            ij = (pos - pos[0]) / self.spacing_m
            self._keys = np.rint(ij).astype(np.int64)
            if np.abs(ij - self._keys).max() > LATTICE_TOLERANCE:
                raise InputError(f"grid cells are not on one lattice of spacing {self.spacing_m:g} m")

    def __len__(self) -> int:
        return len(self.scores)

    def within(self, east_m: float, north_m: float, radius_m: float) -> "GridScores":
        """The cells whose centre lies within `radius_m` of (east, north) (S_local)."""
        d2 = ((self.positions_en_m - [east_m, north_m]) ** 2).sum(axis=1)
        keep = d2 <= radius_m ** 2
        return GridScores(self.positions_en_m[keep], self.scores[keep], self.stamp_ns, self.spacing_m)

    def tempered(self, temperature: float) -> "GridScores":
        """The same cells with scores s^(1 / temperature), divided by the largest first (the
        ratios between cells are what counts; the division keeps them finite). All-zero scores
        stay zero."""
        peak = float(self.scores.max()) if len(self) else 0.0
        scores = (self.scores / peak) ** (1.0 / temperature) if peak > 0 else self.scores
        return GridScores(self.positions_en_m, scores, self.stamp_ns, self.spacing_m)

    def normalized_at(self, east_m: np.ndarray, north_m: np.ndarray) -> np.ndarray:
        """The interpolated score over the sum of all scores (Eq. 5's normalized matching term),
        1 / len where no cell is near (no information: neither favoured nor discarded). The
        caller checks that the sum is positive."""
        s = self.interpolate(east_m, north_m)
        return np.where(np.isfinite(s), s / float(self.scores.sum()), 1.0 / len(self))

    def interpolate(self, east_m: np.ndarray, north_m: np.ndarray) -> np.ndarray:
        """Bilinear interpolation of the scores at (east, north) between the 4 lattice cells
        around each point, over those present (see the module docstring); NaN where none is."""
        east_m, north_m = np.asarray(east_m, np.float64), np.asarray(north_m, np.float64)
        out = np.full(east_m.shape, np.nan)
        if len(self) == 0:
            return out
        if self.spacing_m is None:  # one cell: exact at its centre only
            hit = (east_m == self.positions_en_m[0, 0]) & (north_m == self.positions_en_m[0, 1])
            out[hit] = self.scores[0]
            return out
        h, origin, keys = self.spacing_m, self.positions_en_m[0], self._keys
        lo = keys.min(axis=0)
        table = np.full(tuple(keys.max(axis=0) - lo + 2), np.nan)  # one spare row and column: the +1 corners
        table[keys[:, 0] - lo[0], keys[:, 1] - lo[1]] = self.scores
        u, v = (east_m - origin[0]) / h - lo[0], (north_m - origin[1]) / h - lo[1]
        finite = np.isfinite(u) & np.isfinite(v)
        i0 = np.where(finite, np.floor(np.where(finite, u, 0.0)), -1).astype(np.int64)
        j0 = np.where(finite, np.floor(np.where(finite, v, 0.0)), -1).astype(np.int64)
        fu, fv = np.where(finite, u - i0, 0.0), np.where(finite, v - j0, 0.0)
        total = np.zeros(east_m.shape)
        weight = np.zeros(east_m.shape)
        for di, dj, w in ((0, 0, (1 - fu) * (1 - fv)), (1, 0, fu * (1 - fv)), (0, 1, (1 - fu) * fv), (1, 1, fu * fv)):
            i, j = i0 + di, j0 + dj
            ok = (i >= 0) & (j >= 0) & (i < table.shape[0]) & (j < table.shape[1])
            value = np.full(east_m.shape, np.nan)
            value[ok] = table[i[ok], j[ok]]
            present = np.isfinite(value) & (w > 0)
            total[present] += w[present] * value[present]
            weight[present] += w[present]
        has = weight > 0
        out[has] = total[has] / weight[has]
        return out


def _smallest_gap(pos: np.ndarray) -> float:
    gaps = [np.diff(np.unique(np.round(pos[:, k], 6))) for k in (0, 1)]
    gaps = np.concatenate(gaps)
    gaps = gaps[gaps > 1e-6]
    if not gaps.size:
        raise InputError("grid cells all at one position: no lattice spacing")
    return float(gaps.min())


@dataclass(frozen=True)
class GridFactor:
    """What `grid_log_factor` made of one frame's scores: log w per particle (-inf outside the
    circle) or None with the reason it could not weigh; the circle's cells and particles."""

    log_factor: np.ndarray | None
    reason: str
    cells: int
    particles_inside: int


def grid_log_factor(grid: GridScores, east_m: np.ndarray, north_m: np.ndarray, centre_e_m: float,
                    centre_n_m: float, sigma_gps_m: float, circle_sigmas: float = 3.0, gnss_term: bool = True,
                    circle_east_m: np.ndarray | None = None, circle_north_m: np.ndarray | None = None) -> GridFactor:
    """log w^[m] of Eq. 5 (module docstring) for particles at (east_m, north_m) (the camera's
    positions: where the scores are read). The circle test and the GNSS term use
    (circle_east_m, circle_north_m) when given (the antenna's positions), else the same.
    `gnss_term=False` leaves out the GNSS factor (a filter that fuses GNSS on its own)."""
    east_m, north_m = np.asarray(east_m, np.float64), np.asarray(north_m, np.float64)
    ce = east_m if circle_east_m is None else np.asarray(circle_east_m, np.float64)
    cn = north_m if circle_north_m is None else np.asarray(circle_north_m, np.float64)
    values = (centre_e_m, centre_n_m, sigma_gps_m, circle_sigmas)
    if not all(math.isfinite(v) for v in values) or sigma_gps_m <= 0 or circle_sigmas <= 0:
        return GridFactor(None, f"no circle: centre ({centre_e_m}, {centre_n_m}), sigma {sigma_gps_m}", 0, 0)
    radius = circle_sigmas * sigma_gps_m
    local = grid.within(centre_e_m, centre_n_m, radius)
    total = float(local.scores.sum())
    d2 = (ce - centre_e_m) ** 2 + (cn - centre_n_m) ** 2
    inside = np.isfinite(d2) & (d2 <= radius ** 2)
    n_inside = int(inside.sum())
    if len(local) == 0:
        return GridFactor(None, f"no grid cell within {radius:.0f} m of ({centre_e_m:.1f}, {centre_n_m:.1f})", 0,
                          n_inside)
    if not total > 0:
        return GridFactor(None, f"all {len(local)} cells in the circle score 0", len(local), n_inside)
    if n_inside == 0:
        return GridFactor(None, f"no particle within {radius:.0f} m of ({centre_e_m:.1f}, {centre_n_m:.1f})",
                          len(local), 0)
    p = local.normalized_at(east_m, north_m)
    with np.errstate(divide="ignore"):
        log_w = np.log(p)
    if gnss_term:
        log_w = log_w - d2 / (2.0 * sigma_gps_m ** 2)
    log_w[~inside] = -np.inf
    if not np.isfinite(log_w).any():
        return GridFactor(None, "every particle in the circle scores 0", len(local), n_inside)
    return GridFactor(log_w, "", len(local), n_inside)
