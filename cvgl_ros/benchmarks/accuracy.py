"""The fleet accuracy benchmark (`cvgl bench --only accuracy`): `cvgl_ros.evaluation.fleet`
over the whole fleet (16 drives of 3 min, see docs/accuracy.md; README's benchmark table
says how long it takes), its report in data/fleet/bench/ (fleet.json, fleet.md, fleet.png, per-drive runs),
worlds and drives cached under data/fleet. The cases are the fleet rows per method and each
drive's fused and raw GNSS numbers.
"""
from __future__ import annotations

from pathlib import Path

from cvgl_ros.benchmarks.harness import benchmark

REPO = Path(__file__).resolve().parents[2]
KEYS = ("mean_m", "p50_m", "p95_m", "p99_m", "max_m", "seconds_over_5m", "seconds_over_10m", "yaw_mean_deg",
        "yaw_p99_deg", "divergence_s", "divergence_s_max", "nees_mean", "hpl_coverage")


@benchmark("accuracy", "fleet accuracy: 16 simulated 3-min drives (5 worlds, every GNSS profile incl. multipath) "
                       "replayed through the nodes; fused vs raw GNSS vs GNSS-only PF vs Kalman (only with "
                       "--only accuracy: it takes ~25 min)", by_default=False)
def accuracy_benchmark() -> dict:
    from cvgl_ros.evaluation.fleet import run_fleet

    result = run_fleet(REPO / "data" / "fleet" / "bench", REPO / "data" / "fleet", progress=False)
    cases = {f"fleet_{name}": {k: v for k, v in m.items() if k in KEYS and v is not None}
             for name, m in result["fleet"].items()}
    for d in result["drives"]:
        for name in ("fused", "gnss_raw", "gnss_particle_filter"):
            cases[f"{d['name']}_{name}"] = {k: v for k, v in d["methods"][name].items() if k in KEYS and v is not None}
    cases["acceptance"] = {a["check"]: float(a["passed"]) for a in result["acceptance"]}
    cases["timing"] = dict(result["timing_s"])
    cases["replays"] = {"drives": len(result["drives"]), "failed": len(result.get("failed") or {})}
    return cases
