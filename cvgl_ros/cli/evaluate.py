"""`cvgl evaluate`: pose metrics (seed 002 Table 1, seed 000 recalls) of a model on a split."""
from __future__ import annotations

import json
from pathlib import Path

from cvgl_ros.cli.args import add_force, claim_out, existing_dir, existing_file, positive_int


def run(args) -> int:
    import sys

    from cvgl_ros.train.evaluation_run import evaluate_model, write_report

    out = Path(args.out)
    inputs = [args.model, args.data]
    png = out.with_name(out.stem + "_cdf.png")
    claim_out(args, "evaluate", "file", inputs=inputs, recognize=lambda p: _own_report(p) is not None)
    claim_out(args, "evaluate", "file", inputs=inputs, path=png,
              recognize=lambda p: (_own_report(out) or {}).get("cdf_png") == p.name)
    report = evaluate_model(args.model, args.data, args.split, max_pairs=args.max_pairs, progress=not args.quiet)
    out, png = write_report(report, args.out)
    t1 = {k: round(v, 3) for k, v in report["table1"].items()}
    print(json.dumps({"split": args.split, "count": report["count"], **t1}))
    print(f"wrote {out} and {png}", file=sys.stderr)
    return 0


def _own_report(path: Path):
    """The report at `path` when `cvgl evaluate` wrote it (its split, table1 and cdf_png), else None;
    reports written before the sidecar marker existed (docs/model/*.json) are recognized so."""
    try:
        report = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) and {"split", "table1", "cdf_png"} <= set(report) else None


def register(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="evaluate a checkpoint or exported .onnx on a pair split")
    p.add_argument("--model", type=existing_file, required=True, metavar="M", help="checkpoint (.pt) or exported .onnx")
    p.add_argument("--data", type=existing_dir, required=True, metavar="DS", help="pair data set")
    p.add_argument("--split", choices=("same_area", "cross_area", "val", "train"), default="same_area")
    p.add_argument("--out", required=True, metavar="report.json", help="report (error-CDF PNG written beside)")
    p.add_argument("--max-pairs", type=positive_int, help="evaluate only the first N pairs")
    add_force(p, "the report at --out and its error-CDF PNG (<stem>_cdf.png) beside it")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
