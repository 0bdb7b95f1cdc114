"""Stage-1 candidates, found on the model grid, as records in the input file's coordinates:
voxel indices in its own array order and world millimetres through its affine, whatever its
storage orientation. The one place where a candidate's model-grid centre becomes a position
a user can open (the detector, and training's matching against the truth, both use it)."""

from __future__ import annotations

import numpy as np

from cmbdet.geometry import voxel_to_world
from cmbdet.io.nifti import Volume
from cmbdet.preprocess.pipeline import Preprocessed
from cmbdet.records import Candidate
from cmbdet.stage1.link import LinkedCandidate


def model_centres(linked: list[LinkedCandidate]) -> np.ndarray:
    """(N, 3) centres of stage-1 candidates: model-grid voxels (x px, y px, slice)."""
    return np.array([c.centre for c in linked], dtype=np.float64).reshape(-1, 3)


def input_candidates(
    linked: list[LinkedCandidate], scores: np.ndarray, pre: Preprocessed, swi: Volume
) -> list[Candidate]:
    """Candidate records of the input file, highest stage-2 score first.

    Args:
        linked: stage-1 candidates on the model grid of ``pre``.
        scores: (N,) their stage-2 probabilities.
        pre: the subject's preprocessing (its model <-> native voxel map).
        swi: the input SWI (its array order and affine).
    """
    canonical = pre.grid.model_to_native(model_centres(linked))
    original = swi.reorientation.canonical_to_original_voxels(canonical).reshape(-1, 3)
    world = voxel_to_world(original, swi.reorientation.original_affine).reshape(-1, 3)
    candidates = [
        Candidate(
            x_mm=float(w[0]),
            y_mm=float(w[1]),
            z_mm=float(w[2]),
            i=float(o[0]),
            j=float(o[1]),
            k=float(o[2]),
            score=float(score),
            stage1_score=float(c.score),
            diameter_mm=float(c.size_px.max() * pre.spacing_mm[0]),
            slices=max(1, round(c.slices / pre.grid.slice_ratio)),  # of the input
        )
        for c, o, w, score in zip(linked, original, world, scores, strict=True)
    ]
    return sorted(candidates, key=lambda c: -c.score)
