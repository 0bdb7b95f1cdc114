"""Packed in-plane morphology equals SciPy's running minima and maxima, voxel for voxel."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from cmbdet.preprocess.morphology import all_within, any_within, packed, unpacked


@pytest.mark.parametrize("depth", [1, 7, 8, 13, 24])
def test_packing_keeps_every_slice(depth):
    mask = np.random.default_rng(depth).random((9, 6, depth)) > 0.5
    np.testing.assert_array_equal(unpacked(packed(mask), depth), mask)


@pytest.mark.parametrize("depth", [1, 8, 13])
@pytest.mark.parametrize("half", [0, 1, 3, 9, 40])  # 40: wider than the array
@pytest.mark.parametrize("axis", [0, 1])
def test_running_and_or_equal_scipy_filters_slice_by_slice(depth, half, axis):
    rng = np.random.default_rng(10 * depth + half)
    mask = ndimage.gaussian_filter(rng.random((31, 23, depth)), (1.5, 1.5, 0)) > 0.5
    if depth > 1:  # a full slice: the edge erodes it only where outside counts clear
        mask[:, :, 0] = True
    size, values = 2 * half + 1, mask.astype(np.uint8)

    def scipy(filter1d, cval: int) -> np.ndarray:
        return filter1d(values, size, axis=axis, mode="constant", cval=cval).astype(bool)

    bits = packed(mask)
    assert 0 < mask.sum() < mask.size
    np.testing.assert_array_equal(
        unpacked(all_within(bits, half, axis), depth), scipy(ndimage.minimum_filter1d, 1)
    )
    np.testing.assert_array_equal(
        unpacked(all_within(bits, half, axis, outside=False), depth),
        scipy(ndimage.minimum_filter1d, 0),
    )
    np.testing.assert_array_equal(
        unpacked(any_within(bits, half, axis), depth), scipy(ndimage.maximum_filter1d, 0)
    )
    np.testing.assert_array_equal(unpacked(bits, depth), mask)  # the input is left as it was


def test_views_and_non_bool_masks_pack_as_their_set_voxels_and_the_slice_axis_is_refused():
    mask = np.random.default_rng(3).random((12, 10, 19)) > 0.5
    view = mask[::-1, :, ::2]  # not contiguous
    np.testing.assert_array_equal(unpacked(packed(view), view.shape[2]), view)
    counts = mask.astype(np.int16) * 256  # non-zero counts as set (no wrap to a byte's 0)
    np.testing.assert_array_equal(unpacked(packed(counts), 19), mask)
    with pytest.raises(ValueError, match="in-plane"):
        all_within(packed(mask), 1, axis=2)
