"""`cvgl evaluate-fleet`: the fleet accuracy benchmark (`cvgl_ros.evaluation.fleet`).

    cvgl evaluate-fleet --out DIR [--cache data/fleet] [--model M] [--quick | --drives NAME ...] [--no-motion-sensors]
                       [--workers N]
"""
from __future__ import annotations

from cvgl_ros.cli.args import add_force, claim_out, existing_path, positive_int

FLEET_NAMES = ("fleet.json", "fleet.md", "fleet.png", "runs")


def _evaluate_fleet(args) -> int:
    from cvgl_ros.evaluation.fleet import run_fleet

    claim_out(args, "evaluate-fleet", "dir", inputs=[args.model, args.cache, args.retrieval], names=FLEET_NAMES,
              in_place=True)
    result = run_fleet(args.out, args.cache, model=args.model, quick=args.quick, drive_names=args.drives,
                       motion_sensors=not args.no_motion_sensors, workers=args.workers, progress=not args.quiet,
                       descriptor=args.retrieval)
    f, r = result["fleet"]["fused"], result["fleet"]["gnss_raw"]
    print(f"fleet of {len(result['drives'])} drives: fused mean {f['mean_m']:.2f} m, p99 {f['p99_m']:.2f} m, "
          f"max {f['max_m']:.1f} m; raw GNSS mean {r['mean_m']:.2f} m, p99 {r['p99_m']:.2f} m, max {r['max_m']:.1f} m")
    for check in result["acceptance"]:
        print(f"  [{'x' if check['passed'] else ' '}] {check['check']}: {check['detail']}")
    print(f"wrote {args.out}/fleet.json, fleet.md, fleet.png ({result['timing_s']['total']:.0f} s)")
    return 1 if result.get("failed") else 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate-fleet", help="fleet accuracy benchmark: 16 simulated drives through the nodes, scored",
        description="Generate the fleet's worlds and drives once (into --cache), replay each drive in lockstep "
                    "through cross_view_node and particle_filter_node with the shipped model, and score it "
                    "against the truth next to raw GNSS, the GNSS-only particle filter and a Kalman filter: "
                    "fleet.json, fleet.md and fleet.png in DIR (see docs/accuracy.md).")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (report, per-drive runs)")
    p.add_argument("--cache", default="data/fleet", metavar="DIR",
                   help="where the generated worlds and drives are kept and reused (default data/fleet)")
    p.add_argument("--model", help="exported model .onnx (default: the shipped models/*.onnx)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--quick", action="store_true", help="three drives only (one of them multipath)")
    which.add_argument("--drives", nargs="+", metavar="NAME",
                       help="only these drives of the fleet (names as in fleet.md), e.g. to try a change on the worst")
    p.add_argument("--no-motion-sensors", action="store_true",
                   help="replay without /imu/data and /odom/wheel (camera and GNSS only)")
    p.add_argument("--retrieval", metavar="CARD", type=existing_path,
                   help="with the coarse stage: each world's descriptor grid (built once into --cache) for this "
                        "descriptor model, as the cross-view node's retrieval_index")
    p.add_argument("--workers", type=positive_int, default=1,
                   help="replays at once, each in its own process and ROS domain (1 on 2 cores)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_force(p, "fleet.json, fleet.md, fleet.png and runs/ in DIR")
    p.set_defaults(func=_evaluate_fleet)
