"""Operating points: the stage-1 and stage-2 thresholds chosen on validation subjects.

``cmbdet train`` chooses them on its validation split; ``cmbdet calibrate`` chooses them
again for a trained model on other subjects with ground truth (a site's own validation scans,
or subjects whose CMB burden matches the population the model will serve) and writes a new
model folder with the same weights.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cmbdet.errors import InputError
from cmbdet.evaluation.metrics import SubjectScores, count
from cmbdet.io.dataset import (
    check_phase_given,
    ground_truth_fingerprint,
    load_ground_truth,
)
from cmbdet.io.lesions import Lesion
from cmbdet.io.model_folder import write_model_json
from cmbdet.io.writing import (
    check_not_inputs,
    check_writable,
    is_staging_name,
    leftovers_of,
    publish,
    real_output_path,
    remove_folders,
    staging_folder,
)
from cmbdet.records import DetectionResult
from cmbdet.training.config import OperatingRule
from cmbdet.training.export import export_onnx
from cmbdet.training.ranges import with_candidate_range
from cmbdet.training.truth import labelled_subjects

log = logging.getLogger(__name__)

MODEL_FILES = ("model.json", "stage1.onnx", "stage2.onnx")
"""Files of a model folder besides its weights (``*.safetensors``): what ``calibrate`` may
replace in an ``--out`` it is asked to overwrite."""

# the thresholds tried, high first; finer near 1, where a confident classifier's scores crowd
_THRESHOLDS = np.concatenate([[0.999, 0.998, 0.995], np.round(np.arange(0.99, 0.0, -0.01), 2)])


@dataclass(frozen=True)
class OperatingPoint:
    """Chosen thresholds and what they reach on the validation subjects."""

    stage1_threshold: float
    threshold: float  # stage-2 probability
    stage1_metrics: dict
    metrics: dict

    def candidate_counts(self, scored: list[ScoredSubject]) -> list[int]:
        """Stage-1 candidates per subject at this point's stage-1 threshold."""
        return [int(np.sum(s.stage1_scores >= self.stage1_threshold)) for s in scored]

    def to_json(self) -> dict:
        """The ``model.json`` entries."""
        return {
            "threshold": self.threshold,
            "stage1_threshold": self.stage1_threshold,
            "validation_metrics": self.metrics,
            "validation_metrics_stage1": self.stage1_metrics,
        }


@dataclass(frozen=True)
class ScoredSubject:
    """A validation subject's candidates, both stages' scores and its truth.

    Attributes:
        candidates_mm: (N, 3) candidate centres, world mm.
        stage1_scores: (N,) stage-1 scores.
        scores: (N,) stage-2 probabilities.
        lesions: the subject's ground truth.
    """

    candidates_mm: np.ndarray
    stage1_scores: np.ndarray
    scores: np.ndarray
    lesions: list[Lesion]

    @classmethod
    def of_result(cls, result: DetectionResult, lesions: list[Lesion]) -> ScoredSubject:
        """A subject's detection result (every candidate) against its truth."""
        candidates = result.candidates
        return cls(
            np.array([[c.x_mm, c.y_mm, c.z_mm] for c in candidates]).reshape(-1, 3),
            np.array([c.stage1_score for c in candidates]),
            np.array([c.score for c in candidates]),
            lesions,
        )


def choose_operating_point(
    scored: list[ScoredSubject], rule: OperatingRule = OperatingRule()
) -> OperatingPoint:
    """Stage-1 threshold first (on stage-1 scores alone), then the stage-2 threshold among
    the candidates that pass it."""
    stage1_threshold, stage1_metrics = choose_threshold(
        [SubjectScores.of("", s.candidates_mm, s.stage1_scores, s.lesions) for s in scored],
        rule.min_stage1_sensitivity,
    )
    kept = [
        SubjectScores.of(
            "",
            s.candidates_mm,
            np.where(s.stage1_scores >= stage1_threshold, s.scores, 0.0),
            s.lesions,
        )
        for s in scored
    ]
    if rule.max_fp_per_subject is None:
        threshold, metrics = choose_threshold(kept, rule.min_sensitivity)
    else:
        threshold, metrics = choose_threshold_for_fp_budget(kept, rule.max_fp_per_subject)
    return OperatingPoint(stage1_threshold, threshold, stage1_metrics, metrics)


def choose_threshold_for_fp_budget(
    validation: list[SubjectScores], max_fp_per_subject: float
) -> tuple[float, dict]:
    """The threshold with the highest pooled validation sensitivity whose false positives per
    subject stay within ``max_fp_per_subject`` (the highest such threshold on ties; the highest
    threshold tried when none does).

    Returns:
        The threshold and its sensitivity, precision, F1 and false positives per subject.
    """
    best_threshold, best = float(_THRESHOLDS[0]), None
    for threshold in _THRESHOLDS:
        metrics = _validation_outcome(validation, float(threshold))
        within = metrics["fp_per_subject"] <= max_fp_per_subject + 1e-9
        if within and (best is None or metrics["sensitivity"] > best["sensitivity"] + 1e-9):
            best_threshold, best = float(threshold), metrics
    return best_threshold, best or _validation_outcome(validation, best_threshold)


def choose_threshold(validation: list[SubjectScores], min_sensitivity: float) -> tuple[float, dict]:
    """The highest score threshold whose pooled validation sensitivity reaches
    ``min_sensitivity``, or, when no threshold does, all that the lowest threshold reaches.

    Returns:
        The threshold and its sensitivity, precision, F1 and false positives per subject.
    """
    # aim at min_sensitivity, or at all that is reachable when that is less
    lowest = float(_THRESHOLDS[-1])
    target = min(min_sensitivity, _validation_outcome(validation, lowest)["sensitivity"])
    for threshold in _THRESHOLDS:
        metrics = _validation_outcome(validation, float(threshold))
        if metrics["sensitivity"] >= target - 1e-9:
            return float(threshold), metrics
    return lowest, metrics


def _validation_outcome(validation: list[SubjectScores], threshold: float) -> dict:
    """Pooled counts at ``threshold``; no CMBs or no detections give 0 rather than NaN, as
    model.json wants numbers."""
    counts = count(validation, threshold)
    metrics = {k: float(np.nan_to_num(v)) for k, v in counts.to_json().items()}
    return {**metrics, "cmbs": counts.true_positives + counts.false_negatives}


def calibrate_model(
    model_dir: str | Path | None,
    data_dirs: list[Path],
    out_dir: Path,
    rule: OperatingRule = OperatingRule(),
    *,
    overwrite: bool = False,
    device: str = "auto",
    precision: str = "float32",
) -> tuple[Path, OperatingPoint]:
    """Choose a model's thresholds again on the subjects with ground truth in ``data_dirs``
    and write the model, weights unchanged, to ``out_dir``.

    Args:
        model_dir: the model folder (None: the shipped model).
        data_dirs: dataset folders (DESIGN.md layout) with ``lesions.csv`` or labels.
        out_dir: the new model folder; an existing non-empty one only with ``overwrite``.

    Raises:
        InputError: no subjects with ground truth, an existing ``out_dir``, or bad files.
    """
    from cmbdet.detect.detector import Detector

    out_dir = real_output_path(out_dir)
    _check_model_folder(out_dir, overwrite)
    detector = Detector.load(model_dir, device, precision)
    if out_dir.exists() and out_dir.resolve() == detector.folder.resolve():
        raise InputError(out_dir, "is the model being calibrated; write to another folder")
    subjects = labelled_subjects(data_dirs)
    if detector.reads_phase:
        check_phase_given(subjects.values())
    inputs = [detector.folder, *data_dirs]
    inputs += [p for s in subjects.values() for p in s.image_files()]
    check_not_inputs(out_dir, inputs, replaced=True)
    check_writable(out_dir if out_dir.is_dir() else out_dir.parent, shown=out_dir)
    if not subjects:
        raise InputError(data_dirs[0], "no subjects with ground truth (lesions.csv or labels)")
    scored = []
    for n, files in enumerate(subjects.values(), 1):
        magnitude = files.magnitude if files.swi is None else None  # SWI computed, or alone
        result = detector.detect(
            files.swi, files.phase, magnitude, files.brainmask, stage1_threshold=0.0
        )
        scored.append(ScoredSubject.of_result(result, load_ground_truth(files) or []))
        if n % 10 == 0 or n == len(subjects):
            log.info("scored %d/%d calibration subjects", n, len(subjects))
    point = choose_operating_point(scored, rule)
    ranges = with_candidate_range(detector.spec.training_ranges, point.candidate_counts(scored))
    info = {
        **detector.info,
        **point.to_json(),
        "training_ranges": ranges.to_json(),
        "calibration": {
            "from_model": str(detector.folder),
            "folders": [str(folder) for folder in data_dirs],
            "fingerprint": ground_truth_fingerprint(subjects),
            "subjects": len(subjects),
            "rule": rule.to_json(),
            "precision": detector.precision,
        },
    }
    _write_model_folder(detector.folder, info, out_dir)
    return out_dir, point


def _check_model_folder(out_dir: Path, overwrite: bool) -> None:
    """Refuse an ``--out`` that is a file, holds anything but a model (model.json, weights,
    the ONNX exports), or is a model folder already, without ``overwrite``.

    Raises:
        InputError: naming ``out_dir``.
    """
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise InputError(out_dir, "output path exists and is not a folder")
    if not out_dir.is_dir():
        return
    entries = list(out_dir.iterdir())
    foreign = sorted(
        p.name
        for p in entries
        if p.is_symlink()
        or not (
            (p.is_file() and (p.name in MODEL_FILES or p.suffix == ".safetensors"))
            or (p.is_dir() and is_staging_name(p.name))
        )
    )
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise InputError(
            out_dir, f"holds files that are not a model's ({shown}); choose another --out"
        )
    if entries and not overwrite:
        raise InputError(out_dir, "exists and is not empty; choose another --out or --overwrite")


def _write_model_folder(source: Path, info: dict, out_dir: Path) -> None:
    """The weights of ``source`` and ``info`` as model.json into ``out_dir`` (staged, then
    put in place with model.json last: see :func:`cmbdet.io.writing.publish`)."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_folders(leftovers_of(out_dir))
    staging = staging_folder(out_dir)
    try:
        for stage in ("stage1", "stage2"):
            if stage in info:
                shutil.copy2(source / info[stage]["weights"]["file"], staging)
        info = export_onnx(staging, info)  # from the copied weights, for the ONNX backend
        write_model_json(staging, {**info, "name": out_dir.name})
        publish(staging, out_dir, last="model.json")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
