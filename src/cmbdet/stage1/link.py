"""Join per-slice boxes on neighbouring slices into 3D candidates: one CMB, one candidate.

A CMB blooms over one to a few 2 mm slices, so its boxes on adjacent slices lie on top of each
other; two boxes are joined when they sit on slices at most ``max_slice_gap`` apart and their
centres are within ``max_distance_mm`` in-plane. Joined groups (connected components) become
candidates with the score-weighted centre and the highest score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from cmbdet.stage1.decode import SliceDetections


@dataclass(frozen=True)
class LinkedCandidate:
    """A 3D candidate on the model grid.

    Attributes:
        centre: (3,) float (x px, y px, slice index) on the model grid.
        size_px: (2,) in-plane extent (largest box), pixels.
        slices: number of slices it spans.
        score: highest box score.
    """

    centre: np.ndarray
    size_px: np.ndarray
    slices: int
    score: float


def link_slices(
    detections: list[SliceDetections],
    pixel_mm: float,
    max_distance_mm: float = 3.0,
    max_slice_gap: int = 1,
) -> list[LinkedCandidate]:
    """Link detections of consecutive slices (list index = slice index) into candidates.

    Args:
        detections: one :class:`SliceDetections` per slice, in slice order.
        pixel_mm: in-plane pixel size of the model grid.
        max_distance_mm: largest in-plane centre distance of two joined boxes.
        max_slice_gap: largest slice distance of two joined boxes.

    Returns:
        Candidates sorted by score, highest first (empty list when nothing was detected).
    """
    counts = [len(d.scores) for d in detections]
    if sum(counts) == 0:
        return []
    slices = np.repeat(np.arange(len(detections)), counts)  # (N,) slice of each box
    boxes = np.concatenate([d.boxes for d in detections]).astype(np.float64)  # (N, 4)
    scores = np.concatenate([d.scores for d in detections]).astype(np.float64)  # (N,)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    first = np.concatenate([[0], np.cumsum(counts)])  # boxes of slice z: first[z]:first[z+1]

    pairs = [np.zeros((0, 2), np.int64)]
    for gap in range(1, max_slice_gap + 1):
        for z in range(len(detections) - gap):
            a = np.arange(first[z], first[z + 1])
            b = np.arange(first[z + gap], first[z + gap + 1])
            if a.size and b.size:
                distance = np.linalg.norm(centres[a, None] - centres[None, b], axis=2)
                close_a, close_b = np.nonzero(distance <= max_distance_mm / pixel_mm)
                pairs.append(np.stack([a[close_a], b[close_b]], axis=1))
    pairs = np.concatenate(pairs)
    n = len(scores)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    count, component = connected_components(graph, directed=False)
    return _candidates(component, count, slices, boxes, scores, centres)


def _candidates(component, count, slices, boxes, scores, centres) -> list[LinkedCandidate]:
    """One candidate per component label (0..count-1) of the boxes, highest score first."""
    weight_sum = np.bincount(component, scores, count)
    centre = np.stack(
        [np.bincount(component, scores * v, count) / weight_sum for v in (*centres.T, slices)],
        axis=1,
    )  # (count, 3) score-weighted x, y, slice
    size = np.zeros((count, 2))
    np.maximum.at(size, component, boxes[:, 2:] - boxes[:, :2])
    best = np.zeros(count)
    np.maximum.at(best, component, scores)
    spans = np.bincount(np.unique(np.stack([component, slices]), axis=1)[0], minlength=count)
    order = np.argsort(-best, kind="stable")
    return [LinkedCandidate(centre[k], size[k], int(spans[k]), float(best[k])) for k in order]
