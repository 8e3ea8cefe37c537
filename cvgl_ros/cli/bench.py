"""`cvgl bench`: run the registered benchmarks and write their JSON."""
from __future__ import annotations

import json
import sys


def run(args) -> int:
    from cvgl_ros import atomic
    from cvgl_ros.benchmarks import run_benchmarks

    if args.out:
        from cvgl_ros.cli.args import claim_out

        claim_out(args, "bench", "file", recognize=_own_report)
    only = [n for item in (args.only or []) for n in item.split(",") if n]
    report = run_benchmarks(only, progress=lambda m: print(m, file=sys.stderr))
    text = json.dumps(report, indent=2, default=float)
    if args.out:
        atomic.write_text(args.out, text + "\n")
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        print(text)
    failed = [n for n, r in report["benchmarks"].items() if not r["ok"]]
    return 1 if failed else 0


def _own_report(path) -> bool:
    """A JSON report `cvgl bench` wrote (its `machine` and `benchmarks` sections), e.g. the
    committed bench/results/latest.json, which has no sidecar marker."""
    with open(path, "rb") as f:
        report = json.loads(f.read(50_000_000))
    return isinstance(report, dict) and {"machine", "benchmarks"} <= set(report)


def register(subparsers) -> None:
    p = subparsers.add_parser("bench", help="run benchmarks (median/p95 time, throughput, peak RSS) -> JSON")
    p.add_argument("--only", action="append", metavar="NAME", help="benchmark name(s), comma-separated or repeated")
    p.add_argument("--out", metavar="FILE.json", help="write JSON here (default: stdout)")
    p.add_argument("--force", action="store_true",
                   help="replace a file at --out that cvgl did not write (cvgl's own is replaced without it)")
    p.set_defaults(func=run)
