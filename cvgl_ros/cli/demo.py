"""`cvgl demo`: the whole system on the embedded default data and the shipped model.

1. the default world (`cvgl sim world --seed 7 --style urban`), reused when present;
2. a 2-minute `urban_canyon` drive through it (`cvgl sim drive`), reused when present;
3. the drive replayed through the real nodes in lockstep (`cvgl replay`), with the shipped
   model (models/*.onnx) and the world's tiles;
4. `evaluate_track`: the Table-III-style table (seed 001) of fused vs raw GNSS vs the
   GNSS-only filter vs a Kalman filter, and the PNGs (trajectory over the satellite map,
   error against time, CDF), into `demo/`, with `demo/report.md` and the table printed.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from cvgl_ros.cli.args import BAG_NAMES, add_force, claim_out, existing_file, parse_overrides, positive_float, seed

DATA_NAMES = ("world", "drive_*", "estimate_*", "logs")
REPORT_NAMES = ("report.md", "table.md", "metrics.json", "*.png")


def _cvgl(*args: str) -> None:
    """Run a cvgl subcommand in a child process (its progress bars go to the terminal)."""
    cmd = [sys.executable, "-m", "cvgl_ros.cli.main", *args]
    print("$ cvgl " + " ".join(args), file=sys.stderr, flush=True)
    done = subprocess.run(cmd)
    if done.returncode != 0:
        from cvgl_ros.errors import InputError

        raise InputError(f"`cvgl {' '.join(args)}` failed with status {done.returncode}")


def _mean_error(metrics: dict, method: str):
    """Mean position error (m) of one row of evaluate_track's table, None when absent."""
    value = metrics.get("methods", {}).get(method, {}).get("mean_m")
    return None if value is None else float(value)


def run(args) -> int:
    from cvgl_ros import atomic
    from cvgl_ros.errors import InputError
    from cvgl_ros.evaluation.track import evaluate_track
    from cvgl_ros.nodes.cross_view_node import default_model_path
    from cvgl_ros.replay import replay_bag
    from cvgl_ros.runtime.card import read_card

    t_start = time.monotonic()
    data, out = Path(args.data), Path(args.out)
    model = Path(args.model) if args.model else default_model_path()
    if model is None or not model.is_file():
        raise InputError("no model: models/*.onnx is missing (pass --model)")
    card = read_card(model)
    overrides = parse_overrides(args.param)
    claim_out(args, "demo", "dir", inputs=[model], names=DATA_NAMES, path=data, in_place=True)
    claim_out(args, "demo", "dir", inputs=[model, data], names=REPORT_NAMES, in_place=True)
    world = data / "world"
    if not ((world / "world.json").is_file() and (world / "tiles.mbtiles").is_file()):
        _cvgl("sim", "world", "--seed", str(args.world_seed), "--style", "urban", "--size-m", "1000",
              "--out", str(world))
    else:
        print(f"reusing the world {world}", file=sys.stderr)
    height, width = (int(v) for v in card["image_hw"])
    drive = data / f"drive_urban_canyon_seed{args.drive_seed}_{args.duration_s:g}s_{width}x{height}_{args.camera_hz:g}hz"
    if not (drive / "metadata.yaml").is_file():
        _cvgl("sim", "drive", "--world", str(world), "--seed", str(args.drive_seed), "--duration-s",
              f"{args.duration_s:g}", "--gnss", "urban_canyon", "--camera-hz", f"{args.camera_hz:g}",
              "--width", str(width), "--height", str(height), "--out", str(drive))
    else:
        print(f"reusing the drive {drive}", file=sys.stderr)

    estimate = data / f"estimate_{drive.name}"
    print(f"$ cvgl replay --bag {drive} --tiles {world / 'tiles.mbtiles'} --model {model} --out {estimate} --lockstep",
          file=sys.stderr, flush=True)
    claim_out(args, "demo", "dir", inputs=[drive, model], names=BAG_NAMES, path=estimate)
    summary = replay_bag(drive, estimate, tiles=world / "tiles.mbtiles", model=model, lockstep=True,
                         overrides=overrides, log_dir=data / "logs")
    print(f"replay: {summary.frames_processed}/{summary.frames} frames processed, real-time factor "
          f"{summary.real_time_factor:.2f}x", file=sys.stderr)

    out.mkdir(parents=True, exist_ok=True)
    metrics = evaluate_track(estimate, drive, out, tiles=world / "tiles.mbtiles")
    table_file = out / "table.md"
    table = table_file.read_text().strip()
    fused = _mean_error(metrics, "fused")
    raw = _mean_error(metrics, "gnss_raw")
    pngs = sorted(p.name for p in out.glob("*.png"))
    verdict = ("fused mean error {:.2f} m vs raw GNSS {:.2f} m: {}".format(
        fused, raw, "the fusion beats GNSS" if fused < raw else "the fusion does NOT beat GNSS")
        if fused is not None and raw is not None else "fused/raw mean errors not found in the metrics")
    lines = [
        "# cvgl_ros demo", "",
        f"A {args.duration_s:g} s `urban_canyon` drive (seed {args.drive_seed}) through the default urban world "
        f"(seed {args.world_seed}), replayed in lockstep through `cross_view_node` and `particle_filter_node` "
        f"with `{model.name}` (sha256 {str(card.get('sha256', ''))[:12]}...).", "",
        f"**{verdict}.**", "",
        "## Position error (seed 001 Table III style)", "", table, "",
        "## Inputs and fusion", "", *_input_lines(drive, estimate), "",
        "## Replay", "",
        f"- camera frames: {summary.frames}, processed {summary.frames_processed}, skipped {summary.frames_skipped}"
        + (f" ({', '.join(f'{n}x {r}' for r, n in summary.skip_reasons.items())})" if summary.skip_reasons else ""),
        f"- real-time factor (lockstep, this machine): {summary.real_time_factor:.2f}x",
        "- stage latency, mean / p95 ms: " + ", ".join(
            f"{stage} {v.get('mean', float('nan')):.1f} / {v.get('p95', float('nan')):.1f}"
            for stage, v in summary.stage_latency_ms.items()),
        f"- total demo time: {time.monotonic() - t_start:.0f} s", "",
        "## Figures", "", *[f"![{p}]({p})" for p in pngs], "",
    ]
    atomic.write_text(out / "report.md", "\n".join(lines))
    print(table)
    print(f"\n{verdict}\nwrote {out / 'report.md'} ({', '.join(pngs)})")
    return 0


INPUT_TOPICS = {"/camera/image_raw": "camera", "/camera/image_raw/compressed": "camera (compressed)",
                "/gnss/fix": "GNSS", "/imu/data": "IMU", "/odom/wheel": "wheel odometry"}
FUSION_COUNTERS = ("gnss_accepted", "gnss_rejected", "gnss_gate_rejected", "integrity_relocks", "relocks", "reseeds",
                   "predictions_with_imu", "predictions_with_wheel_speed", "predictions_motion_gap")


def _input_lines(drive: Path, estimate: Path) -> list[str]:
    """The drive's sensor topics (rates) and the filter's last counters: what was fused."""
    from cvgl_ros.datasets.bag import bag_topics, read_messages
    from cvgl_ros.nodes.diagnostics import diagnostic_values

    topics = bag_topics(drive)
    duration = max(float(yaml_duration(drive)), 1e-9)
    lines = []
    for topic, what in INPUT_TOPICS.items():
        if topic in topics:
            lines.append(f"- {what} `{topic}`: {topics[topic][1]} messages ({topics[topic][1] / duration:.0f} Hz)")
    missing = [what for topic, what in INPUT_TOPICS.items() if topic not in topics and "camera" not in what]
    if missing:
        lines.append(f"- not in the drive: {', '.join(missing)} (the filter falls back to its constant-velocity model)")
    last = None
    for _, _, _, msg in read_messages(estimate, ["/diagnostics"]):
        values = diagnostic_values(msg, "particle_filter_node")
        last = values or last
    if last:
        lines.append("- particle filter: " + ", ".join(f"{k.replace('_', ' ')} {last.get('filter_' + k, '?')}"
                                                       for k in FUSION_COUNTERS))
    return lines


def yaml_duration(bag: Path) -> float:
    """The bag's duration from its metadata.yaml, in seconds."""
    import yaml

    info = (yaml.safe_load((bag / "metadata.yaml").read_text()) or {}).get("rosbag2_bagfile_information", {})
    return float(info.get("duration", {}).get("nanoseconds", 0)) * 1e-9


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="generate the default world and a drive, replay it through the nodes, report")
    p.add_argument("--data", default="data/demo", help="where the world, the drive and the estimate bag go")
    p.add_argument("--out", default="demo", help="report directory (report.md, table, PNGs)")
    p.add_argument("--model", type=existing_file, help="exported model .onnx (default: the shipped models/*.onnx)")
    p.add_argument("--world-seed", type=seed, default=7)
    p.add_argument("--drive-seed", type=seed, default=1)
    p.add_argument("--duration-s", type=positive_float, default=120.0)
    p.add_argument("--camera-hz", type=positive_float, default=5.0,
                   help="camera rate of the drive (5 Hz keeps the demo within 10 min on 2 cores)")
    p.add_argument("-p", "--param", action="append", metavar="NAME:=VALUE", help="override one node parameter")
    add_force(p, "report.md, table.md, metrics.json and the PNGs in --out, and world/, drive_*/, estimate_*/ "
                 "and logs/ in --data")
    p.set_defaults(func=run)
