"""What a model was trained and validated on, for model.json's ``training_ranges``: voxel sizes
and field strengths of its training subjects, stage-1 candidates per validation subject.
``detect`` flags a subject outside them (:mod:`cmbdet.detect.qc`)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace

import nibabel as nib
import numpy as np

from cmbdet.detect.qc import UNKNOWN, TrainingRanges
from cmbdet.io.dataset import SubjectFiles

ACQUISITION_RECORD = "acquisition.json"  # the generator's record of a subject's protocol


def training_ranges(subjects: Iterable[SubjectFiles]) -> TrainingRanges:
    """The voxel-size and field-strength ranges of ``subjects`` (headers only are read; the
    field strength from a generated subject's ``acquisition.json``, unknown otherwise)."""
    spacings, fields = [], []
    for files in subjects:
        spacings.append(nib.load(files.swi).header.get_zooms()[:3])
        field = _field_strength_t(files)
        if field is not None:
            fields.append(field)
    if not spacings:
        return TrainingRanges()
    spacing = np.asarray(spacings, dtype=float)  # (N, 3) stored axes; slices are the third
    in_plane = spacing[:, :2].max(axis=1)
    return TrainingRanges(
        in_plane_mm=_range(in_plane),
        slice_mm=_range(spacing[:, 2]),
        field_strength_t=_range(np.asarray(fields)) if fields else UNKNOWN,
    )


def with_candidate_range(ranges: TrainingRanges, counts: list[int]) -> TrainingRanges:
    """``ranges`` with the stage-1 candidates per validation subject of ``counts``."""
    if not counts:
        return ranges
    return replace(ranges, candidates_per_subject=_range(np.asarray(counts, dtype=float)))


def _range(values: np.ndarray) -> tuple[float, float]:
    return round(float(values.min()), 4), round(float(values.max()), 4)


def _field_strength_t(files: SubjectFiles) -> float | None:
    path = files.swi.parent / ACQUISITION_RECORD
    try:
        field = json.loads(path.read_text(encoding="utf-8"))["protocol"]["field_t"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return float(field) if isinstance(field, int | float) and field > 0 else None
