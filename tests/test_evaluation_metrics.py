"""Counts, FROC and ``cmbdet evaluate`` on hand-made cases with exact answers."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from cmbdet.cli import main
from cmbdet.evaluation.metrics import SubjectScores, bootstrap_interval, count, froc
from cmbdet.io.dataset import Lesion, write_lesions_csv
from cmbdet.pipeline.outputs import COLUMNS


def _subject(name, candidates, scores, truth, ignored=()):
    return SubjectScores(
        name,
        np.array(candidates, float).reshape(-1, 3),
        np.array(scores, float),
        np.array(truth, float).reshape(-1, 3),
        np.array(ignored, float).reshape(-1, 3),
    )


SUBJECTS = [
    # one CMB found at 0.9, one false positive at 0.8, one CMB found only at 0.3
    _subject("a", [[0, 0, 0], [40, 0, 0], [80, 0, 0]], [0.9, 0.8, 0.3], [[0, 0, 0], [80, 0, 0]]),
    # no CMB at all: two false positives (0.6, 0.2), one on an ignored CMB (0.7)
    _subject("b", [[0, 0, 0], [20, 0, 0], [60, 0, 0]], [0.6, 0.7, 0.2], [], [[20, 0, 1]]),
]


def test_counts_at_a_threshold_are_exact_fractions():
    c = count(SUBJECTS, 0.5)
    assert (c.true_positives, c.false_positives, c.false_negatives) == (1, 2, 1)
    assert c.sensitivity == pytest.approx(1 / 2) and c.precision == pytest.approx(1 / 3)
    assert c.fp_per_subject == pytest.approx(1.0)  # the subject without CMBs counts
    assert c.f1 == pytest.approx(2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3))


def test_froc_reads_sensitivity_at_each_false_positive_rate():
    result = froc(SUBJECTS)
    at = result["sensitivity_at"]
    assert at[0.125] == pytest.approx(1 / 2)  # threshold 0.9: 1 hit, 0 FP
    assert at[0.5] == pytest.approx(1 / 2)  # 0.8 adds 1 FP over 2 subjects = 0.5
    # 0.7 lands on the ignored CMB (no FP); 0.6 makes 2 FP; 0.3 finds the second CMB with
    # still 2 FP over 2 subjects; 0.2 adds a third FP (1.5 per subject)
    assert at[1.0] == pytest.approx(1.0)
    assert at[2.0] == pytest.approx(1.0)
    assert result["mean"] == pytest.approx((3 * 0.5 + 4 * 1.0) / 7)


def test_bootstrap_of_identical_subjects_is_the_point_value():
    same = [_subject(f"s{n}", [[0, 0, 0], [40, 0, 0]], [0.9, 0.9], [[0, 0, 0]]) for n in range(4)]
    assert bootstrap_interval(same, 0.5, "sensitivity") == (1.0, 1.0)
    assert bootstrap_interval(same, 0.5, "precision") == (0.5, 0.5)
    assert bootstrap_interval(same, 0.5, "fp_per_subject") == (1.0, 1.0)


def test_bootstrap_spans_the_resamples_of_two_opposite_subjects():
    # resampling two subjects gives {found, found}, {found, missed} or {missed, missed}:
    # pooled sensitivity 1, 1/2 or 0 with probabilities 1/4, 1/2, 1/4
    found = _subject("found", [[0, 0, 0]], [0.9], [[0, 0, 0]])
    missed = _subject("missed", [[50, 0, 0], [90, 0, 0]], [0.9, 0.9], [[0, 0, 0]])
    assert bootstrap_interval([found, missed], 0.5, "sensitivity") == (0.0, 1.0)
    # false positives per subject: 0 + 0, 0 + 2 or 2 + 2 over 2 subjects
    assert bootstrap_interval([found, missed], 0.5, "fp_per_subject") == (0.0, 2.0)
    assert bootstrap_interval([found, missed], 0.5, "sensitivity", seed=3) == (0.0, 1.0)


def test_bootstrap_skips_resamples_where_the_statistic_is_undefined():
    # no CMB anywhere: sensitivity is undefined in every resample
    empty = [_subject("e", [[0, 0, 0]], [0.9], [])]
    low, high = bootstrap_interval(empty, 0.5, "sensitivity")
    assert np.isnan(low) and np.isnan(high)
    assert bootstrap_interval(empty, 0.5, "fp_per_subject") == (1.0, 1.0)


def test_evaluate_command_writes_the_tables(tmp_path):
    truth = tmp_path / "truth" / "sub-0001"
    truth.mkdir(parents=True)
    for name in ("swi", "phase"):
        (truth / f"{name}.nii.gz").write_bytes(b"")  # only the layout is read
    write_lesions_csv(
        truth / "lesions.csv",
        [
            Lesion(1, "cmb", 0.0, 0.0, 0.0, 0, 0, 0, 3.0, True),
            Lesion(2, "cmb", 50.0, 0.0, 0.0, 0, 0, 0, 3.0, True),
            Lesion(3, "calcification", 90.0, 0.0, 0.0, 0, 0, 0, 3.0, True),
        ],
    )
    pred = tmp_path / "pred" / "sub-0001"
    pred.mkdir(parents=True)
    with open(pred / "candidates.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerow([1, 1.0, 0, 0, 0, 0, 0, 0.95, 0.9, 3, 2])
        writer.writerow([2, 90.0, 0, 0, 0, 0, 0, 0.6, 0.8, 3, 2])  # on the calcification
        writer.writerow([3, 53.0, 4.0, 0, 0, 0, 0, 0.4, 0.5, 3, 2])  # exactly 5 mm away
    (pred / "run.json").write_text(json.dumps({"threshold": 0.5}))
    out = tmp_path / "eval"
    assert (
        main(
            [
                "evaluate",
                "--pred",
                str(tmp_path / "pred"),
                "--truth",
                str(tmp_path / "truth"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["stage1+2"]["sensitivity"] == pytest.approx(1 / 2)
    assert metrics["stage1+2"]["fp"] == 1
    assert metrics["stage1"]["sensitivity"] == pytest.approx(1.0)  # all candidates
    assert metrics["stage1"]["fp"] == 1  # the calcification is a false positive
    assert metrics["breakdown"]["missed_by_size"] == {"<5 mm": [1, 2], "5-10 mm": [0, 0]}
    assert metrics["breakdown"]["false_positives_on"] == {"calcification": 1}
    assert (out / "froc.png").stat().st_size > 1000
    assert (out / "per_subject.csv").read_text().startswith("subject,tp,fp,fn")
