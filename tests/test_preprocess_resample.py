"""In-plane resampling to the model grid: the exact voxel map, shapes, masks."""

from __future__ import annotations

import numpy as np
import pytest

from cmbdet.preprocess.resample import ResampleMap, resample_to
from cmbdet.synth.config import PRESETS


def test_resample_map_round_trip_hr_lr():
    hr, lr = PRESETS["hr"], PRESETS["lr"]
    to_lr = ResampleMap.for_target(hr.shape, hr.spacing_mm, 0.8)
    to_hr = ResampleMap.for_target(lr.shape, lr.spacing_mm, 0.5)
    assert to_lr.model_shape == (320, 280, 72)
    assert to_hr.model_shape == (461, 403, 72)
    assert to_lr.model_spacing_mm == pytest.approx((0.8, 0.8, 2.0))
    assert to_hr.model_spacing_mm[0] == pytest.approx(288 * 0.8 / 461)
    rng = np.random.default_rng(1)
    for grid in (to_lr, to_hr):
        points = rng.uniform(-0.5, np.asarray(grid.native_shape) - 0.5, (50, 3))
        np.testing.assert_allclose(grid.model_to_native(grid.native_to_model(points)), points)
        # voxel edges of the field of view map onto each other; slices are untouched
        edges = np.array([[-0.5, -0.5, 3.0], [grid.native_shape[0] - 0.5, 0.0, 5.0]])
        mapped = grid.native_to_model(edges)
        np.testing.assert_allclose(mapped[:, 2], edges[:, 2])
        assert mapped[0, 0] == pytest.approx(-0.5) and mapped[1, 0] == pytest.approx(
            grid.model_shape[0] - 0.5
        )


def test_model_affine_agrees_with_voxel_map():
    grid = ResampleMap.for_target((288, 252, 72), (0.8, 0.8, 2.0), 0.5)
    native_affine = np.diag([0.8, 0.8, 2.0, 1.0])
    native_affine[:3, 3] = (-115.0, -100.0, -72.0)
    model = np.array([[10.0, 20.0, 3.0], [400.0, 7.5, 60.0]])
    world_via_native = (native_affine @ np.c_[grid.model_to_native(model), np.ones(2)].T).T[:, :3]
    world_via_model = (grid.model_affine(native_affine) @ np.c_[model, np.ones(2)].T).T[:, :3]
    np.testing.assert_allclose(world_via_model, world_via_native)


def test_resample_shapes_and_mask_round_trip():
    rng = np.random.default_rng(2)
    image = rng.random((48, 40, 5)).astype(np.float32)
    grid = ResampleMap.for_target(image.shape, (0.8, 0.8, 2.0), 0.4)
    out, spacing = grid.to_model(image, 1), grid.model_spacing_mm
    assert out.shape == (96, 80, 5) and spacing == pytest.approx((0.4, 0.4, 2.0))
    grid = ResampleMap.for_target(image.shape, (0.5, 0.5, 2.0), 0.5)
    same = grid.to_model(image, 1)
    assert same.shape == image.shape and np.array_equal(same, image)
    mask = np.zeros((48, 40, 5), bool)
    mask[10:30, 5:25, 1:4] = True
    up = resample_to(mask, (96, 80, 5), order=0)
    assert up.dtype == bool and np.array_equal(resample_to(up, mask.shape, order=0), mask)
    with pytest.raises(ValueError, match="slices"):
        resample_to(mask, (96, 80, 6))
