"""Stage 2's test-time views: symmetries of a patch that training's augmentation covers."""

from __future__ import annotations

import numpy as np

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
