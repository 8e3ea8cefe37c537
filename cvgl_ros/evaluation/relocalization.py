"""Wide-prior recovery trials of the coarse stage: GNSS 150 m off for the first 60 s of a drive.

Each trial is a drive the training never saw (a fleet world, `cvgl_ros.evaluation.fleet`, with a
seed of its own; the descriptor models were trained on pairs of other drives of these worlds)
whose fixes are moved by `OFFSET_M` along a random bearing for the first `OFFSET_S` seconds
(`cvgl_ros.sim.gnss.GnssOffset`: the receiver's reported sigma is left as it was, so nothing but
the camera can tell). The filter initializes on the first, wrong, fix. The drive is replayed
through the nodes twice, with the satellite descriptor grid of its world (`retrieval_index`)
and without, and scored against the truth:

* `first_within_s`: the first time (from the first fused pose) the error is below `ERROR_M`;
* `recovered`: that time is at most `RECOVER_S` (the acceptance test);
* `within_after_s`: the share of poses below `ERROR_M` from the first such pose to the end of
  the offset window (whether it stays found), and the error statistics of the last 10 s of the
  window and after it.

Worlds, their grids and the bags are made once into a cache directory (keyed like the fleet's);
`run_trials` writes `relocalization.json`, `relocalization.md` and `relocalization.png`.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cvgl_ros.errors import InputError

OFFSET_M = 150.0
OFFSET_S = 60.0
DURATION_S = 75.0
RECOVER_S = 10.0
ERROR_M = 3.0
PROFILES = ("urban_canyon", "open_sky", "multipath")


@dataclass(frozen=True)
class Trial:
    name: str
    world: str
    seed: int
    gnss: str
    bearing_deg: float


FIRST_SEED = 201   # the acceptance trials; another first seed gives another fleet (to tune on)


def trials(count: int = 10, first_seed: int = FIRST_SEED) -> list[Trial]:
    """`count` trials over the fleet's worlds, seeds first_seed.., the profiles in turn, seeded
    bearings (the bearings of seeds 201.. are those of the first trials)."""
    from cvgl_ros.evaluation.fleet import WORLDS

    rng = np.random.default_rng(2026 + first_seed - FIRST_SEED)
    out = []
    for k in range(count):
        world, seed, gnss = WORLDS[k % len(WORLDS)].name, first_seed + k, PROFILES[k % len(PROFILES)]
        out.append(Trial(f"{world}-{gnss}-{seed}", world, seed, gnss, float(np.round(rng.uniform(0, 360), 1))))
    return out


def ensure_trial_bag(trial: Trial, world_dir: Path, cache_dir: Path, image_wh: tuple[int, int]) -> Path:
    from cvgl_ros.atomic import write_json
    from cvgl_ros.evaluation.fleet import CAMERA_HZ, GNSS_HZ, _key
    from cvgl_ros.sim.drive import record_drive
    from cvgl_ros.sim.gnss import GnssOffset

    key = _key({"trial": asdict(trial), "offset": [OFFSET_M, OFFSET_S, DURATION_S], "image_wh": list(image_wh),
                "world": world_dir.name})
    out = cache_dir / "trials" / f"{trial.name}-{key}"
    if (out / "bag" / "metadata.yaml").is_file() and (out / "trial.json").is_file():
        return out / "bag"
    if (out / "bag").exists():
        raise InputError(f"{out} exists but is not a finished trial drive; remove it to regenerate")
    out.mkdir(parents=True, exist_ok=True)
    result = record_drive(world_dir, out / "bag", seed=trial.seed, duration_s=DURATION_S, gnss=trial.gnss,
                          camera_hz=CAMERA_HZ, gnss_hz=GNSS_HZ, width=image_wh[0], height=image_wh[1], progress=False,
                          turn_rich=True, gnss_offset=GnssOffset(OFFSET_M, trial.bearing_deg, 0.0, OFFSET_S))
    write_json(out / "trial.json", {"key": key, "trial": asdict(trial), "gnss_error": result.gnss_error_stats()})
    return out / "bag"


def ensure_grid(world_dir: Path, descriptor, cache_dir: Path, progress: bool) -> Path:
    """The descriptor grid of a fleet world for `descriptor` (a DescriptorModel), built once."""
    from cvgl_ros.evaluation.retrieval import world_grid
    from cvgl_ros.sim.world import TILES_FILE, World

    world = World.load(world_dir)
    path = cache_dir / "grids" / f"{world_dir.name}-{descriptor.sha256('satellite')[:12]}.npz"
    world_grid(world_dir / TILES_FILE, world.datum, world.size_m, descriptor, 5.0, path, progress)
    return path


def score_trial(estimate_bag: Path, truth_bag: Path) -> dict:
    from cvgl_ros.evaluation.track import load_estimate, load_truth, score

    track = score("fused", load_estimate(estimate_bag), load_truth(truth_bag))
    if track.error_m.size == 0:
        raise InputError(f"no pose of {estimate_bag} falls within the truth's time span")
    t = track.poses.t_s - track.poses.t_s[0]
    error = track.error_m
    below = np.flatnonzero(error < ERROR_M)
    first = float(t[below[0]]) if below.size else math.inf
    stay = (t >= first) & (t < OFFSET_S) if below.size else np.zeros(len(t), bool)
    late = (t >= OFFSET_S - 10.0) & (t < OFFSET_S)
    after = t >= OFFSET_S
    stats = lambda e: {"mean_m": float(np.mean(e)), "max_m": float(np.max(e))} if e.size else {}  # noqa: E731
    return {"first_within_s": first, "recovered": bool(first <= RECOVER_S),
            "within_after_first": float(np.mean(error[stay] < ERROR_M)) if stay.any() else 0.0,
            "first_10s": stats(error[t < RECOVER_S]), "last_10s_of_offset": stats(error[late]),
            "after_offset": stats(error[after]), "series": (t.tolist(), error.tolist())}


def replay_and_score(jobs: dict, model: Path, score, workers: int = 1, desc: str = "replays",
                     progress: bool = True) -> dict:
    """Replay each job {key: (bag, run_dir, tiles, overrides), or None where run_dir/estimate is
    an earlier run's to score again} through the nodes in lockstep into run_dir/estimate (logs
    in run_dir/logs), `workers` at once in spawned processes, then score it: {key: score(key),
    or {"failed": why, one line}}. A failed replay is reported; the others still count."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    from cvgl_ros.datasets.bag import remove_bag
    from cvgl_ros.evaluation.fleet import replay_lockstep

    results = {}
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as pool:
        futures = {}
        for key, job in jobs.items():
            if job is None:
                futures[key] = None
                continue
            bag, run, tiles, overrides = job
            if (run / "estimate").exists():   # this command's own output of an earlier run
                remove_bag(run / "estimate")
            run.mkdir(parents=True, exist_ok=True)
            futures[key] = pool.submit(replay_lockstep, str(bag), str(run / "estimate"), str(tiles), str(model),
                                       str(run / "logs"), overrides)
        for key, future in tqdm(futures.items(), desc=desc, unit="replay", disable=not progress):
            try:
                if future is not None:
                    future.result()
                results[key] = score(key)
            except Exception as exc:  # noqa: BLE001 - a failed replay is reported, the others still count
                results[key] = {"failed": f"{exc.__class__.__name__}: {' '.join(str(exc).split())[:300]}"}
    return results


def run_trials(out_dir, cache_dir, count: int = 10, descriptor=None, model=None, workers: int = 1,
               progress: bool = True, first_seed: int = FIRST_SEED) -> dict:
    """Record (once), replay with and without the grid, score; write the report (module docstring)."""
    from tqdm import tqdm

    from cvgl_ros.atomic import write_json
    from cvgl_ros.evaluation.fleet import check_out_dir, ensure_world, world_by_name
    from cvgl_ros.retrieval.encoders import DescriptorModel
    from cvgl_ros.runtime.card import read_card
    from cvgl_ros.share import default_descriptor_path, default_model_path

    t0 = time.monotonic()
    out_dir, cache_dir = check_out_dir(Path(out_dir)), check_out_dir(Path(cache_dir))
    model = Path(model) if model else default_model_path()
    descriptor_card = descriptor or default_descriptor_path()
    if model is None or descriptor_card is None:
        raise InputError("no pose model or no descriptor model: pass --model and --descriptor")
    desc = DescriptorModel(descriptor_card)
    height, width = (int(v) for v in read_card(model)["image_hw"])
    plan = trials(count, first_seed)
    worlds, grids, bags = {}, {}, {}
    for trial in tqdm(plan, desc="trial drives", unit="drive", disable=not progress):
        if trial.world not in worlds:
            worlds[trial.world] = ensure_world(world_by_name(trial.world), cache_dir)
            grids[trial.world] = ensure_grid(worlds[trial.world], desc, cache_dir, progress=False)
        bags[trial.name] = ensure_trial_bag(trial, worlds[trial.world], cache_dir, (width, height))
    jobs = {(t.name, mode): (bags[t.name], out_dir / "runs" / t.name / mode, worlds[t.world] / "tiles.mbtiles",
                             {"retrieval_index": str(grids[t.world])} if mode == "with_index" else {})
            for t in plan for mode in ("with_index", "without_index")}
    scored = replay_and_score(jobs, model, lambda key: score_trial(out_dir / "runs" / key[0] / key[1] / "estimate",
                                                                   bags[key[0]]), workers, "trial replays", progress)
    results = {t.name: {"trial": asdict(t)} for t in plan}
    for (name, mode), result in scored.items():
        results[name][mode] = result
    report = {"offset_m": OFFSET_M, "offset_s": OFFSET_S, "duration_s": DURATION_S, "recover_s": RECOVER_S,
              "error_m": ERROR_M, "model": str(model), "descriptor": str(descriptor_card),
              "wall_s": time.monotonic() - t0, "trials": results,
              "recovered": {m: sum(bool(r.get(m, {}).get("recovered")) for r in results.values())
                            for m in ("with_index", "without_index")}}
    write_json(out_dir / "relocalization.json", report)
    (out_dir / "relocalization.md").write_text(markdown(report))
    plot_trials(report, out_dir / "relocalization.png")
    print(markdown(report), file=sys.stderr)
    return report


def markdown(report: dict) -> str:
    rows = ["| trial | GNSS | bearing | with index: first < 3 m | error 50-60 s | without: first < 3 m | "
            "error 50-60 s |", "|---|---|---|---|---|---|---|"]
    for name, r in report["trials"].items():
        cells = []
        for mode in ("with_index", "without_index"):
            m = r.get(mode, {})
            if "failed" in m or not m:
                cells += [m.get("failed", "missing")[:40], ""]
                continue
            first = f"{m['first_within_s']:.1f} s" if math.isfinite(m["first_within_s"]) else "never"
            late = m["last_10s_of_offset"]
            cells += [first, f"{late.get('mean_m', math.nan):.1f} / {late.get('max_m', math.nan):.1f} m"]
        rows.append(f"| {name} | {r['trial']['gnss']} | {r['trial']['bearing_deg']:g} deg | " + " | ".join(cells) + " |")
    n = len(report["trials"])
    rows.append(f"\nRecovered (< {report['error_m']:g} m within {report['recover_s']:g} s): with the index "
                f"{report['recovered']['with_index']} of {n}, without {report['recovered']['without_index']} of {n}.")
    return "\n".join(rows) + "\n"


def plot_trials(report: dict, path: Path) -> Path:
    from cvgl_ros.evaluation.figures import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), sharey=True)
    for ax, mode in zip(axes, ("with_index", "without_index")):
        for name, r in report["trials"].items():
            series = r.get(mode, {}).get("series")
            if series:
                ax.semilogy(series[0], np.maximum(series[1], 0.05), lw=1.0, label=name)
        ax.axhline(report["error_m"], color="k", ls="--", lw=0.8)
        ax.axvline(report["recover_s"], color="k", ls=":", lw=0.8)
        ax.axvspan(0, report["offset_s"], color="orange", alpha=0.08)
        ax.set(xlabel="time since the first fused pose, s", title=f"{mode.replace('_', ' ')}: "
               f"{report['recovered'][mode]} of {len(report['trials'])} below {report['error_m']:g} m by "
               f"{report['recover_s']:g} s")
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("fused position error, m")
    axes[1].legend(fontsize=6, loc="upper right")
    fig.suptitle(f"GNSS {report['offset_m']:g} m off for the first {report['offset_s']:g} s (shaded), "
                 "reported sigma unchanged")
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)
