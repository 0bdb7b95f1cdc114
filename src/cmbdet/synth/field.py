"""Magnetic field of a susceptibility distribution, and its phase.

Conventions (see ``shared/reference/swi-physics.md``):

* susceptibility ``chi`` and field shift ``dB`` are in ppm (SI), ``dB`` relative to B0;
* the main field points along ``b0_dir`` (a unit vector in the canonical RAS array frame,
  ``(0, 0, 1)`` for a pure axial slab);
* phase is right-handed (Haacke): ``phase = -2 pi gamma_bar B0 dB TE``, so a paramagnetic source
  gives negative phase on the slices above and below it.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

GAMMA_BAR_HZ_PER_T = 42.577478e6
"""Proton gyromagnetic ratio over 2 pi, Hz/T."""


def radians_per_ppm(field_t: float, te_s: float) -> float:
    """Right-handed phase (radians) accrued at echo time ``te_s`` per ppm of field shift."""
    return -2.0 * np.pi * GAMMA_BAR_HZ_PER_T * field_t * 1e-6 * te_s


def tilted_b0(tilt_deg: float, azimuth_deg: float) -> np.ndarray:
    """Unit B0 direction tilted by ``tilt_deg`` from +z towards azimuth ``azimuth_deg`` in x-y."""
    tilt, azimuth = np.deg2rad(tilt_deg), np.deg2rad(azimuth_deg)
    return np.array([np.sin(tilt) * np.cos(azimuth), np.sin(tilt) * np.sin(azimuth), np.cos(tilt)])


def dipole_kernel(
    shape: tuple[int, int, int],
    spacing_mm: tuple[float, float, float],
    b0_dir: np.ndarray,
    *,
    real_fft: bool = True,
) -> np.ndarray:
    """k-space unit dipole ``D(k) = 1/3 - (k.b)^2 / |k|^2`` with ``D(0) = 0``.

    Args:
        shape: grid shape (already padded) in voxels.
        spacing_mm: voxel size in mm, same axis order.
        b0_dir: (3,) unit vector of the main field in the same axis frame.
        real_fft: return the half spectrum that matches ``scipy.fft.rfftn`` (last axis halved).

    Returns:
        float32 kernel of shape ``shape`` (or ``(..., shape[2] // 2 + 1)`` for ``real_fft``).
    """
    kx = scipy.fft.fftfreq(shape[0], d=spacing_mm[0]).astype(np.float32)
    ky = scipy.fft.fftfreq(shape[1], d=spacing_mm[1]).astype(np.float32)
    if real_fft:
        kz = scipy.fft.rfftfreq(shape[2], d=spacing_mm[2]).astype(np.float32)
    else:
        kz = scipy.fft.fftfreq(shape[2], d=spacing_mm[2]).astype(np.float32)
    bx, by, bz = (np.float32(v) for v in b0_dir)
    in_plane_dot = kx[:, None] * bx + ky[None, :] * by  # (X, Y)
    in_plane_squared = kx[:, None] ** 2 + ky[None, :] ** 2  # (X, Y)
    # D = 1/3 - (k.b)^2 / |k|^2, computed in place to keep one full-size temporary
    kernel = in_plane_dot[:, :, None] + kz[None, None, :] * bz  # (X, Y, Z) k.b
    np.square(kernel, out=kernel)
    k_squared = in_plane_squared[:, :, None] + kz[None, None, :] ** 2
    k_squared[0, 0, 0] = 1.0  # D(0) is set to 0 below; avoid 0/0 here
    np.divide(kernel, k_squared, out=kernel)
    np.subtract(np.float32(1.0 / 3.0), kernel, out=kernel)
    kernel[0, 0, 0] = 0.0
    return kernel


def field_from_susceptibility(
    chi_ppm: np.ndarray,
    spacing_mm: tuple[float, float, float],
    b0_dir: np.ndarray,
    *,
    pad_factor: tuple[float, float, float] = (1.0, 1.0, 2.0),
    workers: int | None = None,
) -> np.ndarray:
    """Field shift (ppm) of a susceptibility map by zero-padded FFT dipole convolution.

    Args:
        chi_ppm: (X, Y, Z) susceptibility in ppm on a regular grid.
        spacing_mm: voxel size in mm.
        b0_dir: (3,) unit vector of B0 in the array frame.
        pad_factor: padded size over the original size per axis; at least 2 along the slab
            axis so that the periodic FFT does not wrap fields from one end to the other.
            In-plane the head sits inside the field of view with air around it, whose
            wrapped dipole fields are negligible after high-pass filtering.
        workers: threads for scipy.fft (None: scipy's default).

    Returns:
        (X, Y, Z) float32 field shift in ppm.
    """
    shape = chi_ppm.shape
    padded = tuple(
        scipy.fft.next_fast_len(int(np.ceil(n * f)), real=True)
        for n, f in zip(shape, pad_factor, strict=True)
    )
    spectrum = scipy.fft.rfftn(chi_ppm.astype(np.float32, copy=False), s=padded, workers=workers)
    spectrum *= dipole_kernel(padded, spacing_mm, b0_dir, real_fft=True)
    field = scipy.fft.irfftn(spectrum, s=padded, workers=workers)
    return np.ascontiguousarray(field[: shape[0], : shape[1], : shape[2]], dtype=np.float32)


def sphere_field(
    offsets_mm: np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray],
    radius_mm: float,
    delta_chi_ppm: float,
    b0_dir: np.ndarray,
) -> np.ndarray:
    """Analytic field shift (ppm) of a uniformly magnetised sphere.

    Outside: ``(dchi / 3) (a / r)^3 (3 cos^2 theta - 1)``; inside: exactly 0 (Lorentz-corrected).

    Args:
        offsets_mm: positions relative to the sphere centre in mm, either a (..., 3) array or
            three broadcastable arrays (dx, dy, dz), which avoids building the full stack.
        radius_mm: sphere radius ``a``.
        delta_chi_ppm: susceptibility difference to the surroundings.
        b0_dir: (3,) unit vector of B0.

    Returns:
        (...) field shift in ppm, float32.
    """
    if isinstance(offsets_mm, np.ndarray):
        dx, dy, dz = offsets_mm[..., 0], offsets_mm[..., 1], offsets_mm[..., 2]
    else:
        dx, dy, dz = offsets_mm
    bx, by, bz = (np.float32(v) for v in b0_dir)
    r_squared = (dx * dx + dy * dy + dz * dz).astype(np.float32)
    along_b = dx * bx + dy * by + dz * bz
    r_squared_safe = np.maximum(r_squared, np.float32(1e-12))
    # (a/r)^3 (3 cos^2 - 1) = a^3 (3 (r.b)^2 - r^2) / r^5
    field = (3.0 * along_b * along_b - r_squared_safe) / (
        r_squared_safe**2 * np.sqrt(r_squared_safe)
    )
    field *= np.float32(delta_chi_ppm / 3.0 * radius_mm**3)
    field[r_squared <= radius_mm**2] = 0.0
    return field.astype(np.float32, copy=False)
