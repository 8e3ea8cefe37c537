"""Declared, described and range-checked node parameters.

Each node lists its parameters as `Param`s; `declare_params` declares them on the node with
a `ParameterDescriptor` (description, numeric range, read-only unless the `Param` is `live`)
and returns their values, checked. Structural parameters (the model, the tiles, the
particle count, frames, topics) are read once at start-up; tuning parameters marked `live`
can be changed on a running node (`ros2 param set`): `accept_live_changes` checks each new
value like a start-up one and hands it to the node, or refuses it with the reason. A value of the wrong type or outside its
range raises `InputError` with one line naming the parameter, which the node's `main`
prints before exiting with status 2. Values come from `config/cvgl.yaml`
(`/**: ros__parameters:`), from `-p name:=value`, or from the defaults here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from cvgl_ros.errors import InputError
from cvgl_ros.geo.datum import Datum
from cvgl_ros.localization.mounting import MOUNTING_SOURCES


@dataclass(frozen=True)
class Param:
    """One parameter: name, default (its type fixes the parameter's type), description, range."""

    name: str
    default: Any
    description: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None
    live: bool = False  # safe to change on a running node

    @property
    def kind(self) -> type:
        if isinstance(self.default, bool):
            return bool
        if isinstance(self.default, (int, float, str)):
            return type(self.default)
        if isinstance(self.default, (list, tuple)):
            return list
        return object  # None: optional value of any type (e.g. the datum)

    def descriptor(self) -> ParameterDescriptor:
        text = self.description
        if self.choices:
            text += f" (one of: {', '.join(self.choices)})"
        d = ParameterDescriptor(description=text + ("" if self.live else " [read-only: set at start-up]"),
                                read_only=not self.live, dynamic_typing=True)
        if self.kind is float and self.min is not None and self.max is not None:
            d.floating_point_range = [FloatingPointRange(from_value=float(self.min), to_value=float(self.max), step=0.0)]
        if self.kind is int and self.min is not None and self.max is not None:
            d.integer_range = [IntegerRange(from_value=int(self.min), to_value=int(self.max), step=1)]
        return d

    def check(self, value: Any) -> Any:
        """The value converted to this parameter's type, or InputError."""
        where = f"parameter {self.name}"
        kind = self.kind
        if kind is object:
            return value
        if kind is bool:
            if not isinstance(value, bool):
                raise InputError(f"{where} must be true or false, got {value!r}")
            return value
        if kind in (int, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InputError(f"{where} must be a number, got {value!r}")
            if kind is int and isinstance(value, float):
                if not value.is_integer():
                    raise InputError(f"{where} must be an integer, got {value!r}")
                value = int(value)
            value = kind(value)
            if not math.isfinite(value):
                raise InputError(f"{where} must be finite, got {value!r}")
            if (self.min is not None and value < self.min) or (self.max is not None and value > self.max):
                raise InputError(f"{where} = {value} is outside [{self.min}, {self.max}]")
            return value
        if kind is str:
            if not isinstance(value, str):
                raise InputError(f"{where} must be a string, got {value!r}")
            if self.choices and value not in self.choices:
                raise InputError(f"{where} = {value!r} is not one of {', '.join(self.choices)}")
            return value
        if not isinstance(value, (list, tuple)):
            raise InputError(f"{where} must be a list, got {value!r}")
        return list(value)


def declare_params(node, params: Sequence[Param]) -> dict[str, Any]:
    """Declare `params` on `node` and return {name: checked value}."""
    values = {}
    for p in params:
        try:
            value = node.declare_parameter(p.name, p.default, p.descriptor()).value
        except Exception as exc:  # rclpy's own range/type exceptions: one line, our wording
            raise InputError(f"parameter {p.name}: {str(exc).splitlines()[0]}") from None
        values[p.name] = p.check(p.default if value is None and p.default is not None else value)
    return values


def accept_live_changes(node, params: Sequence[Param], apply) -> None:
    """Let `ros2 param set` change the `live` parameters: each new value is checked (type,
    range, choices), then `apply({name: value})` takes them all at once (and may refuse them
    with InputError);
    anything else is refused with its reason, and nothing of a refused request is applied."""
    from rcl_interfaces.msg import SetParametersResult

    by_name = {p.name: p for p in params}

    def on_set(changes):
        checked = {}
        for change in changes:
            p = by_name.get(change.name)
            if p is None or not p.live:
                return SetParametersResult(successful=False, reason=f"{change.name} is read-only (set at start-up)")
            try:
                checked[p.name] = p.check(change.value)
            except InputError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
        try:
            apply(checked)
        except InputError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(on_set)


DATUM_PARAM = Param(
    "datum", None,
    "map frame origin as [lat_deg, lon_deg, alt_m] (ENU, REP-105); unset: anchor at the first valid GNSS fix",
)


# Both nodes' sensor mounting (cvgl_ros/localization/mounting.py, nodes/tf_static.py).
MOUNTING_SOURCE_PARAM = Param(
    "mounting_source", "tf_static_then_parameters",
    "where the sensor mounting comes from: tf_static_then_parameters takes base_link -> camera and base_link -> "
    "GNSS antenna from /tf_static when it has them, else the mounting parameters; parameters never reads /tf_static",
    choices=MOUNTING_SOURCES)
CAMERA_FRAME_PARAM = Param(
    "camera_frame", "", "the camera's TF frame on /tf_static (a body or a REP-103 optical frame); empty: the "
    "frame_id of the camera's messages, 'camera' until one arrives")


def parse_datum(value) -> Datum | None:
    """The `datum` parameter ([lat, lon] or [lat, lon, alt], numbers) -> Datum, None when unset."""
    if value is None or (isinstance(value, (list, tuple)) and len(value) == 0):
        return None
    if not isinstance(value, (list, tuple)) or len(value) not in (2, 3):
        raise InputError(f"parameter datum must be [lat_deg, lon_deg, alt_m], got {value!r}")
    try:
        numbers = [float(v) for v in value]
    except (TypeError, ValueError):
        raise InputError(f"parameter datum must hold numbers, got {value!r}") from None
    try:
        return Datum(numbers[0], numbers[1], numbers[2] if len(numbers) == 3 else 0.0)
    except InputError as exc:
        raise InputError(f"parameter datum: {exc}") from None
