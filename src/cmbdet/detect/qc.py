"""Quality-control flags: what a reader should check by eye before trusting a subject's count.

A model states in ``model.json`` (``training_ranges``) the voxel sizes and field strengths it
was trained on and how many stage-1 candidates its validation subjects gave. A subject outside
them, or whose phase conventions were guessed with low confidence, gets a flag: one short line
each, in run.json, batch.csv's neighbour ``cmb_counts.csv`` and the report. A flag does not
change any detection.
"""

from __future__ import annotations

from dataclasses import dataclass

from cmbdet.config import JsonConfig

UNKNOWN = (0.0, 0.0)  # a range the model does not record
VOXEL_TOLERANCE = 0.1  # voxel sizes within 10% of the trained range pass
CANDIDATE_FACTOR = 2.0  # candidate counts within [low / 2, high * 2] pass
LOW_HANDEDNESS_CONFIDENCE = {"dark voxels": 0.3, "dipole lobes": 0.1}
"""A detected phase handedness below this confidence (by its method) is a guess. The two
methods' confidences are on different scales: the dipole-lobe rule was right on 96 of 96
generated cases, the lowest at confidence 0.01 (benchmarks/RESULTS.md)."""


@dataclass(frozen=True)
class TrainingRanges(JsonConfig):
    """What a model saw (model.json ``training_ranges``); each a (low, high) pair, (0, 0)
    when not recorded.

    Attributes:
        in_plane_mm: in-plane voxel sizes of the training subjects, mm.
        slice_mm: their slice thickness, mm.
        field_strength_t: their field strengths, T.
        candidates_per_subject: stage-1 candidates per validation (or calibration) subject.
        field_te_t_ms: their field strength x echo time, T ms (the size of their phase
            contrast; a multi-echo subject's echo is chosen by it).
    """

    in_plane_mm: tuple[float, float] = UNKNOWN
    slice_mm: tuple[float, float] = UNKNOWN
    field_strength_t: tuple[float, float] = UNKNOWN
    candidates_per_subject: tuple[float, float] = UNKNOWN
    field_te_t_ms: tuple[float, float] = UNKNOWN

    def __post_init__(self):
        names = ("in_plane_mm", "slice_mm", "field_strength_t", "candidates_per_subject")
        for name in (*names, "field_te_t_ms"):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                raise ValueError(f"{name} must be a range 0 <= low <= high, got {low}, {high}")


def qc_flags(
    preprocessing: dict,
    candidates: int,
    ranges: TrainingRanges,
    field_strength_t: float | None = None,
    echo: dict | None = None,
) -> list[str]:
    """The QC flags of one detection run.

    Args:
        preprocessing: the run's preprocessing record (``native_spacing_mm``, ``phase``).
        candidates: stage-1 candidates of the subject.
        ranges: the model's training ranges.
        field_strength_t: the acquisition's field strength when known (T).
        echo: the echo a multi-echo subject used (run.json ``acquisition.echo_used``).

    Returns:
        One short sentence per flag; [] when nothing needs checking.
    """
    flags = []
    spacing = preprocessing.get("native_spacing_mm") or ()
    if len(spacing) == 3:
        in_plane = max(spacing[0], spacing[1])
        flags += _outside("in-plane voxel", in_plane, ranges.in_plane_mm, "mm", VOXEL_TOLERANCE)
        flags += _outside("slice thickness", spacing[2], ranges.slice_mm, "mm", VOXEL_TOLERANCE)
    if field_strength_t is not None:
        flags += _outside("field strength", field_strength_t, ranges.field_strength_t, "T", 0.0)
    if echo and echo.get("outside_model_range"):
        product = f"field x TE {echo['field_x_echo_time_t_ms']:.0f} T ms"
        which = (
            "" if echo["of"] == 1 else f"echo {echo['index']} of {echo['of']} used ({product}), "
        )
        flags.append(
            f"{which or product + ' '}outside the model's range: phase contrast unlike its "
            "training data"
        )
    flags += _candidate_count(candidates, ranges.candidates_per_subject)
    flags += _phase_guesses(preprocessing.get("phase") or {})
    return flags


def _outside(what: str, value: float, trained: tuple, unit: str, tolerance: float) -> list[str]:
    low, high = trained
    if (low, high) == UNKNOWN or low * (1 - tolerance) <= value <= high * (1 + tolerance):
        return []
    return [f"{what} {value:.2g} {unit} outside the model's training range {low:.2g}-{high:.2g}"]


def _candidate_count(candidates: int, validation: tuple) -> list[str]:
    low, high = validation
    if (low, high) == UNKNOWN or low / CANDIDATE_FACTOR <= candidates <= high * CANDIDATE_FACTOR:
        return []
    return [
        f"{candidates} stage-1 candidates, far from the model's validation subjects "
        f"({low:.0f}-{high:.0f})"
    ]


def _phase_guesses(phase: dict) -> list[str]:
    confidence = phase.get("handedness_confidence")
    if not phase.get("handedness_detected") or confidence is None:
        return []
    method = phase.get("handedness_method", "dark voxels")
    if confidence >= LOW_HANDEDNESS_CONFIDENCE.get(method, 0.3):
        return []
    return [
        f"phase handedness guessed with low confidence ({confidence:.2f}); check --phase-handedness"
    ]
