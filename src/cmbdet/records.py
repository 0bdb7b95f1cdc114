"""Records shared by several layers: a candidate and one subject's detection result.

They sit at the bottom of the detection layers: the detector makes them, the outputs, the
report, a batch and calibration read them; none of those import each other for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from cmbdet.io.nifti import Volume


@dataclass(frozen=True)
class Candidate:
    """A stage-1 candidate with its stage-2 score, in the input file's coordinates.

    Attributes:
        x_mm, y_mm, z_mm: centre, world mm (scanner RAS+).
        i, j, k: centre, 0-based voxel indices in the input file's array order.
        score: stage-2 CMB probability.
        stage1_score: stage-1 objectness.
        diameter_mm: in-plane extent of the largest stage-1 box.
        slices: slices of the input the candidate spans (from the model slices it spans,
            rounded, where the model grid has slices of another thickness).
    """

    x_mm: float
    y_mm: float
    z_mm: float
    i: float
    j: float
    k: float
    score: float
    stage1_score: float
    diameter_mm: float
    slices: int

    @property
    def centre_mm(self) -> tuple[float, float, float]:
        """Centre, world mm (scanner RAS+)."""
        return (self.x_mm, self.y_mm, self.z_mm)


def centres_mm(candidates: list[Candidate]) -> np.ndarray:
    """(N, 3) world centres of candidates, mm."""
    return np.array([c.centre_mm for c in candidates], dtype=np.float64).reshape(-1, 3)


@dataclass(frozen=True)
class DetectionResult:
    """One subject's result: every candidate, and those at or above the threshold."""

    candidates: list[Candidate]
    threshold: float
    record: dict = field(default_factory=dict)
    reference: Volume | None = field(default=None, repr=False, compare=False)  # the input SWI
    # the phase as the networks read it: the input's grid, radians, high-pass filtered,
    # right-handed (raw or integer phase is shown filtered, in radians)
    phase: Volume | None = field(default=None, repr=False, compare=False)

    @property
    def detections(self) -> list[Candidate]:
        return [c for c in self.candidates if c.score >= self.threshold]
