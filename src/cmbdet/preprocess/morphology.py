"""In-plane binary morphology on masks packed eight slices to a byte.

A brain mask is eroded and dilated slice by slice (slices are thick). Packed along the slice
axis (``np.packbits``), one byte holds the same in-plane position of eight slices, and a bitwise
AND (OR) of two bytes is the minimum (maximum) of eight voxel pairs at once: a running minimum
over a window along x or y becomes a few bitwise operations on an array an eighth of the mask's
size. A window of ``half`` positions on each side costs ``2 half`` such operations. The results
equal SciPy's ``minimum_filter1d`` / ``maximum_filter1d`` slice by slice, voxel for voxel
(tested).
"""

from __future__ import annotations

import numpy as np


def packed(mask: np.ndarray) -> np.ndarray:
    """(X, Y, Z) mask (non-zero: set) -> (X, Y, ceil(Z / 8)) uint8, eight slices per byte."""
    return np.packbits(np.asarray(mask, dtype=bool), axis=2)


def unpacked(bits: np.ndarray, depth: int) -> np.ndarray:
    """(X, Y, ceil(``depth`` / 8)) uint8 :func:`packed` bits -> the (X, Y, ``depth``) bool
    mask (a new array; the bits past ``depth`` in the last byte are dropped)."""
    return np.unpackbits(bits, axis=2, count=depth).view(bool)


def all_within(bits: np.ndarray, half: int, axis: int, outside: bool = True) -> np.ndarray:
    """Running AND over ``half`` positions on each side along in-plane ``axis`` (0 or 1) of
    packed bits: a voxel stays set when every voxel of its window is set.

    ``outside``: what positions beyond the array count as: set (True: the edge erodes
    nothing, ``minimum_filter1d(mode="constant", cval=1)``) or clear (False: the voxels within
    ``half`` of the edge clear, ``cval=0``).
    """
    result = _within(bits, half, axis, np.bitwise_and)
    if not outside and half > 0:
        edges = np.moveaxis(result, axis, 0)
        edges[:half] = 0
        edges[-half:] = 0
    return result


def any_within(bits: np.ndarray, half: int, axis: int) -> np.ndarray:
    """Running OR over ``half`` positions on each side along in-plane ``axis`` (0 or 1) of
    packed bits; positions beyond the array count as clear (``maximum_filter1d(mode=
    "constant", cval=0)``)."""
    return _within(bits, half, axis, np.bitwise_or)


def _within(bits: np.ndarray, half: int, axis: int, combine: np.ufunc) -> np.ndarray:
    """``combine`` of each position with its neighbours 1 ... ``half`` positions before and
    after it along ``axis`` (those within the array); a new array."""
    if axis not in (0, 1):  # along the packed axis a byte is eight slices
        raise ValueError(f"axis must be 0 or 1 (in-plane), got {axis}")
    result = bits.copy()
    source, target = np.moveaxis(bits, axis, 0), np.moveaxis(result, axis, 0)  # views
    for shift in range(1, min(half, len(source) - 1) + 1):
        combine(target[shift:], source[:-shift], out=target[shift:])  # the neighbour before
        combine(target[:-shift], source[shift:], out=target[:-shift])  # and after
    return result
