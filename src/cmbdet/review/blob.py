"""The diameter of the dark blob a reader clicked: how a reader-added CMB gets ``diameter_mm``."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from cmbdet.io.nifti import Volume

SEARCH_MM = 2.0  # the blob's darkest voxel is looked for this far from the click
WINDOW_MM = 8.0  # half-width of the neighbourhood whose median is the background
MIN_CONTRAST = 0.2  # the darkest voxel must lie this far below the background (fraction)


def blob_diameter_mm(volume: Volume, voxel: tuple[int, int, int]) -> float | None:
    """Equivalent-sphere diameter (mm) of the dark blob at ``voxel`` (canonical indices): the
    26-connected voxels darker than halfway between the blob's darkest voxel (within
    :data:`SEARCH_MM`) and the local background (the median within :data:`WINDOW_MM`).

    Returns None when nothing there is at least :data:`MIN_CONTRAST` darker than the
    background, or when the dark region reaches the window's edge (a vein or sinus, not a
    blob that can be measured).
    """
    spacing = np.asarray(volume.spacing_mm, float)
    centre = np.asarray(voxel, int)
    half = np.ceil(WINDOW_MM / spacing).astype(int)
    low = np.maximum(centre - half, 0)
    high = np.minimum(centre + half + 1, volume.shape)
    window = volume.data[tuple(slice(a, b) for a, b in zip(low, high, strict=True))]
    background = float(np.median(window))
    seed = _darkest_near(window, centre - low, spacing)
    darkest = float(window[seed])
    if background <= 0 or darkest > (1.0 - MIN_CONTRAST) * background:
        return None
    components, _ = ndimage.label(window < (darkest + background) / 2, np.ones((3, 3, 3)))
    blob = components == components[seed]
    if _reaches_the_window_edge(blob, low, high, volume.shape):
        return None
    volume_mm3 = float(blob.sum() * np.prod(spacing))
    return round(float((6.0 * volume_mm3 / np.pi) ** (1.0 / 3.0)), 3)


def _darkest_near(window: np.ndarray, centre: np.ndarray, spacing: np.ndarray) -> tuple:
    """Index of the darkest voxel of ``window`` within :data:`SEARCH_MM` of ``centre``."""
    grid = np.indices(window.shape).reshape(3, -1).T
    near = np.linalg.norm((grid - centre) * spacing, axis=1) <= SEARCH_MM
    candidates = grid[near]
    values = window[tuple(candidates.T)]
    return tuple(int(v) for v in candidates[int(np.argmin(values))])


def _reaches_the_window_edge(blob: np.ndarray, low, high, shape) -> bool:
    """Whether ``blob`` touches a face of its window that lies inside the image (a face on
    the image's own border does not count: a CMB may sit in the first or last slice)."""
    for axis in range(3):
        if low[axis] > 0 and blob.take(0, axis=axis).any():
            return True
        if high[axis] < shape[axis] and blob.take(-1, axis=axis).any():
            return True
    return False
