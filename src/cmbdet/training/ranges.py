"""What a model was trained and validated on, for model.json's ``training_ranges``: voxel sizes,
field strengths and field x echo time of its training subjects, stage-1 candidates per
validation subject.
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
    """The voxel-size, field-strength and field x TE ranges of ``subjects`` (headers only are
    read; the field strength and echo time from a generated subject's ``acquisition.json``,
    unknown otherwise)."""
    spacings, fields, products = [], [], []
    for files in subjects:
        spacings.append(nib.load(files.swi or files.magnitude).header.get_zooms()[:3])
        field, te_ms = _acquisition(files)
        if field is not None:
            fields.append(field)
            if te_ms is not None:
                products.append(field * te_ms)
    if not spacings:
        return TrainingRanges()
    spacing = np.asarray(spacings, dtype=float)  # (N, 3) stored axes; slices are the third
    in_plane = spacing[:, :2].max(axis=1)
    return TrainingRanges(
        in_plane_mm=_range(in_plane),
        slice_mm=_range(spacing[:, 2]),
        field_strength_t=_range(np.asarray(fields)) if fields else UNKNOWN,
        field_te_t_ms=_range(np.asarray(products)) if products else UNKNOWN,
    )


def with_candidate_range(ranges: TrainingRanges, counts: list[int]) -> TrainingRanges:
    """``ranges`` with the stage-1 candidates per validation subject of ``counts``."""
    if not counts:
        return ranges
    return replace(ranges, candidates_per_subject=_range(np.asarray(counts, dtype=float)))


def widened(ranges: TrainingRanges, more: TrainingRanges) -> TrainingRanges:
    """The ranges that cover both ``ranges`` and ``more`` (a fine-tuned model has seen its base
    model's data and its own); a range either leaves unrecorded stays unrecorded."""
    fields = ("in_plane_mm", "slice_mm", "field_strength_t", "field_te_t_ms")
    joined = {}
    for name in fields:
        a, b = getattr(ranges, name), getattr(more, name)
        known = a != UNKNOWN and b != UNKNOWN
        joined[name] = (min(a[0], b[0]), max(a[1], b[1])) if known else UNKNOWN
    return replace(ranges, **joined)


def _range(values: np.ndarray) -> tuple[float, float]:
    return round(float(values.min()), 4), round(float(values.max()), 4)


def _acquisition(files: SubjectFiles) -> tuple[float | None, float | None]:
    """(field strength in T, echo time in ms) of a generated subject; None where unknown."""
    path = (files.swi or files.magnitude).parent / ACQUISITION_RECORD
    try:
        protocol = json.loads(path.read_text(encoding="utf-8"))["protocol"]
    except (OSError, ValueError, KeyError, TypeError):
        return None, None
    if not isinstance(protocol, dict):
        return None, None
    field, te_s = protocol.get("field_t"), protocol.get("te_s")
    field = float(field) if _positive(field) else None
    return field, 1000.0 * float(te_s) if _positive(te_s) else None


def _positive(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0
