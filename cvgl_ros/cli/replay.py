"""`cvgl replay`: play a bag through the real nodes with /clock and record their outputs."""
from __future__ import annotations

import json
import sys

from cvgl_ros.cli.args import (BAG_NAMES, add_force, claim_out, existing_path, non_negative_int, parse_overrides,
                               positive_float, positive_int)


def run(args) -> int:
    from cvgl_ros.replay import replay_bag

    inputs = [args.bag, args.tiles, args.model, args.params]
    claim_out(args, "replay", "dir", inputs=inputs, names=BAG_NAMES)
    if args.summary:
        claim_out(args, "replay", "file", inputs=inputs + [args.out], path=args.summary)
    overrides = parse_overrides(args.param)
    if args.in_flight > 1 and not args.lockstep:
        print("cvgl replay: error: --in-flight needs --lockstep", file=sys.stderr)
        return 2
    summary = replay_bag(args.bag, args.out, tiles=args.tiles, model=args.model, rate=args.rate,
                         lockstep=args.lockstep, params_file=args.params, overrides=overrides, log_dir=args.log_dir,
                         frames_in_flight=args.in_flight, domain_id=args.domain_id)
    s = summary
    print(f"replayed {s.frames} camera frames ({s.bag_duration_s:.1f} s of bag) in {s.wall_s:.1f} s: "
          f"real-time factor {s.real_time_factor:.2f}x; processed {s.frames_processed}, skipped {s.frames_skipped}, "
          f"/cvgl/pose {s.poses}; wrote {s.out_bag}", file=sys.stderr)
    print(f"  on {s.isolation}", file=sys.stderr)
    for reason, count in s.skip_reasons.items():
        print(f"  skipped {count}x: {reason}", file=sys.stderr)
    if s.frames_resent:
        print(f"  {s.frames_resent} camera frames were lost on the way and published again", file=sys.stderr)
    if s.lockstep_timeouts:
        print(f"  {s.lockstep_timeouts} lockstep waits timed out", file=sys.stderr)
    if args.summary:
        from cvgl_ros import atomic

        atomic.write_json(args.summary, s.to_dict())
    else:
        print(json.dumps(s.to_dict()["stage_latency_ms"]))
    bad = {exe: code for exe, code in s.node_exit_codes.items() if code not in (0, -2)}
    if bad:
        print(f"cvgl replay: node(s) exited badly: {bad}", file=sys.stderr)
        return 1
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("replay", help="play a bag (with /clock) through the nodes, record /cvgl/* into a bag")
    p.add_argument("--bag", required=True, type=existing_path, help="input rosbag2 (a recorded or simulated drive)")
    p.add_argument("--tiles", type=existing_path, help="satellite tile cache (MBTiles or XYZ directory)")
    p.add_argument("--model", type=existing_path, help="exported model .onnx (default: the shipped models/*.onnx)")
    p.add_argument("--out", required=True, help="output rosbag2 with every /cvgl/* topic and /diagnostics")
    add_force(p, "metadata.yaml and the .mcap in OUTBAG, and the --summary file")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--rate", type=positive_float, default=1.0, help="playback speed x real time (default 1.0)")
    mode.add_argument("--lockstep", action="store_true",
                      help="wait for each camera frame's result before the next message (reproducible)")
    p.add_argument("--in-flight", type=positive_int, default=1, metavar="N",
                   help="with --lockstep: keep up to N camera frames in the nodes at once (N inference workers of "
                        "one ONNX Runtime thread each): more throughput (2 on 2 cores: ~1.4x), no longer "
                        "bit-reproducible")
    p.add_argument("--params", help="ROS 2 parameter file (default: config/cvgl.yaml)")
    p.add_argument("-p", "--param", action="append", metavar="NAME:=VALUE", help="override one node parameter")
    p.add_argument("--log-dir", help="keep the nodes' logs here (default: a temporary directory)")
    p.add_argument("--domain-id", type=non_negative_int, metavar="ID",
                   help="ROS domain for the nodes and the player (default: a free one of 215-232, then 101-1, "
                        "held by a lock file for the run); discovery is localhost only either way")
    p.add_argument("--summary", metavar="FILE.json", help="write the replay summary (RTF, latencies) as JSON")
    p.set_defaults(func=run)
