"""Resampling to the model grid, and the exact map between native and model voxels.

Both grids cover the same field of view (outer voxel edges aligned). In-plane, and through-plane
when a model slice thickness is set (otherwise the slices are kept as acquired), along an axis
of ``n`` native voxels of size ``s`` and ``m = round(n * s / target)`` model voxels of size
``n * s / m``, native voxel index ``i`` (centre) lies at model index

    u = (i + 0.5) * m / n - 0.5,

the convention of ``torch.nn.functional.interpolate(..., align_corners=False)``. Images are
resampled linearly along each axis (anti-aliased when shrinking, so that thin slices are
averaged into a thicker one), phase through its unit phasor (so wraps at +-pi do not blur into
0), masks and label maps by nearest neighbour.

The weights are PyTorch's (``mode="bilinear"`` with ``antialias`` where an axis shrinks,
``"nearest-exact"``), applied in NumPy/SciPy one axis at a time as sparse matrices: the models
were trained on PyTorch's resampling, and preprocessing needs no PyTorch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
from scipy import sparse

from cmbdet.preprocess.slabs import by_slabs

SAME_SPACING_TOLERANCE = 0.01
"""Relative spacing difference below which an axis keeps its voxels."""


@dataclass(frozen=True)
class ResampleMap:
    """Native canonical grid (X, Y, Z) <-> model grid (X', Y', Z'): the same field of view.

    Attributes:
        native_shape: (X, Y, Z) voxels.
        model_shape: (X', Y', Z') voxels.
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
        target_slice_mm: float = 0.0,
    ) -> ResampleMap:
        """The model grid of about ``target_in_plane_mm`` pixels and ``target_slice_mm``
        slices (0: the acquired slices) over the native field of view.

        An axis whose spacing is within ``SAME_SPACING_TOLERANCE`` of its target keeps its
        voxels.
        """
        targets = (target_in_plane_mm, target_in_plane_mm, target_slice_mm)
        model = [
            _model_voxels(int(n), float(s), target)
            for n, s, target in zip(native_shape, native_spacing_mm, targets, strict=True)
        ]
        return cls(
            tuple(int(n) for n in native_shape),
            tuple(model),
            tuple(float(s) for s in native_spacing_mm),
        )

    @property
    def is_identity(self) -> bool:
        return self.model_shape == self.native_shape

    @property
    def model_spacing_mm(self) -> tuple[float, float, float]:
        """Model voxel size (x, y, z), mm."""
        n, m, s = self.native_shape, self.model_shape, self.native_spacing_mm
        return tuple(s[axis] * n[axis] / m[axis] for axis in range(3))

    @property
    def slice_ratio(self) -> float:
        """Model slices per native slice (1.0 when the slices are kept)."""
        return self.model_shape[2] / self.native_shape[2]

    @property
    def _ratio(self) -> np.ndarray:
        """(3,) model voxels per native voxel along x, y, z."""
        return np.asarray(self.model_shape, np.float64) / np.asarray(self.native_shape)

    def native_to_model(self, ijk: np.ndarray) -> np.ndarray:
        """(N, 3) or (3,) native canonical voxel coordinates -> model voxel coordinates."""
        ijk = np.asarray(ijk, dtype=np.float64)
        return (ijk + 0.5) * self._ratio - 0.5

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
        """Resample a model-grid (X', Y', Z') volume back to the native grid (nearest by
        default: masks and label maps)."""
        return resample_to(volume, self.native_shape, order)


def _model_voxels(native: int, spacing_mm: float, target_mm: float) -> int:
    """Model voxels along an axis of ``native`` voxels of ``spacing_mm`` (``target_mm`` 0 or
    within ``SAME_SPACING_TOLERANCE`` of the spacing: the same voxels)."""
    if target_mm <= 0 or abs(spacing_mm - target_mm) <= SAME_SPACING_TOLERANCE * target_mm:
        return native
    return max(1, round(native * spacing_mm / target_mm))


def resample_to(volume: np.ndarray, target_shape: tuple[int, ...], order: int = 0) -> np.ndarray:
    """Resample (X, Y, Z) to (X', Y', Z'), edges aligned, one axis at a time.

    Args:
        volume: (X, Y, Z) array.
        target_shape: (X', Y', Z').
        order: 0 nearest (``nearest-exact``: keeps dtype, exact inverse of an integer zoom),
            1 linear along each axis (float32; anti-aliased along an axis that shrinks).
    """
    target = tuple(int(n) for n in target_shape)
    if order not in (0, 1):
        raise ValueError(f"order must be 0 or 1, got {order}")
    if tuple(volume.shape) == target:
        return volume if order == 0 else volume.astype(np.float32, copy=False)
    if order == 0:  # one gather per axis that changes (a 3D fancy index is ~20x slower)
        out = volume
        for axis, size in enumerate(target):
            if out.shape[axis] != size:
                out = out.take(_nearest_indices(out.shape[axis], size), axis=axis)
        return out
    return _slab_by_slab(_linear, volume, target)


def _linear(volume: np.ndarray, target: tuple[int, ...]) -> np.ndarray:
    out = volume.astype(np.float32, copy=False)
    for axis, size in enumerate(target):
        if out.shape[axis] != size:
            out = _linear_along(out, axis, _linear_weights(out.shape[axis], size))
    return out


def _slab_by_slab(
    resample: Callable[[np.ndarray, tuple[int, ...]], np.ndarray],
    volume: np.ndarray,
    target: tuple[int, ...],
) -> np.ndarray:
    """``resample(volume, target)``; where the slices are kept each one is resampled on its
    own, so slabs of them run on threads (:func:`~cmbdet.preprocess.slabs.by_slabs`)."""
    if volume.ndim == 3 and volume.shape[2] == target[2]:
        return by_slabs(partial(_in_plane, resample=resample, size=target[:2]), volume)
    return resample(volume, target)


def _in_plane(
    volume: np.ndarray,
    resample: Callable[[np.ndarray, tuple[int, ...]], np.ndarray],
    size: tuple[int, int],
) -> np.ndarray:
    return resample(volume, (*size, volume.shape[2]))


def _scale(n_in: int, n_out: int) -> np.float32:
    """Input voxels per output voxel, in float32 as PyTorch computes it."""
    return np.float32(n_in) / np.float32(n_out)


def _nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    """(n_out,) source index of each output voxel (PyTorch's ``nearest-exact``)."""
    centres = (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * _scale(n_in, n_out)
    return np.minimum(np.floor(centres).astype(np.int64), n_in - 1)


def _linear_weights(n_in: int, n_out: int) -> sparse.csr_matrix:
    """(n_out, n_in) float32 weights of linear resampling along one axis: PyTorch's triangle
    filter, stretched by the scale where the axis shrinks (anti-aliasing), each row normalised
    over the input voxels it covers (which clamps at the edges)."""
    scale = _scale(n_in, n_out)
    shrinking = scale >= 1
    support = scale if shrinking else np.float32(1)
    inverse = np.float32(1) / scale if shrinking else np.float32(1)
    centres = scale * (np.arange(n_out, dtype=np.float32) + np.float32(0.5))
    first = np.maximum((centres - support + np.float32(0.5)).astype(np.int64), 0)
    stop = np.minimum((centres + support + np.float32(0.5)).astype(np.int64), n_in)
    taps = np.arange(int((stop - first).max()))
    source = first[:, None] + taps  # (n_out, K)
    weights = 1 - np.abs((source - centres[:, None] + np.float32(0.5)) * inverse)
    weights = np.where(source < stop[:, None], np.maximum(weights, 0), 0).astype(np.float32)
    totals = weights.sum(axis=1, keepdims=True)
    weights = np.divide(weights, totals, out=np.zeros_like(weights), where=totals != 0)
    rows = np.repeat(np.arange(n_out), taps.size)
    columns = np.minimum(source, n_in - 1).ravel()
    return sparse.csr_matrix((weights.ravel(), (rows, columns)), shape=(n_out, n_in))


def _linear_along(volume: np.ndarray, axis: int, weights: sparse.csr_matrix) -> np.ndarray:
    """Apply (n_out, n_in) ``weights`` along ``axis`` of a float32 (X, Y, Z) volume."""
    volume = np.ascontiguousarray(volume)
    shape = list(volume.shape)
    shape[axis] = weights.shape[0]
    if axis == 0:
        return (weights @ volume.reshape(volume.shape[0], -1)).reshape(shape)
    if axis == 1:
        out = np.empty(shape, dtype=np.float32)
        for x in range(volume.shape[0]):
            out[x] = weights @ volume[x]
        return out
    columns = volume.reshape(-1, volume.shape[2])  # axis 2: each voxel column is one row
    return np.asarray((weights @ columns.T).T, dtype=np.float32).reshape(shape)


def resample_phase_to(phase_rad: np.ndarray, target_shape: tuple[int, ...]) -> np.ndarray:
    """Resample phase (radians) linearly through ``exp(i phase)``; returns float32 radians.

    Args:
        phase_rad: (X, Y, Z) phase, radians.
        target_shape: (X', Y', Z').
    """
    target = tuple(int(n) for n in target_shape)
    if tuple(phase_rad.shape) == target:
        return phase_rad.astype(np.float32, copy=False)
    return _slab_by_slab(_phase_resampled, phase_rad, target)


def _phase_resampled(phase_rad: np.ndarray, target: tuple[int, ...]) -> np.ndarray:
    cos = _linear(np.cos(phase_rad), target)
    sin = _linear(np.sin(phase_rad), target)
    return np.arctan2(sin, cos).astype(np.float32, copy=False)
