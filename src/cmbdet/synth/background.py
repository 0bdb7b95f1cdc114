"""Smooth background effects, computed on the work grid: air-cavity fields, shim residual,
coil phase offset and receive-coil intensity bias."""

from __future__ import annotations

import numpy as np

from cmbdet.synth.anatomy import Warp
from cmbdet.synth.field import sphere_field

AIR_DELTA_CHI_PPM = 9.4
"""Air (sinuses, mastoids) relative to tissue."""

# Air cavities as spheres: MNI centre (right side where mirrored), radius range (mm), mirrored.
_AIR_CAVITIES_MNI = (
    ((0.0, 84.0, 4.0), (5.0, 9.0), False),  # frontal sinus, in front of the frontal pole
    ((0.0, 14.0, -46.0), (7.0, 11.0), False),  # sphenoid sinus, below the pituitary fossa
    ((0.0, 44.0, -40.0), (5.0, 8.0), False),  # ethmoid cells, under the gyri recti
    ((50.0, -38.0, -56.0), (6.0, 9.0), True),  # mastoid air cells
    ((66.0, -22.0, -50.0), (3.0, 5.0), True),  # ear canals
    ((32.0, 30.0, -66.0), (10.0, 14.0), True),  # maxillary sinuses
)


def air_cavities(
    subject_mm: list[np.ndarray], warp: Warp, b0_dir: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Field shift (ppm) of the subject's air cavities, as analytic magnetised spheres, and
    where the air is (no signal there).

    Args:
        subject_mm: broadcastable (X,1,1), (1,Y,1), (1,1,Z) subject-mm coordinates.
        warp: subject warp (the cavities follow the head's pose and size).
        b0_dir: (3,) B0 direction.
        rng: draws cavity sizes and small displacements.

    Returns:
        field (X, Y, Z) ppm and air (X, Y, Z) bool, float32/bool on the given grid.
    """
    shape = np.broadcast_shapes(*(a.shape for a in subject_mm))
    field = np.zeros(shape, dtype=np.float32)
    air = np.zeros(shape, dtype=bool)
    for centre_mni, radius_range, mirrored in _AIR_CAVITIES_MNI:
        for side in (1.0, -1.0) if mirrored else (1.0,):
            centre = np.asarray(centre_mni) * np.array([side, 1.0, 1.0])
            centre = warp.mni_to_subject_affine(centre + rng.normal(0.0, 2.0, 3))
            radius = rng.uniform(*radius_range) * np.mean(warp.scale)
            offsets = tuple(
                axis - np.float32(c) for axis, c in zip(subject_mm, centre, strict=True)
            )
            field += sphere_field(offsets, float(radius), AIR_DELTA_CHI_PPM, b0_dir)
            air |= sum(o * o for o in offsets) <= radius**2
    return field, air


def smooth_polynomial(
    subject_mm: list[np.ndarray], half_fov_mm: np.ndarray, coefficients: np.ndarray
) -> np.ndarray:
    """``sum c_k * monomial_k`` of the normalised coordinates (degree <= 2), (X, Y, Z).

    Args:
        coefficients: (9,) for x, y, z, x^2, y^2, z^2, xy, xz, yz.
    """
    x, y, z = (axis / h for axis, h in zip(subject_mm, half_fov_mm, strict=True))
    monomials = (x, y, z, x * x, y * y, z * z, x * y, x * z, y * z)
    total = sum(c * m for c, m in zip(coefficients, monomials, strict=True))
    return np.broadcast_to(total, np.broadcast_shapes(*(a.shape for a in subject_mm))).astype(
        np.float32
    )


def shim_residual(subject_mm, half_fov_mm, rng: np.random.Generator) -> np.ndarray:
    """Low-order field left after shimming (ppm), up to about 0.1 ppm across the brain."""
    return smooth_polynomial(subject_mm, half_fov_mm, rng.normal(0.0, 0.03, 9))


def coil_phase(subject_mm, half_fov_mm, rng: np.random.Generator) -> np.ndarray:
    """Receive-coil phase offset (radians): a constant plus a smooth, TE-independent term."""
    return rng.uniform(-np.pi, np.pi) + smooth_polynomial(
        subject_mm, half_fov_mm, rng.normal(0.0, 0.8, 9)
    )


def intensity_bias(subject_mm, half_fov_mm, rng: np.random.Generator) -> np.ndarray:
    """Receive-coil sensitivity, a smooth positive multiplier around 1 (about 0.7-1.4)."""
    return np.exp(smooth_polynomial(subject_mm, half_fov_mm, rng.normal(0.0, 0.12, 9)))
