"""`cvgl export`: checkpoint -> ONNX + model card (with a parity check against torch)."""
from __future__ import annotations

import argparse
from pathlib import Path

from cvgl_ros.cli.args import add_force, claim_out, existing_dir, existing_file, positive_int

MAX_YAW_BINS = 360


def _yaw_bins(text: str) -> int:
    """Yaw bins of the exported volume: 1..MAX_YAW_BINS (the volume grows with them)."""
    value = positive_int(text)
    if value > MAX_YAW_BINS:
        raise argparse.ArgumentTypeError(f"{value} yaw bins is more than {MAX_YAW_BINS}: the volume would not "
                                         "fit in memory")
    return value


def _own_model(path: Path) -> bool:
    """An .onnx whose card beside it holds its sha256: an earlier `cvgl export`."""
    from cvgl_ros.runtime.card import card_path, sha256_file

    card = _own_card(card_path(path))
    return bool(card) and card.get("sha256") == sha256_file(path)


def _own_card(path: Path):
    """The model card at `path` (a dict) when it is one `cvgl export` wrote, else None."""
    import json

    from cvgl_ros.runtime.card import CARD_FORMAT

    card = json.loads(Path(path).read_text())
    return card if isinstance(card, dict) and card.get("format") == CARD_FORMAT else None


def run(args) -> int:
    import shlex
    import sys

    from cvgl_ros.runtime.card import card_path
    from cvgl_ros.train.export import export_checkpoint

    inputs = [args.ckpt, args.eval_data, _calibration(args.calibrate)[0] if args.calibrate else None]
    claim_out(args, "export", "file", inputs=inputs, sidecar=False, recognize=_own_model)
    claim_out(args, "export", "file", inputs=inputs, path=card_path(args.out), sidecar=False,
              recognize=lambda p: _own_card(p) is not None)
    card = export_checkpoint(args.ckpt, args.out, eval_data=args.eval_data, eval_max_pairs=args.eval_max_pairs,
                             data_commands=args.data_command, progress=not args.quiet,
                             calibration_data=_calibration(args.calibrate), yaw_bins=args.yaw_bins,
                             command=shlex.join(["cvgl", *sys.argv[1:]]))
    p = card["parity"]
    print(f"wrote {args.out} ({card['size_bytes'] / 1e6:.2f} MB, sha256 {card['sha256'][:16]}...) and "
          f"{card_path(args.out)}; parity max |d log-volume| {p['max_abs_diff_log_volume']:.2e}", file=sys.stderr)
    for split, ev in card.get("evaluation", {}).items():
        t1 = ev["table1"]
        print(f"{split}: median position {t1['position_median_m']:.2f} m, lateral R@1m {t1['lateral_recall_1m']:.1f} %, "
              f"median azimuth {t1['azimuth_median_deg']:.2f} deg ({ev['count']} pairs)", file=sys.stderr)
    return 0


def _calibration(text):
    if text is None:
        return None
    from cvgl_ros.errors import InputError

    path, _, split = text.partition(":")
    if not path or not split:
        raise InputError(f"--calibrate wants DS:SPLIT (e.g. data/pairs:same_area), got {text!r}")
    return path, split


def register(subparsers) -> None:
    p = subparsers.add_parser("export", help="export a checkpoint to ONNX with its model card")
    p.add_argument("--ckpt", type=existing_file, required=True, metavar="C", help="checkpoint (.pt) from cvgl train")
    p.add_argument("--out", required=True, metavar="models/NAME.onnx", help="ONNX file (card NAME.json beside)")
    p.add_argument("--eval-data", type=existing_dir, metavar="DS",
                   help="pair set: parity on real pairs, and same/cross-area metrics into the card")
    p.add_argument("--eval-max-pairs", type=positive_int, help="evaluate only the first N pairs of each split")
    p.add_argument("--calibrate", metavar="DS:SPLIT",
                   help="fit the volume's temperature on these held-out pairs (not the evaluation's) before export")
    p.add_argument("--yaw-bins", type=_yaw_bins, metavar="N",
                   help="sample the yaw window with N bins (default: the training's); finer bins need no "
                        "retraining and can sharpen the azimuth of a coarse volume, at the cost of volume time "
                        f"(at most {MAX_YAW_BINS})")
    p.add_argument("--data-command", action="append", metavar="CMD",
                   help="command that made the training data (repeatable), recorded in the card")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_force(p, "the .onnx at --out and the card NAME.json beside it")
    p.set_defaults(func=run)
