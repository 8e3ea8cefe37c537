"""Split a pair data set across the vehicles of a fleet, by drive and area (non-IID).

"Federated Learning for Cross-view Geo-localization" (seed 000, §IV-A) splits KITTI into
parts of non-overlapping sequences, so that each client holds its own drives through its
own neighbourhoods rather than a random sample of everybody's. We do the same with the
pairs of a `PairDataset` split:

* the unit is a drive, `(world, drive)`: a drive is never split between two vehicles;
* drives are ordered by world, then along the main axis of the world's drive centroids
  (neighbouring drives end up next to each other);
* that order is cut into K contiguous runs with the most even numbers of pairs
  (an exact linear partition minimizing the largest share).

So each vehicle sees a contiguous stretch of areas: with several worlds, vehicles get
different worlds; with one world, different parts of it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cvgl_ros.datasets.pairs import PairDataset
from cvgl_ros.errors import InputError


@dataclass(frozen=True)
class Drive:
    """One drive of one world: the indices of its pairs in the split, in recording order."""

    world: str
    drive: int
    indices: tuple[int, ...]
    centroid_en_m: tuple[float, float]


@dataclass(frozen=True)
class VehiclePartition:
    """The pairs one vehicle owns: its drives and their sample indices in the split."""

    vehicle: int
    drives: tuple[Drive, ...]

    @property
    def indices(self) -> list[int]:
        return [i for d in self.drives for i in d.indices]

    @property
    def worlds(self) -> list[str]:
        return sorted({d.world for d in self.drives})

    def __len__(self) -> int:
        return sum(len(d.indices) for d in self.drives)


def read_drives(dataset: PairDataset) -> list[Drive]:
    """The drives of a split, read from the shards' numeric columns (no image is decoded)."""
    worlds, drives, frames, positions = [], [], [], []
    for shard in dataset.shards:
        with np.load(dataset.path / shard["file"], allow_pickle=False) as z:
            worlds.append(z["world_index"])
            drives.append(z["drive"])
            frames.append(z["frame"])
            positions.append(z["position_en_m"])
    if not worlds:
        return []
    world_index = np.concatenate(worlds)
    drive = np.concatenate(drives)
    frame = np.concatenate(frames)
    position = np.concatenate(positions).reshape(-1, 2)
    out = []
    keys = sorted({(int(w), int(d)) for w, d in zip(world_index, drive)})
    for w, d in keys:
        idx = np.flatnonzero((world_index == w) & (drive == d))
        idx = idx[np.argsort(frame[idx], kind="stable")]
        centroid = position[idx].mean(axis=0)
        out.append(Drive(dataset.world_ids[w], d, tuple(int(i) for i in idx),
                         (float(centroid[0]), float(centroid[1]))))
    return out


def order_by_area(drives: list[Drive]) -> list[Drive]:
    """Worlds in id order; within a world, drives along the main axis of their centroids."""
    ordered = []
    for world in sorted({d.world for d in drives}):
        group = [d for d in drives if d.world == world]
        centroids = np.array([d.centroid_en_m for d in group])
        if len(group) > 1 and np.ptp(centroids, axis=0).max() > 0:
            centred = centroids - centroids.mean(axis=0)
            axis = np.linalg.svd(centred, full_matrices=False)[2][0]
            axis = axis if axis[np.argmax(np.abs(axis))] > 0 else -axis   # deterministic sign
            key = centred @ axis
        else:
            key = np.zeros(len(group))
        order = sorted(range(len(group)), key=lambda i: (round(float(key[i]), 6), group[i].drive))
        ordered.extend(group[i] for i in order)
    return ordered


def linear_partition(sizes: list[int], parts: int) -> list[int]:
    """Cut points splitting `sizes` (in order) into `parts` non-empty runs, minimizing the largest sum.

    Returns `parts + 1` boundaries b with run j = sizes[b[j]:b[j+1]].
    """
    n = len(sizes)
    if parts < 1 or n < parts:
        raise ValueError(f"cannot cut {n} items into {parts} non-empty runs")
    prefix = np.concatenate([[0], np.cumsum(sizes)])
    # best[j][i]: smallest possible largest run when the first i items form j runs.
    best = np.full((parts + 1, n + 1), np.inf)
    cut = np.zeros((parts + 1, n + 1), dtype=int)
    best[0][0] = 0.0
    for j in range(1, parts + 1):
        for i in range(j, n - (parts - j) + 1):
            ks = np.arange(j - 1, i)
            costs = np.maximum(best[j - 1][ks], prefix[i] - prefix[ks])
            k = int(np.argmin(costs))
            best[j][i], cut[j][i] = costs[k], ks[k]
    bounds = [n]
    for j in range(parts, 0, -1):
        bounds.append(int(cut[j][bounds[-1]]))
    return bounds[::-1]


def partition_drives(drives: list[Drive], vehicles: int, what: str = "the data set") -> list[VehiclePartition]:
    """Give each of `vehicles` a contiguous run of drives in area order (see the module doc)."""
    if vehicles < 1:
        raise InputError(f"the number of vehicles must be >= 1 (got {vehicles})")
    if len(drives) < vehicles:
        raise InputError(f"{what} is too small for {vehicles} vehicles: it has {len(drives)} drive(s) "
                         f"and {sum(len(d.indices) for d in drives)} pair(s) in its training split; "
                         f"each vehicle needs at least one drive of its own")
    ordered = order_by_area(drives)
    bounds = linear_partition([len(d.indices) for d in ordered], vehicles)
    return [VehiclePartition(v, tuple(ordered[bounds[v]:bounds[v + 1]])) for v in range(vehicles)]


def partition_dataset(dataset: PairDataset, vehicles: int) -> list[VehiclePartition]:
    """Partition a split of a pair data set across `vehicles` by drive and area."""
    return partition_drives(read_drives(dataset), vehicles, what=f"data set {dataset.path}")


class PairSubset:
    """Some pairs of a `PairDataset` split (a vehicle's share), with the same reading interface.

    The training loop streams a split shard by shard (`shards`, `iter_shards`, `meta`,
    `split`, `path`); a subset offers the same: its "shards" are the runs of its indices
    that lie in one shard of the underlying split, so streaming one decodes one shard.
    """

    def __init__(self, dataset: PairDataset, indices: list[int]):
        self.dataset = dataset
        self.indices = [int(i) for i in indices]
        self.path, self.meta, self.split = dataset.path, dataset.meta, dataset.split
        self.world_ids = dataset.world_ids
        starts = np.cumsum([0] + [s["count"] for s in dataset.shards])
        self._runs: list[list[int]] = []
        last_shard = None
        for i in self.indices:
            shard = int(np.searchsorted(starts, i, side="right") - 1)
            if shard != last_shard or len(self._runs[-1]) >= 256:
                self._runs.append([])
                last_shard = shard
            self._runs[-1].append(i)
        self.shards = [{"file": dataset.shards[int(np.searchsorted(starts, run[0], side="right") - 1)]["file"],
                        "count": len(run)} for run in self._runs]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        return self.dataset[self.indices[i]]

    def iter_shards(self, order=None):
        for k in (range(len(self._runs)) if order is None else order):
            for i in self._runs[int(k)]:
                yield self.dataset[i]


def cap_evenly(indices: list[int], limit: int | None) -> list[int]:
    """At most `limit` of `indices`, spread evenly over the list (keeps every drive represented)."""
    if limit is None or limit <= 0 or len(indices) <= limit:
        return list(indices)
    picks = np.linspace(0, len(indices) - 1, limit).round().astype(int)
    return [indices[i] for i in picks]
