"""3D fast radial symmetry transform (Loy & Zelinsky 2003) as a CMB candidate detector.

The baseline that Al-masni et al. compared their stage 1 with (used for CMBs by Bian et al.
2013 and Liu et al. 2019). Every voxel with a strong intensity gradient votes for the point
``n`` mm *against* its gradient (dark blobs: the gradient points from the dark centre out);
votes accumulate as an orientation count ``O_n`` and a gradient-magnitude sum ``M_n``;
``F_n = (M_n / k_n) (|O_n| / k_n)^alpha`` smoothed by a Gaussian of ~n/4 is the symmetry map of
radius ``n``. The maps of all radii are averaged; local maxima inside the brain are the
candidates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class FrstConfig:
    """Settings of the radial symmetry detector."""

    radii_mm: tuple[float, ...] = (1.0, 1.5, 2.5, 3.5)
    alpha: float = 2.0  # radial strictness
    gradient_fraction: float = 0.1  # ignore gradients below this fraction of the 99th pct
    k_clip: float = 9.9  # Loy & Zelinsky's normalisation for n > 1
    peak_distance_mm: float = 3.0
    max_candidates: int = 1000


def radial_symmetry(image: np.ndarray, spacing_mm, config: FrstConfig = FrstConfig()) -> np.ndarray:
    """Dark-blob radial symmetry map (X, Y, Z float32, larger = more blob-like).

    Args:
        image: (X, Y, Z) normalised SWI (brain ~ 1, CMBs dark).
        spacing_mm: voxel size.
    """
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    image = image.astype(np.float32, copy=False)
    gradient = np.stack(np.gradient(image, *spacing), axis=0)  # (3, X, Y, Z) per mm
    magnitude = np.sqrt((gradient**2).sum(axis=0))
    strong = magnitude > config.gradient_fraction * np.percentile(magnitude, 99)
    voters = np.argwhere(strong)  # (V, 3) voxel indices
    unit = (gradient[:, strong] / magnitude[strong]).T  # (V, 3) unit gradients
    voter_magnitude = magnitude[strong]
    shape = np.asarray(image.shape)
    symmetry = np.zeros(image.shape, dtype=np.float32)
    for radius in config.radii_mm:
        # dark blob: the centre lies against the gradient direction
        target = np.round(voters - unit * radius / spacing).astype(np.int64)
        inside = np.all((target >= 0) & (target < shape), axis=1)
        flat = np.ravel_multi_index(target[inside].T, image.shape)
        votes = np.bincount(flat, minlength=image.size).reshape(image.shape).astype(np.float32)
        weight = (
            np.bincount(flat, weights=voter_magnitude[inside], minlength=image.size)
            .reshape(image.shape)
            .astype(np.float32)
        )
        k = config.k_clip
        orientation = np.minimum(votes, k) / k
        feature = (weight / k) * orientation**config.alpha
        sigma = np.maximum(0.25 * radius / spacing, 0.5)
        symmetry += ndimage.gaussian_filter(feature, sigma)
    return symmetry / len(config.radii_mm)


def frst_candidates(
    image: np.ndarray, brain: np.ndarray, spacing_mm, config: FrstConfig = FrstConfig()
) -> tuple[np.ndarray, np.ndarray]:
    """Local maxima of the symmetry map inside the brain.

    Returns:
        (N, 3) voxel indices (float) and (N,) scores, highest first.
    """
    symmetry = radial_symmetry(image, spacing_mm, config)
    footprint = np.maximum(
        np.round(config.peak_distance_mm / np.asarray(spacing_mm)).astype(int) | 1, 1
    )
    peaks = (symmetry == ndimage.maximum_filter(symmetry, size=footprint)) & brain
    peaks &= symmetry > 0
    voxels = np.argwhere(peaks)
    scores = symmetry[peaks]
    order = np.argsort(-scores)[: config.max_candidates]
    return voxels[order].astype(np.float64), scores[order]
