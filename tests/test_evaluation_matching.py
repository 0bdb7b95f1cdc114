"""The hit rule on hand-made cases with exact answers."""

from __future__ import annotations

import numpy as np

from cmbdet.evaluation.matching import match_detections


def test_no_truth_and_no_detections():
    result = match_detections(np.zeros((0, 3)), np.zeros((0, 3)))
    assert (result.true_positives, result.false_positives, result.false_negatives) == (0, 0, 0)


def test_only_false_positives():
    result = match_detections([[0, 0, 0], [50, 0, 0]], np.zeros((0, 3)))
    assert (result.true_positives, result.false_positives, result.false_negatives) == (0, 2, 0)


def test_no_detections_misses_every_cmb():
    result = match_detections(np.zeros((0, 3)), [[0, 0, 0], [10, 0, 0]])
    assert (result.true_positives, result.false_positives, result.false_negatives) == (0, 0, 2)


def test_two_detections_on_one_cmb_give_one_hit_and_one_false_positive():
    result = match_detections([[1, 0, 0], [0, 2, 0]], [[0, 0, 0]])
    assert (result.true_positives, result.false_positives, result.false_negatives) == (1, 1, 0)
    assert result.detection_is_hit.tolist() == [True, False]  # the nearer one is the hit


def test_detection_at_exactly_five_mm_is_a_hit_and_beyond_is_not():
    assert match_detections([[5.0, 0, 0]], [[0, 0, 0]]).true_positives == 1
    assert match_detections([[3.0, 4.0, 0]], [[0, 0, 0]]).true_positives == 1
    assert match_detections([[5.001, 0, 0]], [[0, 0, 0]]).true_positives == 0


def test_detection_on_an_ignored_cmb_is_neither_hit_nor_false_positive():
    result = match_detections([[0, 0, 1]], np.zeros((0, 3)), ignored_mm=[[0, 0, 0]])
    assert (result.true_positives, result.false_positives, result.false_negatives) == (0, 0, 0)


def test_matching_is_one_to_one_and_globally_optimal():
    # greedy nearest-first would pair detection 0 with CMB 1 and lose CMB 0
    detections = [[0, 0, 0], [6, 0, 0]]
    truth = [[-4, 0, 0], [2, 0, 0]]
    result = match_detections(detections, truth)
    assert result.true_positives == 2 and result.false_negatives == 0
    assert result.matched_truth.tolist() == [0, 1]
