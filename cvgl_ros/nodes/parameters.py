"""Declared, described and range-checked node parameters, derived from typed settings.

A node's parameters are the fields of `cvgl_ros.config.Settings` classes (the node's own, and
for the particle-filter node `ParticleFilterConfig` as `filter.<name>`): `params_of` makes a
`Param` of each field, and that field's declaration is the one source of the parameter's name,
type, default, range and description. `declare_params` declares them on the node with a
`ParameterDescriptor` (description, `FloatingPointRange` / `IntegerRange` from the field's
bounds, read-only unless the parameter is live) and returns their values, checked by the
field's own rules. Structural parameters (the model, the tiles, the particle count, frames,
topics) are read once at start-up; tuning parameters declared `live` can be changed on a
running node (`ros2 param set`): `accept_live_changes` checks each new value like a start-up
one and hands it to the node, or refuses it with the reason. A value of the wrong type or
outside its range raises `InputError` with one line naming the parameter, which the node's
`main` prints before exiting with status 2. Values come from `config/cvgl.yaml`
(`/**: ros__parameters:`), from `-p name:=value`, or from the defaults.
"""
from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from cvgl_ros.config import FieldSpec, Settings, check_field, setting, specs
from cvgl_ros.errors import InputError
from cvgl_ros.geo.datum import Datum
from cvgl_ros.localization.mounting import MOUNTING_SOURCES


@dataclass(frozen=True)
class Param:
    """One ROS parameter: the field `field` of the settings class `settings`, declared as `name`."""

    name: str
    settings: type
    field: str
    live: bool = False  # safe to change on a running node

    @property
    def spec(self) -> FieldSpec:
        return next(s for s in specs(self.settings) if s.name == self.field)

    @property
    def default(self) -> Any:
        return self.spec.default

    @property
    def description(self) -> str:
        return self.spec.description

    @property
    def min(self):
        return self.spec.low

    @property
    def max(self):
        return self.spec.high

    @property
    def choices(self) -> tuple | None:
        return self.spec.choices

    @property
    def kind(self) -> type:
        annotation = self.spec.annotation
        origin = typing.get_origin(annotation)
        if origin in (list, tuple):
            return list
        return annotation if annotation in (bool, int, float, str) else object  # object: any type (the datum)

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
        """The value as this parameter's type, its range and choices checked, or InputError."""
        if self.kind is object:
            return value
        return check_field(self.settings, self.field, value, f"parameter {self.name}")


def params_of(settings: type, prefix: str = "", live: Callable[[str], bool] | None = None) -> list[Param]:
    """A `Param` named `prefix + field` for every field of `settings`; live as the field
    declares it, or as `live(field)` says."""
    return [Param(prefix + s.name, settings, s.name, s.live if live is None else live(s.name)) for s in specs(settings)]


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


class MountingParameters(Settings):
    """Both nodes' sensor-mounting parameters (cvgl_ros/localization/mounting.py, nodes/tf_static.py)."""

    mounting_source: str = setting("tf_static_then_parameters", "where the sensor mounting comes from: "
        "tf_static_then_parameters takes base_link -> camera and base_link -> GNSS antenna from /tf_static when it "
        "has them, else the mounting parameters; parameters never reads /tf_static", choices=MOUNTING_SOURCES)
    camera_frame: str = setting("", "the camera's TF frame on /tf_static (a body or a REP-103 optical frame); "
        "empty: the frame_id of the camera's messages, 'camera' until one arrives")


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
