"""`cvgl train`: train the cross-view pose network on a pair data set."""
from __future__ import annotations

from cvgl_ros.cli.args import add_force, claim_out, existing_dir, existing_file, positive_int

RUN_NAMES = ("checkpoint_epoch*.pt", "last.pt", "best.pt", "history.json", "curves.png", "config.json", "finished")


def run(args) -> int:
    import shlex
    import sys

    from cvgl_ros.train.trainer import run_training

    claim_out(args, "train", "dir", inputs=[args.data, args.config], names=RUN_NAMES, in_place=True)
    command = shlex.join(["cvgl", *sys.argv[1:]]) if sys.argv and sys.argv[0].endswith("cvgl") else None
    run_training(args.data, args.config, args.out, resume=args.resume, epochs=args.epochs, max_pairs=args.max_pairs,
                 progress=not args.quiet, command=command)
    print(f"wrote {args.out}/last.pt, best.pt, history.json, curves.png", file=sys.stderr)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train the cross-view pose network (seed 002) on a pair data set")
    p.add_argument("--data", type=existing_dir, required=True, metavar="DS", help="pair data set (cvgl sim pairs)")
    p.add_argument("--config", type=existing_file, default=None, metavar="YAML",
                   help="model/train settings (e.g. config/train_pose.yaml); defaults in code otherwise")
    p.add_argument("--out", required=True, metavar="runs/NAME", help="run directory (checkpoints, curves)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    p.add_argument("--epochs", type=positive_int, help="total epochs (overrides the config)")
    p.add_argument("--max-pairs", type=positive_int, help="use only the first N training pairs")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_force(p, "config.json, checkpoint_epochNNN.pt, last.pt, best.pt, history.json and curves.png in the run "
                 "directory")
    p.set_defaults(func=run)
