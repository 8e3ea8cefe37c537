"""`cvgl sim`: the simulator: synthetic worlds, previews, training pairs (and drives).

    cvgl sim world   --seed S --style {urban,suburban,rural} --size-m 1000 [--origin LAT,LON] --out DIR
    cvgl sim preview --world DIR --at X,Y,YAW_DEG --out PNG
    cvgl sim pairs   --worlds DIR [DIR ...] --n 20000 --out DS
    cvgl sim drive   ...   (cvgl_ros/cli/sim_drive.py)
"""
from __future__ import annotations

import argparse
import math
import sys
import time

from cvgl_ros.cli.args import (add_force, claim_out, existing_dir, float_list, lat_lon_alt, non_negative_int,
                               positive_float, positive_int, seed)

WORLD_NAMES = ("world.json", "tiles.mbtiles")
PAIRS_NAMES = ("index.json", "shards")


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"{text} must be in [0, 1)")
    return value


def _size_wh(text: str) -> tuple[int, int]:
    """'WxH' pixels."""
    parts = text.lower().split("x")
    try:
        w, h = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT in pixels") from None
    if w < 8 or h < 8 or w > 8192 or h > 8192:
        raise argparse.ArgumentTypeError(f"image size {text} must be between 8x8 and 8192x8192")
    return w, h


def _world(args) -> int:
    from cvgl_ros.sim.world import World

    claim_out(args, "sim world", "dir", names=WORLD_NAMES)
    t0 = time.perf_counter()
    origin = None if args.origin is None else args.origin[:2]
    world = World.generate(args.seed, args.style, args.size_m, origin_lat_lon=origin, tile_format=args.tile_format)
    t_gen = time.perf_counter() - t0
    world.save(args.out, progress=not args.quiet)
    t_all = time.perf_counter() - t0
    print(f"wrote {args.out}: {args.style} world seed {args.seed}, {args.size_m:g} m at "
          f"{world.datum.lat_deg:.6f},{world.datum.lon_deg:.6f}; {len(world.roads.edges)} streets "
          f"({world.roads.total_length_m() / 1000:.1f} km), {len(world.layout.buildings)} buildings, "
          f"{len(world.layout.trees)} trees; tiles z{world.tile_zoom - 5}-z{world.tile_zoom} "
          f"({world.tile_mpp:.3f} m/px at z{world.tile_zoom}); {t_gen:.1f} s layout, {t_all:.1f} s total")
    return 0


def _preview(args) -> int:
    from cvgl_ros.sim.preview import render_preview
    from cvgl_ros.sim.world import World

    claim_out(args, "sim preview", "file", inputs=[args.world])
    world = World.load(args.world)
    east, north, yaw_deg = args.at
    out = render_preview(world, east, north, math.radians(yaw_deg), args.out, width=args.size[0],
                         height=args.size[1], appearance_seed=args.appearance)
    print(f"wrote {out}")
    return 0


def _pairs(args) -> int:
    from cvgl_ros.sim.pairs import PairConfig, generate_pairs

    claim_out(args, "sim pairs", "dir", inputs=args.worlds, names=PAIRS_NAMES)
    config = PairConfig(
        ground_width=args.ground_size[0], ground_height=args.ground_size[1], satellite_px=args.sat_px,
        satellite_mpp=args.sat_mpp, max_shift_m=args.max_shift_m, max_yaw_prior_deg=args.max_yaw_deg,
        yaw_prior=args.yaw_prior, frames_per_drive=args.frames_per_drive, same_area_fraction=args.same_area_frac,
        cross_area_fraction=args.cross_area_frac, val_fraction=args.val_frac, cross_area_worlds=args.cross_area_worlds,
        seed=args.seed,
    )
    summary = generate_pairs(args.worlds, args.n, args.out, config, workers=args.workers, progress=not args.quiet)
    counts = ", ".join(f"{k} {v}" for k, v in summary["counts"].items())
    print(f"wrote {args.out}: {summary['total']} pairs ({counts}) from {len(summary['worlds'])} worlds; "
          f"cross-area worlds: {', '.join(summary['cross_area_worlds']) or 'none'}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("sim", help="simulator: synthetic worlds, drives, training pairs, previews")
    sub = p.add_subparsers(dest="sim_command", metavar="SIM_COMMAND", required=True)

    w = sub.add_parser("world", help="generate a procedural world: orthophoto MBTiles + world.json")
    w.add_argument("--seed", type=seed, required=True)
    w.add_argument("--style", choices=("urban", "suburban", "rural"), default="urban")
    w.add_argument("--size-m", type=positive_float, default=1000.0, help="side of the square world (200-5000 m)")
    w.add_argument("--origin", type=lat_lon_alt, metavar="LAT,LON", help="datum at the world centre "
                   "(default: Karlsruhe 49.0069,8.4037)")
    w.add_argument("--tile-format", choices=("png", "jpg"), default="png", help="tile image format")
    w.add_argument("--quiet", action="store_true", help="no progress bar")
    w.add_argument("--out", required=True, help="output world directory")
    add_force(w, "world.json and tiles.mbtiles in DIR")
    w.set_defaults(func=_world)

    v = sub.add_parser("preview", help="ground frame beside the satellite patch at a pose (PNG)")
    v.add_argument("--world", type=existing_dir, required=True, help="world directory")
    v.add_argument("--at", type=float_list(3), required=True, metavar="X,Y,YAW_DEG",
                   help="ENU east and north (m) and yaw (deg, counter-clockwise from east)")
    v.add_argument("--size", type=_size_wh, default=(1024, 256), metavar="WxH", help="ground image size")
    v.add_argument("--appearance", type=seed, default=0, help="appearance seed (sun, season, cars)")
    v.add_argument("--out", required=True, help="output PNG")
    add_force(v, "the PNG at --out")
    v.set_defaults(func=_preview)

    r = sub.add_parser("pairs", help="cross-view training pairs (KITTI protocol) from worlds")
    r.add_argument("--worlds", nargs="+", type=existing_dir, required=True, metavar="DIR", help="world directories")
    r.add_argument("--n", type=positive_int, default=20000, help="number of pairs in all splits")
    r.add_argument("--ground-size", type=_size_wh, default=(512, 128), metavar="WxH")
    r.add_argument("--sat-px", type=positive_int, default=256, help="satellite patch side (px)")
    r.add_argument("--sat-mpp", type=positive_float, default=0.2, help="satellite patch resolution (m/px)")
    r.add_argument("--max-shift-m", type=positive_float, default=20.0,
                   help="patch centre offset, uniform in +-this laterally and longitudinally")
    r.add_argument("--max-yaw-deg", type=positive_float, default=10.0, help="yaw prior error, uniform in +-this")
    r.add_argument("--yaw-prior", choices=("perturbed", "unknown"), default="perturbed")
    r.add_argument("--frames-per-drive", type=positive_int, default=100)
    r.add_argument("--same-area-frac", type=_fraction, default=0.15, help="share of pairs from held-out drives")
    r.add_argument("--cross-area-frac", type=_fraction, default=0.15, help="share of pairs from held-out worlds")
    r.add_argument("--val-frac", type=_fraction, default=0.0, help="share of pairs for a validation split")
    r.add_argument("--cross-area-worlds", type=non_negative_int, default=None, metavar="K",
                   help="how many of the worlds (the last K) are held out (default: 1 in 5, at least 1 of 2+)")
    r.add_argument("--seed", type=seed, default=0)
    r.add_argument("--workers", type=positive_int, default=2)
    r.add_argument("--quiet", action="store_true")
    r.add_argument("--out", required=True, help="output data set directory")
    add_force(r, "index.json and shards/ in DS")
    r.set_defaults(func=_pairs)

    from cvgl_ros.cli import sim_drive

    sim_drive.register(sub)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use `cvgl sim`")
