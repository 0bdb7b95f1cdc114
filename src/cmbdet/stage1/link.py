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
    rows = [
        (z, box, score)
        for z, d in enumerate(detections)
        for box, score in zip(d.boxes, d.scores, strict=True)
    ]
    if not rows:
        return []
    slices = np.array([r[0] for r in rows])
    boxes = np.array([r[1] for r in rows], dtype=np.float64).reshape(-1, 4)
    scores = np.array([r[2] for r in rows], dtype=np.float64)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    limit_px = max_distance_mm / pixel_mm

    pairs_a, pairs_b = [], []
    for gap in range(1, max_slice_gap + 1):
        for a in np.flatnonzero(np.isin(slices + gap, slices)):
            b = np.flatnonzero(slices == slices[a] + gap)
            close = np.linalg.norm(centres[b] - centres[a], axis=1) <= limit_px
            pairs_a += [a] * int(close.sum())
            pairs_b += list(b[close])
    n = len(rows)
    graph = coo_matrix((np.ones(len(pairs_a)), (pairs_a, pairs_b)), shape=(n, n))
    _, component = connected_components(graph, directed=False)

    candidates = []
    for label in np.unique(component):
        members = np.flatnonzero(component == label)
        weights = scores[members] / scores[members].sum()
        centre_xy = weights @ centres[members]
        centre_z = float(weights @ slices[members])
        extent = boxes[members, 2:] - boxes[members, :2]
        candidates.append(
            LinkedCandidate(
                centre=np.array([centre_xy[0], centre_xy[1], centre_z]),
                size_px=extent.max(axis=0),
                slices=int(np.unique(slices[members]).size),
                score=float(scores[members].max()),
            )
        )
    return sorted(candidates, key=lambda c: -c.score)
