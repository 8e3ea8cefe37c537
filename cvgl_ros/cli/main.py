"""`cvgl`: the single command-line entry point.

Each subcommand group lives in its own module of this package and exposes
`register(subparsers)`, adding its parser(s) with `set_defaults(func=handler)`; a handler
takes the parsed args and returns an exit status. Heavy imports (torch, rclpy, cv2) belong
inside handlers so that `cvgl --help` stays fast.

Bad input anywhere surfaces as one line on stderr and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import re
import sys

from cvgl_ros import __version__
from cvgl_ros.errors import InputError

# Subcommand modules, in the order `cvgl --help` lists them. Every one must import: a missing
# module is a broken install, and fails `cvgl` loudly rather than dropping its commands.
SUBCOMMAND_MODULES = [
    "doctor",      # cvgl doctor
    "geo",         # cvgl geo ...
    "bench",       # cvgl bench
    "sim",         # cvgl sim world|drive|pairs|preview
    "importers",   # cvgl import kitti|robotcar
    "tiles",       # cvgl tiles info|patch|import-geotiff|serve|prefetch
    "train",       # cvgl train
    "retrieval",   # cvgl train-retrieval, cvgl retrieval index
    "evaluate",    # cvgl evaluate
    "export",      # cvgl export
    "track",       # cvgl evaluate-track
    "launch",      # cvgl launch
    "replay",      # cvgl replay
    "demo",        # cvgl demo
    "fleet",       # cvgl evaluate-fleet
    "federated",   # cvgl federated
]


# No option of cvgl starts with "-" and a digit, so an argument that does (-5, -0.5, -.5, and
# comma lists -122.5,37.7,-122.4,37.8 or -33.86,nan) is a value; so are -inf and -nan. The
# option's type then accepts it or says in one line what is wrong with it.
NEGATIVE_NUMBER_LIST = re.compile(r"^-(?:\.?\d|inf|nan)", re.IGNORECASE)


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line on stderr, exit status 2.

    Negative numbers and comma lists that start with one (`--bbox -122.5,37.7,-122.4,37.8`,
    `--datum -33.86,151.2`) are option values: argparse's own test only knows a single
    plain negative number and took the rest for an unknown option. Subparsers inherit this
    class, so every command gets it (a parser that had an option like `-1` would need
    argparse's own rule back)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = NEGATIVE_NUMBER_LIST

    def error(self, message):  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineArgumentParser(
        prog="cvgl",
        description="Cross-view geo-localization for vehicles on ROS 2: tools, training and nodes.",
    )
    parser.add_argument("--version", action="version", version=f"cvgl_ros {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(f"cvgl_ros.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr if args.command is None else sys.stdout)
        return 2 if args.command is None else 0
    from cvgl_ros import atomic

    failed = True
    try:
        with atomic.terminate_raises():     # SIGTERM -> SystemExit: `finally` removes temporaries
            status = int(args.func(args) or 0)
        failed = status != 0
        return status
    except InputError as exc:
        print(f"cvgl: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"cvgl: error: no such file: {exc.filename or exc}", file=sys.stderr)
        return 2
    except PermissionError as exc:
        print(f"cvgl: error: permission denied: {exc.filename or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cvgl: interrupted", file=sys.stderr)
        return 130
    finally:
        atomic.release_claims(failed=failed)


def _one_line(exc: BaseException) -> str:
    """An error message on one line (a message with line breaks is joined)."""
    return " ".join(str(exc).split())


if __name__ == "__main__":
    sys.exit(main())
