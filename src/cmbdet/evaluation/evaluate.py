"""``cmbdet evaluate``: score ``detect`` outputs against ground truth and write the tables.

Predictions: a folder with ``sub-<id>/candidates.csv`` (from ``cmbdet detect --dataset``) or a
single subject's output folder. Truth: a dataset in the DESIGN.md layout (``lesions.csv``, or a
CMB mask read as 26-connected components). Stage 1 is scored on all candidates by their
stage-1 score, stage 1+2 on the detections (stage-2 score at or above the run's threshold).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from cmbdet.errors import InputError
from cmbdet.evaluation.matching import MATCH_RADIUS_MM, cmb_centres, match_detections
from cmbdet.evaluation.metrics import SubjectScores, bootstrap_interval, count, froc
from cmbdet.io.dataset import find_subjects, load_ground_truth


def read_candidates(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World centres (N, 3), stage-2 scores (N,) and stage-1 scores (N,) of a candidates.csv."""
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        centres = np.array(
            [[float(r["x_mm"]), float(r["y_mm"]), float(r["z_mm"])] for r in rows]
        ).reshape(-1, 3)
        scores = np.array([float(r["score"]) for r in rows])
        stage1 = np.array([float(r["stage1_score"]) for r in rows])
    except (OSError, KeyError, ValueError) as error:
        raise InputError(path, f"not a readable candidates table ({error})") from None
    return centres, scores, stage1


def _prediction_folders(pred_dir: Path) -> dict[str, Path]:
    if (pred_dir / "candidates.csv").is_file():
        return {"": pred_dir}
    folders = {p.name[4:]: p for p in sorted(pred_dir.glob("sub-*")) if p.is_dir()}
    if not folders:
        raise InputError(pred_dir, "no candidates.csv and no sub-*/ prediction folders")
    return folders


def evaluate(pred_dir: Path, truth_dir: Path, out_dir: Path) -> dict:
    """Score predictions; write metrics.json, per_subject.csv and froc.png to ``out_dir``."""
    predictions = _prediction_folders(Path(pred_dir))
    truth = {s.subject_id: s for s in find_subjects(truth_dir)}
    if "" in predictions and len(truth) == 1:
        predictions = {next(iter(truth)): predictions[""]}
    missing = sorted(set(truth) - set(predictions))
    if missing:
        raise InputError(
            pred_dir, f"no predictions for sub-{missing[0]} ({len(missing)} subjects missing)"
        )
    threshold = _run_threshold(predictions)
    final, stage1, all_lesions = [], [], []
    for subject_id, files in truth.items():
        lesions = load_ground_truth(files)
        if lesions is None:
            raise InputError(files.swi.parent, "no ground truth (lesions.csv or labels)")
        visible, ignored = cmb_centres(lesions)
        centres, scores, stage1_scores = read_candidates(predictions[subject_id] / "candidates.csv")
        final.append(SubjectScores(subject_id, centres, scores, visible, ignored))
        all_lesions.append(lesions)
        stage1.append(SubjectScores(subject_id, centres, stage1_scores, visible, ignored))
    metrics = {
        "threshold": threshold,
        "stage1": {**count(stage1, -np.inf).to_json(), "froc": _froc_json(froc(stage1))},
        "stage1+2": {**count(final, threshold).to_json(), "froc": _froc_json(froc(final))},
        "bootstrap_95": {
            name: bootstrap_interval(final, threshold, name)
            for name in ("sensitivity", "precision", "f1", "fp_per_subject")
        },
        "breakdown": breakdown(final, all_lesions, threshold),
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    _write_per_subject(out_dir / "per_subject.csv", final, threshold)
    _plot_froc(out_dir / "froc.png", froc(stage1), froc(final))
    return metrics


def breakdown(subjects: list[SubjectScores], lesions: list[list], threshold: float) -> dict:
    """Misses by apparent size band and region; false positives by the mimic they sit on
    (the nearest listed non-CMB lesion within 5 mm, else "nothing")."""
    misses_by_size = {"<5 mm": [0, 0], "5-10 mm": [0, 0]}  # [missed, total]
    misses_by_region: dict[str, list[int]] = {}
    false_positives: dict[str, int] = {}
    for subject, truth in zip(subjects, lesions, strict=True):
        keep = subject.scores >= threshold
        result = match_detections(subject.candidates_mm[keep], subject.truth_mm, subject.ignored_mm)
        visible = [c for c in truth if c.is_cmb and c.visible]
        for lesion, found in zip(visible, result.truth_is_found, strict=True):
            band = misses_by_size["<5 mm" if lesion.diameter_mm < 5 else "5-10 mm"]
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


def _run_threshold(predictions: dict[str, Path]) -> float:
    run = next(iter(predictions.values())) / "run.json"
    if run.is_file():
        return float(json.loads(run.read_text()).get("threshold", 0.5))
    return 0.5


def _froc_json(result: dict) -> dict:
    return {
        "sensitivity_at": {str(k): v for k, v in result["sensitivity_at"].items()},
        "mean": result["mean"],
    }


def _write_per_subject(path: Path, subjects: list[SubjectScores], threshold: float) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["subject", "tp", "fp", "fn", "sensitivity", "precision"])
        for s in subjects:
            c = count([s], threshold)
            writer.writerow(
                [
                    s.subject_id,
                    c.true_positives,
                    c.false_positives,
                    c.false_negatives,
                    f"{c.sensitivity:.4f}",
                    f"{c.precision:.4f}",
                ]
            )


def _plot_froc(path: Path, stage1: dict, final: dict) -> None:
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
    figure.savefig(path)
    plt.close(figure)
