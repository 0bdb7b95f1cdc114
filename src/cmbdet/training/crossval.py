"""``cmbdet crossval``: the paper's k-fold protocol, split by subject.

For each fold, both stages are trained on the other folds (``train_model`` splits those again
into stage-1, stage-2 and validation subjects, so stage 2 learns from candidates of a stage-1
model that never saw them and thresholds are chosen on training folds only), then the held-out
fold is detected and scored. Folds, models and predictions are kept under ``out_dir``:

    folds.json               the split (reused on resume)
    fold-<n>/model/          that fold's model folder (resumes from its checkpoints)
    predictions/sub-<id>/    ``detect`` outputs of every subject, by the fold that held it out
    pooled/                  metrics.json, per_subject.csv, froc.png over all subjects
    crossval.json            per-fold and pooled metrics, settings and timings
    per_fold.csv             the per-fold table

A killed run resumes where it stopped: finished folds are not retrained and finished subjects
are not detected again.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cmbdet.detect.detector import Detector
from cmbdet.detect.outputs import write_outputs
from cmbdet.errors import InputError
from cmbdet.evaluation.evaluate import json_safe, score_subjects, write_tables
from cmbdet.io.dataset import SubjectFiles, check_phase_given, find_subjects, load_ground_truth
from cmbdet.io.writing import check_writable, refuse_links, write_atomic
from cmbdet.training.config import TrainModelConfig
from cmbdet.training.model import train_model
from cmbdet.training.truth import labelled_subjects
from cmbdet.version import __version__

log = logging.getLogger(__name__)

STAGES = ("stage1", "stage1+2")


def make_folds(cmb_counts: dict[str, int], folds: int, seed: int) -> list[list[str]]:
    """Split subjects into ``folds`` folds of near-equal size and near-equal CMB count.

    Subjects are shuffled (seeded), ordered by CMB count (most first; the sort is stable, so
    ties keep the shuffled order) and dealt out in a snake order: 1, 2, .., k, k, .., 2, 1, ...

    Args:
        cmb_counts: subject id -> number of visible CMBs.

    Returns:
        ``folds`` sorted lists of subject ids.
    """
    if folds < 2:
        raise InputError(None, f"--folds must be at least 2, got {folds}")
    if len(cmb_counts) < 3 * folds:
        raise InputError(
            None, f"{folds} folds need at least {3 * folds} subjects, got {len(cmb_counts)}"
        )
    ids = sorted(cmb_counts)
    shuffled = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
    ordered = sorted(shuffled, key=lambda i: -cmb_counts[i])
    assignment: list[list[str]] = [[] for _ in range(folds)]
    for position, subject_id in enumerate(ordered):
        lap, step = divmod(position, folds)
        assignment[step if lap % 2 == 0 else folds - 1 - step].append(subject_id)
    return [sorted(fold) for fold in assignment]


def crossval(
    data_dir: Path,
    out_dir: Path,
    folds: int = 5,
    config: TrainModelConfig | None = None,
    progress: bool = True,
) -> dict:
    """Run (or resume) the k-fold protocol on ``data_dir``; returns what crossval.json holds."""
    config = config or TrainModelConfig()
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    labelled = {s.subject_id: s for s in labelled_subjects([data_dir]).values()}
    subjects = {s.subject_id: labelled.get(s.subject_id, s) for s in find_subjects(data_dir)}
    if config.preprocess.reads_phase:
        check_phase_given(subjects.values())
    counts = _visible_cmb_counts(subjects)
    check_writable(out_dir)
    refuse_links(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    split = _load_or_make_split(out_dir, data_dir, counts, folds, config.seed)
    timings = {}
    for number, held_out in enumerate(split, start=1):
        started = time.perf_counter()
        detector = _fold_model(data_dir, out_dir, number, held_out, subjects, config)
        trained = time.perf_counter()
        _detect_fold(detector, [subjects[i] for i in held_out], out_dir / "predictions", progress)
        timings[f"fold-{number}"] = {
            "train_s": trained - started,
            "detect_s": time.perf_counter() - trained,
        }
    predictions = out_dir / "predictions"
    per_fold = [
        score_subjects({i: predictions / f"sub-{i}" for i in fold}, subjects).metrics
        for fold in split
    ]
    pooled = score_subjects({i: predictions / f"sub-{i}" for i in sorted(counts)}, subjects)
    write_tables(out_dir / "pooled", pooled)
    result = {
        "cmbdet_version": __version__,
        "data": str(data_dir),
        "folds": len(split),
        "subjects": len(counts),
        "cmbs": int(sum(counts.values())),
        "settings": _settings_json(config),
        "timings_s": timings,
        "per_fold": per_fold,
        "pooled": pooled.metrics,
    }
    write_atomic(out_dir / "crossval.json", json.dumps(json_safe(result), indent=2) + "\n")
    _write_per_fold(out_dir / "per_fold.csv", per_fold, pooled.metrics)
    return result


def _visible_cmb_counts(subjects: dict[str, SubjectFiles]) -> dict[str, int]:
    counts = {}
    for subject_id, files in subjects.items():
        lesions = load_ground_truth(files)
        if lesions is None:
            raise InputError(files.swi.parent, "no ground truth (lesions.csv or labels)")
        counts[subject_id] = sum(1 for lesion in lesions if lesion.is_cmb and lesion.visible)
    return counts


def _load_or_make_split(
    out_dir: Path, data_dir: Path, counts: dict[str, int], folds: int, seed: int
) -> list[list[str]]:
    path = out_dir / "folds.json"
    if path.exists():
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            saved_ids = sorted(str(i) for fold in saved["folds"] for i in fold)
        except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError) as error:
            raise InputError(path, f"is not a split cmbdet crossval wrote ({error!r})") from None
        if len(saved["folds"]) != folds or saved_ids != sorted(counts):
            raise InputError(
                path,
                f"holds a different split ({len(saved['folds'])} folds, {len(saved_ids)} "
                "subjects); choose another --out to start a new cross-validation",
            )
        return saved["folds"]
    split = make_folds(counts, folds, seed)
    record = {
        "data": str(data_dir),
        "seed": seed,
        "folds": split,
        "cmbs_per_fold": [sum(counts[i] for i in fold) for fold in split],
    }
    write_atomic(path, json.dumps(record, indent=2) + "\n")
    return split


def _fold_model(
    data_dir: Path,
    out_dir: Path,
    number: int,
    held_out: list[str],
    subjects: dict[str, SubjectFiles],
    config: TrainModelConfig,
) -> Detector:
    """Train (or resume, or reuse) fold ``number``'s model on every subject not held out."""
    model_dir = out_dir / f"fold-{number}" / "model"
    if not (model_dir / "model.json").is_file():
        log.info("fold %d: training on %d subjects", number, len(subjects) - len(held_out))
        training = set(subjects) - set(held_out)
        train_model([data_dir], model_dir, config, only_subjects=training)
    return Detector.load(model_dir, precision="float32")  # the thresholds' precision


def _detect_fold(
    detector: Detector, held_out: list[SubjectFiles], predictions: Path, progress: bool
) -> None:
    """Detect each held-out subject not already done (a finished folder has run.json)."""
    todo = [s for s in held_out if not (predictions / f"sub-{s.subject_id}" / "run.json").is_file()]
    for subject in tqdm(todo, desc="detect held-out fold", unit="subject", disable=not progress):
        result = detector.detect(subject.swi, subject.phase, subject.magnitude, subject.brainmask)
        write_outputs(
            predictions / f"sub-{subject.subject_id}", result, result.reference, overwrite=True
        )


def _settings_json(config: TrainModelConfig) -> dict:
    return json.loads(json.dumps(asdict(config), default=list))


def _write_per_fold(path: Path, per_fold: list[dict], pooled: dict) -> None:
    columns = ("tp", "fp", "fn", "sensitivity", "precision", "f1", "fp_per_subject")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["fold", "stage", "subjects", *columns, "froc_mean"])
    rows = [(str(n), m) for n, m in enumerate(per_fold, start=1)] + [("pooled", pooled)]
    for name, metrics in rows:
        for stage in STAGES:
            m = metrics[stage]
            writer.writerow(
                [name, stage, m["subjects"]]
                + [_cell(m[c]) for c in columns]
                + [f"{m['froc']['mean']:.4f}"]
            )
    write_atomic(path, buffer.getvalue())


def _cell(value) -> str:
    return str(value) if isinstance(value, int) else f"{value:.4f}"


def format_table(result: dict) -> str:
    """The per-fold and pooled table, as printed by ``cmbdet crossval``."""
    lines = [
        f"{'fold':>6} {'stage':>9} {'sens':>6} {'prec':>6} {'F1':>6} {'FP/subj':>8} {'FROC':>6}"
    ]
    rows = [(str(n), m) for n, m in enumerate(result["per_fold"], start=1)]
    for name, metrics in rows + [("pooled", result["pooled"])]:
        for stage in STAGES:
            m = metrics[stage]
            lines.append(
                f"{name:>6} {stage:>9} {m['sensitivity']:6.3f} {m['precision']:6.3f} "
                f"{m['f1']:6.3f} {m['fp_per_subject']:8.2f} {m['froc']['mean']:6.3f}"
            )
    return "\n".join(lines)
