"""Retrieval on the satellite descriptor grid, as seed 001's Tables I-II (no torch).

"Cross-View Matching for Vehicle Localization by Learning Geographically Local
Representations" evaluates a query against the grid cells around its prior: with the prior's
maximum error r known (its geo-local setting), only the cells within r of the truth compete;
with r = infinity, every cell of the area. Here, for each ground image of a pair split (held-out
drives of the training worlds: `same_area`), with the descriptor grid of its world
(`cvgl_ros.retrieval.index`, built from the world's tile cache):

* the candidates are the grid cells within r of the camera's true position (all cells of the
  world for r = inf);
* the query is the ground descriptor at the true yaw plus Gaussian noise of `yaw_error_deg`
  (the particle filter's yaw at run time);
* the best candidate is the one of smallest d = || f - g ||^2;
* recall@1 (exact cell): the best candidate is the cell nearest the truth; recall@X m: it lies
  within X m of the truth (X = 1, 3, 5, 10).

`evaluate_models` returns, per model and radius, these recalls and the error of the best
cell; `plot_recalls` draws recall against X; `plot_score_fields` draws the score field e^{-d}
of a few queries over the satellite image around them.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

THRESHOLDS_M = (1.0, 3.0, 5.0, 10.0)


def world_tiles(data_meta: dict, world_id: str) -> tuple[Path, object]:
    """(tile cache, datum) of a world of a `cvgl sim pairs` set."""
    from cvgl_ros.geo.datum import Datum
    from cvgl_ros.sim.world import TILES_FILE

    entry = data_meta["worlds"][world_id]
    return Path(entry["path"]) / TILES_FILE, Datum.from_dict(entry["datum"])


def world_grid(tiles: Path, datum, size_m: float, model, spacing_m: float, cache_path: Path | None, progress: bool):
    """The descriptor grid of a square world of `size_m` centred on its datum, read from
    `cache_path` when it was built there for this model, else built (and saved there)."""
    from cvgl_ros.retrieval.index import DescriptorIndex, build_index, grid_in_bbox

    if cache_path is not None and cache_path.is_file():
        grid = DescriptorIndex.load(cache_path)
        if grid.meta.get("model", {}).get("satellite_sha256") == model.sha256("satellite"):
            return grid
    half = size_m / 2
    lat, lon, _ = datum.to_wgs84(np.array([-half, half]), np.array([-half, half]))
    points = grid_in_bbox(datum, lon[0], lat[0], lon[1], lat[1], spacing_m)
    grid = build_index(tiles, model, points, datum, spacing_m, progress=progress)
    if cache_path is not None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        grid.save(cache_path)
    return grid


def load_queries(data: str | Path, split: str, max_queries: int | None = None) -> tuple[dict, list[dict]]:
    """(the data set's meta, the split's samples: ground image, K, yaw, position, world)."""
    from cvgl_ros.datasets.pairs import PairDataset

    dataset = PairDataset(data, split)
    queries = []
    for sample in dataset.iter_shards():
        if max_queries is not None and len(queries) >= max_queries:
            break
        queries.append({"ground": sample["ground"], "K": np.asarray(sample["K"], np.float64),
                        "yaw": float(sample["yaw_enu_rad"]), "position": np.asarray(sample["position_en_m"], float),
                        "world": sample["world"]})
    return dataset.index, queries


def query_errors(grid, descriptors: np.ndarray, positions: np.ndarray, radius_m: float) -> dict:
    """For queries (n, D) at true positions (n, 2) on one grid: the best cell's error (m) and
    whether it is the cell nearest the truth, among the cells within `radius_m` (inf: all)."""
    vectors = grid.vectors()
    errors, exact, candidates = [], [], []
    for g, truth in zip(descriptors, positions):
        if math.isinf(radius_m):
            cells = np.arange(len(grid))
        else:
            cells = grid.cells_within(float(truth[0]), float(truth[1]), radius_m)
        if cells.size == 0:
            errors.append(math.inf)
            exact.append(False)
            candidates.append(0)
            continue
        d = 2.0 - 2.0 * vectors[cells] @ g
        best = cells[int(np.argmin(d))]
        errors.append(float(np.linalg.norm(grid.positions_en_m[best] - truth)))
        nearest = cells[int(np.argmin(np.linalg.norm(grid.positions_en_m[cells] - truth, axis=1)))]
        exact.append(bool(best == nearest))
        candidates.append(int(cells.size))
    return {"errors_m": np.array(errors), "exact": np.array(exact), "candidates": np.array(candidates)}


def recall_table(errors_m: np.ndarray, exact: np.ndarray, candidates: np.ndarray) -> dict:
    """recall@1 (exact cell) and recall@X m in %, the median error and the median candidate count."""
    table = {"queries": int(len(errors_m)), "recall_at_1_cell": float(np.mean(exact) * 100)}
    for x in THRESHOLDS_M:
        table[f"recall_at_{x:g}m"] = float(np.mean(errors_m <= x) * 100)
    table["median_error_m"] = float(np.median(errors_m))
    table["candidates_median"] = float(np.median(candidates))
    return table


def evaluate_models(data: str | Path, split: str, models: dict, radii=(50.0, math.inf), *, spacing_m: float = 5.0,
                    yaw_error_deg: float = 3.0, max_queries: int | None = None, grid_dir: Path | None = None,
                    seed: int = 0, progress: bool = True) -> dict:
    """{model name: {"r=<radius>": recall_table}} and the per-query errors, for `models`
    {name: DescriptorModel} (see the module docstring)."""
    from tqdm import tqdm

    meta, queries = load_queries(data, split, max_queries)
    rng = np.random.default_rng(seed)
    yaw_noise = rng.normal(0.0, math.radians(yaw_error_deg), len(queries))
    worlds = sorted({q["world"] for q in queries})
    results, per_query = {}, {}
    for name, model in models.items():
        descriptors = np.stack([model.encode_ground(q["ground"], q["K"], q["yaw"] + noise)
                                for q, noise in tqdm(list(zip(queries, yaw_noise)), desc=f"{name}: queries",
                                                     disable=not progress)])
        parts = {f"r={r:g}": {"errors_m": [], "exact": [], "candidates": []} for r in radii}
        for world in worlds:
            tiles, datum = world_tiles(meta, world)
            size_m = float(meta["worlds"][world]["size_m"])
            cache = grid_dir / f"{name}-{world}.npz" if grid_dir is not None else None
            grid = world_grid(tiles, datum, size_m, model, spacing_m, cache, progress)
            mine = [i for i, q in enumerate(queries) if q["world"] == world]
            positions = np.stack([queries[i]["position"] for i in mine])
            for r in radii:
                found = query_errors(grid, descriptors[mine], positions, r)
                for key, values in found.items():
                    parts[f"r={r:g}"][key].append(values)
        results[name] = {}
        for key, part in parts.items():
            merged = {k: np.concatenate(v) for k, v in part.items()}
            results[name][key] = recall_table(merged["errors_m"], merged["exact"], merged["candidates"])
            per_query[(name, key)] = merged["errors_m"]
    return {"split": split, "queries": len(queries), "worlds": worlds, "spacing_m": spacing_m,
            "yaw_error_deg": yaw_error_deg, "results": results, "_errors": per_query}


def plot_recalls(result: dict, path: str | Path) -> Path:
    """recall@X m against X (0-25 m) per model, one panel per radius."""
    from cvgl_ros.evaluation.figures import pyplot, save_figure

    plt = pyplot()
    keys = sorted({k for (_, k) in result["_errors"]}, key=lambda k: float(k[2:]))
    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 4), squeeze=False)
    x = np.linspace(0, 25, 101)
    for ax, key in zip(axes[0], keys):
        for (name, k), errors in result["_errors"].items():
            if k == key:
                ax.plot(x, [np.mean(errors <= t) * 100 for t in x], label=name)
        ax.set(xlabel="distance of the best cell from the truth, m", ylabel="recall, %", ylim=(0, 100),
               title=f"prior radius {key[2:]} m" if key != "r=inf" else "no prior (whole world)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"retrieval on the {result['spacing_m']:g} m grid: {result['queries']} queries of "
                 f"{result['split']} ({len(result['worlds'])} worlds), yaw error {result['yaw_error_deg']:g} deg")
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)


def plot_score_fields(data: str | Path, split: str, name: str, model, grid_dir: Path, path: str | Path, *, count: int = 4,
                      radius_m: float = 60.0, yaw_error_deg: float = 3.0, seed: int = 1) -> Path:
    """The score field e^{-d} of model `name` for `count` queries (spread over the split) on their world's grid,
    within `radius_m` of the truth, over the satellite image; the truth and the best cell marked."""
    from cvgl_ros.evaluation.figures import pyplot, save_figure
    from cvgl_ros.tiles.patch import PatchSampler

    meta, queries = load_queries(data, split)
    rng = np.random.default_rng(seed)
    picks = np.linspace(0, len(queries) - 1, count).round().astype(int)
    plt = pyplot()
    fig, axes = plt.subplots(1, count, figsize=(4.2 * count, 4.4), squeeze=False)
    mpp, side = 0.5, 2 * radius_m + 20.0
    for ax, i in zip(axes[0], picks):
        q = queries[int(i)]
        tiles, datum = world_tiles(meta, q["world"])
        grid = world_grid(tiles, datum, float(meta["worlds"][q["world"]]["size_m"]), model, 5.0,
                          grid_dir / f"{name}-{q['world']}.npz", progress=False)
        yaw = q["yaw"] + rng.normal(0.0, math.radians(yaw_error_deg))
        g = model.encode_ground(q["ground"], q["K"], yaw)
        e, n = q["position"]
        with PatchSampler(tiles, cache_mb=64) as sampler:
            image = sampler.patch_enu(datum, float(e), float(n), int(side / mpp), mpp).rgb
        cells = grid.cells_within(float(e), float(n), radius_m)
        d = grid.distances(g, cells)
        offsets = grid.positions_en_m[cells] - q["position"]
        half = side / 2
        ax.imshow(image, extent=(-half, half, -half, half))
        field = ax.scatter(offsets[:, 0], offsets[:, 1], c=np.exp(-d), s=9, cmap="inferno", alpha=0.75, marker="s")
        best = offsets[int(np.argmin(d))]
        ax.plot(0, 0, "c+", ms=14, mew=2.5, label="truth")
        ax.plot(*best, "o", mfc="none", mec="lime", ms=12, mew=2, label=f"best cell ({np.linalg.norm(best):.1f} m)")
        ax.arrow(0, 0, 12 * math.cos(q["yaw"]), 12 * math.sin(q["yaw"]), color="c", width=0.8)
        ax.set(xlim=(-half, half), ylim=(-half, half), xlabel="east, m", title=f"{q['world'].split('-')[0]} #{i}")
        ax.legend(fontsize=7, loc="lower left")
        fig.colorbar(field, ax=ax, fraction=0.046, pad=0.02, label="$e^{-d}$")
    axes[0][0].set_ylabel("north, m")
    fig.suptitle(f"score fields $e^{{-d}}$ of model {name} within {radius_m:g} m of the truth (arrow: the heading)")
    fig.tight_layout()
    return save_figure(fig, path, dpi=90)
