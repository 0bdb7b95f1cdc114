"""``cmbdet evaluate``: score ``detect`` outputs against ground truth and write the tables.

Predictions: a folder with ``sub-<id>/candidates.csv`` (from ``cmbdet detect --dataset``) or a
single subject's output folder. Truth (:mod:`cmbdet.io.truth`): a dataset folder or one
subject's folder with ``lesions.csv`` (or a reader's ``reviewed_lesions.csv``), or a CMB mask
or label map read as 26-connected components; or a ``subject,truth`` CSV manifest. Stage 1 is
scored on all candidates by their stage-1 score, stage 1+2 on the detections (stage-2 score at
or above the run's threshold).
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cmbdet.errors import InputError
from cmbdet.evaluation.matching import MATCH_RADIUS_MM, cmb_centres, match_detections
from cmbdet.evaluation.metrics import SubjectScores, bootstrap_interval, count, froc
from cmbdet.io.dataset import SubjectFiles, load_ground_truth
from cmbdet.io.results import read_result_table, run_threshold
from cmbdet.io.truth import find_truth
from cmbdet.io.writing import check_writable, write_atomic

TABLES = ("metrics.json", "per_subject.csv", "froc.png")


def _prediction_folders(pred_dir: Path) -> dict[str, Path]:
    if (pred_dir / "candidates.csv").is_file():
        return {"": pred_dir}
    if not pred_dir.is_dir():
        raise InputError(pred_dir, "predictions folder not found")
    folders = {p.name[4:]: p for p in sorted(pred_dir.glob("sub-*")) if p.is_dir()}
    if not folders:
        raise InputError(pred_dir, "no candidates.csv and no sub-*/ prediction folders")
    return folders


def evaluate(pred_dir: Path, truth_dir: Path, out_dir: Path, overwrite: bool = False) -> dict:
    """Score predictions; write metrics.json, per_subject.csv and froc.png to ``out_dir``.

    ``out_dir`` is created if missing; other files in it are left alone, and tables already
    there are replaced only with ``overwrite``.

    Raises:
        InputError: ``out_dir`` cannot take the tables (checked before any work), or the
            predictions or the truth are missing or unreadable.
    """
    check_tables_folder(Path(out_dir), overwrite)
    predictions = _prediction_folders(Path(pred_dir))
    truth = find_truth(truth_dir)
    if "" in predictions and len(truth) == 1:
        predictions = {next(iter(truth)): predictions[""]}
    missing = sorted(set(truth) - set(predictions))
    if missing:
        raise InputError(
            pred_dir, f"no predictions for sub-{missing[0]} ({len(missing)} subjects missing)"
        )
    scored = score_subjects({i: predictions[i] for i in truth}, truth)
    write_tables(out_dir, scored)
    return scored.metrics


def check_tables_folder(out_dir: Path, overwrite: bool) -> None:
    """Refuse, before any work, a ``--out`` that is a file, cannot be written, or already
    holds tables (without ``overwrite``).

    Raises:
        InputError: naming ``out_dir`` or the table.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(out_dir, "output path exists and is not a folder")
    for name in TABLES:
        table = out_dir / name
        if table.is_symlink() or table.is_dir():
            raise InputError(table, "is a link or a folder; cmbdet writes tables as plain files")
        if table.exists() and not overwrite:
            raise InputError(table, "already exists (use --overwrite to replace the tables)")
    check_writable(out_dir, "--out")


@dataclass(frozen=True)
class ScoredSubjects:
    """Metrics of a set of subjects, and what the tables and the plot are drawn from.

    ``operating`` holds each subject's stage-2 scores minus its run's threshold, so that a
    detection is ``operating score >= 0`` even when subjects come from runs (e.g. the folds of
    a cross-validation) with different thresholds.
    """

    metrics: dict
    stage1_froc: dict  # froc() of the stage-1 scores, curve included (for the plot)
    final_froc: dict  # froc() of the stage-2 scores
    operating: list[SubjectScores]


def score_subjects(predictions: dict[str, Path], truth: dict[str, SubjectFiles]) -> ScoredSubjects:
    """Stage 1 and stage 1+2 metrics of the prediction folders against their subjects' truth.

    Args:
        predictions: subject id -> a ``detect`` output folder (candidates.csv, run.json).
        truth: subject id -> the subject's dataset files (lesions.csv or labels).
    """
    final, stage1, operating, all_lesions, thresholds = [], [], [], [], []
    for subject_id, folder in predictions.items():
        lesions = load_ground_truth(truth[subject_id])
        if lesions is None:
            where = truth[subject_id].swi
            where = where.parent if where is not None else Path(f"sub-{subject_id}")
            raise InputError(where, "no ground truth (lesions.csv or labels)")
        visible, ignored = cmb_centres(lesions)
        table = read_result_table(folder / "candidates.csv")
        threshold = run_threshold(folder)
        centres, scores = table.centres_mm, table.scores
        final.append(SubjectScores(subject_id, centres, scores, visible, ignored))
        operating.append(SubjectScores(subject_id, centres, scores - threshold, visible, ignored))
        stage1.append(SubjectScores(subject_id, centres, table.stage1_scores, visible, ignored))
        all_lesions.append(lesions)
        thresholds.append(threshold)
    distinct = sorted(set(thresholds))
    stage1_froc, final_froc = froc(stage1), froc(final)
    metrics = {
        "threshold": distinct[0] if len(distinct) == 1 else distinct,
        "stage1": {**count(stage1, -np.inf).to_json(), "froc": _froc_json(stage1_froc)},
        "stage1+2": {**count(operating, 0.0).to_json(), "froc": _froc_json(final_froc)},
        "bootstrap_95": {
            name: bootstrap_interval(operating, 0.0, name)
            for name in ("sensitivity", "precision", "f1", "fp_per_subject")
        },
        "breakdown": breakdown(operating, all_lesions, 0.0),
    }
    return ScoredSubjects(metrics, stage1_froc, final_froc, operating)


def write_tables(out_dir: Path, scored: ScoredSubjects) -> None:
    """metrics.json (non-finite numbers as null), per_subject.csv and froc.png (both stages;
    where matplotlib is installed) into ``out_dir``, each written at once
    (:func:`cmbdet.io.writing.write_atomic`)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(json_safe(scored.metrics), indent=2, allow_nan=False) + "\n"
    write_atomic(out_dir / "metrics.json", text)
    write_atomic(out_dir / "per_subject.csv", _per_subject_table(scored.operating, 0.0))
    if can_plot():
        write_atomic(out_dir / "froc.png", _froc_plot(scored.stage1_froc, scored.final_froc))
    else:  # the light install (metrics.json has the FROC figures); no earlier plot stays
        (out_dir / "froc.png").unlink(missing_ok=True)


def can_plot() -> bool:
    """Whether matplotlib, which draws froc.png, is installed (``cmbdet[plots]``)."""
    return importlib.util.find_spec("matplotlib") is not None


def json_safe(value):
    """``value`` with NaN and infinities as None (JSON has no such numbers: null), tuples as
    lists and NumPy scalars as Python numbers."""
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def breakdown(subjects: list[SubjectScores], lesions: list[list], threshold: float) -> dict:
    """Misses by apparent size band and region; false positives by the mimic they sit on
    (the nearest listed non-CMB lesion within 5 mm, else "nothing")."""
    misses_by_size = {"<5 mm": [0, 0], "5-10 mm": [0, 0]}  # [missed, total]; "size unknown"
    misses_by_region: dict[str, list[int]] = {}
    false_positives: dict[str, int] = {}
    for subject, truth in zip(subjects, lesions, strict=True):
        keep = subject.scores >= threshold
        result = match_detections(subject.candidates_mm[keep], subject.truth_mm, subject.ignored_mm)
        visible = [c for c in truth if c.is_cmb and c.visible]
        for lesion, found in zip(visible, result.truth_is_found, strict=True):
            band = misses_by_size.setdefault(_size_band(lesion.diameter_mm), [0, 0])
            band[0], band[1] = band[0] + int(not found), band[1] + 1
            region = misses_by_region.setdefault(lesion.region or "unknown", [0, 0])
            region[0], region[1] = region[0] + int(not found), region[1] + 1
        mimics = [c for c in truth if not c.is_cmb]
        mimic_mm = np.array([[c.x_mm, c.y_mm, c.z_mm] for c in mimics]).reshape(-1, 3)
        wrong = subject.candidates_mm[keep][~result.detection_is_hit & ~result.detection_is_ignored]
        for centre in wrong:
            kind = "nothing"
            if len(mimic_mm):
                distance = np.linalg.norm(mimic_mm - centre, axis=1)
                if distance.min() <= MATCH_RADIUS_MM:
                    kind = mimics[int(distance.argmin())].kind
            false_positives[kind] = false_positives.get(kind, 0) + 1
    return {
        "missed_by_size": misses_by_size,
        "missed_by_region": misses_by_region,
        "false_positives_on": false_positives,
    }


def _froc_json(result: dict) -> dict:
    return {
        "sensitivity_at": {str(k): v for k, v in result["sensitivity_at"].items()},
        "mean": result["mean"],
    }


def _per_subject_table(subjects: list[SubjectScores], threshold: float) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["subject", "tp", "fp", "fn", "sensitivity", "precision"])
    for s in subjects:
        c = count([s], threshold)
        writer.writerow(
            [
                s.subject_id,
                c.true_positives,
                c.false_positives,
                c.false_negatives,
                _ratio(c.sensitivity),
                _ratio(c.precision),
            ]
        )
    return buffer.getvalue()


def _ratio(value: float) -> str:
    return f"{value:.4f}" if np.isfinite(value) else ""


def _froc_plot(stage1: dict, final: dict) -> bytes:
    """The FROC curves of both stages as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5, 4), dpi=100)
    for name, result in (("stage 1", stage1), ("stage 1+2", final)):
        curve = np.array([(fps, sens) for _, sens, fps in result["curve"]]).reshape(-1, 2)
        axes.plot(curve[:, 0], curve[:, 1], marker=".", label=f"{name} (mean {result['mean']:.3f})")
    axes.set_xscale("symlog", linthresh=0.125)
    axes.set_xlabel("false positives per subject")
    axes.set_ylabel("sensitivity")
    axes.set_ylim(0, 1.02)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    figure.tight_layout()
    image = io.BytesIO()
    figure.savefig(image, format="png")
    plt.close(figure)
    return image.getvalue()


def _size_band(diameter_mm: float) -> str:
    if math.isnan(diameter_mm):
        return "size unknown"  # a reader-added CMB without a measured diameter
    return "<5 mm" if diameter_mm < 5 else "5-10 mm"
