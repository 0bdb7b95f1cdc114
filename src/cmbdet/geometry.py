"""Axis order and coordinates: the one place that knows how voxels map to millimetres.

Conventions (see DESIGN.md, "Data conventions"):

- *World* coordinates are scanner RAS+ in millimetres, ``xyz_mm``.
- *Original* voxel coordinates are 0-based float indices ``ijk`` in a file's own array order.
- *Canonical* voxel coordinates are 0-based float indices in the closest canonical RAS+
  orientation (``nibabel.as_closest_canonical``), the order used inside the tool: array axes
  (x, y, z) ~ (right, anterior, superior), axial slices along the last axis.

Going between original and canonical voxels is a permutation of axes plus flips
(``i' = n - 1 - i``); it is exact and never resamples.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from nibabel.affines import apply_affine, voxel_sizes
from nibabel.orientations import (
    aff2axcodes,
    apply_orientation,
    axcodes2ornt,
    inv_ornt_aff,
    io_orientation,
    ornt_transform,
)

_RAS_ORNT = axcodes2ornt("RAS")  # (3, 2): [[0, 1], [1, 1], [2, 1]]


def _as_points(points: np.ndarray, name: str) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.shape[-1:] != (3,) or points.ndim not in (1, 2):
        raise ValueError(f"{name} must have shape (3,) or (N, 3), got {points.shape}")
    return points


def _as_affine(affine: np.ndarray) -> np.ndarray:
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise ValueError(f"affine must have shape (4, 4), got {affine.shape}")
    return affine


def voxel_to_world(ijk: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Map voxel indices to world coordinates.

    Args:
        ijk: (N, 3) or (3,) float voxel indices, 0-based, in the array order that ``affine``
            describes.
        affine: (4, 4) voxel-to-world affine.

    Returns:
        Same shape as ``ijk``: world coordinates, mm (scanner RAS+).
    """
    return apply_affine(_as_affine(affine), _as_points(ijk, "ijk"))


def world_to_voxel(xyz_mm: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Map world coordinates to float voxel indices (the inverse of :func:`voxel_to_world`).

    Args:
        xyz_mm: (N, 3) or (3,) world coordinates, mm (scanner RAS+).
        affine: (4, 4) voxel-to-world affine.

    Returns:
        Same shape as ``xyz_mm``: float voxel indices, 0-based, not rounded.
    """
    inverse = np.linalg.inv(_as_affine(affine))
    return apply_affine(inverse, _as_points(xyz_mm, "xyz_mm"))


def spacing_mm(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size along each array axis of ``affine``, mm (column norms, exact for oblique)."""
    sizes = voxel_sizes(_as_affine(affine))
    return (float(sizes[0]), float(sizes[1]), float(sizes[2]))


def axcodes(affine: np.ndarray) -> str:
    """Closest orientation of ``affine`` as three letters, e.g. ``"RAS"`` or ``"LPS"``."""
    return "".join(aff2axcodes(_as_affine(affine)))


def _readonly(array: np.ndarray) -> np.ndarray:
    array = np.array(array, dtype=np.float64)
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class Reorientation:
    """Exact mapping between a file's own array order and the closest canonical RAS+ order.

    Build it from the file's affine and 3D shape; all the other fields are derived.

    Attributes:
        original_affine: (4, 4) voxel-to-world affine of the file's own array, mm.
        original_shape: shape of the file's own 3D array.
        canonical_affine: (4, 4) voxel-to-world affine of the canonical array, mm.
        canonical_shape: shape of the canonical 3D array (``original_shape`` permuted).
    """

    original_affine: np.ndarray
    original_shape: tuple[int, int, int]
    canonical_affine: np.ndarray = field(init=False)
    canonical_shape: tuple[int, int, int] = field(init=False)
    _to_canonical: np.ndarray = field(init=False, repr=False)  # (3, 2) nibabel ornt
    _from_canonical: np.ndarray = field(init=False, repr=False)  # (3, 2) nibabel ornt
    _canonical_to_original: np.ndarray = field(init=False, repr=False)  # (4, 4) voxel map
    _original_to_canonical: np.ndarray = field(init=False, repr=False)  # (4, 4) voxel map

    def __post_init__(self) -> None:
        affine = _readonly(_as_affine(self.original_affine))
        shape = tuple(int(n) for n in self.original_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"original_shape must be 3 positive sizes, got {shape}")
        to_canonical = ornt_transform(io_orientation(affine), _RAS_ORNT)
        from_canonical = ornt_transform(_RAS_ORNT, io_orientation(affine))
        canonical_shape = tuple(shape[int(axis)] for axis in from_canonical[:, 0])
        # inv_ornt_aff(t, shape) maps voxels of the transformed array to the untransformed one.
        canonical_to_original = inv_ornt_aff(to_canonical, shape)
        original_to_canonical = inv_ornt_aff(from_canonical, canonical_shape)
        values = {
            "original_affine": affine,
            "original_shape": shape,
            "canonical_affine": _readonly(affine @ canonical_to_original),
            "canonical_shape": canonical_shape,
            "_to_canonical": to_canonical,
            "_from_canonical": from_canonical,
            "_canonical_to_original": _readonly(canonical_to_original),
            "_original_to_canonical": _readonly(original_to_canonical),
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)

    @property
    def is_identity(self) -> bool:
        """True when the file is already stored in canonical RAS+ order."""
        return bool(np.array_equal(self._to_canonical, _RAS_ORNT))

    def to_canonical(self, array: np.ndarray, dtype: np.dtype | type | None = None) -> np.ndarray:
        """Reorder a 3D array from the file's own order to canonical RAS+ order.

        Args:
            array: array of shape ``original_shape`` (further trailing axes are carried along).
            dtype: the result's type (cast while copying); None keeps ``array``'s.

        Returns:
            Contiguous array of shape ``canonical_shape`` (plus any trailing axes).
        """
        self._check_shape(array, self.original_shape, "original")
        return c_order(apply_orientation(array, self._to_canonical), dtype)

    def from_canonical(self, array: np.ndarray) -> np.ndarray:
        """Reorder a 3D array from canonical order back to the file's own order.

        The exact inverse of :meth:`to_canonical`.
        """
        self._check_shape(array, self.canonical_shape, "canonical")
        return c_order(apply_orientation(array, self._from_canonical))

    def canonical_to_original_voxels(self, ijk: np.ndarray) -> np.ndarray:
        """Map (N, 3) or (3,) canonical float voxel indices to the file's own voxel indices."""
        return apply_affine(self._canonical_to_original, _as_points(ijk, "ijk"))

    def original_to_canonical_voxels(self, ijk: np.ndarray) -> np.ndarray:
        """Map (N, 3) or (3,) voxel indices in the file's own order to canonical indices."""
        return apply_affine(self._original_to_canonical, _as_points(ijk, "ijk"))

    @staticmethod
    def _check_shape(array: np.ndarray, expected: tuple[int, ...], which: str) -> None:
        if tuple(array.shape[:3]) != expected:
            raise ValueError(f"array shape {array.shape} does not match the {which} {expected}")


C_ORDER_BLOCK = 16
"""Side of the in-plane tiles :func:`c_order` copies at a time."""


def c_order(array: np.ndarray, dtype: np.dtype | type | None = None) -> np.ndarray:
    """``np.ascontiguousarray(array, dtype)`` (the same values, cast to ``dtype`` where given),
    copied in tiles of :data:`C_ORDER_BLOCK` x :data:`C_ORDER_BLOCK` voxels in-plane when
    ``array`` is 3D or more and not C-ordered: NIfTI data comes Fortran-ordered, and a tiled
    copy keeps both its reads and its writes in cache (about twice as fast for a 512 x 448 x 72
    volume; casting in the same pass saves another)."""
    if array.flags.c_contiguous or array.ndim < 3:
        return np.ascontiguousarray(array, dtype)
    out = np.empty(array.shape, dtype=array.dtype if dtype is None else dtype)
    for x in range(0, array.shape[0], C_ORDER_BLOCK):
        for y in range(0, array.shape[1], C_ORDER_BLOCK):
            out[x : x + C_ORDER_BLOCK, y : y + C_ORDER_BLOCK] = array[
                x : x + C_ORDER_BLOCK, y : y + C_ORDER_BLOCK
            ]
    return out
