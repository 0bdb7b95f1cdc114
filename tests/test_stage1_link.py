"""Linking boxes on neighbouring slices into 3D candidates."""

from __future__ import annotations

import numpy as np
import pytest

from cmbdet.stage1.decode import SliceDetections
from cmbdet.stage1.link import link_slices


def _slice(boxes, scores):
    return SliceDetections(np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32))


def test_linking_joins_a_blob_over_three_slices_and_keeps_others_apart():
    detections = [
        _slice([[10, 10, 14, 14]], [0.5]),
        _slice([[11, 10, 15, 14], [50, 50, 54, 54]], [0.9, 0.3]),
        _slice([[10, 11, 14, 15]], [0.6]),
        SliceDetections.empty(),
        _slice([[10, 10, 14, 14]], [0.4]),  # two slices away: a new candidate
    ]
    candidates = link_slices(detections, pixel_mm=0.5, max_distance_mm=3.0)
    assert [c.slices for c in candidates] == [3, 1, 1]
    assert [c.score for c in candidates] == pytest.approx([0.9, 0.4, 0.3])
    first = candidates[0]
    expected = (
        0.5 * np.array([12, 12, 0]) + 0.9 * np.array([13, 12, 1]) + 0.6 * np.array([12, 13, 2])
    ) / 2.0
    np.testing.assert_allclose(first.centre, expected)


def test_linking_of_no_detections_is_empty():
    assert link_slices([SliceDetections.empty()] * 4, pixel_mm=0.5) == []
    assert link_slices([], pixel_mm=0.5) == []


def test_linking_respects_the_distance_limit():
    detections = [_slice([[0, 0, 4, 4]], [0.5]), _slice([[8, 0, 12, 4]], [0.5])]
    assert len(link_slices(detections, pixel_mm=0.5, max_distance_mm=3.0)) == 2
    assert len(link_slices(detections, pixel_mm=0.5, max_distance_mm=5.0)) == 1
