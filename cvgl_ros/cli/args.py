"""Argument types shared by the `cvgl` subcommands: each rejects bad input with one line."""
from __future__ import annotations

import argparse
import math
from pathlib import Path


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def finite_float(text: str) -> float:
    return _number(text)


def positive_float(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be > 0")
    return value


def non_negative_float(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must be >= 0")
    return value


def _integer(text: str, noun: str = "an integer") -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None


def positive_int(text: str) -> int:
    value = _integer(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be a positive integer")
    return value


def non_negative_int(text: str) -> int:
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must be >= 0")
    return value


def seed(text: str) -> int:
    """A random seed: an integer >= 0."""
    value = _integer(text, "an integer seed")
    if value < 0:
        raise argparse.ArgumentTypeError(f"seed {text} must be >= 0")
    return value


def latitude(text: str) -> float:
    value = _number(text)
    if not -90.0 <= value <= 90.0:
        raise argparse.ArgumentTypeError(f"latitude {text} is outside [-90, 90]")
    return value


def mercator_latitude(text: str) -> float:
    """A latitude inside Web Mercator's square world (|lat| <= 85.0511 deg): tiles exist there only."""
    from cvgl_ros.geo.mercator import MAX_LATITUDE_DEG

    value = latitude(text)
    if abs(value) > MAX_LATITUDE_DEG:
        raise argparse.ArgumentTypeError(f"latitude {text} is outside Web Mercator's "
                                         f"[-{MAX_LATITUDE_DEG:.4f}, {MAX_LATITUDE_DEG:.4f}]: no tile covers it")
    return value


def longitude(text: str) -> float:
    value = _number(text)
    if not -180.0 <= value <= 180.0:
        raise argparse.ArgumentTypeError(f"longitude {text} is outside [-180, 180]")
    return value


def zoom(text: str) -> int:
    """A Web Mercator zoom level, 0..24."""
    value = _integer(text, "a zoom level")
    if not 0 <= value <= 24:
        raise argparse.ArgumentTypeError(f"zoom {value} is outside [0, 24]")
    return value


def lat_lon_alt(text: str) -> tuple[float, float, float]:
    """'LAT,LON' or 'LAT,LON,ALT' (degrees, degrees, metres)."""
    parts = text.split(",")
    if len(parts) not in (2, 3):
        raise argparse.ArgumentTypeError(f"{text!r} is not LAT,LON or LAT,LON,ALT")
    lat, lon = latitude(parts[0]), longitude(parts[1])
    alt = _number(parts[2]) if len(parts) == 3 else 0.0
    return lat, lon, alt


def float_list(count: int):
    """A type for 'A,B,...' with exactly `count` finite numbers."""

    def parse(text: str) -> tuple[float, ...]:
        parts = text.split(",")
        if len(parts) != count:
            raise argparse.ArgumentTypeError(f"{text!r} must hold {count} comma-separated numbers")
        return tuple(_number(p) for p in parts)

    return parse


def existing_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    return path


def existing_dir(text: str) -> Path:
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"no such directory: {text}")
    return path


def existing_path(text: str) -> Path:
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"no such file or directory: {text}")
    return path


# -- the output rule (cvgl_ros/atomic.py) -------------------------------------------------

def add_force(parser, replaces: str) -> None:
    """`--force`, with exactly what it replaces in its help (see cvgl_ros.atomic)."""
    parser.add_argument("--force", action="store_true",
                        help=f"write over an existing --out that cvgl did not write: replaces {replaces}; "
                             "never any other file, and never an input (cvgl's own earlier output is "
                             "replaced without --force)")


def claim_out(args, command: str, kind: str, inputs=(), names=(), path=None, **kwargs) -> Path:
    """Check `--out` (or `path`) by the one output rule before any work; InputError if refused."""
    from cvgl_ros.atomic import claim_output

    target = args.out if path is None else path
    return claim_output(target, kind=kind, command=command, force=bool(getattr(args, "force", False)),
                        inputs=inputs, names=names, **kwargs)


BAG_NAMES = ("metadata.yaml", "*.mcap", "*.db3")


# -- node parameter overrides (-p NAME:=VALUE) --------------------------------------------

# Parameters every ROS 2 node has besides the ones it declares.
ROS_NODE_PARAMETERS = ("use_sim_time", "start_type_description_service")


def node_parameter_names() -> list[str]:
    """Every parameter `cross_view_node` and `particle_filter_node` declare (imports rclpy)."""
    from cvgl_ros.nodes import cross_view_node, particle_filter_node

    names = {p.name for p in cross_view_node.PARAMS} | {p.name for p in particle_filter_node.PARAMS}
    return sorted(names | set(ROS_NODE_PARAMETERS))


def parse_overrides(texts, known: list[str] | None = None) -> dict:
    """`-p NAME:=VALUE` overrides -> {name: value}; a name no node declares is InputError,
    naming the closest valid parameter (difflib)."""
    import difflib

    from cvgl_ros.errors import InputError
    from cvgl_ros.nodes.launcher import parse_override

    overrides = dict(parse_override(text) for text in texts or [])
    if not overrides:
        return overrides
    known = node_parameter_names() if known is None else known
    for name in overrides:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]}?" if close else " (see config/cvgl.yaml for the parameters)"
            raise InputError(f"-p {name}:=...: no node has a parameter {name!r}{hint}")
    return overrides
