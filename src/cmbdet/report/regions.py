"""Approximate anatomical regions (lobar / deep / infratentorial) without registration.

Inputs are not registered to MNI space, so the report places each detection by a linear map
fitted to the brain's outline on SWI, then reads the region from the MNI boxes of
:func:`cmbdet.atlas.region_of_mni`. The map, in the canonical image frame (canonical
voxel index x spacing, mm, axes ~ right, anterior, superior):

- scale: one isotropic factor, the brain's left-right width over the MNI brain's (a
  left-right extent is almost never cut by the field of view); 1 when it is cut;
- x: the middle of the left-right extent is MNI x = 0;
- y: the middle of the anterior-posterior extent, or its one end that lies inside the field of
  view (anterior / posterior pole), or, when both are cut, the mask's centroid;
- z: clinical slabs rarely hold the whole brain, so z is fitted: the area of each axial slice
  of the mask is compared with the MNI brain's axial area at the same height (scaled), over
  the slices the slab holds, and the shift with the least squared difference wins.

This is a coarse guide (head tilt, brain shape and slab position all move region borders by
several mm); the page says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cmbdet.atlas import REGION_NAMES, region_of_mni
from cmbdet.geometry import world_to_voxel
from cmbdet.preprocess.mask import estimate_brain_mask

MASK_IN_PLANE_MM = 2.5
"""The brain's outline is estimated on a grid of about this in-plane pixel (fast; an outline
needs no finer detail)."""
EDGE_VOXELS = 1
"""A mask reaching within this many voxels of the array border is cut by the field of view."""

MNI_BRAIN_X_MM = (-72.0, 72.0)
MNI_BRAIN_Y_MM = (-107.0, 73.0)
MNI_BRAIN_CENTROID_Y_MM = -22.0
MNI_AXIAL_AREA_Z_MM = np.arange(-72.0, 81.0, 4.0)
MNI_AXIAL_AREA_MM2 = np.array(
    [
        37, 187, 773, 2261, 3272, 4093, 6048, 7590, 8727, 9774, 10936, 13370, 14879, 17081,
        18992, 19691, 20070, 20327, 20477, 20501, 20388, 20196, 19834, 19420, 18981, 18381,
        17665, 16934, 16034, 14970, 13874, 12557, 11139, 9487, 7954, 6243, 4422, 2481, 582,
    ],
    dtype=np.float64,
)  # fmt: skip
"""Brain area of axial planes of the MNI ICBM152 2009 brain mask (nilearn, 1 mm) every 4 mm
from z = -72 mm; its bounding box is x -72..72, y -107..73, z -72..82 mm."""


@dataclass(frozen=True)
class MniMap:
    """A linear map from the canonical image frame to approximate MNI mm.

    ``mni = (image_mm - origin_mm) / scale`` per axis, where image mm are canonical voxel
    indices times ``spacing_mm``.

    Attributes:
        origin_mm: (3,) image mm of MNI (0, 0, 0).
        scale: subject brain size relative to the MNI brain.
        affine: (4, 4) canonical voxel -> world affine of the volume it was fitted on.
        spacing_mm: that volume's canonical voxel size.
        cut: which ends the field of view cuts, e.g. ``"anterior, inferior"`` ("" if none).
    """

    origin_mm: tuple[float, float, float]
    scale: float
    affine: np.ndarray
    spacing_mm: tuple[float, float, float]
    cut: str

    def to_mni(self, xyz_mm: np.ndarray) -> np.ndarray:
        """(N, 3) world mm -> (N, 3) approximate MNI mm."""
        voxels = world_to_voxel(np.asarray(xyz_mm, dtype=np.float64).reshape(-1, 3), self.affine)
        image_mm = voxels * np.asarray(self.spacing_mm)
        return (image_mm - np.asarray(self.origin_mm)) / self.scale

    def regions(self, xyz_mm: np.ndarray) -> list[str]:
        """Region name ("lobar", "deep", "infratentorial") of each (N, 3) world point."""
        codes = region_of_mni(self.to_mni(xyz_mm))
        return [REGION_NAMES[int(code)] for code in codes]


def coarse_brain_mask(
    swi: np.ndarray, spacing_mm: tuple[float, float, float]
) -> tuple[np.ndarray, int]:
    """Brain mask of a canonical SWI on a grid block-averaged in-plane.

    Returns:
        (X // f, Y // f, Z) bool mask and the in-plane block factor ``f``: coarse voxel
        (a, b, k) covers canonical voxels [a f, (a + 1) f) x [b f, (b + 1) f) x {k}.
    """
    nx, ny, nz = swi.shape
    factor = max(1, min(round(MASK_IN_PLANE_MM / max(spacing_mm[0], spacing_mm[1])), nx, ny))
    cx, cy = nx // factor, ny // factor  # a partial last block is left out
    block = swi[: cx * factor, : cy * factor].astype(np.float32)
    coarse = block.reshape(cx, factor, cy, factor, nz).mean(axis=(1, 3))  # (cx, cy, Z)
    coarse_spacing = (spacing_mm[0] * factor, spacing_mm[1] * factor, spacing_mm[2])
    return estimate_brain_mask(coarse, coarse_spacing), factor


def fit_mni_map(
    mask: np.ndarray,
    mask_spacing_mm: tuple[float, float, float],
    affine: np.ndarray,
    spacing_mm: tuple[float, float, float],
) -> MniMap | None:
    """Fit the approximate MNI map to a brain mask (see the module docstring).

    Args:
        mask: (X', Y', Z) bool brain mask, canonical order; voxel (a, b, k) starts at image
            mm (a, b, k) * ``mask_spacing_mm`` (a coarse grid from :func:`coarse_brain_mask`).
        mask_spacing_mm: the mask's voxel size.
        affine: (4, 4) canonical voxel -> world affine of the full-resolution volume.
        spacing_mm: the full-resolution canonical voxel size.

    Returns:
        The map, or None when the mask is empty.
    """
    if not mask.any():
        return None
    step = np.asarray(mask_spacing_mm, dtype=np.float64)
    inside = np.argwhere(mask)  # (N, 3) coarse voxel indices
    low_voxel, high_voxel = inside.min(axis=0), inside.max(axis=0)
    cut_low = low_voxel < EDGE_VOXELS
    cut_high = high_voxel >= np.asarray(mask.shape) - EDGE_VOXELS
    # centres of a coarse voxel's covered block, image mm
    low_mm = (low_voxel + 0.5) * step - 0.5 * np.asarray(spacing_mm)
    high_mm = (high_voxel + 0.5) * step - 0.5 * np.asarray(spacing_mm)

    mni_width = MNI_BRAIN_X_MM[1] - MNI_BRAIN_X_MM[0]
    scale = 1.0
    if not (cut_low[0] or cut_high[0]):
        scale = float((high_mm[0] - low_mm[0] + step[0]) / (mni_width + 1.0))
    origin_x = (low_mm[0] + high_mm[0]) / 2 - scale * sum(MNI_BRAIN_X_MM) / 2

    if not (cut_low[1] or cut_high[1]):
        origin_y = (low_mm[1] + high_mm[1]) / 2 - scale * sum(MNI_BRAIN_Y_MM) / 2
    elif not cut_low[1]:  # the occipital pole is inside the field of view
        origin_y = low_mm[1] - scale * MNI_BRAIN_Y_MM[0]
    elif not cut_high[1]:  # the frontal pole is
        origin_y = high_mm[1] - scale * MNI_BRAIN_Y_MM[1]
    else:
        centroid_y = (inside[:, 1].mean() + 0.5) * step[1]
        origin_y = centroid_y - scale * MNI_BRAIN_CENTROID_Y_MM

    origin_z = _fit_axial_area(mask, step, scale)
    sides = (("right", "left"), ("anterior", "posterior"), ("superior", "inferior"))
    cut = [
        name
        for axis, (high_name, low_name) in enumerate(sides)
        for name, is_cut in ((low_name, cut_low[axis]), (high_name, cut_high[axis]))
        if is_cut
    ]
    return MniMap(
        origin_mm=(float(origin_x), float(origin_y), float(origin_z)),
        scale=scale,
        affine=np.asarray(affine, dtype=np.float64),
        spacing_mm=tuple(float(s) for s in spacing_mm),
        cut=", ".join(cut),
    )


def _fit_axial_area(mask: np.ndarray, step: np.ndarray, scale: float) -> float:
    """Image z (mm) of MNI z = 0 that best matches the slices' brain areas to the MNI brain's.

    Every slice of the slab counts, those without brain too, so a slab that holds the vertex
    or the foramen magnum is pinned by it, and one that holds neither by its area profile.
    """
    area_mm2 = mask.sum(axis=(0, 1)) * step[0] * step[1]  # (Z,)
    slice_mm = np.arange(mask.shape[2]) * step[2]
    reach = (MNI_AXIAL_AREA_Z_MM[-1] + 4.0 - MNI_AXIAL_AREA_Z_MM[0]) * scale
    shifts = np.arange(slice_mm[0] - reach, slice_mm[-1] + reach, 1.0)  # candidate origins
    mni_z = (slice_mm[None, :] - shifts[:, None]) / scale  # (shifts, Z)
    model = scale**2 * np.interp(mni_z, MNI_AXIAL_AREA_Z_MM, MNI_AXIAL_AREA_MM2, 0.0, 0.0)
    cost = ((model - area_mm2[None, :]) ** 2).sum(axis=1)
    return float(shifts[int(np.argmin(cost))])
