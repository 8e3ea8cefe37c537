"""Resampling of particle weights (vectorized; filterpy's `monte_carlo.resampling` loops in
Python and draws from the global numpy generator, so the filter uses this one).

Each function takes normalized weights (sum 1) and a `numpy.random.Generator` and returns
the indices of the particles to keep, as filterpy's functions do.
"""
from __future__ import annotations

import numpy as np


def systematic_resample(weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Systematic resampling: one uniform offset, M evenly spaced pointers into the CDF.

    Low variance (a particle of weight w is copied floor(M w) or ceil(M w) times) and O(M).
    """
    w = np.asarray(weights, dtype=np.float64)
    m = len(w)
    positions = (rng.random() + np.arange(m)) / m
    cdf = np.cumsum(w)
    cdf /= cdf[-1]  # guard against round-off: the last pointer must land inside
    return np.minimum(np.searchsorted(cdf, positions, side="right"), m - 1)


def effective_sample_size(weights: np.ndarray) -> float:
    """ESS = 1 / sum(w^2) of normalized weights: M for equal weights, 1 for a single survivor."""
    w = np.asarray(weights, dtype=np.float64)
    return float(1.0 / np.square(w).sum())  # no BLAS dot: see particle_filter._wsum
