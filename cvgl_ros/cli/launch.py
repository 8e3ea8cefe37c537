"""`cvgl launch`: start the localization nodes as processes, as `ros2 launch cvgl_ros
localize.launch.py` does on a full ROS 2 install (same executables, same parameter file;
`--namespace` and `--log-level` as the launch file's `namespace:=` and `log_level:=`)."""
from __future__ import annotations

import re
import signal
import sys
import time

from cvgl_ros.errors import InputError
from cvgl_ros.nodes.launcher import LOG_LEVELS
# A ROS 2 namespace: /-separated tokens of letters, digits and underscores, none starting with a digit.
_NAMESPACE = re.compile(r"/?([A-Za-z_][A-Za-z0-9_]*)(/[A-Za-z_][A-Za-z0-9_]*)*/?")


def namespace_ros_args(namespace: str | None) -> list[str]:
    """`-r __ns:=/NS` for a namespace (none for an empty one); InputError for an invalid name."""
    if not namespace or namespace == "/":
        return []
    if not _NAMESPACE.fullmatch(namespace) or "__" in namespace:
        raise InputError(f"namespace {namespace!r} is not a ROS name (letters, digits, _ and /; no leading digit)")
    return ["-r", f"__ns:=/{namespace.strip('/')}"]


def run(args) -> int:
    from cvgl_ros.cli.args import parse_overrides
    from cvgl_ros.nodes.launcher import NodeProcesses, default_params_file

    params = args.params or default_params_file()
    overrides = parse_overrides(args.param)
    if args.use_sim_time:
        overrides["use_sim_time"] = True
    extra = namespace_ros_args(args.namespace) + (["--log-level", args.log_level] if args.log_level else [])
    nodes = NodeProcesses(params, overrides, extra_ros_args=extra)
    if args.dry_run:
        for cmd in nodes.commands.values():
            print(" ".join(cmd))
        return 0
    stop = {"signal": None}

    def on_signal(signum, _frame):
        stop["signal"] = signum

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    nodes.start()
    print(f"cvgl launch: started {', '.join(nodes.procs)} with {params}; Ctrl-C stops them", file=sys.stderr)
    try:
        while stop["signal"] is None and not nodes.exited():
            time.sleep(0.1)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        died = nodes.exited()
        codes = nodes.stop()
    if died and stop["signal"] is None:
        exe, code = next(iter(died.items()))
        print(f"cvgl launch: {exe} exited with status {code}; stopped the others", file=sys.stderr)
        return code or 1
    unclean = {exe: c for exe, c in codes.items() if c not in (0, -signal.SIGINT)}
    for exe, code in unclean.items():
        print(f"cvgl launch: {exe} exited with status {code} while stopping", file=sys.stderr)
    return 1 if unclean else 0


def register(subparsers) -> None:
    p = subparsers.add_parser("launch", help="start the cross-view and particle-filter nodes (like ros2 launch)")
    p.add_argument("--params", metavar="FILE.yaml", help="ROS 2 parameter file (default: config/cvgl.yaml)")
    p.add_argument("-p", "--param", action="append", metavar="NAME:=VALUE", help="override one parameter (YAML value)")
    p.add_argument("--use-sim-time", action="store_true", help="follow /clock (when a bag player publishes it)")
    p.add_argument("--namespace", metavar="NS", help="put both nodes and their topics under /NS (a second instance)")
    p.add_argument("--log-level", choices=LOG_LEVELS, help="ROS log level of both nodes (default: info)")
    p.add_argument("--dry-run", action="store_true", help="print the node commands and exit")
    p.set_defaults(func=run)
