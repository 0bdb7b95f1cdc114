"""The hit rule of DESIGN.md.

A detection matches a ground-truth CMB when their centres are at most ``radius_mm`` (5 mm)
apart in world space. Matching is one-to-one, by the Hungarian algorithm on distance. An
unmatched detection is a false positive unless it lies within ``radius_mm`` of an ignored
(``visible = 0``) CMB, in which case it counts as nothing. Ignored CMBs are never misses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

MATCH_RADIUS_MM = 5.0


def cmb_centres(lesions) -> tuple[np.ndarray, np.ndarray]:
    """World centres of the visible (M, 3) and ignored (K, 3) CMBs of a ground-truth list
    (mimics are neither)."""
    visible = [[c.x_mm, c.y_mm, c.z_mm] for c in lesions if c.is_cmb and c.visible]
    ignored = [[c.x_mm, c.y_mm, c.z_mm] for c in lesions if c.is_cmb and not c.visible]
    return np.array(visible, float).reshape(-1, 3), np.array(ignored, float).reshape(-1, 3)


@dataclass(frozen=True)
class MatchResult:
    """Outcome of matching one subject's detections.

    Attributes:
        detection_is_hit: (N,) bool, matched to a visible CMB.
        detection_is_ignored: (N,) bool, unmatched but on an ignored CMB.
        truth_is_found: (M,) bool, per visible CMB.
        matched_truth: (N,) int, index of the matched CMB or -1.
    """

    detection_is_hit: np.ndarray
    detection_is_ignored: np.ndarray
    truth_is_found: np.ndarray
    matched_truth: np.ndarray

    @property
    def true_positives(self) -> int:
        return int(self.detection_is_hit.sum())

    @property
    def false_positives(self) -> int:
        return int((~self.detection_is_hit & ~self.detection_is_ignored).sum())

    @property
    def false_negatives(self) -> int:
        return int((~self.truth_is_found).sum())


def match_detections(
    detections_mm: np.ndarray,
    truth_mm: np.ndarray,
    ignored_mm: np.ndarray | None = None,
    radius_mm: float = MATCH_RADIUS_MM,
) -> MatchResult:
    """Match one subject's detections to its visible CMBs.

    Args:
        detections_mm: (N, 3) detection centres, world mm (N may be 0).
        truth_mm: (M, 3) visible CMB centres, world mm (M may be 0).
        ignored_mm: (K, 3) centres of ignored CMBs, world mm.
        radius_mm: largest centre distance of a hit (inclusive).
    """
    detections = np.asarray(detections_mm, dtype=np.float64).reshape(-1, 3)
    truth = np.asarray(truth_mm, dtype=np.float64).reshape(-1, 3)
    ignored = (
        np.zeros((0, 3)) if ignored_mm is None else np.asarray(ignored_mm, float).reshape(-1, 3)
    )
    hit = np.zeros(len(detections), dtype=bool)
    matched = np.full(len(detections), -1)
    found = np.zeros(len(truth), dtype=bool)
    if len(detections) and len(truth):
        distance = cdist(detections, truth)
        # forbid pairs beyond the radius with a cost no allowed pairing can reach
        cost = np.where(distance <= radius_mm, distance, 1e6)
        rows, cols = linear_sum_assignment(cost)
        valid = distance[rows, cols] <= radius_mm
        hit[rows[valid]] = True
        matched[rows[valid]] = cols[valid]
        found[cols[valid]] = True
    on_ignored = np.zeros(len(detections), dtype=bool)
    if len(detections) and len(ignored):
        on_ignored = (cdist(detections, ignored) <= radius_mm).any(axis=1) & ~hit
    return MatchResult(hit, on_ignored, found, matched)
