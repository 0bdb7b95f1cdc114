"""The stage-1 network's architecture and loss weights, as model.json stores them (no torch
here: the command line and the model schema read it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from cmbdet.config import JsonConfig, check_each, check_range


@dataclass(frozen=True)
class Stage1Config(JsonConfig):
    """Architecture of the stage-1 network (stored in model.json)."""

    in_channels: int = 2  # of one slice image: averaged SWI, complemented phase, context
    slices_per_pass: int = 1  # adjacent slice images read, and predicted, in one pass
    # the channels of the K stacked slice images the network reads (indices into K C; see
    # PreprocessConfig.distinct_channels); () reads them all
    pass_channels: tuple[int, ...] = ()
    widths: tuple[int, int, int, int] = (16, 32, 64, 96)  # strides 2, 4, 8, 16
    neck_width: int = 48
    neck_convs: int = 2  # 3x3 convs after the top-down merge, at stride 4
    residual_blocks: tuple[int, int, int] = (1, 1, 1)  # after the downsampling of strides 4-16
    stride: int = 4  # output grid stride, pixels
    focal_alpha: float = 2.0  # CenterNet focal loss exponents
    focal_beta: float = 4.0
    size_weight: float = 0.1
    offset_weight: float = 1.0

    def __post_init__(self):
        check_range("in_channels", self.in_channels, 1, 64)
        check_range("slices_per_pass", self.slices_per_pass, 1, 16)
        check_each("widths", self.widths, 1, 1024)
        check_range("neck_width", self.neck_width, 1, 1024)
        check_range("neck_convs", self.neck_convs, 0, 16)
        check_each("residual_blocks", self.residual_blocks, 0, 16)
        if self.stride != 4:  # two stride-2 stages before the head: fixed by the layers
            raise ValueError(f"stride is {self.stride!r}; this network predicts at stride 4")
        for name in ("focal_alpha", "focal_beta", "size_weight", "offset_weight"):
            check_range(name, getattr(self, name), 0, 1000)
        chosen = tuple(int(c) for c in self.pass_channels)
        stacked = self.in_channels * self.slices_per_pass
        if list(chosen) != sorted(set(chosen)) or any(not 0 <= c < stacked for c in chosen):
            raise ValueError(f"pass_channels {chosen}: not increasing indices below {stacked}")
        object.__setattr__(self, "pass_channels", chosen)


PositiveUnit = Literal["slice", "cmb"]
POSITIVE_UNITS = get_args(PositiveUnit)
"""What a positive crop is drawn per: a slice with a CMB (large CMBs, on more slices, are drawn
more often), or a CMB (each as often; then one of its slices)."""


def check_positive_unit(value: str, name: str = "positives_per") -> None:
    """Raise ValueError naming setting ``name`` unless ``value`` is one of POSITIVE_UNITS."""
    if value not in POSITIVE_UNITS:
        raise ValueError(f"{name} {value!r}: not one of {POSITIVE_UNITS}")
