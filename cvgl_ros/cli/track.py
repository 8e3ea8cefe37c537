"""`cvgl evaluate-track`: score a localization run against ground truth (Table III style)."""
from __future__ import annotations

from cvgl_ros.cli.args import add_force, claim_out, existing_dir, existing_path, positive_int, seed

TRACK_NAMES = ("metrics.json", "table.md", "*.png")


def _evaluate_track(args) -> int:
    from cvgl_ros.evaluation.track import evaluate_track

    claim_out(args, "evaluate-track", "dir", inputs=[args.estimate, args.truth, args.tiles], names=TRACK_NAMES,
              in_place=True)
    metrics = evaluate_track(args.estimate, args.truth, args.out, tiles=args.tiles, seed=args.seed,
                             num_particles=args.particles)
    for name, m in metrics["methods"].items():
        if m.get("n", 0):
            print(f"{m['label']:<38} mean {m['mean_m']:6.2f} m  p50 {m['p50_m']:6.2f}  p90 {m['p90_m']:6.2f}  "
                  f"p95 {m['p95_m']:6.2f}  p99 {m['p99_m']:6.2f}  (n={m['n']})")
    c = metrics["checks"]
    print(f"estimate and truth: datum {c['datum']}, source {c['source']}, "
          f"{100 * c['poses_within_truth_span']:.0f} % of the poses within the truth's time span")
    print(f"wrote {args.out}/metrics.json, table.md, {', '.join(metrics['pngs'])}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate-track",
        help="position/yaw errors of a fused run vs ground truth, raw GNSS, GNSS-only filter, Kalman",
        description="Score /cvgl/pose of OUTBAG against /ground_truth/pose of BAG, next to the raw /gnss/fix, "
                    "the GNSS-only particle filter and a constant-velocity Kalman filter run on it: mean and "
                    "50/90/95/99 %% errors, lateral/longitudinal, yaw; metrics.json, table.md and PNGs in DIR.",
    )
    p.add_argument("--estimate", type=existing_dir, required=True, metavar="OUTBAG",
                   help="bag with /cvgl/pose (PoseWithCovarianceStamped, frame map)")
    p.add_argument("--truth", type=existing_dir, required=True, metavar="BAG",
                   help="recording with /ground_truth/pose, /gnss/fix and its map datum")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--tiles", type=existing_path, default=None, metavar="C",
                   help="tile cache (MBTiles or XYZ directory) to draw the trajectories over")
    p.add_argument("--seed", type=seed, default=0, help="seed of the GNSS-only particle filter")
    p.add_argument("--particles", type=positive_int, default=2000, help="particles of the GNSS-only filter")
    add_force(p, "metrics.json, table.md and the PNGs in DIR")
    p.set_defaults(func=_evaluate_track)
