"""In-plane resampling to the model grid, and the exact map between native and model voxels.

Both grids cover the same field of view (outer voxel edges aligned) and share the slices. Along
an in-plane axis of ``n`` native voxels of size ``s`` and ``m = round(n * s / target)`` model
voxels of size ``n * s / m``, native voxel index ``i`` (centre) lies at model index

    u = (i + 0.5) * m / n - 0.5,

the convention of ``torch.nn.functional.interpolate(..., align_corners=False)``. Images are
resampled bilinearly (anti-aliased when shrinking), phase through its unit phasor (so wraps
at +-pi do not blur into 0), masks and label maps by nearest neighbour.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

SAME_SPACING_TOLERANCE = 0.01
"""Relative in-plane spacing difference below which a volume is left as it is."""


@dataclass(frozen=True)
class ResampleMap:
    """Native canonical grid (X, Y, Z) <-> model grid (X', Y', Z): same FOV, same slices.

    Attributes:
        native_shape: (X, Y, Z) voxels.
        model_shape: (X', Y', Z) voxels.
        native_spacing_mm: native voxel size (x, y, z), mm.
    """

    native_shape: tuple[int, int, int]
    model_shape: tuple[int, int, int]
    native_spacing_mm: tuple[float, float, float]

    @classmethod
    def for_target(
        cls,
        native_shape: tuple[int, int, int],
        native_spacing_mm: tuple[float, float, float],
        target_in_plane_mm: float,
    ) -> ResampleMap:
        """The model grid of about ``target_in_plane_mm`` pixels over the native FOV.

        An axis whose spacing is within ``SAME_SPACING_TOLERANCE`` of the target keeps its
        voxels.
        """
        model = []
        for n, s in zip(native_shape[:2], native_spacing_mm[:2], strict=True):
            same = abs(s - target_in_plane_mm) <= SAME_SPACING_TOLERANCE * target_in_plane_mm
            model.append(n if same else max(1, round(n * s / target_in_plane_mm)))
        return cls(
            tuple(int(n) for n in native_shape),
            (model[0], model[1], int(native_shape[2])),
            tuple(float(s) for s in native_spacing_mm),
        )

    @property
    def is_identity(self) -> bool:
        return self.model_shape == self.native_shape

    @property
    def model_spacing_mm(self) -> tuple[float, float, float]:
        """Model voxel size (x, y, z), mm (z unchanged)."""
        n, m, s = self.native_shape, self.model_shape, self.native_spacing_mm
        return (s[0] * n[0] / m[0], s[1] * n[1] / m[1], s[2])

    @property
    def _ratio(self) -> np.ndarray:
        """(3,) model voxels per native voxel along x, y, z."""
        n, m = self.native_shape, self.model_shape
        return np.array([m[0] / n[0], m[1] / n[1], 1.0])

    def native_to_model(self, ijk: np.ndarray) -> np.ndarray:
        """(N, 3) or (3,) native canonical voxel coordinates -> model voxel coordinates."""
        ijk = np.asarray(ijk, dtype=np.float64)
        return (ijk + 0.5) * self._ratio - 0.5  # z: ratio 1, unchanged

    def model_to_native(self, uvk: np.ndarray) -> np.ndarray:
        """(N, 3) or (3,) model voxel coordinates -> native canonical voxel coordinates."""
        uvk = np.asarray(uvk, dtype=np.float64)
        return (uvk + 0.5) / self._ratio - 0.5

    def model_affine(self, native_affine: np.ndarray) -> np.ndarray:
        """(4, 4) model voxel -> world mm, from the native canonical voxel -> world affine."""
        to_native = np.diag([*(1.0 / self._ratio), 1.0])  # model voxel -> native voxel
        to_native[:3, 3] = 0.5 / self._ratio - 0.5
        return np.asarray(native_affine, dtype=np.float64) @ to_native

    def to_model(self, volume: np.ndarray, order: int = 1) -> np.ndarray:
        """Resample a native (X, Y, Z) volume to the model grid (see :func:`resample_to`)."""
        return resample_to(volume, self.model_shape, order)

    def to_native(self, volume: np.ndarray, order: int = 0) -> np.ndarray:
        """Resample a model-grid (X', Y', Z) volume back to the native grid (nearest by
        default: masks and label maps)."""
        return resample_to(volume, self.native_shape, order)


def resample_to(volume: np.ndarray, target_shape: tuple[int, ...], order: int = 0) -> np.ndarray:
    """Resample (X, Y, Z) in-plane to (X', Y', Z), edges aligned.

    Args:
        volume: (X, Y, Z) array.
        target_shape: (X', Y', Z); Z must equal the input's.
        order: 0 nearest (``nearest-exact``: keeps dtype, exact inverse of an integer zoom),
            1 bilinear (float32; anti-aliased when shrinking).
    """
    target = tuple(int(n) for n in target_shape)
    if target[2] != volume.shape[2]:
        raise ValueError(f"slices differ: {volume.shape} -> {target}; only in-plane resampling")
    if order not in (0, 1):
        raise ValueError(f"order must be 0 or 1, got {order}")
    if tuple(volume.shape) == target:
        return volume if order == 0 else volume.astype(np.float32, copy=False)
    dtype = volume.dtype
    slices = torch.from_numpy(np.ascontiguousarray(np.moveaxis(volume, 2, 0), dtype=np.float32))
    slices = slices[:, None]  # (Z, 1, X, Y)
    if order == 0:
        resampled = F.interpolate(slices, size=target[:2], mode="nearest-exact")
    else:
        shrinking = target[0] < volume.shape[0] or target[1] < volume.shape[1]
        resampled = F.interpolate(
            slices, size=target[:2], mode="bilinear", align_corners=False, antialias=shrinking
        )
    out = np.ascontiguousarray(np.moveaxis(resampled[:, 0].numpy(), 0, 2))  # (X', Y', Z)
    if order == 0:
        return out.astype(dtype, copy=False)
    return out


def resample_phase_to(phase_rad: np.ndarray, target_shape: tuple[int, ...]) -> np.ndarray:
    """Resample phase (radians) bilinearly through ``exp(i phase)``; returns float32 radians.

    Args:
        phase_rad: (X, Y, Z) phase, radians.
        target_shape: (X', Y', Z).
    """
    if tuple(phase_rad.shape) == tuple(target_shape):
        return phase_rad.astype(np.float32, copy=False)
    cos = resample_to(np.cos(phase_rad), target_shape, order=1)
    sin = resample_to(np.sin(phase_rad), target_shape, order=1)
    return np.arctan2(sin, cos).astype(np.float32)
