"""`cvgl train-retrieval` and `cvgl retrieval index`: the geo-local descriptors of seed 001.

    cvgl train-retrieval --data DS --out runs/desc [--global] [--config YAML] [--epochs N] [--resume]
    cvgl retrieval index --tiles C --model runs/desc/descriptor.json --bbox W,S,E,N --spacing 5 --out grid.npz
    cvgl retrieval index --tiles C --model runs/desc --bag B [--radius-m 60] --out grid.npz
"""
from __future__ import annotations

from cvgl_ros.cli.args import (add_force, claim_out, existing_dir, existing_file, existing_path, float_list,
                               lat_lon_alt, non_negative_float, positive_float, positive_int)


def _train(args) -> int:
    import shlex
    import sys

    from cvgl_ros.train.retrieval import RUN_NAMES, run_retrieval_training

    claim_out(args, "train-retrieval", "dir", inputs=[args.data, args.config], names=RUN_NAMES, in_place=True)
    command = shlex.join(["cvgl", *sys.argv[1:]]) if sys.argv and sys.argv[0].endswith("cvgl") else None
    result = run_retrieval_training(args.data, args.config, args.out, resume=args.resume,
                                    local=False if args.global_baseline else None, epochs=args.epochs,
                                    max_pairs=args.max_pairs, progress=not args.quiet, command=command)
    card = result["card"]
    print(f"wrote {args.out}: last.pt, history.json, curves.png, descriptor.json and the two encoders "
          f"(parity {max(card['parity'][b]['max_abs_diff'] for b in ('ground', 'satellite')):.1e})", file=sys.stderr)
    return 0


def _region(args, datum_arg):
    """(datum, grid points, region description) from --bbox or --bag."""
    import numpy as np

    from cvgl_ros.geo.datum import Datum
    from cvgl_ros.retrieval.index import grid_in_bbox, grid_near

    if args.bbox is not None:
        west, south, east, north = args.bbox
        datum = Datum(*datum_arg) if datum_arg else Datum((south + north) / 2, (west + east) / 2, 0.0)
        return datum, grid_in_bbox(datum, west, south, east, north, args.spacing), {"bbox_wsen": list(args.bbox)}
    from cvgl_ros.tiles.prefetch import positions_from_bag

    lat, lon = positions_from_bag(args.bag)
    datum = Datum(*datum_arg) if datum_arg else Datum(float(lat[0]), float(lon[0]), 0.0)
    points = grid_near(datum, np.asarray(lat), np.asarray(lon), args.radius_m, args.spacing)
    return datum, points, {"bag": str(args.bag), "radius_m": args.radius_m, "fixes": int(len(lat))}


def _index(args) -> int:
    import sys

    from cvgl_ros.errors import InputError
    from cvgl_ros.retrieval.encoders import DescriptorModel
    from cvgl_ros.retrieval.index import build_index

    if not str(args.out).endswith(".npz"):
        raise InputError(f"--out {args.out} must name a .npz file")
    claim_out(args, "retrieval index", "file", inputs=[args.tiles, args.model, args.bag])
    model = DescriptorModel(args.model, intra_op_threads=args.threads)
    datum, points, region = _region(args, args.datum)
    grid = build_index(args.tiles, model, points, datum, args.spacing, dtype=args.dtype, region=region,
                       progress=not args.quiet)
    grid.save(args.out)
    m = grid.meta
    print(f"wrote {args.out}: {len(grid)} cells of {args.spacing:g} m ({m['skipped_cells']} without a complete "
          f"patch left out), {grid.descriptor_dim}-D {args.dtype}, {m['build_s']:.1f} s", file=sys.stderr)
    return 0


def register(subparsers) -> None:
    t = subparsers.add_parser("train-retrieval", help="train the geo-local descriptor network (seed 001) and export "
                                                      "its two encoders")
    t.add_argument("--data", type=existing_dir, required=True, metavar="DS",
                   help="pair data set (cvgl sim pairs; --max-shift-m 3.5 keeps every pair within 5 m)")
    t.add_argument("--config", type=existing_file, default=None, metavar="YAML",
                   help="model: and train: settings (defaults in code: cvgl_ros/train/retrieval.py)")
    t.add_argument("--out", required=True, metavar="runs/NAME", help="run directory")
    t.add_argument("--global", dest="global_baseline", action="store_true",
                   help="the geo-global baseline: random mini-batches, all weights 1 (default: geo-local)")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    t.add_argument("--epochs", type=positive_int, help="total epochs (overrides the config)")
    t.add_argument("--max-pairs", type=positive_int, help="use only the first N training pairs")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    add_force(t, "config.json, checkpoint_epochNNN.pt, last.pt, history.json, curves.png, descriptor.json, the "
                 "two .onnx encoders and finished in the run directory")
    t.set_defaults(func=_train)

    p = subparsers.add_parser("retrieval", help="geo-local retrieval (seed 001): the satellite descriptor grid")
    sub = p.add_subparsers(dest="retrieval_command", metavar="COMMAND", required=True)
    i = sub.add_parser("index", help="encode satellite patches on a metric grid from the tile cache -> .npz")
    i.add_argument("--tiles", type=existing_path, required=True, metavar="C", help=".mbtiles file or XYZ directory")
    i.add_argument("--model", type=existing_path, required=True, metavar="M",
                   help="descriptor card (descriptor.json) or the run directory holding it")
    where = i.add_mutually_exclusive_group(required=True)
    where.add_argument("--bbox", type=float_list(4), metavar="W,S,E,N", help="WGS84 box (degrees)")
    where.add_argument("--bag", type=existing_path, metavar="B", help="rosbag2 whose NavSatFix positions the grid "
                                                                      "follows")
    i.add_argument("--radius-m", type=non_negative_float, default=60.0,
                   help="with --bag: cells within this distance of a fix (default 60 m)")
    i.add_argument("--datum", type=lat_lon_alt, metavar="LAT,LON[,ALT]",
                   help="map frame datum (default: the box centre, or the bag's first fix)")
    i.add_argument("--spacing", type=positive_float, default=5.0, help="grid spacing, m (paper: 5 m)")
    i.add_argument("--dtype", choices=("float16", "float32"), default="float16", help="stored descriptors")
    i.add_argument("--threads", type=positive_int, default=2, help="ONNX Runtime threads")
    i.add_argument("--out", required=True, metavar="DB.npz", help="descriptor grid file")
    i.add_argument("--quiet", action="store_true", help="no progress bar")
    add_force(i, "the file at --out")
    i.set_defaults(func=_index)
