"""Counts, FROC and ``cmbdet evaluate`` on hand-made cases with exact answers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cmbdet.evaluation.metrics import SubjectScores, bootstrap_interval, count, froc


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
