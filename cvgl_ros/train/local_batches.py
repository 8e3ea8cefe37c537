"""Mini-batches for descriptor training: local (seed 001 Eq. 4) or random (the geo-global baseline).

"Cross-View Matching for Vehicle Localization by Learning Geographically Local
Representations" (§III-C.2) builds local mini-batches so that the geo-distance weights of
Eq. 3 are rarely all zero:

1. before training, the neighbourhood of every pair P_i (its satellite position pi(S_i)):

       N_r(i) = { P_j : j != i and || pi(S_i) - pi(S_j) || <= r }          (Eq. 4)

   (scipy `cKDTree.query_ball_point`, per world: pairs of different worlds are never neighbours);
2. each epoch starts with a pool holding every pair;
3. a batch: a pair P_i drawn at random from the pool, then N - 1 pairs drawn uniformly without
   replacement from those of N_r(i) still in the pool; all N leave the pool. A drawn P_i with
   fewer than N - 1 neighbours left in the pool leaves it unused. The epoch ends when the pool
   is empty, so a pair is in at most one batch per epoch and all of a batch lie within 2 r.

The geo-global baseline shuffles all pairs and cuts them into batches of N (the last partial
batch dropped), independent of where they are.

Choice of r (the paper's §IV-A: r is the prior's maximum error, fixed for the use case; with
existing data it is chosen from the sample density so that each pair has at least N - 1
neighbours). `cvgl sim pairs` frames lie about 6 m apart along 600 m drives; a few thousand
pairs over 1 km^2 worlds are ~1 000 pairs per km^2. Counted on drives of worlds 11 (urban),
12 (suburban) and 14 (rural) at that density: within 25 m a pair has a median of 26-40
neighbours and only 30-64 % have 31; within 50 m the median is 51-77 and 93-98 % have at
least 31 (all have 15); 75 m and more reach 100 %. So the default is r = 50 m with N = 32: the
paper's r for its dense RobotCar set (where almost all images have > 200 pairs within 50 m),
and about the 3 sigma = 45-50 m of a 15 m urban GNSS error that the particle filter's circle
(Eq. 5) would hold. `neighbour_counts` gives these counts for a data set
(`cvgl train-retrieval` prints them).
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
from scipy.spatial import cKDTree

from cvgl_ros.errors import InputError

DEFAULT_RADIUS_M = 50.0
DEFAULT_BATCH = 32


def _check_positions(positions_m, worlds) -> tuple[np.ndarray, np.ndarray]:
    pos = np.asarray(positions_m, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != 2 or not np.isfinite(pos).all():
        raise InputError(f"pair positions must be a finite (N, 2) array, got shape {pos.shape}")
    worlds = np.zeros(len(pos), int) if worlds is None else np.asarray(worlds)
    if worlds.shape != (len(pos),):
        raise InputError(f"{worlds.shape} world ids for {len(pos)} positions")
    return pos, worlds


def neighbourhoods(positions_m, radius_m: float, worlds=None) -> list[np.ndarray]:
    """N_r(i) (Eq. 4) for every pair: sorted indices j != i of the same world within `radius_m`."""
    if not (np.isfinite(radius_m) and radius_m > 0):
        raise InputError(f"neighbourhood radius r = {radius_m} m must be a positive number")
    pos, worlds = _check_positions(positions_m, worlds)
    out: list[np.ndarray] = [np.empty(0, np.int64)] * len(pos)
    for world in np.unique(worlds):
        members = np.flatnonzero(worlds == world)
        tree = cKDTree(pos[members])
        for k, found in zip(members, tree.query_ball_point(pos[members], radius_m)):
            neighbours = members[np.asarray(found, dtype=np.int64)]
            out[k] = np.sort(neighbours[neighbours != k])
    return out


def neighbour_counts(positions_m, radius_m: float, worlds=None) -> np.ndarray:
    """|N_r(i)| for every pair."""
    return np.array([len(n) for n in neighbourhoods(positions_m, radius_m, worlds)], dtype=np.int64)


class LocalBatchSampler:
    """Local mini-batches of Eq. 4 (see the module docstring): `for batch in sampler.epoch(rng)`."""

    def __init__(self, positions_m, batch_size: int, radius_m: float = DEFAULT_RADIUS_M, worlds=None):
        if int(batch_size) < 2:
            raise InputError(f"a triplet batch needs at least 2 pairs, got batch size {batch_size}")
        self.batch_size = int(batch_size)
        self.radius_m = float(radius_m)
        self.neighbours = neighbourhoods(positions_m, radius_m, worlds)

    def __len__(self) -> int:
        return len(self.neighbours)

    def epoch(self, rng: np.random.Generator) -> Iterator[np.ndarray]:
        """The batches of one epoch, each an int array of `batch_size` pair indices (anchor first)."""
        in_pool = np.ones(len(self.neighbours), bool)
        order = rng.permutation(len(self.neighbours))       # a random draw from the pool = the next unused of this
        for anchor in order:
            if not in_pool[anchor]:
                continue
            in_pool[anchor] = False
            free = self.neighbours[anchor][in_pool[self.neighbours[anchor]]]
            if len(free) < self.batch_size - 1:
                continue                                     # too few neighbours left: not used this epoch
            rest = rng.choice(free, self.batch_size - 1, replace=False)
            in_pool[rest] = False
            yield np.concatenate(([anchor], rest)).astype(np.int64)


class RandomBatchSampler:
    """The geo-global baseline: every pair shuffled, cut into batches of `batch_size`."""

    def __init__(self, count: int, batch_size: int):
        if int(batch_size) < 2:
            raise InputError(f"a triplet batch needs at least 2 pairs, got batch size {batch_size}")
        self.count, self.batch_size = int(count), int(batch_size)

    def __len__(self) -> int:
        return self.count

    def epoch(self, rng: np.random.Generator) -> Iterator[np.ndarray]:
        order = rng.permutation(self.count)
        for start in range(0, self.count - self.batch_size + 1, self.batch_size):
            yield order[start:start + self.batch_size].astype(np.int64)
