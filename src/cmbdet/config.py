"""JSON round trips for the frozen config dataclasses stored in model.json: tuples become
lists and back, and unknown keys are an error (a file may override known keys only)."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import TypeVar

Config = TypeVar("Config")


class JsonConfig:
    """Mixin for frozen dataclasses: ``to_json()`` and ``from_json(values)``."""

    def to_json(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls: type[Config], values: dict) -> Config:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
