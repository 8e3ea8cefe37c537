"""Typed settings: the one mechanism behind the model, training, federated, filter and node
configurations.

A configuration is a class deriving from `Settings`; each field is declared with `setting`:

    class TrainConfig(Settings):
        what: ClassVar[str] = "training setting"
        epochs: int = setting(8, "passes over the training pairs", ge=1)

What holds for every such class, on pydantic 1.10 (Ubuntu 24.04's python3-pydantic, what a
vehicle gets from rosdep) and on pydantic 2 alike:
* an unknown key is an error that names it;
* no silent coercion: an int field takes an integer (2.0 passes as 2; 2.5, "2" and true are
  refused), a float field an int or a float, a bool only true or false, a str only a string, a
  tuple or list field a list or tuple whose items follow the same rules;
* a float is finite (NaN and +-inf are refused) unless its field says `finite=False`;
* the range (`ge`, `gt`, `le`, `lt`, checked by pydantic) and `choices` of each field hold;
* `check()`, which a class overrides for its rules across fields, holds;
* every refusal is one `InputError` line, `<what> <field> = <value>: <reason>`, which the CLI
  prints before exiting with status 2 and a node reports as its fatal reason.
Instances are frozen: `replace(**changes)` gives a checked copy and `to_dict()` a plain dict
(lists for tuples). `specs(cls)` describes the fields (`FieldSpec`: name, type, default,
description, range, choices, live), so that the nodes derive their ROS parameter descriptors
from the same declaration (`cvgl_ros.nodes.parameters`).
"""
from __future__ import annotations

import difflib
import math
import numbers
import types
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import pydantic

from cvgl_ros.errors import InputError

PYDANTIC_V2 = int(pydantic.VERSION.split(".")[0]) >= 2
BOUNDS = ("ge", "gt", "le", "lt")
_EXTRA = "cvgl"  # where `setting` keeps what pydantic has no keyword for (finite, choices, live)


def setting(default: Any, description: str, *, ge=None, gt=None, le=None, lt=None, choices=None,
            finite: bool = True, live: bool = False):
    """A field: its default, what it means (with its unit), its range, its allowed values
    (`choices`), whether a float may be NaN or infinite (`finite=False`), and, for a node
    parameter, whether a running node may change it (`live`)."""
    bounds = {k: v for k, v in zip(BOUNDS, (ge, gt, le, lt)) if v is not None}
    extra = {"finite": finite, "choices": tuple(choices) if choices else None, "live": live}
    if PYDANTIC_V2:
        return pydantic.Field(default, description=description, json_schema_extra={_EXTRA: extra}, **bounds)
    return pydantic.Field(default, description=description, **{_EXTRA: extra}, **bounds)


@dataclass(frozen=True)
class FieldSpec:
    """One field as declared: what a ROS parameter descriptor or a message needs of it."""

    name: str
    annotation: Any
    default: Any
    description: str
    bounds: dict           # {"ge": ..., "le": ...}: the bounds pydantic checks
    choices: tuple | None
    finite: bool
    live: bool

    @property
    def low(self):
        return self.bounds.get("ge", self.bounds.get("gt"))

    @property
    def high(self):
        return self.bounds.get("le", self.bounds.get("lt"))

    def range_text(self) -> str:
        low, high = self.low, self.high
        return (("[" if "ge" in self.bounds else "(") + f"{'-inf' if low is None else low}, "
                f"{'inf' if high is None else high}" + ("]" if "le" in self.bounds else ")"))


def _model_fields(cls) -> dict:
    return cls.model_fields if PYDANTIC_V2 else {n: f.field_info for n, f in cls.__fields__.items()}


def _bounds(info) -> dict:
    if not PYDANTIC_V2:
        return {k: getattr(info, k) for k in BOUNDS if getattr(info, k, None) is not None}
    found = {}
    for item in info.metadata:
        found.update({k: getattr(item, k) for k in BOUNDS if getattr(item, k, None) is not None})
    return found


_SPECS: dict[type, tuple[FieldSpec, ...]] = {}


def specs(cls) -> tuple[FieldSpec, ...]:
    """The fields of a `Settings` class, in declaration order."""
    if cls not in _SPECS:
        hints = typing.get_type_hints(cls)
        out = []
        for name, info in _model_fields(cls).items():
            extra = (info.json_schema_extra or {}) if PYDANTIC_V2 else info.extra
            extra = extra.get(_EXTRA, {"finite": True, "choices": None, "live": False})
            out.append(FieldSpec(name, hints[name], info.default, info.description or "", _bounds(info),
                                 extra["choices"], extra["finite"], extra["live"]))
        _SPECS[cls] = tuple(out)
    return _SPECS[cls]


# -- strict values: what pydantic 1.10 would coerce (2.5 -> 2, "2" -> 2) is refused here ------

def _strict(value, annotation, spec: FieldSpec):
    """`value` as `annotation` wants it, or ValueError with the reason."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation is Any or annotation is object:
        return value
    if origin is typing.Union or origin is types.UnionType:
        if value is None and type(None) in args:
            return None
        return _strict(value, next(a for a in args if a is not type(None)), spec)
    if isinstance(annotation, type) and issubclass(annotation, Settings):
        if isinstance(value, annotation):
            return value
        if isinstance(value, Mapping):
            return annotation(**value)
        raise ValueError(f"must be a mapping of {annotation.what}s")
    if origin in (tuple, list):
        return _strict_sequence(value, origin, args, spec)
    if annotation is bool:
        if not isinstance(value, bool) and type(value).__name__ != "bool_":  # numpy's bool too
            raise ValueError("must be true or false")
        return bool(value)
    if annotation is int:
        return _strict_int(value)
    if annotation is float:
        return _strict_float(value, spec.finite)
    if annotation is str:
        if not isinstance(value, str):
            raise ValueError("must be a string")
        return value
    raise TypeError(f"cvgl_ros.config: field {spec.name} has an unsupported type {annotation!r}")


def _strict_int(value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError("must be an integer")
    if isinstance(value, numbers.Integral):
        return int(value)
    if not (math.isfinite(value) and float(value).is_integer()):
        raise ValueError("must be an integer")
    return int(value)


def _strict_float(value, finite: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError("must be a number")
    value = float(value)
    if finite and not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def _strict_sequence(value, origin, args, spec: FieldSpec):
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ValueError("must be a list")
    if origin is list or (len(args) == 2 and args[1] is Ellipsis):
        items = [_strict(v, args[0] if args else Any, spec) for v in value]
    elif len(value) != len(args):
        raise ValueError(f"must be a list of {len(args)} values")
    else:
        items = [_strict(v, a, spec) for v, a in zip(value, args)]
    return list(items) if origin is list else tuple(items)


def strict_value(cls, name: str, value):
    """`value` for field `name` of `cls` as the field's type, its choices checked (ValueError
    with the reason otherwise); the range is pydantic's to check."""
    spec = next(s for s in specs(cls) if s.name == name)
    value = _strict(value, spec.annotation, spec)
    if spec.choices and value not in spec.choices:
        raise ValueError(f"is not one of {', '.join(map(str, spec.choices))}")
    return value


def _reason(exc) -> str:
    """The first error of a pydantic ValidationError, as a short phrase."""
    return exc.errors()[0]["msg"].replace("Input should be", "must be").replace("ensure this value is", "must be")


# -- the base class ----------------------------------------------------------------------------

if PYDANTIC_V2:
    class _Frozen(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid", frozen=True)
else:
    class _Frozen(pydantic.BaseModel):
        class Config:
            extra = "forbid"
            frozen = True


class Settings(_Frozen):
    """A checked, frozen configuration (see the module docstring for what holds)."""

    what: ClassVar[str] = "setting"  # how messages name a field of this class: "<what> <field>"

    def __init__(self, **values):
        cls = type(self)
        known = [s.name for s in specs(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            close = difflib.get_close_matches(unknown[0], known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise InputError(f"unknown {cls.what}(s): {', '.join(unknown)}{hint}")
        checked = {}
        for name, value in values.items():
            try:
                checked[name] = strict_value(cls, name, value)
            except InputError:
                raise  # a nested section's, naming its own field
            except ValueError as exc:
                raise InputError(f"{cls.what} {name} = {value!r}: {exc}") from None
        try:
            super().__init__(**checked)
        except pydantic.ValidationError as exc:
            name = ".".join(map(str, exc.errors()[0]["loc"]))
            raise InputError(f"{cls.what} {name} = {checked.get(name)!r}: {_reason(exc)}") from None
        self.check()

    def check(self) -> None:
        """Rules across fields: InputError when one does not hold (none here)."""

    @classmethod
    def from_dict(cls, values) -> "Settings":
        """Defaults overridden by the mapping `values` (from YAML, JSON or a run config)."""
        if not isinstance(values, Mapping):
            raise InputError(f"{cls.what}s must be a mapping of name: value, got {values!r}")
        return cls(**dict(values))

    def values(self) -> dict:
        """{field: value}, nested settings as they are."""
        return {s.name: getattr(self, s.name) for s in specs(type(self))}

    def replace(self, **changes) -> "Settings":
        """A copy with `changes`, checked like a new instance."""
        return type(self)(**{**self.values(), **changes})

    def to_dict(self) -> dict:
        """{field: value} of plain types: lists for tuples, dicts for nested settings."""
        def plain(v):
            if isinstance(v, Settings):
                return v.to_dict()
            return list(v) if isinstance(v, (tuple, list)) else v
        return {k: plain(v) for k, v in self.values().items()}


_ONE_FIELD: dict[tuple[type, str], type] = {}


def check_field(cls, name: str, value, where: str):
    """`value` for field `name` of `cls` alone (type, choices, range; not the rules across
    fields), or InputError `<where> = <value>: <reason>`: how a node checks one parameter."""
    try:
        value = strict_value(cls, name, value)
    except ValueError as exc:
        raise InputError(f"{where} = {value!r}: {exc}") from None
    if (cls, name) not in _ONE_FIELD:  # a model of this one field, its range as declared
        spec = next(s for s in specs(cls) if s.name == name)
        _ONE_FIELD[cls, name] = pydantic.create_model(f"{cls.__name__}_{name}",
                                                      **{name: (spec.annotation, _model_fields(cls)[name])})
    try:
        _ONE_FIELD[cls, name](**{name: value})
    except pydantic.ValidationError as exc:
        raise InputError(f"{where} = {value!r}: {_reason(exc)}") from None
    return value


# -- YAML files of settings ----------------------------------------------------------------------

# YAML 1.2's floats: PyYAML (YAML 1.1) reads 1e-3 and 2E5 as strings, which a float field refuses.
_YAML12_FLOAT = (r"^(?:[-+]?\d[\d_]*(?:\.[\d_]*)?[eE][-+]?\d+|[-+]?\d[\d_]*\.[\d_]*|[-+]?\.\d[\d_]*(?:[eE][-+]?\d+)?"
                 r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")


def read_yaml(path) -> dict:
    """The mapping in the YAML file `path`, its numbers read as YAML 1.2 reads them (`1e-3` is a
    float); InputError, one line, for a missing file, invalid YAML or anything but a mapping."""
    import re
    from pathlib import Path

    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(_YAML12_FLOAT), list("-+0123456789."))
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such config file: {path}")
    try:
        values = yaml.load(path.read_text(), Loader=Loader) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(values, dict):
        raise InputError(f"{path} must hold a mapping of name: value")
    return values
