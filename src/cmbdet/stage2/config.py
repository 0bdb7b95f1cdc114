"""The stage-2 network's architecture and loss weight, as model.json stores them (no torch)."""

from __future__ import annotations

from dataclasses import dataclass

from cmbdet.config import JsonConfig, check_each, check_range


@dataclass(frozen=True)
class Stage2Config(JsonConfig):
    """Architecture of the stage-2 network (stored in model.json)."""

    in_channels: int = 2
    widths: tuple[int, int, int, int, int] = (16, 32, 32, 64, 64)  # paper: 32-64-64-128-128
    dense: tuple[int, int] = (32, 8)
    dropout: float = 0.2
    positive_weight: float = 3.0  # CMBs are rare among candidates

    def __post_init__(self):
        check_range("in_channels", self.in_channels, 1, 16)
        check_each("widths", self.widths, 1, 1024)
        check_each("dense", self.dense, 1, 1024)
        check_range("dropout", self.dropout, 0, 0.99)
        check_range("positive_weight", self.positive_weight, 1e-3, 1000)
