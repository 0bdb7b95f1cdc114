"""Resampling to the model grid: the exact voxel map, shapes, masks, slices in mm."""

from __future__ import annotations

import numpy as np
import pytest
import torch

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
    with pytest.raises(ValueError, match="order"):
        resample_to(mask, (96, 80, 6), order=3)


def test_slices_resampled_to_a_thickness_in_mm():
    iso1 = ResampleMap.for_target((192, 224, 160), (1.0, 1.0, 1.0), 0.625, 2.0)
    ukb = ResampleMap.for_target((256, 288, 48), (0.8, 0.8, 3.0), 0.625, 2.0)
    paper = ResampleMap.for_target((288, 252, 72), (0.8, 0.8, 2.0), 0.625, 2.0)
    assert iso1.model_shape == (307, 358, 80) and iso1.slice_ratio == 0.5
    assert ukb.model_shape[2] == 72 and ukb.model_spacing_mm[2] == pytest.approx(2.0)
    assert paper.model_shape[2] == 72 and paper.slice_ratio == 1.0  # 2 mm slices kept
    assert ResampleMap.for_target((192, 224, 160), (1.0, 1.0, 1.0), 0.625).model_shape[2] == 160
    # native slice edges map onto model slice edges: 160 x 1 mm over 80 x 2 mm
    mapped = iso1.native_to_model(np.array([[0.0, 0.0, -0.5], [0.0, 0.0, 159.5], [0, 0, 9.5]]))
    np.testing.assert_allclose(mapped[:, 2], [-0.5, 79.5, 4.5])
    points = np.random.default_rng(3).uniform(0, 40, (20, 3))
    np.testing.assert_allclose(ukb.model_to_native(ukb.native_to_model(points)), points)
    native_affine = np.diag([0.8, 0.8, 3.0, 1.0])
    world = ukb.model_affine(native_affine) @ np.array([0.0, 0.0, 10.0, 1.0])
    native = native_affine @ np.r_[ukb.model_to_native(np.array([0.0, 0.0, 10.0])), 1.0]
    np.testing.assert_allclose(world, native)


def test_thin_slices_are_averaged_and_thick_ones_interpolated():
    depth_mm = np.arange(40) * 1.0 + 0.5  # 1 mm slices: centres at 0.5, 1.5, ... mm
    ramp = np.broadcast_to(depth_mm, (6, 5, 40)).astype(np.float32)
    thick = resample_to(ramp, (6, 5, 20), order=1)  # 2 mm slices: centres at 1, 3, ... mm
    np.testing.assert_allclose(thick[2, 2, 1:-1], np.arange(1, 19) * 2.0 + 1.0, atol=1e-4)
    dot = np.ones((6, 5, 40), np.float32)
    dot[3, 2, 21] = 0.0  # dark on one 1 mm slice: its 2 mm slice is darkest, by about half
    averaged = resample_to(dot, (6, 5, 20), order=1)[3, 2]
    assert averaged.argmin() == 10 and 0.4 < averaged[10] < 0.7
    assert np.all(averaged[:8] == 1.0) and np.all(averaged[13:] == 1.0)
    upsampled = resample_to(thick, (6, 5, 30), order=1)  # 2 mm -> 1.33 mm, still a ramp
    centres = (np.arange(30) + 0.5) * 40 / 30
    np.testing.assert_allclose(upsampled[1, 1, 2:-2], centres[2:-2], atol=1e-3)
    mask = np.zeros((6, 5, 20), bool)
    mask[2:4, 1:3, 5:9] = True
    assert np.array_equal(resample_to(resample_to(mask, (6, 5, 40)), (6, 5, 20)), mask)


@pytest.mark.parametrize(
    ("shape", "target"),
    [
        ((64, 56, 9), (51, 45, 9)),  # hr-like in-plane shrink (anti-aliased)
        ((36, 32, 9), (46, 41, 9)),  # lr-like in-plane growth
        ((30, 25, 12), (20, 35, 8)),  # one axis shrinks, one grows; thinner slices averaged
        ((20, 18, 8), (20, 18, 12)),  # slices only, upsampled
    ],
)
def test_resampling_equals_pytorch_interpolate(shape, target):
    """The models were trained on PyTorch's resampling: NumPy's equals it to float32
    rounding (images: bilinear, anti-aliased where an axis shrinks; masks: nearest-exact)."""
    functional = torch.nn.functional
    volume = np.random.default_rng(3).random(shape, dtype=np.float32)
    slices = torch.from_numpy(np.ascontiguousarray(np.moveaxis(volume, 2, 0)))[:, None]
    in_plane = tuple(target[:2])
    shrinking = target[0] < shape[0] or target[1] < shape[1]
    for order, mode, extra in ((1, "bilinear", {"antialias": shrinking}), (0, "nearest-exact", {})):
        kwargs = {"align_corners": False, **extra} if order else {}
        planes = functional.interpolate(slices, size=in_plane, mode=mode, **kwargs)[:, 0]
        columns = planes.permute(1, 2, 0).reshape(1, 1, -1, shape[2])
        if order:
            kwargs["antialias"] = target[2] < shape[2]
        expected = functional.interpolate(
            columns, size=(columns.shape[2], target[2]), mode=mode, **kwargs
        )
        expected = expected.reshape(*target).numpy()
        np.testing.assert_allclose(resample_to(volume, target, order), expected, atol=2e-5)
