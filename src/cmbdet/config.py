"""JSON round trips for the frozen config dataclasses stored in model.json: tuples become
lists and back; unknown keys, values of the wrong type and non-finite numbers are an error (a
file may override known keys only, with values of the kind the default has)."""

from __future__ import annotations

import math
from dataclasses import MISSING, Field, asdict, fields
from typing import Any, TypeVar

Config = TypeVar("Config")

PRECISIONS = ("auto", "float32", "bfloat16")
"""Number formats the networks may run in (:func:`cmbdet.runtime.resolve_precision`); here,
torch-free, so that the command line can offer them without loading torch."""
BACKENDS = ("auto", "torch", "onnx")
"""What runs the networks (:func:`cmbdet.detect.networks.resolve_backend`)."""


class JsonConfig:
    """Mixin for frozen dataclasses whose every field has a default: ``to_json()`` and
    ``from_json(values)``. Range checks belong in the dataclass's ``__post_init__`` (they
    raise ``ValueError``), so that configs made in code are checked too."""

    def to_json(self) -> dict:
        """The fields as JSON values (nested configs as objects, tuples as lists)."""
        return _as_json(asdict(self))

    @classmethod
    def from_json(cls: type[Config], values: Any) -> Config:
        """The config of a JSON object; missing keys keep their defaults.

        Raises:
            ValueError: not an object, an unknown key, or a value unlike its default (an
                integer for an integer, a finite number for a float, a list of the default's
                length for a fixed-size tuple), or out of range; the key is named.
        """
        if not isinstance(values, dict):
            raise ValueError(f"must be a JSON object, not {type(values).__name__}")
        known = {f.name: _default(f) for f in fields(cls)}
        unknown = set(values) - set(known)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}")
        return cls(**{k: typed_value(k, v, known[k]) for k, v in values.items()})


def _default(spec: Field) -> Any:
    return spec.default_factory() if spec.default is MISSING else spec.default


def _as_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _as_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_as_json(v) for v in value]
    return value


def typed_value(name: str, value: Any, default: Any) -> Any:
    """``value`` of the kind ``default`` is (JSON lists as tuples, objects as nested configs;
    a default of None takes None or a number).

    Raises:
        ValueError: naming ``name``.
    """
    if isinstance(default, JsonConfig):
        try:
            return type(default).from_json(value)
        except ValueError as error:
            raise ValueError(f"{name}: {error}") from None
    if default is None:
        return None if value is None else typed_value(name, value, 0.0)
    if isinstance(default, tuple):
        if not isinstance(value, list | tuple):
            raise ValueError(f"{name}: expected a list, got {value!r}")
        if default and len(value) != len(default):
            raise ValueError(f"{name}: expected {len(default)} values, got {len(value)}")
        element = default[0] if default else 0
        return tuple(typed_value(f"{name}[{i}]", v, element) for i, v in enumerate(value))
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{name}: expected true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name}: expected an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{name}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{name}: expected a finite number, got {value!r}")
        return float(value)
    if isinstance(default, str) and not isinstance(value, str):
        raise ValueError(f"{name}: expected text, got {value!r}")
    return value


def check_range(name: str, value: float, low: float, high: float) -> None:
    """Raise ``ValueError`` unless ``low <= value <= high`` (NaN fails)."""
    if not low <= value <= high:
        raise ValueError(f"{name} is {value!r}, outside {low:g}..{high:g}")


def check_each(name: str, values: tuple, low: float, high: float) -> None:
    """:func:`check_range` for every element of ``values``."""
    for i, value in enumerate(values):
        check_range(f"{name}[{i}]", value, low, high)
