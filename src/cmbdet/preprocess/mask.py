"""A brain mask from SWI alone, for subjects that come without one.

SWI shows the head as bright brain (tissue and CSF) inside a dark skull, with a bright scalp
outside it and noise around. The mask keeps what is bright enough, cuts the thin bridges
between scalp and brain by an erosion of a few mm, keeps the largest 3D component, grows it
back inside the bright tissue and fills what lies inside (dark veins, sinuses, CMBs belong to
the brain).
"""

from __future__ import annotations

from functools import partial

import numpy as np
from scipy import ndimage

from cmbdet.preprocess.morphology import all_within, any_within, packed, unpacked
from cmbdet.preprocess.slabs import by_slabs

SMOOTH_MM = 1.0
"""In-plane Gaussian smoothing (sigma) before thresholding, mm."""
EROSION_MM = 4.0
"""Erosion that separates brain from scalp across the skull, mm."""
CLOSING_MM = 3.0
"""Closing of the final mask (fills dark veins and sulci at the brain edge), mm."""
TISSUE_FRACTION = 0.5
"""Tissue: brighter than this fraction of the Otsu threshold within the head."""


COARSE_IN_PLANE_MM = 1.0
"""Finer inputs are block-averaged to about this in-plane pixel for the estimate (4x fewer
voxels at 0.5 mm; a mask needs no finer detail), and the mask brought back by nearest
neighbour."""


def estimate_brain_mask(swi: np.ndarray, spacing_mm: tuple[float, float, float]) -> np.ndarray:
    """Estimate a brain mask from SWI (on a coarser in-plane grid when the input is fine).

    See :func:`_estimate_on_grid` for the steps.
    """
    factor = max(1, int(COARSE_IN_PLANE_MM / max(spacing_mm[0], spacing_mm[1]) + 1e-6))
    if factor == 1:
        return _estimate_on_grid(swi, spacing_mm)
    nx, ny, nz = swi.shape
    cx, cy = -(-nx // factor), -(-ny // factor)  # ceil: the last block may be partial
    padded = np.zeros((cx * factor, cy * factor, nz), dtype=np.float32)
    padded[:nx, :ny] = swi
    coarse = padded.reshape(cx, factor, cy, factor, nz).mean(axis=(1, 3))  # (cx, cy, Z)
    coarse_spacing = (spacing_mm[0] * factor, spacing_mm[1] * factor, spacing_mm[2])
    mask = _estimate_on_grid(coarse, coarse_spacing)
    return np.repeat(np.repeat(mask, factor, axis=0), factor, axis=1)[:nx, :ny]


def _estimate_on_grid(swi: np.ndarray, spacing_mm: tuple[float, float, float]) -> np.ndarray:
    """Estimate a brain mask from SWI.

    Steps: in-plane smoothing; Otsu threshold of the positive voxels (head vs background), then
    tissue = brighter than ``TISSUE_FRACTION`` of the Otsu threshold within the head (drops
    bone and air); erosion by ``EROSION_MM`` cuts the scalp off at the skull; the largest 3D
    component, dilated back by the same distance and intersected with the tissue; closing by
    ``CLOSING_MM``; holes filled slice by slice.

    Args:
        swi: (X, Y, Z) SWI (or magnitude), any positive scale.
        spacing_mm: voxel size (x, y, z), mm.

    Returns:
        (X, Y, Z) bool brain mask; all False when nothing bright is found.
    """
    spacing = np.asarray(spacing_mm, dtype=float)
    empty = np.zeros(swi.shape, dtype=bool)
    sigma = (SMOOTH_MM / spacing[0], SMOOTH_MM / spacing[1], 0.0)
    smooth = by_slabs(partial(ndimage.gaussian_filter, sigma=sigma), np.asarray(swi, np.float32))
    positive = smooth[smooth > 0]
    if positive.size < 2:
        return empty
    head = smooth > otsu_threshold(positive)
    if not head.any():
        return empty
    tissue = smooth > TISSUE_FRACTION * otsu_threshold(smooth[head])
    # the morphology on the tissue's in-plane bounding box, with room for every step (the
    # closing's dilation and its erosion's reach): the same mask at a fraction of the voxels
    reach_mm = max(EROSION_MM, 2 * CLOSING_MM)
    box = in_plane_box(tissue, [int(np.ceil(reach_mm / s)) + 2 for s in spacing[:2]])
    mask = empty
    mask[box] = _brain_of_tissue(tissue[box], spacing)
    return mask


def _brain_of_tissue(tissue: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """The brain within (X, Y, Z) bool ``tissue``: erosion by ``EROSION_MM`` cuts the scalp off,
    the largest 3D component is dilated back within the tissue, closed by ``CLOSING_MM`` and
    its holes filled slice by slice."""
    core = _largest_component(erode_in_plane(tissue, spacing, EROSION_MM))
    if not core.any():
        core = _largest_component(tissue)
    mask = dilate_in_plane(core, spacing, EROSION_MM) & tissue
    mask = _largest_component(mask | core)
    closing = partial(_closed_and_filled, spacing=spacing, radius_mm=CLOSING_MM)
    return by_slabs(closing, mask)


def _closed_and_filled(mask: np.ndarray, spacing: np.ndarray, radius_mm: float) -> np.ndarray:
    """``mask`` closed in-plane by ``radius_mm`` (what it held is kept) and its holes filled,
    slice by slice."""
    bits = _erode_bits(_dilate_bits(packed(mask), spacing, radius_mm), spacing, radius_mm)
    closed = unpacked(bits, mask.shape[2]) | mask
    return _fill_holes(closed)


_IN_PLANE_CROSS = np.zeros((3, 3, 3), dtype=bool)
_IN_PLANE_CROSS[:, :, 1] = ndimage.generate_binary_structure(2, 1)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill the holes of each slice of (X, Y, Z) bool ``mask``: what
    ``ndimage.binary_fill_holes`` does slice by slice (background 4-connected in-plane to the
    slice's edge stays background; everything else joins the mask), in one labelling whose
    connections stay within slices."""
    background, count = ndimage.label(~mask, structure=_IN_PLANE_CROSS)
    outside = np.zeros(count + 1, dtype=bool)
    for edge in (background[0], background[-1], background[:, 0], background[:, -1]):
        outside[np.unique(edge)] = True
    outside[0] = False  # label 0: the mask itself
    return ~outside[background]


def in_plane_box(mask: np.ndarray, margin: list[int]) -> tuple[slice, slice]:
    """(x, y) slices of the in-plane bounding box of ``mask``'s voxels over all slices, widened
    by ``margin`` voxels (x, y) and kept within the array; the whole plane when it is empty."""
    if not mask.any():
        return slice(None), slice(None)
    box = []
    for axis, other in ((0, (1, 2)), (1, (0, 2))):
        inside = np.flatnonzero(mask.any(axis=other))
        low = max(int(inside[0]) - margin[axis], 0)
        box.append(slice(low, min(int(inside[-1]) + 1 + margin[axis], mask.shape[axis])))
    return box[0], box[1]


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of a 1D sample (maximises the between-class variance)."""
    histogram, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(histogram).astype(np.float64)
    mean = np.cumsum(histogram * centres)
    total_weight, total_mean = weight[-1], mean[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (total_mean * weight - mean * total_weight) ** 2 / (
            weight * (total_weight - weight)
        )
    between[~np.isfinite(between)] = -1.0
    return float(centres[int(np.argmax(between))])


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(mask)
    if count == 0:
        return mask.copy()
    sizes = np.bincount(labels.ravel())[1:]
    return labels == 1 + int(np.argmax(sizes))


def erode_in_plane(mask: np.ndarray, spacing: np.ndarray, radius_mm: float) -> np.ndarray:
    """Erode in-plane by ``radius_mm`` (Euclidean, per slice: slices are thick): a voxel stays
    when no voxel outside the mask lies within ``radius_mm`` in its slice (the edge of the
    field of view does not erode). (X, Y, Z) bool -> (X, Y, Z) bool."""
    return by_slabs(partial(_erode, spacing=spacing, radius_mm=radius_mm), mask)


def dilate_in_plane(mask: np.ndarray, spacing: np.ndarray, radius_mm: float) -> np.ndarray:
    """Dilate in-plane by ``radius_mm`` (Euclidean, per slice): every voxel within
    ``radius_mm`` of the mask in its slice joins it. (X, Y, Z) bool -> (X, Y, Z) bool."""
    return by_slabs(partial(_dilate, spacing=spacing, radius_mm=radius_mm), mask)


def _erode(mask: np.ndarray, spacing: np.ndarray, radius_mm: float) -> np.ndarray:
    return unpacked(_erode_bits(packed(mask), spacing, radius_mm), mask.shape[2])


def _dilate(mask: np.ndarray, spacing: np.ndarray, radius_mm: float) -> np.ndarray:
    return unpacked(_dilate_bits(packed(mask), spacing, radius_mm), mask.shape[2])


def _erode_bits(bits: np.ndarray, spacing: np.ndarray, radius_mm: float) -> np.ndarray:
    """(X, Y, ceil(Z / 8)) packed bits (:func:`~cmbdet.preprocess.morphology.packed`) eroded
    by the in-plane disk of ``radius_mm``; outside the array counts as set (the edge erodes
    nothing). The pad bits past the last slice may be set: ``unpacked`` drops them."""
    eroded = np.full_like(bits, 0xFF)
    for half_x, half_y in _disk_rectangles(spacing, radius_mm):
        eroded &= all_within(all_within(bits, half_y, axis=1), half_x, axis=0)
    return eroded


def _dilate_bits(bits: np.ndarray, spacing: np.ndarray, radius_mm: float) -> np.ndarray:
    """(X, Y, ceil(Z / 8)) packed bits dilated by the in-plane disk of ``radius_mm``."""
    dilated = np.zeros_like(bits)
    for half_x, half_y in _disk_rectangles(spacing, radius_mm):
        dilated |= any_within(any_within(bits, half_y, axis=1), half_x, axis=0)
    return dilated


def _disk_rectangles(spacing: np.ndarray, radius_mm: float) -> list[tuple[int, int]]:
    """The in-plane disk of offsets within ``radius_mm`` as a union of centred rectangles
    (half-widths in voxels along x and y): erosion by the disk is the intersection of the
    erosions by the rectangles, dilation the union, and each rectangle is two running
    minima (maxima) along a line (on packed bits: :mod:`cmbdet.preprocess.morphology`).

    Distances are computed as ``scipy.ndimage.distance_transform_edt`` computes them, so the
    morphology equals thresholding the per-slice distance transform.
    """
    reach = [int(radius_mm / float(s)) + 1 for s in spacing[:2]]  # one spare row: all False
    dx = np.arange(0, reach[0] + 1, dtype=np.float64)[:, None] * float(spacing[0])
    dy = np.arange(0, reach[1] + 1, dtype=np.float64)[None, :] * float(spacing[1])
    inside = np.sqrt(dx**2 + dy**2) <= radius_mm  # a quarter of the disk, offsets >= 0
    half_y = inside.sum(axis=1) - 1  # (reach_x + 1,) half-width along y of each x offset
    return [
        (int(np.flatnonzero(half_y >= width).max()), int(width))
        for width in np.unique(half_y[half_y >= 0])
    ]
