"""`cvgl sim drive`: a simulated drive through a generated world, recorded as a bag.

`cvgl_ros.cli.sim` creates the `sim` group and calls `register(sim_subparsers)` here.
"""
from __future__ import annotations

import argparse

from cvgl_ros.cli.args import (BAG_NAMES, add_force, claim_out, existing_path, finite_float, positive_float,
                               positive_int, seed)

# The longest drive one command records: an hour is ~36 000 camera frames at 10 Hz (about an hour
# of rendering on one core); longer recordings are several drives.
MAX_DURATION_S = 3600.0


def _duration(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (value > 0 and value < float("inf")):
        raise argparse.ArgumentTypeError(f"duration {text} s must be a positive number")
    if value > MAX_DURATION_S:
        raise argparse.ArgumentTypeError(f"duration {text} s is longer than {MAX_DURATION_S:g} s (one hour): "
                                         "record a long drive as several shorter ones")
    return value


def _gnss_offset(text: str):
    """DISTANCE_M,BEARING_DEG[,START_S,END_S] -> GnssOffset."""
    from cvgl_ros.errors import InputError
    from cvgl_ros.sim.gnss import GnssOffset

    parts = text.split(",")
    try:
        if len(parts) not in (2, 4):
            raise ValueError
        return GnssOffset(*(float(p) for p in parts))
    except (ValueError, InputError) as exc:
        raise argparse.ArgumentTypeError(f"--gnss-offset {text!r}: DISTANCE_M,BEARING_DEG[,START_S,END_S] with a "
                                         f"distance >= 0 and END_S > START_S{f' ({exc})' if str(exc) else ''}") from None


def _drive(args) -> int:
    from cvgl_ros.sim.drive import SensorMounting, record_drive

    mounting = SensorMounting(args.camera_x_m, args.camera_y_m, args.camera_z_m, args.camera_pitch_deg,
                              args.antenna_x_m, args.antenna_y_m)
    claim_out(args, "sim drive", "dir", inputs=[args.world], names=BAG_NAMES)
    result = record_drive(args.world, args.out, seed=args.seed, duration_s=args.duration_s, gnss=args.gnss,
                          camera_hz=args.camera_hz, gnss_hz=args.gnss_hz, compressed=args.compressed,
                          width=args.width, height=args.height, progress=not args.quiet, turn_rich=args.turn_rich,
                          motion_sensors=not args.no_motion_sensors, mounting=mounting,
                          gnss_offset=args.gnss_offset)
    truth = result.trajectory
    stats = result.gnss_error_stats()
    counts = ", ".join(f"{topic} {n}" for topic, n in sorted(result.counts.items()))
    print(f"wrote {result.out_bag}: {truth.duration_s:g} s, {truth.distance_m[-1]:.0f} m driven, "
          f"{result.camera_frames} camera frames {result.image_size[0]}x{result.image_size[1]}")
    print(f"messages: {counts}")
    if not mounting.at_origin:
        print(f"mounting (replay with these node parameters): {result.mounting_parameters}")
    print(f"raw GNSS error ({args.gnss}, {stats['n_fixes']} fixes, {100 * stats['no_fix_fraction']:.1f}% NO_FIX): "
          f"mean {stats['mean_m']:.2f} m, p95 {stats['p95_m']:.2f} m, p99 {stats['p99_m']:.2f} m")
    if result.imu is not None:
        import math

        import numpy as np

        yaw_err = result.imu.yaw_rate_radps - result.imu.true_gyro_radps[:, 2]
        print(f"motion sensors: IMU {len(result.imu)} samples (yaw-rate error mean {math.degrees(yaw_err.mean()):+.3f} "
              f"deg/s, std {math.degrees(yaw_err.std()):.3f} deg/s), wheel odometry {len(result.odometry)} samples "
              f"(scale factor {result.odometry.scale_factor:.4f}, "
              f"{np.mean(result.odometry.speed_mps == 0) * 100:.0f}% at zero speed)")
    return 0


def register(sim_subparsers) -> None:
    p = sim_subparsers.add_parser("drive", help="drive through a world: camera, GNSS, IMU, wheel odometry and "
                                                          "ground truth into a bag")
    p.add_argument("--world", type=existing_path, required=True, help="world directory (from `cvgl sim world`)")
    p.add_argument("--seed", type=seed, default=0, help="route, speed profile and GNSS noise seed")
    p.add_argument("--duration-s", type=_duration, default=300.0,
                   help=f"simulated seconds (at most {MAX_DURATION_S:g}; a progress bar shows the frames rendered)")
    p.add_argument("--gnss", choices=("clean", "open_sky", "urban_canyon", "multipath"), default="urban_canyon",
                   help="GNSS error model (see cvgl_ros/sim/gnss.py)")
    p.add_argument("--gnss-offset", type=_gnss_offset, metavar="M,DEG[,T0,T1]",
                   help="a fault on top of --gnss: the fixes of [T0, T1) s (default: all) moved by M metres along "
                        "the bearing DEG (ENU, counter-clockwise from east), the reported sigma unchanged")
    p.add_argument("--turn-rich", action="store_true",
                   help="a route that turns at (almost) every intersection, U-turns included (the fleet's)")
    p.add_argument("--camera-hz", type=positive_float, default=10.0)
    p.add_argument("--gnss-hz", type=positive_float, default=5.0)
    p.add_argument("--width", type=positive_int, help="camera width in px (default: the renderer's training size)")
    p.add_argument("--height", type=positive_int, help="camera height in px")
    p.add_argument("--compressed", action="store_true", help="JPEG on /camera/image_raw/compressed instead of rgb8")
    p.add_argument("--no-motion-sensors", action="store_true",
                   help="leave out /imu/data (100 Hz) and /odom/wheel (50 Hz): camera, GNSS and truth only "
                        "(their error models: cvgl_ros/sim/motion_sensors.py)")
    mount = p.add_argument_group("sensor mounting in base_link (REP-103: x forward, y left; default: at the origin)")
    for name, what in (("camera-x-m", "camera ahead of base_link, m"), ("camera-y-m", "camera to the left, m"),
                       ("antenna-x-m", "GNSS antenna ahead of base_link, m"),
                       ("antenna-y-m", "GNSS antenna to the left, m"),
                       ("camera-pitch-deg", "camera pitch, > 0 looks down, deg (at most 30)")):
        mount.add_argument(f"--{name}", type=finite_float, default=0.0, help=what)
    mount.add_argument("--camera-z-m", type=positive_float, help="camera height above the ground, m (default KITTI's 1.65)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, help="output bag directory")
    add_force(p, "metadata.yaml and the .mcap in BAG")
    p.set_defaults(func=_drive)
