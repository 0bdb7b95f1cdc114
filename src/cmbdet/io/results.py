"""The result tables of DESIGN.md: ``detections.csv`` and ``candidates.csv`` (one row per
candidate, in the input file's coordinates), written by ``detect`` and read by ``evaluate``,
and the threshold a run recorded in ``run.json``."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cmbdet.errors import InputError

COLUMNS = (
    "detection_id",
    "x_mm",
    "y_mm",
    "z_mm",
    "i",
    "j",
    "k",
    "score",
    "stage1_score",
    "diameter_mm",
    "slices",
)
SCORED_COLUMNS = ("x_mm", "y_mm", "z_mm", "score", "stage1_score")  # what evaluation reads


def write_result_table(
    path: Path, rows: Sequence[Any], regions: Sequence[str] | None = None
) -> None:
    """A detections or candidates table: one row per record with the :data:`COLUMNS`
    attributes (a :class:`cmbdet.records.Candidate`), numbered from 1 in the given order, and
    with ``regions`` (one per row) a last ``region`` column."""
    if regions is not None and len(regions) != len(rows):
        raise ValueError(f"{len(regions)} regions for {len(rows)} rows")
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS + (("region",) if regions is not None else ()))
        for n, row in enumerate(rows, start=1):
            # scores keep 6 decimals so that re-thresholding the table reproduces the run
            cells = [
                f"{getattr(row, c):.6f}" if "score" in c else f"{getattr(row, c):.3f}"
                for c in COLUMNS[1:10]
            ]
            region = [regions[n - 1]] if regions is not None else []
            writer.writerow([n, *cells, row.slices, *region])


@dataclass(frozen=True)
class ScoredCentres:
    """What evaluation reads of a result table.

    Attributes:
        centres_mm: (N, 3) candidate centres, world mm.
        scores: (N,) stage-2 probabilities.
        stage1_scores: (N,) stage-1 scores.
    """

    centres_mm: np.ndarray
    scores: np.ndarray
    stage1_scores: np.ndarray


def read_result_table(path: Path) -> ScoredCentres:
    """The candidates' centres and both stages' scores of a candidates.csv (or
    detections.csv).

    Raises:
        InputError: the file is missing or empty, lacks a column, or holds a value that is
            not a finite number (the line is named).
    """
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in SCORED_COLUMNS if c not in (reader.fieldnames or [])]
            if not reader.fieldnames:
                raise InputError(path, "is empty: not a candidates table (no header)")
            if missing:
                raise InputError(path, f"candidates table lacks columns: {', '.join(missing)}")
            values = np.array(
                [[_finite(path, row, c, reader.line_num) for c in SCORED_COLUMNS] for row in reader]
            ).reshape(-1, len(SCORED_COLUMNS))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(path, f"not a readable candidates table ({error})") from None
    return ScoredCentres(values[:, :3], values[:, 3], values[:, 4])


def _finite(path: Path, row: dict, column: str, line: int) -> float:
    try:
        value = float(row[column])
    except (TypeError, ValueError):
        raise InputError(path, f"line {line}: {column} {row[column]!r} is not a number") from None
    if not np.isfinite(value):
        raise InputError(path, f"line {line}: {column} is {row[column]}, not a finite number")
    return value


def run_threshold(folder: Path) -> float:
    """The stage-2 threshold recorded in a ``detect`` output folder's run.json.

    Raises:
        InputError: run.json is missing or unreadable, or its threshold is not a number in
            [0, 1] (which detections a run made depends on it).
    """
    run = folder / "run.json"
    if not run.is_file():
        raise InputError(
            run, "run record is missing: the run's threshold is unknown (detect writes run.json)"
        )
    try:
        threshold = json.loads(run.read_text(encoding="utf-8"))["threshold"]
    except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError) as error:
        raise InputError(run, f"not a readable run record ({error!r})") from None
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise InputError(run, f"threshold {threshold!r} is not a number")
    if not 0.0 <= threshold <= 1.0:
        raise InputError(run, f"threshold {threshold!r} is not a probability in [0, 1]")
    return float(threshold)
