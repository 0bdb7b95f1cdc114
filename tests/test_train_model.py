"""Choosing operating thresholds and splitting subjects for ``cmbdet train``."""

from __future__ import annotations

import numpy as np
import pytest

from cmbdet.errors import InputError
from cmbdet.io.dataset import Lesion
from cmbdet.pipeline.train_model import (
    TrainModelConfig,
    choose_threshold,
    choose_threshold_for_fp_budget,
    split_subjects,
)


def _cmb(lesion_id: int, x: float) -> Lesion:
    return Lesion(lesion_id, "cmb", x, 0.0, 0.0, 0.0, 0.0, 0.0, 3.0, True)


def test_threshold_is_the_highest_that_keeps_the_sensitivity():
    lesions = [_cmb(1, 0.0), _cmb(2, 50.0)]
    candidates = np.array([[0.0, 0, 0], [50.0, 0, 0], [100.0, 0, 0]])
    scores = np.array([0.9, 0.4, 0.6])  # the false positive outranks the second CMB
    threshold, metrics = choose_threshold([(candidates, scores, lesions)], 0.95)
    assert threshold == pytest.approx(0.4)
    assert metrics["sensitivity"] == 1.0 and metrics["fp_per_subject"] == 1.0
    threshold, metrics = choose_threshold([(candidates, scores, lesions)], 0.5)
    assert threshold == pytest.approx(0.9) and metrics["fp_per_subject"] == 0.0


def test_unreachable_sensitivity_settles_for_what_is_reachable_at_the_highest_threshold():
    lesions = [_cmb(1, 0.0), _cmb(2, 50.0)]  # the second CMB is never proposed
    candidates = np.array([[0.0, 0, 0], [100.0, 0, 0]])
    scores = np.array([0.8, 0.3])
    threshold, metrics = choose_threshold([(candidates, scores, lesions)], 0.98)
    assert threshold == pytest.approx(0.8) and metrics["sensitivity"] == 0.5


def test_fp_budget_picks_the_best_sensitivity_within_the_budget():
    lesions = [_cmb(1, 0.0), _cmb(2, 50.0), _cmb(3, 150.0)]
    candidates = np.array([[0.0, 0, 0], [100.0, 0, 0], [50.0, 0, 0], [200, 0, 0], [150, 0, 0]])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.3])  # hit, FP, hit, FP, hit
    validation = [(candidates, scores, lesions)]
    threshold, metrics = choose_threshold_for_fp_budget(validation, 1.0)
    assert threshold == pytest.approx(0.7)  # 2 of 3 CMBs at 1 FP; 0.3 would need 2 FP
    assert metrics["sensitivity"] == pytest.approx(2 / 3) and metrics["fp_per_subject"] == 1.0
    threshold, metrics = choose_threshold_for_fp_budget(validation, 2.0)
    assert threshold == pytest.approx(0.3) and metrics["sensitivity"] == 1.0
    threshold, metrics = choose_threshold_for_fp_budget(validation, 0.5)
    assert threshold == pytest.approx(0.9) and metrics["fp_per_subject"] == 0.0


def test_fp_budget_no_threshold_can_meet_keeps_the_highest_threshold():
    lesions = [_cmb(1, 0.0)]
    candidates = np.array([[100.0, 0, 0], [200.0, 0, 0], [0.0, 0, 0]])
    scores = np.array([0.9999, 0.9999, 0.5])  # two false positives above every threshold
    threshold, metrics = choose_threshold_for_fp_budget([(candidates, scores, lesions)], 1.0)
    assert threshold == pytest.approx(0.999) and metrics["fp_per_subject"] == 2.0


def test_split_is_seeded_disjoint_and_complete():
    ids = [f"d/{n:04d}" for n in range(20)]
    splits = split_subjects(ids, TrainModelConfig())
    assert splits == split_subjects(ids, TrainModelConfig())
    parts = [set(v) for v in splits.values()]
    assert set.union(*parts) == set(ids) and sum(len(p) for p in parts) == len(ids)
    assert len(splits["stage1"]) == 10 and len(splits["validation"]) == 3
    with pytest.raises(InputError):
        split_subjects(ids[:2], TrainModelConfig())
