"""`cvgl train-retrieval` and `cvgl retrieval index`: the geo-local descriptors of seed 001.

    cvgl train-retrieval --data DS --out runs/desc [--global] [--config YAML] [--epochs N] [--resume]
    cvgl retrieval index --tiles C --model runs/desc/descriptor.json --bbox W,S,E,N --spacing 5 --out grid.npz
    cvgl retrieval index --tiles C --model runs/desc --bag B [--radius-m 60] --out grid.npz
    cvgl retrieval evaluate --data DS [--split same_area] --model local=M1 --model global=M2 --out DIR
    cvgl retrieval trials --cache DIR --out DIR [--trials 10] [--workers 2]
    cvgl retrieval localization --cache DIR --local CARD --global CARD --out DIR [--workers 2]
"""
from __future__ import annotations

from pathlib import Path

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


def _named_model(text: str) -> tuple[str, str]:
    """NAME=CARD of --model (InputError otherwise)."""
    from cvgl_ros.errors import InputError

    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise InputError(f"--model {text!r} is not NAME=CARD (e.g. local=models/retrieval/local)")
    return name, path


def _evaluate(args) -> int:
    import sys

    from cvgl_ros.atomic import write_json
    from cvgl_ros.errors import InputError
    from cvgl_ros.evaluation.retrieval import THRESHOLDS_M, evaluate_models, plot_recalls, plot_score_fields
    from cvgl_ros.retrieval.encoders import DescriptorModel

    named = [_named_model(text) for text in args.model]
    names = [n for n, _ in named]
    if len(set(names)) != len(names):
        raise InputError(f"--model names must differ: {', '.join(names)}")
    claim_out(args, "retrieval evaluate", "dir", inputs=[args.data], names=("retrieval.json", "recall.png", "score_fields.png",
                                                                        "grids"),
              in_place=True)
    models = {n: DescriptorModel(p, intra_op_threads=args.threads) for n, p in named}
    radii = [*args.radius_m, float("inf")]
    result = evaluate_models(args.data, args.split, models, radii, spacing_m=args.spacing,
                             yaw_error_deg=args.yaw_error_deg, max_queries=args.max_queries,
                             grid_dir=args.out / "grids", progress=not args.quiet)
    plot_recalls(result, args.out / "recall.png")
    name, first = next(iter(models.items()))
    plot_score_fields(args.data, args.split, name, first, args.out / "grids", args.out / "score_fields.png")
    write_json(args.out / "retrieval.json", {k: v for k, v in result.items() if not k.startswith("_")}
               | {"models": {n: str(m.card_path) for n, m in models.items()}})
    head = "| model | prior radius | R@1 cell | " + " | ".join(f"R@{x:g} m" for x in THRESHOLDS_M) + " | median |"
    print(head + "\n|" + "---|" * (head.count("|") - 1))
    for name, tables in result["results"].items():
        for key, t in tables.items():
            print(f"| {name} | {key[2:]} m | {t['recall_at_1_cell']:.1f} | "
                  + " | ".join(f"{t[f'recall_at_{x:g}m']:.1f}" for x in THRESHOLDS_M) + f" | {t['median_error_m']:.1f} m |")
    print(f"wrote {args.out}/retrieval.json, recall.png and score_fields.png ({result['queries']} queries)",
          file=sys.stderr)
    return 0


TRIAL_NAMES = ("relocalization.json", "relocalization.md", "relocalization.png", "runs")


def _trials(args) -> int:
    from cvgl_ros.evaluation.relocalization import run_trials

    claim_out(args, "retrieval trials", "dir", inputs=[args.cache, args.descriptor, args.model], names=TRIAL_NAMES,
              in_place=True)
    run_trials(args.out, args.cache, count=args.trials, descriptor=args.descriptor, model=args.model,
               workers=args.workers, progress=not args.quiet, first_seed=args.first_seed)
    return 0


def _localization(args) -> int:
    from cvgl_ros.evaluation.retrieval_localization import NAMES, run_table

    claim_out(args, "retrieval localization", "dir", inputs=[args.cache, args.local, args.global_model, args.model],
              names=NAMES, in_place=True)
    run_table(args.out, args.cache, args.local, args.global_model, model=args.model, trial_count=args.trials,
              configs=args.configs, workers=args.workers, progress=not args.quiet, reuse=args.reuse,
              groups=args.groups, first_seed=args.first_seed)
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
    i.add_argument("--dtype", choices=("int8", "float16", "float32"), default="int8",
                   help="stored descriptors (int8: scaled, 1 byte a number)")
    i.add_argument("--threads", type=positive_int, default=2, help="ONNX Runtime threads")
    i.add_argument("--out", required=True, metavar="DB.npz", help="descriptor grid file")
    i.add_argument("--quiet", action="store_true", help="no progress bar")
    add_force(i, "the file at --out")
    i.set_defaults(func=_index)

    e = sub.add_parser("evaluate", help="recall on the descriptor grids of a pair set's worlds (seed 001 Tables I-II)")
    e.add_argument("--data", type=existing_dir, required=True, metavar="DS", help="pair data set (cvgl sim pairs)")
    e.add_argument("--split", default="same_area", help="split whose ground images are the queries")
    e.add_argument("--model", action="append", required=True, metavar="NAME=CARD",
                   help="a descriptor model to evaluate (repeat: local=..., global=...)")
    e.add_argument("--radius-m", type=positive_float, nargs="+", default=[50.0], metavar="R",
                   help="prior radii, m (the whole world is always added)")
    e.add_argument("--spacing", type=positive_float, default=5.0, help="grid spacing, m")
    e.add_argument("--yaw-error-deg", type=non_negative_float, default=3.0, help="1-sigma yaw error of the queries")
    e.add_argument("--max-queries", type=positive_int, help="only the first N pairs of the split")
    e.add_argument("--threads", type=positive_int, default=2, help="ONNX Runtime threads")
    e.add_argument("--out", required=True, type=Path, metavar="DIR", help="retrieval.json, recall.png, grids/")
    e.add_argument("--quiet", action="store_true", help="no progress bars")
    add_force(e, "retrieval.json, recall.png and grids/ in DIR")
    e.set_defaults(func=_evaluate)

    _register_replays(sub)


def _register_replays(sub) -> None:
    """The two commands that replay drives through the nodes: trials and localization."""
    from cvgl_ros.evaluation.relocalization import FIRST_SEED
    from cvgl_ros.evaluation.retrieval_localization import CONFIGS, GROUPS

    r = sub.add_parser("trials", help="wide-prior recovery: GNSS 150 m off for 60 s, replayed with and without "
                                      "the descriptor grid (cvgl_ros/evaluation/relocalization.py)")
    r.add_argument("--cache", required=True, type=Path, metavar="DIR", help="worlds, grids and trial bags (kept)")
    r.add_argument("--out", required=True, type=Path, metavar="DIR", help="runs/, relocalization.{json,md,png}")
    r.add_argument("--trials", type=positive_int, default=10, help="number of trials (default 10)")
    r.add_argument("--first-seed", type=positive_int, default=FIRST_SEED,
                   help=f"seed of the first trial drive (default {FIRST_SEED}, the acceptance trials; another gives "
                        "a fleet to tune on)")
    r.add_argument("--descriptor", type=existing_path, help="descriptor card (default: the shipped geo-local one)")
    r.add_argument("--model", type=existing_file, help="pose network (default: the shipped one)")
    r.add_argument("--workers", type=positive_int, default=1, help="replays at once")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    add_force(r, "relocalization.json, relocalization.md, relocalization.png and runs/ in DIR")
    r.set_defaults(func=_trials)

    loc = sub.add_parser("localization", help="seed 001 Table III: the filter with GNSS only, with retrieval "
                         "(geo-global, geo-local), with the dense network, with both, on the trials' biased drives and "
                         "the fleet's urban_canyon drives (cvgl_ros/evaluation/retrieval_localization.py)")
    loc.add_argument("--cache", required=True, type=Path, metavar="DIR", help="worlds, grids and bags (kept)")
    loc.add_argument("--out", required=True, type=Path, metavar="DIR", help="runs/, table3.{json,md,png}")
    loc.add_argument("--local", type=existing_path, metavar="CARD", help="geo-local descriptor card (the "
                     "retrieval_local and dense_local configurations)")
    loc.add_argument("--global", dest="global_model", type=existing_path, metavar="CARD",
                     help="geo-global descriptor card (retrieval_global)")
    loc.add_argument("--model", type=existing_file, help="pose network (default: the shipped one)")
    loc.add_argument("--trials", type=positive_int, default=10, help="biased drives (default 10, the trials')")
    loc.add_argument("--first-seed", type=positive_int, default=FIRST_SEED,
                     help=f"seed of the first biased drive (default {FIRST_SEED}, the trials')")
    loc.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(CONFIGS), help="configurations to run")
    loc.add_argument("--groups", nargs="+", choices=GROUPS, default=list(GROUPS), help="drive groups to run")
    loc.add_argument("--workers", type=positive_int, default=1, help="replays at once")
    loc.add_argument("--reuse", action="store_true", help="score the finished replays of an earlier run in "
                     "DIR/runs instead of replaying them")
    loc.add_argument("--quiet", action="store_true", help="no progress bars")
    add_force(loc, "table3.json, table3.md, table3.png and runs/ in DIR")
    loc.set_defaults(func=_localization)
