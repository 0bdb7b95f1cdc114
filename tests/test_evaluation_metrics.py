"""Counts, FROC and ``cmbdet evaluate`` on hand-made cases with exact answers."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cmbdet.cli import main
from cmbdet.evaluation.metrics import SubjectScores, bootstrap_interval, count, froc
from cmbdet.io.lesions import Lesion, write_lesions_csv
from cmbdet.io.results import COLUMNS


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


# ----------------------------------------------------------------------------- exact FROC


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 6))
def test_the_froc_curve_equals_the_counts_at_every_score(seed, subjects):
    rng = np.random.default_rng(seed)
    cases = []
    for n in range(subjects):
        truth = rng.uniform(0, 40, (rng.integers(0, 4), 3))
        ignored = rng.uniform(0, 40, (rng.integers(0, 2), 3))
        near = (
            truth[rng.integers(0, len(truth), 4)] + rng.normal(0, 3, (4, 3)) if len(truth) else []
        )
        candidates = np.concatenate([np.reshape(near, (-1, 3)), rng.uniform(0, 40, (8, 3))])
        scores = rng.integers(0, 6, len(candidates)) / 5  # ties on purpose
        cases.append(_subject(f"s{n}", candidates, scores, truth, ignored))
    result = froc(cases)
    distinct = sorted({float(s) for case in cases for s in case.scores}, reverse=True)
    assert [t for t, _, _ in result["curve"]] == distinct  # every score is a threshold
    for threshold, sensitivity, fp_per_subject in result["curve"]:
        exact = count(cases, threshold)
        assert fp_per_subject == exact.fp_per_subject
        assert sensitivity == exact.sensitivity or (
            np.isnan(sensitivity) and np.isnan(exact.sensitivity)
        )


def test_the_froc_reaches_points_between_quantiles():
    # 400 distinct scores on one subject: a 200-quantile sweep skips thresholds; the exact
    # sweep finds the CMB at 1/8 FP per subject (one false positive over 8 subjects)
    found = _subject("a", [[0, 0, 0]], [0.5005], [[0, 0, 0]])
    wrong = _subject("b", np.arange(400)[:, None] * [[20, 0, 0]], np.linspace(0.001, 0.5, 400), [])
    empty = [_subject(f"e{n}", [], [], []) for n in range(6)]
    result = froc([found, wrong, *empty])
    assert result["sensitivity_at"][0.125] == 1.0
    assert len(result["curve"]) == 401


# ----------------------------------------------------------------------------- evaluate's files


def _evaluation_case(tmp_path, *, lesions=True):
    """A truth dataset and predictions folder of one subject: (pred, truth)."""
    truth = tmp_path / "truth" / "sub-0001"
    truth.mkdir(parents=True)
    for name in ("swi", "phase"):
        (truth / f"{name}.nii.gz").write_bytes(b"")  # only the layout is read
    cmbs = [Lesion(1, "cmb", 0.0, 0.0, 0.0, 0, 0, 0, 3.0, True)] if lesions else []
    write_lesions_csv(truth / "lesions.csv", cmbs)
    pred = tmp_path / "pred" / "sub-0001"
    pred.mkdir(parents=True)
    with open(pred / "candidates.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerow([1, 1.0, 0, 0, 0, 0, 0, 0.95, 0.9, 3, 2])
        writer.writerow([2, 40.0, 0, 0, 0, 0, 0, 0.6, 0.8, 3, 2])
    (pred / "run.json").write_text(json.dumps({"threshold": 0.5}))
    return tmp_path / "pred", tmp_path / "truth"


def _evaluate(pred, truth, out, *more) -> int:
    return main(["evaluate", "--pred", str(pred), "--truth", str(truth), "--out", str(out), *more])


def test_evaluate_never_overwrites_tables_unless_asked(tmp_path, capsys):
    pred, truth = _evaluation_case(tmp_path)
    out = tmp_path / "eval"
    out.mkdir()
    (out / "metrics.json").write_text("mine")
    (out / "notes.txt").write_text("keep")
    assert _evaluate(pred, truth, out) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "metrics.json" in error[0] and "--overwrite" in error[0]
    assert (out / "metrics.json").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "notes.txt"]
    assert _evaluate(pred, truth, out, "--overwrite") == 0
    assert json.loads((out / "metrics.json").read_text())["stage1+2"]["tp"] == 1
    assert (out / "notes.txt").read_text() == "keep"


def test_evaluate_refuses_an_out_that_is_a_file_or_unwritable(tmp_path, capsys):
    pred, truth = _evaluation_case(tmp_path)
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file", "/proc/cmbdet-test-out"):
        assert _evaluate(pred, truth, out) == 2
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and error[0].startswith(f"cmbdet: error: {out}")
    assert (tmp_path / "file").read_text() == "x"


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda pred: (pred / "candidates.csv").write_bytes(b""), "empty"),
        (lambda pred: (pred / "run.json").unlink(), "run record is missing"),
        (lambda pred: (pred / "run.json").write_text('{"threshold": NaN}'), "not a probability"),
        (
            lambda pred: (pred / "candidates.csv").write_text(
                ",".join(COLUMNS) + "\n1,0,0,0,0,0,0,nan,0.9,3,2\n"
            ),
            "line 2: score is nan",
        ),
        (
            lambda pred: (pred / "candidates.csv").write_text("detection_id,x_mm\n1,0\n"),
            "lacks columns: y_mm, z_mm, score, stage1_score",
        ),
    ],
)
def test_evaluate_refuses_predictions_it_cannot_trust(tmp_path, capsys, damage, problem):
    pred, truth = _evaluation_case(tmp_path)
    damage(pred / "sub-0001")
    assert _evaluate(pred, truth, tmp_path / "eval") == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and problem in error[0] and "sub-0001" in error[0]
    assert not (tmp_path / "eval").exists()


def test_metrics_json_is_valid_json_when_the_truth_has_no_cmbs(tmp_path):
    pred, truth = _evaluation_case(tmp_path, lesions=False)
    assert _evaluate(pred, truth, tmp_path / "eval") == 0

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    text = (tmp_path / "eval" / "metrics.json").read_text()
    metrics = json.loads(text, parse_constant=refuse)
    assert metrics["stage1+2"]["sensitivity"] is None  # undefined without CMBs: null
    assert metrics["stage1+2"]["fp"] == 2 and metrics["stage1+2"]["precision"] == 0.0
