"""Satellite descriptors on a metric grid of the map frame, and their scores for a query (no torch).

"Cross-View Matching for Vehicle Localization by Learning Geographically Local
Representations" (seed 001, §III-D, §IV-A) localizes against S_grid: satellite images
centred on a dense regular grid (5 m apart there, as here by default). For a query G_q with
GNSS position pi(G_q) and standard deviation sigma_gps, only the cells within the 3 sigma
circle are compared, each with the matching score

    s_j = exp(-d_{j,q}),   d_{j,q} = || f(S_j) - g(G_q) ||_2^2               (Eq. 5, first term)

which the particle filter then interpolates bilinearly at each particle and normalizes over
the circle (not done here: `cvgl_ros.filter`'s business).

Building (`build_index`, `cvgl retrieval index`): grid points every `spacing_m` metres of the
ENU `map` frame of a datum (multiples of the spacing, so two builds with one datum share their
points), over a WGS84 box or within `radius_m` of a bag's NavSatFix positions. At each point a
north-up patch of the card's `patch_px` at `patch_mpp` is cut from the tile cache
(`cvgl_ros.tiles.PatchSampler.patch_enu`) and encoded by the card's satellite encoder (ONNX
Runtime). Points whose patch is not wholly covered by the cache are left out (counted).

File format (`FORMAT`, one `.npz` without pickles, written atomically):

    positions_en_m   (M, 2) float64   cell centres, east and north in the datum's map frame
    descriptors      (M, D) int8      f(S_j) / int8_scale rounded (dtype="int8", the default: a
                                      256-D grid is 10 MB per km^2; the error of d is ~1e-3), or
                                      float16 / float32 f(S_j) (dtype="float16", "float32")
    meta_json        (K,) uint8       UTF-8 JSON: format, datum {lat_deg, lon_deg, alt_m},
                                      spacing_m, descriptor_dim, dtype, the card's sha256 of both
                                      encoders (satellite: what made the descriptors; ground: what
                                      a query must use), patch_px, patch_mpp, region, skipped cells,
                                      tile cache, build time

Query (`DescriptorIndex.query`): a scipy cKDTree over the positions returns the cells of a
circle, d is computed in float32 from the stored descriptors.

Measured (`cvgl bench --only retrieval`, `cvgl_ros.benchmarks.retrieval`, 4 December 2026: the
shipped 256-D model `models/retrieval/local`, ONNX Runtime on 2 CPU cores, the z19 cache of a
simulated 1 km^2 urban world): 0.69 ms a grid point (cutting the 128 px patch, its polar
image, the encoder), so the world's 40 000 points build in 28 s, 35 721 of them with a complete
patch; 9.7 MB on disk (int8). One frame's coarse stage (the ground encoder, 0.55 ms, and the
cells of a 30 m circle) takes 0.8 ms median. A 10 km^2 city: 400 000 cells, 109 MB, about
5 min to build (extrapolated); the cKDTree over them builds in 0.11 s and a 45 m circle
answers in 0.07 ms. So scipy's cKDTree serves that size: the search is geographic (the cells
of a circle), not a nearest-neighbour search in descriptor space, so no approximate-nearest-
neighbour library (FAISS and kin) is needed. What grows is memory: `load` reads the whole
file; a larger region is best split per district (or stored as raw .npy memory maps).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cvgl_ros.errors import InputError
from cvgl_ros.geo.datum import Datum

FORMAT = "cvgl-descriptor-grid/1"
DEFAULT_SPACING_M = 5.0
MAX_CELLS = 5_000_000
DTYPES = {"int8": np.int8, "float16": np.float16, "float32": np.float32}
INT8_MAX = 127


@dataclass(frozen=True)
class LocalScores:
    """The cells of one circle: index into the grid, position (M, 2), distance d and score e^{-d}."""

    indices: np.ndarray
    positions_en_m: np.ndarray
    distances: np.ndarray
    scores: np.ndarray


@dataclass
class DescriptorIndex:
    """A satellite descriptor grid in memory (see the module docstring)."""

    positions_en_m: np.ndarray
    descriptors: np.ndarray
    datum: Datum
    spacing_m: float
    meta: dict = field(default_factory=dict)
    _tree: object = field(default=None, init=False, repr=False)

    def __post_init__(self):
        pos, desc = np.asarray(self.positions_en_m, np.float64), np.asarray(self.descriptors)
        if pos.ndim != 2 or pos.shape[1] != 2 or desc.ndim != 2 or len(desc) != len(pos) or not len(pos):
            raise InputError(f"a descriptor grid needs (M, 2) positions and (M, D) descriptors, M >= 1; got "
                             f"{pos.shape} and {desc.shape}")
        if not (np.isfinite(pos).all() and np.isfinite(desc.astype(np.float32)).all()):
            raise InputError("a descriptor grid's positions and descriptors must be finite")
        if desc.dtype == np.int8:
            scale = self.meta.get("int8_scale")
            if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not (math.isfinite(scale) and scale > 0):
                raise InputError(f"an int8 descriptor grid needs int8_scale > 0 in its meta, got {scale!r:.40}")
        self.positions_en_m, self.descriptors = pos, desc

    @staticmethod
    def quantize(descriptors: np.ndarray, dtype: str) -> tuple[np.ndarray, dict]:
        """(stored descriptors, meta entries) of float descriptors (M, D) as `dtype`."""
        if dtype not in DTYPES:
            raise InputError(f"descriptor dtype {dtype!r} is not one of {', '.join(DTYPES)}")
        if dtype != "int8":
            return descriptors.astype(DTYPES[dtype]), {}
        scale = max(float(np.abs(descriptors).max()), 1e-12) / INT8_MAX
        return np.round(descriptors / scale).astype(np.int8), {"int8_scale": scale}

    def vectors(self, indices=slice(None)) -> np.ndarray:
        """The float32 descriptors f(S_j) of the cells `indices` (int8 ones scaled back)."""
        values = self.descriptors[indices].astype(np.float32)
        return values * np.float32(self.meta["int8_scale"]) if self.descriptors.dtype == np.int8 else values

    @property
    def descriptor_dim(self) -> int:
        return int(self.descriptors.shape[1])

    def __len__(self) -> int:
        return len(self.positions_en_m)

    @property
    def tree(self):
        if self._tree is None:
            from scipy.spatial import cKDTree

            self._tree = cKDTree(self.positions_en_m)
        return self._tree

    def cells_within(self, east_m: float, north_m: float, radius_m: float) -> np.ndarray:
        """Sorted indices of the cells whose centre lies within `radius_m` of (east, north)."""
        values = np.array([east_m, north_m, radius_m], dtype=np.float64)
        if not np.isfinite(values).all() or radius_m <= 0:
            raise InputError(f"a circle needs a finite centre and a radius > 0, got ({east_m}, {north_m}), {radius_m}")
        return np.sort(np.asarray(self.tree.query_ball_point([east_m, north_m], radius_m), dtype=np.int64))

    def distances(self, query: np.ndarray, indices: np.ndarray) -> np.ndarray:
        """d = || f(S_j) - g(G_q) ||^2 of the cells `indices` for one query descriptor (D,)."""
        q = np.asarray(query, dtype=np.float32)
        if q.shape != (self.descriptor_dim,) or not np.isfinite(q).all():
            raise InputError(f"a query descriptor must be {self.descriptor_dim} finite numbers, got shape {q.shape}")
        diff = self.vectors(indices) - q
        return np.einsum("md,md->m", diff, diff)

    def query(self, query: np.ndarray, east_m: float, north_m: float, radius_m: float) -> LocalScores:
        """The cells within the circle and their scores e^{-d} (Eq. 5's matching scores)."""
        indices = self.cells_within(east_m, north_m, radius_m)
        d = self.distances(query, indices)
        return LocalScores(indices, self.positions_en_m[indices], d, np.exp(-d))

    def save(self, path: str | Path) -> Path:
        """Write the .npz of the module docstring atomically."""
        from cvgl_ros.atomic import atomic_path

        meta = dict(self.meta, format=FORMAT, datum=self.datum.to_dict(), spacing_m=self.spacing_m,
                    descriptor_dim=self.descriptor_dim, dtype=str(self.descriptors.dtype), cells=len(self))
        blob = np.frombuffer(json.dumps(meta, allow_nan=False).encode("utf-8"), dtype=np.uint8)
        path = Path(path)
        with atomic_path(path, suffix=".npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, positions_en_m=self.positions_en_m, descriptors=self.descriptors, meta_json=blob)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "DescriptorIndex":
        """Read a grid written by `save`; InputError, one line, for anything else."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"no such descriptor grid: {path}")
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(bytes(z["meta_json"]).decode("utf-8"))
                positions, descriptors = z["positions_en_m"], z["descriptors"]
        except (OSError, ValueError, KeyError, UnicodeDecodeError) as exc:
            raise InputError(f"{path} is not a descriptor grid: {str(exc).splitlines()[0][:200]}") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise InputError(f"{path} is not a {FORMAT} descriptor grid")
        try:
            datum = Datum.from_dict(meta["datum"])
            spacing = float(meta["spacing_m"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{path}: bad datum or spacing in its meta ({exc})") from None
        return cls(positions, descriptors, datum, spacing, meta)

    def check_model(self, ground_sha256: str) -> None:
        """Refuse a ground encoder other than the one this grid was built for."""
        expected = self.meta.get("model", {}).get("ground_sha256")
        if expected != ground_sha256:
            raise InputError(f"this descriptor grid was built for the ground encoder {str(expected)[:16]}..., "
                             f"not {ground_sha256[:16]}...: rebuild it with the model in use")


# -- the grid -------------------------------------------------------------------------------------

def _check_spacing(spacing_m: float) -> float:
    spacing_m = float(spacing_m)
    if not (math.isfinite(spacing_m) and spacing_m > 0):
        raise InputError(f"grid spacing {spacing_m} m must be a positive number")
    return spacing_m


def _lattice(east_range, north_range, spacing_m: float) -> np.ndarray:
    """Points at multiples of the spacing within [e0, e1] x [n0, n1], (M, 2)."""
    e = np.arange(math.ceil(east_range[0] / spacing_m), math.floor(east_range[1] / spacing_m) + 1) * spacing_m
    n = np.arange(math.ceil(north_range[0] / spacing_m), math.floor(north_range[1] / spacing_m) + 1) * spacing_m
    if len(e) * len(n) > MAX_CELLS:
        raise InputError(f"{len(e) * len(n)} grid cells is more than {MAX_CELLS}: use a smaller region or a "
                         "larger spacing")
    ee, nn = np.meshgrid(e, n)
    return np.column_stack([ee.ravel(), nn.ravel()])


def grid_in_bbox(datum: Datum, west: float, south: float, east: float, north: float, spacing_m: float) -> np.ndarray:
    """Grid points (M, 2) of the datum's map frame whose WGS84 position lies in the box."""
    from cvgl_ros.geo.datum import check_lat_lon

    spacing_m = _check_spacing(spacing_m)
    check_lat_lon([south, north], [west, east])
    if not (west < east and south < north):
        raise InputError(f"bounding box W,S,E,N = {west},{south},{east},{north} is empty (need W < E, S < N)")
    t = np.linspace(0.0, 1.0, 9)                             # the box's outline, for its extent in the map frame
    lats = np.concatenate([south + 0 * t, north + 0 * t, south + (north - south) * t, south + (north - south) * t])
    lons = np.concatenate([west + (east - west) * t, west + (east - west) * t, west + 0 * t, east + 0 * t])
    e, n, _ = datum.to_enu(lats, lons, np.zeros_like(lats))
    points = _lattice((e.min(), e.max()), (n.min(), n.max()), spacing_m)
    lat, lon, _ = datum.to_wgs84(points[:, 0], points[:, 1])
    inside = (lat >= south) & (lat <= north) & (lon >= west) & (lon <= east)
    if not inside.any():
        raise InputError(f"no {spacing_m:g} m grid point lies in the box {west},{south},{east},{north}")
    return points[inside]


def grid_near(datum: Datum, lat_deg: np.ndarray, lon_deg: np.ndarray, radius_m: float, spacing_m: float) -> np.ndarray:
    """Grid points (M, 2) within `radius_m` of any of the WGS84 positions (a drive)."""
    from scipy.spatial import cKDTree

    spacing_m = _check_spacing(spacing_m)
    if not (math.isfinite(radius_m) and radius_m >= 0):
        raise InputError(f"radius {radius_m} m must be >= 0")
    e, n, _ = datum.to_enu(np.asarray(lat_deg), np.asarray(lon_deg), np.zeros(len(lat_deg)))
    track = np.column_stack([np.atleast_1d(e), np.atleast_1d(n)])
    points = _lattice((track[:, 0].min() - radius_m, track[:, 0].max() + radius_m),
                      (track[:, 1].min() - radius_m, track[:, 1].max() + radius_m), spacing_m)
    near, _ = cKDTree(track).query(points, distance_upper_bound=radius_m + 1e-9)
    return points[np.isfinite(near)]


def build_index(tiles: str | Path, model, points_en_m: np.ndarray, datum: Datum, spacing_m: float, *,
                dtype: str = "int8", batch: int = 64, region: dict | None = None, progress: bool = True,
                min_valid_fraction: float = 1.0) -> DescriptorIndex:
    """Encode the patches of `points_en_m` (M, 2) cut from the cache `tiles` with `model`
    (a `cvgl_ros.retrieval.encoders.DescriptorModel`); see the module docstring."""
    from tqdm import tqdm

    from cvgl_ros.tiles.patch import PatchSampler

    if dtype not in DTYPES:
        raise InputError(f"descriptor dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    t0 = time.perf_counter()
    kept, descriptors, skipped = [], [], 0
    with PatchSampler(tiles, cache_mb=128) as sampler:
        bar = tqdm(total=len(points_en_m), desc="cells", unit="cell", disable=not progress, dynamic_ncols=True)
        for start in range(0, len(points_en_m), batch):
            chunk, patches = points_en_m[start:start + batch], []
            for e, n in chunk:
                patch = sampler.patch_enu(datum, float(e), float(n), model.patch_px, model.patch_mpp)
                if patch.valid_fraction >= min_valid_fraction:
                    patches.append(patch.rgb)
                    kept.append((e, n))
                else:
                    skipped += 1
            if patches:
                descriptors.append(model.encode_satellite(np.stack(patches)))
            bar.update(len(chunk))
        bar.close()
    if not kept:
        raise InputError(f"none of the {len(points_en_m)} grid cells has a complete patch in {tiles}: does the "
                         "cache cover the region?")
    meta = {"model": {"card": str(model.card_path), "satellite_sha256": model.sha256("satellite"),
                      "ground_sha256": model.sha256("ground")},
            "patch_px": model.patch_px, "patch_mpp": model.patch_mpp, "region": region or {},
            "skipped_cells": skipped, "tiles": str(tiles), "build_s": round(time.perf_counter() - t0, 3)}
    stored, extra = DescriptorIndex.quantize(np.concatenate(descriptors), dtype)
    return DescriptorIndex(np.array(kept, np.float64), stored, datum, spacing_m, meta | extra)
