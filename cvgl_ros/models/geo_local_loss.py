"""The geo-local triplet loss of "Cross-View Matching for Vehicle Localization by Learning
Geographically Local Representations" (seed 001, §III-B and §III-C.1).

A mini-batch holds N pairs (S_i, G_i); with d[i, j] = || f(S_i) - g(G_j) ||^2 computed once
for all N^2 combinations (`cvgl_ros.models.descriptor.descriptor_distances`), the two
soft-margin triplet terms are

    l1(i, j) = log(1 + exp(gamma (d[i, i] - d[i, j])))    satellite-to-ground  (Eq. 1)
    l2(i, j) = log(1 + exp(gamma (d[i, i] - d[j, i])))    ground-to-satellite  (Eq. 2)

with gamma = 10. (The paper prints d_{j,j} in Eq. 2; the ground-to-satellite term of its SAFA
baseline compares the query G_i's positive S_i with the negative S_j, i.e. d[j, i], which is
what is used here.) Each term is multiplied by the geo-distance weight of the two satellite
positions, delta_ij = || pi(S_i) - pi(S_j) ||_2 in metres (Eq. 3):

    w_geo(i, j) = c * p_r(delta_ij) * (1 - exp(-delta_ij^2 / (2 sigma_geo^2)))

    p_r(delta) = 1 if delta <= r else 0               decay "step" (the paper's choice, §IV-D)
    p_r(delta) = exp(-delta^2 / (2 (r / 3)^2))         decay "gaussian" (std r / 3)

and c scales the maximum of w_geo over delta >= 0 to 1: for the step decay the maximum is at
delta = r, c = 1 / (1 - exp(-r^2 / (2 sigma^2))); for the Gaussian one, writing a = 1/(2 (r/3)^2)
and b = 1/(2 sigma^2), the product exp(-a x)(1 - exp(-b x)) of x = delta^2 peaks where
exp(-b x) = a / (a + b). sigma_geo = 0 turns the nearby down-weighting off (the paper's
"sigma_geo = 0 m"); pairs of different worlds are infinitely far apart (weight 0 locally).

The loss is the mean of the two directions, each the mean over the N (N - 1) ordered pairs
i != j of w_geo(i, j) * l(i, j) (the i = j terms are constant, log 2, and are left out). With
all weights 1 this is the geo-global soft-margin triplet loss of the SAFA baseline, exactly.

Defaults: gamma = 10, sigma_geo = 10 m, step decay (§IV-B, §IV-D); r is the prior's maximum
error and is chosen for the data density (`cvgl_ros.train.local_batches`).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

from cvgl_ros.errors import InputError

GAMMA = 10.0
SIGMA_GEO_M = 10.0
DECAYS = ("step", "gaussian")


def _check(r_m: float, sigma_geo_m: float, decay: str) -> None:
    if decay not in DECAYS:
        raise InputError(f"geo weight decay {decay!r} is not one of {', '.join(DECAYS)}")
    if not (math.isfinite(r_m) and r_m > 0):
        raise InputError(f"geo weight radius r = {r_m} m must be a positive number")
    if not (math.isfinite(sigma_geo_m) and sigma_geo_m >= 0):
        raise InputError(f"sigma_geo = {sigma_geo_m} m must be a number >= 0")


def weight_scale(r_m: float, sigma_geo_m: float, decay: str) -> float:
    """c of the module docstring: 1 / max over delta of p_r(delta) (1 - exp(-delta^2 / 2 sigma^2))."""
    _check(r_m, sigma_geo_m, decay)
    if sigma_geo_m == 0:
        return 1.0
    b = 1.0 / (2.0 * sigma_geo_m ** 2)
    if decay == "step":
        return 1.0 / -math.expm1(-b * r_m ** 2)
    a = 1.0 / (2.0 * (r_m / 3.0) ** 2)
    x = math.log((a + b) / a) / b
    return 1.0 / (math.exp(-a * x) * -math.expm1(-b * x))


def geo_weights(delta_m: np.ndarray, r_m: float, sigma_geo_m: float = SIGMA_GEO_M, decay: str = "step") -> np.ndarray:
    """w_geo (Eq. 3) of geographic distances `delta_m` (any shape, metres; inf: another world)."""
    delta = np.asarray(delta_m, dtype=np.float64)
    if np.isnan(delta).any() or (delta < 0).any():
        raise InputError("geographic distances must be >= 0 (inf for pairs of different worlds), not NaN")
    scale = weight_scale(r_m, sigma_geo_m, decay)
    finite = np.where(np.isfinite(delta), delta, 0.0)
    if decay == "step":
        prior = np.where(delta <= r_m, 1.0, 0.0)
    else:
        prior = np.where(np.isfinite(delta), np.exp(-finite ** 2 / (2.0 * (r_m / 3.0) ** 2)), 0.0)
    near = -np.expm1(-finite ** 2 / (2.0 * sigma_geo_m ** 2)) if sigma_geo_m > 0 else np.ones_like(finite)
    return np.minimum(scale * prior * np.where(np.isfinite(delta), near, 1.0), 1.0)


def pairwise_geo_distances(positions_m: np.ndarray, worlds: np.ndarray | None = None) -> np.ndarray:
    """delta[i, j] = || pi(S_i) - pi(S_j) || (N, N) for (N, 2) positions; inf between different worlds."""
    pos = np.asarray(positions_m, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != 2 or not np.isfinite(pos).all():
        raise InputError(f"satellite positions must be a finite (N, 2) array, got shape {pos.shape}")
    delta = np.linalg.norm(pos[:, None, :] - pos[None, :, :], axis=2)
    if worlds is not None:
        worlds = np.asarray(worlds)
        delta[worlds[:, None] != worlds[None, :]] = np.inf
    return delta


def soft_margin_triplet_loss(distances: torch.Tensor, weights: torch.Tensor | None = None,
                             gamma: float = GAMMA) -> dict[str, torch.Tensor]:
    """Eq. 1-2 over every ordered pair i != j of the (N, N) `distances` d[i, j] (satellite i,
    ground j), weighted by `weights` (N, N) (None: all 1, the geo-global baseline).

    Returns {"loss": mean of both directions, "sat_to_ground", "ground_to_sat",
    "weight_mean": mean weight of the N (N - 1) terms}."""
    n = distances.shape[0]
    if distances.ndim != 2 or distances.shape[1] != n or n < 2:
        raise InputError(f"a triplet loss needs an (N, N) distance matrix with N >= 2, got {tuple(distances.shape)}")
    positive = torch.diagonal(distances)
    off = ~torch.eye(n, dtype=torch.bool, device=distances.device)
    w = torch.ones_like(distances) if weights is None else weights.to(distances)
    l1 = F.softplus(gamma * (positive[:, None] - distances))      # [i, j]: satellite i, negative ground j
    l2 = F.softplus(gamma * (positive[:, None] - distances.T))    # [i, j]: ground i, negative satellite j
    pairs = n * (n - 1)
    sat_to_ground = (w * l1)[off].sum() / pairs
    ground_to_sat = (w * l2)[off].sum() / pairs     # w_geo(i, j) is symmetric in i, j
    return {"loss": 0.5 * (sat_to_ground + ground_to_sat), "sat_to_ground": sat_to_ground,
            "ground_to_sat": ground_to_sat, "weight_mean": w[off].mean()}


def geo_local_loss(distances: torch.Tensor, positions_m: np.ndarray, worlds: np.ndarray | None, r_m: float,
                   sigma_geo_m: float = SIGMA_GEO_M, decay: str = "step", gamma: float = GAMMA) -> dict:
    """The geo-distance weighted loss of a mini-batch: `soft_margin_triplet_loss` with w_geo."""
    weights = geo_weights(pairwise_geo_distances(positions_m, worlds), r_m, sigma_geo_m, decay)
    return soft_margin_triplet_loss(distances, torch.from_numpy(weights).to(distances.dtype), gamma)
