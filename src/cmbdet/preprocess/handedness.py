"""The handedness of high-pass phase, told from the data: which sign a paramagnetic source
(a vein, a CMB) gives above and below itself.

Two rules: :func:`detect_handedness` reads the phase at the locally dark voxels of an SWI
(the scanner's SWI darkens exactly its own negative-phase voxels);
:func:`detect_handedness_from_lobes` reads the dipole lobes above and below the dark voxels
of a magnitude, for input without an SWI.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from cmbdet.preprocess.mask import in_plane_box
from cmbdet.preprocess.morphology import all_within, packed, unpacked
from cmbdet.preprocess.slabs import by_slabs

DARK_SIGMA_MM = 3.0
"""In-plane scale of the local mean that "locally dark" voxels are compared with."""
DARK_RATIO = 0.5
"""A voxel is locally dark below this fraction of its local brain mean."""
DARK_MIN_VOXELS = 50
"""Fewer dark voxels than this leave the handedness undecided (confidence 0)."""
BRAIN_EROSION_MM = 3.0
"""Handedness and kind statistics skip this rim of the brain mask (edges, sinuses)."""


class HandednessEstimate(NamedTuple):
    """Detected handedness of a high-pass phase.

    Attributes:
        handedness: "right" (paramagnetic sources give negative phase) or "left".
        confidence: |2 f - 1| in [0, 1], f = fraction of locally dark brain voxels with negative
            phase; 0 is a coin flip (or too few dark voxels), 1 is unanimous.
    """

    handedness: str
    confidence: float


def detect_handedness(
    image: np.ndarray,
    phase_hp: np.ndarray,
    brain: np.ndarray,
    spacing_mm: tuple[float, float, float] = (1, 1, 1),
) -> HandednessEstimate:
    """Detect the handedness of high-pass phase from locally dark voxels.

    Veins and CMBs are paramagnetic: small, dark in SWI (and magnitude), and, with right-handed
    phase, of negative high-pass phase. Among brain voxels darker than ``DARK_RATIO`` times their
    local brain mean (Gaussian, ``DARK_SIGMA_MM`` in-plane), the fraction f with negative phase
    is above 1/2 for right-handed phase. SWI is the stronger image: its negative-phase mask
    darkens exactly the negative-phase voxels of the scanner's own (right-handed) processing.
    Magnitude alone works too, with smaller margins.

    Args:
        image: (X, Y, Z) SWI or magnitude, any positive scale.
        phase_hp: (X, Y, Z) high-pass phase, radians, unknown handedness.
        brain: (X, Y, Z) bool brain mask.
        spacing_mm: voxel size (x, y, z), mm.

    Returns:
        The handedness and the confidence |2 f - 1|; "right" with confidence 0 when fewer than
        ``DARK_MIN_VOXELS`` dark voxels are found.
    """
    # every slice is judged on its own (in-plane smoothing only): 24 evenly spaced slices
    # carry thousands of vein voxels, at a fraction of the cost of a 72-slice hr volume
    step = max(1, image.shape[2] // 24)
    image, phase_hp, brain = image[:, :, ::step], phase_hp[:, :, ::step], brain[:, :, ::step]
    spacing_mm = (spacing_mm[0], spacing_mm[1], spacing_mm[2] * step)
    dark = _locally_dark(image, brain, spacing_mm)
    if dark.sum() < DARK_MIN_VOXELS:
        return HandednessEstimate("right", 0.0)
    negative = float(np.mean(phase_hp[dark] < 0))
    return HandednessEstimate("right" if negative >= 0.5 else "left", abs(2 * negative - 1))


LOBE_OFFSET_MM = 2.0
"""How far above and below a dark voxel (along the slice axis, ~B0) its dipole lobes are read."""


def detect_handedness_from_lobes(
    magnitude: np.ndarray,
    phase_hp: np.ndarray,
    brain: np.ndarray,
    spacing_mm: tuple[float, float, float] = (1, 1, 1),
    every: int = 1,
) -> HandednessEstimate:
    """Detect the handedness of high-pass phase from a magnitude image, without any SWI.

    The phase *at* dark magnitude voxels does not tell it: the field inside a vein depends on
    its angle to B0 (positive along B0, negative across it) and is zero inside a sphere. The
    field *above and below* every paramagnetic source (sphere, vein across B0; inside a vein
    along B0) is positive, so right-handed phase there is negative: the mean high-pass phase
    ``LOBE_OFFSET_MM`` above plus below the locally dark voxels has the sign of the
    handedness (negative: right). Measured on 48 generated subjects of six protocols, each
    with both signs (``benchmarks/handedness_check.py``, ``benchmarks/RESULTS.md``).
    ``every``: judge only every n-th slice (a quicker check; each slice is judged on its
    own, its lobes read from the slices ``LOBE_OFFSET_MM`` away).

    Returns:
        The handedness and a confidence |sum of lobe phases| / sum of |lobe phases| in
        [0, 1]; "right" with confidence 0 when fewer than ``DARK_MIN_VOXELS`` are found.
    """
    step = max(1, round(LOBE_OFFSET_MM / spacing_mm[2]))
    judged = np.arange(step, magnitude.shape[2] - step, max(1, every))
    if judged.size == 0:
        return HandednessEstimate("right", 0.0)
    dark = _locally_dark(magnitude[:, :, judged], brain[:, :, judged], spacing_mm)
    if dark.sum() < DARK_MIN_VOXELS:
        return HandednessEstimate("right", 0.0)
    x, y, index = np.nonzero(dark)
    z = judged[index]
    lobes = phase_hp[x, y, z + step].astype(np.float64) + phase_hp[x, y, z - step]
    total = float(lobes.sum())
    confidence = abs(total) / max(float(np.abs(lobes).sum()), 1e-12)
    return HandednessEstimate("right" if total <= 0 else "left", confidence)


def _locally_dark(
    image: np.ndarray, brain: np.ndarray, spacing_mm: tuple[float, float, float]
) -> np.ndarray:
    """Brain voxels (the rim eroded) darker than ``DARK_RATIO`` times their local mean; worked
    out on the brain's in-plane bounding box widened by the smoothing's reach (outside it every
    term is zero, so the result is the same as over the whole plane)."""
    reach = [int(3.0 * DARK_SIGMA_MM / s + 0.5) + 1 for s in spacing_mm[:2]]  # truncate=3
    box = in_plane_box(brain, reach)
    inner = erode_mm(brain[box], spacing_mm, BRAIN_EROSION_MM)
    if not inner.any():  # decided on the whole volume, before it is cut into slabs
        inner = brain[box]
    dark = np.zeros(image.shape, dtype=bool)
    dark[box] = by_slabs(partial(_locally_dark_in, spacing_mm=spacing_mm), image[box], inner)
    return dark


def _locally_dark_in(
    image: np.ndarray, inner: np.ndarray, spacing_mm: tuple[float, float, float]
) -> np.ndarray:
    """The ``inner`` brain voxels of each slice darker than ``DARK_RATIO`` times their local
    mean over ``inner``."""
    sigma = (DARK_SIGMA_MM / spacing_mm[0], DARK_SIGMA_MM / spacing_mm[1], 0.0)
    weight = inner.astype(np.float32)
    local_sum = ndimage.gaussian_filter(image.astype(np.float32) * weight, sigma, truncate=3.0)
    local_weight = ndimage.gaussian_filter(weight, sigma, truncate=3.0)
    local_mean = local_sum / np.maximum(local_weight, np.float32(1e-3))
    return inner & (image < DARK_RATIO * local_mean)


def erode_mm(mask: np.ndarray, spacing_mm: tuple[float, float, float], mm: float) -> np.ndarray:
    """Erode in-plane by about ``mm`` (a per-slice square of that half-width; outside the
    array counts as background). (X, Y, Z) bool -> (X, Y, Z) bool.

    The square is two running minima, along x then y, on the mask packed eight slices to a
    byte (:mod:`cmbdet.preprocess.morphology`): the same voxels as ``ndimage.binary_erosion``
    with the square.
    """
    radius = [max(0, round(mm / s)) for s in spacing_mm[:2]]
    if max(radius) == 0:
        return mask
    bits = packed(mask)
    for axis in (0, 1):
        if radius[axis]:
            bits = all_within(bits, radius[axis], axis, outside=False)
    return unpacked(bits, mask.shape[2])
