"""Stage 2's scoring with test-time views (symmetries of a patch that training's augmentation
covers), whichever backend runs the network: :func:`score_with` takes a *logits runner*,
(N, C, X, Y, Z) float32 patches -> (N,) logits (PyTorch's from
:func:`cmbdet.stage2.inference.torch_logits`, ONNX Runtime's in :mod:`cmbdet.detect.networks`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.special import expit

LogitsRunner = Callable[[np.ndarray], np.ndarray]

# In the order used: (in-plane quarter turns, flip x, flip slices); the first n are averaged.
VIEWS = (
    (0, False, False),
    (2, True, True),
    (1, False, True),
    (3, True, False),
    (0, True, False),
    (2, False, True),
    (1, True, True),
    (3, False, False),
)


def view_of(patches: np.ndarray, view: tuple[int, bool, bool]) -> np.ndarray:
    """One symmetry of (N, C, X, Y, Z) patches (square in-plane): flips first, then quarter
    turns from x towards y (as ``torch.rot90``; a view, no copy)."""
    turns, flip_x, flip_slices = view
    patches = patches[:, :, ::-1] if flip_x else patches
    patches = patches[..., ::-1] if flip_slices else patches
    return np.rot90(patches, turns, axes=(2, 3)) if turns else patches


def score_with(
    run_logits: LogitsRunner, patches: np.ndarray, views: int = 1, batch_size: int = 128
) -> np.ndarray:
    """CMB probability (N,) float32 of each patch (N, C, X, Y, Z): the logits of ``run_logits``
    averaged over the first ``views`` symmetries of :data:`VIEWS` (the model's threshold must
    have been chosen with the same count), ``batch_size`` patches per call."""
    if not 1 <= views <= len(VIEWS):
        raise ValueError(f"views must be 1..{len(VIEWS)}, got {views}")
    scores = [np.zeros(0, np.float32)]
    for start in range(0, len(patches), batch_size):
        batch = patches[start : start + batch_size]
        logits = [
            run_logits(np.ascontiguousarray(view_of(batch, view), dtype=np.float32))
            for view in VIEWS[:views]
        ]
        scores.append(expit(np.mean(logits, axis=0, dtype=np.float32)))
    return np.concatenate(scores).astype(np.float32)
