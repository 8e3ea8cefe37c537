"""`cvgl import kitti|robotcar`: real data sets into the bag (and MBTiles) formats of the simulator."""
from __future__ import annotations

from cvgl_ros.cli.args import BAG_NAMES, add_force, claim_out, existing_dir, positive_float, seed

# cvgl_ros.sim.gnss.MODEL_NAMES, spelled out so that `cvgl` does not import scipy to parse its
# arguments (test_import_kitti checks the two agree).
GNSS_PROFILES = ("clean", "open_sky", "urban_canyon", "multipath")


def _jpeg_quality(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"JPEG quality {text} is outside [1, 100]")
    return value


def _print_summary(summary: dict) -> None:
    counts = ", ".join(f"{topic} {count}" for topic, count in sorted(summary["counts"].items()))
    datum = summary["datum"]
    print(f"datum lat={datum['lat_deg']:.9f} lon={datum['lon_deg']:.9f} alt={datum['alt_m']:.3f}")
    print(f"messages: {counts}")


def _kitti(args) -> int:
    from cvgl_ros.datasets.kitti import default_tiles_path, import_kitti

    inputs = [args.raw, args.satmap]
    claim_out(args, "import kitti", "dir", inputs=inputs, names=BAG_NAMES)
    if args.satmap is not None:
        claim_out(args, "import kitti", "file", inputs=inputs, path=args.tiles_out or default_tiles_path(args.out))
    from cvgl_ros.errors import InputError

    if args.gnss_model is None and (args.seed is not None or args.gnss_hz is not None):
        raise InputError("--seed and --gnss-hz set the simulated receiver: give --gnss-model PROFILE too")
    summary = import_kitti(args.raw, args.out, satmap_dir=args.satmap, tiles_out=args.tiles_out,
                           compressed=args.compressed, jpeg_quality=args.jpeg_quality,
                           satmap_mpp_override=args.satmap_mpp, progress=not args.quiet,
                           gnss_model=args.gnss_model, gnss_seed=args.seed or 0,
                           gnss_hz=args.gnss_hz if args.gnss_hz is not None else 5.0)
    print(f"wrote {args.out}: KITTI drive {summary['drive']}, {summary['frames']} frames, {summary['oxts']} OXTS records")
    _print_summary(summary)
    g = summary["gnss_model"]
    if g is None:
        print("/gnss/fix: the OXTS (RTK) record, covariance APPROXIMATED from pos_accuracy")
    else:
        st = g["error_stats"]
        print(f"/gnss/fix: simulated {g['profile']} receiver, seed {g['seed']}, {g['rate_hz']:g} Hz "
              f"({st['n_fixes']} fixes, {100 * st['no_fix_fraction']:.1f}% NO_FIX): error vs OXTS mean "
              f"{st['mean_m']:.2f} m, p95 {st['p95_m']:.2f} m, p99 {st['p99_m']:.2f} m")
    if summary["tiles"]:
        print(f"wrote {summary['tiles']}: {summary['satmap_frames_painted']} satellite images mosaicked at z19 + overviews")
    return 0


def _robotcar(args) -> int:
    import sys

    from cvgl_ros.datasets.robotcar import CAMERA_MODEL, import_robotcar

    claim_out(args, "import robotcar", "dir", inputs=[args.run, args.models], names=BAG_NAMES)

    summary = import_robotcar(args.run, args.out, compressed=args.compressed, jpeg_quality=args.jpeg_quality,
                              models_dir=args.models, progress=not args.quiet, allow_distorted=args.allow_distorted)
    if not summary["undistorted"]:
        print(f"WARNING: the images in {args.out} are DISTORTED (no {CAMERA_MODEL}_distortion_lut.bin): the bag has "
              "no /camera/camera_info, and a pinhole model applied to these images is wrong", file=sys.stderr)
    print(f"wrote {args.out}: RobotCar run {summary['run']}, {summary['frames']} frames "
          f"({summary['missing_images']} listed without a PNG), {summary['gps']} GPS and {summary['ins']} INS rows")
    _print_summary(summary)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("import", help="import KITTI raw or Oxford RobotCar into a bag (and MBTiles)")
    sub = p.add_subparsers(dest="import_command", metavar="IMPORT_COMMAND", required=True)

    kitti = sub.add_parser("kitti", help="KITTI raw drive (+ cross-view benchmark satellite images) -> bag (+ MBTiles)")
    kitti.add_argument("--raw", type=existing_dir, required=True,
                       help="drive folder with image_02/, oxts/ (calib_cam_to_cam.txt in it or beside it)")
    kitti.add_argument("--satmap", type=existing_dir,
                       help="benchmark satellite images: the satmap root or the drive's folder of <frame>.png")
    kitti.add_argument("--tiles-out", help="MBTiles output for --satmap (default: OUT_tiles.mbtiles)")
    kitti.add_argument("--satmap-mpp", type=positive_float,
                       help="override the satellite images' m/px (default: zoom 18 scale 2 at each frame's latitude)")
    kitti.add_argument("--gnss-model", choices=GNSS_PROFILES,
                       help="replace /gnss/fix (by default the RTK OXTS record, nearly the truth) with a simulated "
                            "receiver of this profile on the OXTS trajectory (cvgl_ros/sim/gnss.py); the bag's "
                            "metadata records profile, seed and rate")
    kitti.add_argument("--seed", type=seed, help="seed of the simulated receiver (with --gnss-model; default 0)")
    kitti.add_argument("--gnss-hz", type=positive_float, help="rate of the simulated receiver (default 5)")
    kitti.add_argument("--out", required=True, help="output bag directory")
    add_force(kitti, "metadata.yaml and the .mcap in the bag directory, and the --tiles-out file")
    kitti.add_argument("--compressed", action="store_true", help="JPEG CompressedImage instead of rgb8 Image")
    kitti.add_argument("--jpeg-quality", type=_jpeg_quality, default=90)
    kitti.add_argument("--quiet", action="store_true", help="no progress bars")
    kitti.set_defaults(func=_kitti)

    rc = sub.add_parser("robotcar", help="Oxford RobotCar run (stereo centre, gps.csv, ins.csv) -> bag")
    rc.add_argument("--run", type=existing_dir, required=True,
                    help="run folder with stereo.timestamps, stereo/centre/, gps/gps.csv, gps/ins.csv")
    rc.add_argument("--models", type=existing_dir,
                    help="the SDK's models/ folder (stereo_narrow_left intrinsics and undistortion LUT); "
                         "without it, or without the LUT in it, the import is refused (see --allow-distorted)")
    rc.add_argument("--allow-distorted", action="store_true",
                    help="import without undistortion: the images stay distorted and the bag gets NO "
                         "/camera/camera_info (a pinhole CameraInfo would claim a rectification never done), so "
                         "nodes that need intrinsics will not use the camera; a warning says so")
    rc.add_argument("--out", required=True, help="output bag directory")
    add_force(rc, "metadata.yaml and the .mcap in the bag directory")
    rc.add_argument("--compressed", action="store_true", help="JPEG CompressedImage instead of rgb8 Image")
    rc.add_argument("--jpeg-quality", type=_jpeg_quality, default=90)
    rc.add_argument("--quiet", action="store_true", help="no progress bars")
    rc.set_defaults(func=_robotcar)
