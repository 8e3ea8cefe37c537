"""Seed 001 Table III on the simulator: the particle filter's error with GNSS only, with the
retrieval scores of the geo-global or the geo-local descriptors, with the dense pose network,
and with both.

"Cross-View Matching for Vehicle Localization by Learning Geographically Local
Representations" (§IV-H) compares, on RobotCar traversals, a particle filter fed by GNSS alone
with one that also weighs its particles by the retrieval scores of Eq. 5 (its descriptors or the
baseline's), and reports the mean error and its 50/90/95/99 % quantiles. Here the same
comparison runs through the nodes, with the pose network (dense) as two more rows:

| configuration | filter.use_cross_view | retrieval_index | retrieval_fusion |
|---|---|---|---|
| `gnss` | false | none | - |
| `retrieval_global` | false | the geo-global grid | always (Eq. 5 on every frame, as §IV-H) |
| `retrieval_local` | false | the geo-local grid | always |
| `dense` | true | none | - |
| `dense_local` | true | the geo-local grid | auto (the shipped setting: the coarse stage and the relocalizer run when the dense patch cannot cover the uncertainty) |

Two groups of drives the descriptors never saw:

* `biased`: the recovery trials' drives (`cvgl_ros.evaluation.relocalization`): GNSS 150 m off
  for the first 60 s, the receiver's sigma unchanged;
* `urban_canyon`: the fleet benchmark's drives of that profile (`cvgl_ros.evaluation.fleet`).

Every pose from the first fused one on is scored; the table pools a group's poses per
configuration and names its worst drive (highest p99). The biased drives' rows also say how
many were below 3 m within 10 s (the trials' acceptance). Writes `table3.json`, `table3.md`
and `table3.png` (the error CDF of each configuration, one panel per group).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from cvgl_ros.errors import InputError
from cvgl_ros.evaluation.relocalization import FIRST_SEED

CONFIGS = ("gnss", "retrieval_global", "retrieval_local", "dense", "dense_local")
GROUPS = ("biased", "urban_canyon")
NAMES = ("table3.json", "table3.md", "table3.png", "runs")
DESCRIPTOR = {"retrieval_global": "global", "retrieval_local": "local", "dense_local": "local"}  # its grid's model


def overrides(config: str, grids: dict[str, Path]) -> dict:
    """The node parameters of one configuration (module docstring); `grids`: descriptor -> grid."""
    if config not in CONFIGS:
        raise InputError(f"configuration {config!r} is not one of {', '.join(CONFIGS)}")
    dense = config.startswith("dense")
    out: dict = {} if dense else {"filter.use_cross_view": False}
    descriptor = DESCRIPTOR.get(config)
    if descriptor is not None:
        out["retrieval_index"] = str(grids[descriptor])
        out["retrieval_fusion"] = "auto" if dense else "always"
    return out


def score_replay(estimate_bag: Path, truth_bag: Path, biased: bool) -> dict:
    """One replay: error statistics from the first fused pose on (and, biased, the recovery)."""
    from cvgl_ros.evaluation.relocalization import score_trial
    from cvgl_ros.evaluation.track import position_error_stats

    scored = score_trial(estimate_bag, truth_bag)
    errors = np.asarray(scored.pop("series")[1], dtype=float)
    out = {"stats": position_error_stats(errors), "errors_m": errors.tolist()}
    if biased:
        first = scored["first_within_s"]   # inf: never below ERROR_M (None in the JSON)
        out |= {"first_within_s": first if np.isfinite(first) else None, "recovered": scored["recovered"]}
    return out


def pool(report_runs: dict, group: str, config: str) -> dict:
    """A group's row of one configuration: pooled statistics, the worst drive, recoveries."""
    from cvgl_ros.evaluation.track import position_error_stats

    runs = {name: r[config] for name, r in report_runs.items() if r["group"] == group and config in r}
    scored = {name: r for name, r in runs.items() if "stats" in r}
    row = {"drives": len(scored), "failed": sorted(set(runs) - set(scored))}
    if not scored:
        return row
    row["stats"] = position_error_stats(np.concatenate([np.asarray(r["errors_m"]) for r in scored.values()]))
    worst = max(scored, key=lambda n: scored[n]["stats"].get("p99_m", np.inf))
    row["worst"] = {"drive": worst, **{k: scored[worst]["stats"][k] for k in ("mean_m", "p99_m", "max_m")}}
    if group == "biased":
        row["recovered"] = sum(bool(r.get("recovered")) for r in scored.values())
    return row


def _drives(trial_count: int, cache_dir: Path, image_wh: tuple[int, int], first_seed: int) -> list[dict]:
    """[{name, group, world, bag}] of both groups, recorded into the cache once (the biased
    drives from seed `first_seed`)."""
    from cvgl_ros.evaluation.fleet import DRIVES, ensure_drive, ensure_world, world_by_name
    from cvgl_ros.evaluation.relocalization import ensure_trial_bag, trials

    worlds: dict[str, Path] = {}

    def world(name: str) -> Path:
        if name not in worlds:
            worlds[name] = ensure_world(world_by_name(name), cache_dir)
        return worlds[name]

    out = [{"name": t.name, "group": "biased", "world": t.world,
            "bag": ensure_trial_bag(t, world(t.world), cache_dir, image_wh)} for t in trials(trial_count, first_seed)]
    out += [{"name": d.name, "group": "urban_canyon", "world": d.world,
             "bag": ensure_drive(d, world(d.world), cache_dir, image_wh)} for d in DRIVES if d.gnss == "urban_canyon"]
    return [d | {"world_dir": worlds[d["world"]]} for d in out]


def run_table(out_dir, cache_dir, local_card=None, global_card=None, model=None, trial_count: int = 10,
              configs=CONFIGS, workers: int = 1, progress: bool = True, reuse: bool = False,
              groups=GROUPS, first_seed: int = FIRST_SEED) -> dict:
    """Record (once), build the grids (once), replay every drive in every configuration, pool.
    `reuse`: a finished estimate bag of an earlier run in `out_dir/runs` is scored, not
    replayed again (the table of configurations run at different times)."""
    from cvgl_ros.atomic import write_json, write_text
    from cvgl_ros.evaluation.fleet import check_out_dir
    from cvgl_ros.evaluation.relocalization import ensure_grid, replay_and_score
    from cvgl_ros.retrieval.encoders import DescriptorModel
    from cvgl_ros.runtime.card import read_card
    from cvgl_ros.share import default_model_path

    t0 = time.monotonic()
    out_dir, cache_dir = check_out_dir(Path(out_dir)), check_out_dir(Path(cache_dir))
    model = Path(model) if model else default_model_path()
    if model is None:
        raise InputError("no pose model: pass --model")
    cards = {"local": local_card, "global": global_card}
    for config in configs:
        if DESCRIPTOR.get(config) and cards[DESCRIPTOR[config]] is None:
            raise InputError(f"configuration {config} needs the geo-{DESCRIPTOR[config]} descriptor card "
                             f"(--{DESCRIPTOR[config]})")
    descriptors = {k: DescriptorModel(cards[k]) for k in sorted({DESCRIPTOR.get(c) for c in configs} - {None})}
    height, width = (int(v) for v in read_card(model)["image_hw"])
    drives = [d for d in _drives(trial_count, cache_dir, (width, height), first_seed) if d["group"] in groups]
    grids = {(w, k): ensure_grid(d["world_dir"], m, cache_dir, progress=False)
             for d in drives for w in [d["world"]] for k, m in descriptors.items()}
    by_name = {d["name"]: d for d in drives}
    jobs = {}
    for d in drives:
        for config in configs:
            run = out_dir / "runs" / d["name"] / config
            jobs[(d["name"], config)] = None if reuse and (run / "estimate" / "metadata.yaml").is_file() else (
                d["bag"], run, d["world_dir"] / "tiles.mbtiles",
                overrides(config, {k: grids[(d["world"], k)] for k in descriptors}))
    scored = replay_and_score(
        jobs, model, lambda key: score_replay(out_dir / "runs" / key[0] / key[1] / "estimate", by_name[key[0]]["bag"],
                                              by_name[key[0]]["group"] == "biased"),
        workers, "Table III replays", progress)
    runs = {d["name"]: {"group": d["group"], "world": d["world"]} for d in drives}
    for (name, config), result in scored.items():
        runs[name][config] = result
    table = {g: {c: pool(runs, g, c) for c in configs} for g in groups}
    report = {"model": str(model), "descriptors": {"local": str(local_card), "global": str(global_card)},
              "configs": list(configs), "table": table, "wall_s": time.monotonic() - t0,
              "runs": {n: {k: ({kk: vv for kk, vv in v.items() if kk != "errors_m"} if isinstance(v, dict) else v)
                           for k, v in r.items()} for n, r in runs.items()}}
    write_json(out_dir / "table3.json", report)
    write_text(out_dir / "table3.md", markdown(report))
    plot_table(runs, configs, out_dir / "table3.png")
    print(markdown(report), file=sys.stderr)
    return report


def markdown(report: dict) -> str:
    from cvgl_ros.evaluation.track import QUANTILES   # (imported here: the CLI imports this module to start)

    head = ("| drives | configuration | mean | " + " | ".join(f"{q} %" for q in QUANTILES)
            + " | max | worst drive: p99 / max | below 3 m within 10 s |")
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for group, by_config in report["table"].items():
        for config, row in by_config.items():
            s = row.get("stats")
            if not s:
                rows.append(f"| {group} | {config} | no replay scored ({', '.join(row['failed'])}) |")
                continue
            worst = row["worst"]
            recovered = f"{row['recovered']} of {row['drives']}" if "recovered" in row else ""
            rows.append(f"| {group} ({row['drives']}) | {config} | {s['mean_m']:.2f} | "
                        + " | ".join(f"{s[f'p{q}_m']:.2f}" for q in QUANTILES)
                        + f" | {s['max_m']:.1f} | {worst['drive']}: {worst['p99_m']:.1f} / {worst['max_m']:.1f} | "
                        + f"{recovered} |")
    return "\n".join(rows) + "\n"


def plot_table(runs: dict, configs, path: Path) -> Path:
    from cvgl_ros.evaluation.figures import pyplot, save_figure

    plt = pyplot()
    groups = [g for g in GROUPS if any(r["group"] == g for r in runs.values())]
    fig, axes = plt.subplots(1, len(groups), figsize=(6 * len(groups), 4.5), squeeze=False)
    for ax, group in zip(axes[0], groups):
        for config in configs:
            errors = [np.asarray(r[config]["errors_m"]) for r in runs.values()
                      if r["group"] == group and "errors_m" in r.get(config, {})]
            if errors:
                e = np.sort(np.concatenate(errors))
                ax.semilogx(np.maximum(e, 0.01), np.arange(1, e.size + 1) / e.size, label=config)
        ax.set(xlabel="fused position error, m", ylabel="share of poses", title=f"{group} drives", ylim=(0, 1))
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle("Particle filter error by configuration (seed 001 Table III)")
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)
