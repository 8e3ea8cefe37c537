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


def longitude(text: str) -> float:
    value = _number(text)
    if not -180.0 <= value <= 180.0:
        raise argparse.ArgumentTypeError(f"longitude {text} is outside [-180, 180]")
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
