"""Round trips between file voxels, canonical voxels and world millimetres."""

from __future__ import annotations

import numpy as np
import pytest
from nibabel.orientations import axcodes2ornt, inv_ornt_aff, ornt_transform

from cmbdet.geometry import (
    Reorientation,
    axcodes,
    spacing_mm,
    voxel_to_world,
    world_to_voxel,
)

SHAPE = (5, 6, 7)
SPACING = (0.5, 0.8, 2.0)


def _file_grid(codes: str, rotation_deg: float = 0.0) -> tuple[np.ndarray, tuple[int, ...]]:
    """Affine and shape of a file stored in orientation ``codes`` (e.g. "LPS").

    Its canonical RAS form has shape SHAPE and voxel sizes SPACING, optionally rotated about
    the z axis (oblique).
    """
    angle = np.deg2rad(rotation_deg)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    ras_affine = np.diag([*SPACING, 1.0])
    ras_affine[:2, :2] = rotation @ ras_affine[:2, :2]
    ras_affine[:3, 3] = [-40.0, 12.5, 7.25]
    transform = ornt_transform(axcodes2ornt("RAS"), axcodes2ornt(codes))
    to_ras = ornt_transform(axcodes2ornt(codes), axcodes2ornt("RAS"))
    shape = tuple(SHAPE[int(axis)] for axis in to_ras[:, 0])  # the file's own array shape
    return ras_affine @ inv_ornt_aff(transform, SHAPE), shape


ORIENTATIONS = ["RAS", "LPS", "PSL", "SRA", "LAI", "IPR"]


def test_voxel_world_round_trip_oblique():
    affine, _ = _file_grid("LPS", rotation_deg=17.0)
    ijk = np.random.default_rng(0).uniform(-2, 10, size=(20, 3))
    xyz_mm = voxel_to_world(ijk, affine)
    assert xyz_mm.shape == (20, 3)
    np.testing.assert_allclose(world_to_voxel(xyz_mm, affine), ijk, atol=1e-9)


def test_single_point_keeps_shape_and_matches_affine():
    affine, _ = _file_grid("RAS")
    xyz_mm = voxel_to_world(np.array([1.0, 2.0, 3.0]), affine)
    assert xyz_mm.shape == (3,)
    np.testing.assert_allclose(xyz_mm, [0.5 - 40.0, 1.6 + 12.5, 6.0 + 7.25])
    np.testing.assert_allclose(world_to_voxel(xyz_mm, affine), [1.0, 2.0, 3.0])
    with pytest.raises(ValueError):
        voxel_to_world(np.zeros((4, 2)), affine)


@pytest.mark.parametrize("rotation_deg", [0.0, 25.0])
@pytest.mark.parametrize("codes", ORIENTATIONS)
def test_reorientation_arrays_round_trip(codes, rotation_deg):
    affine, shape = _file_grid(codes, rotation_deg)
    assert axcodes(affine) == codes
    reo = Reorientation(affine, shape)
    assert reo.canonical_shape == SHAPE
    assert axcodes(reo.canonical_affine) == "RAS"
    np.testing.assert_allclose(spacing_mm(reo.canonical_affine), SPACING)
    np.testing.assert_allclose(reo.original_affine, affine)
    assert reo.is_identity == (codes == "RAS")

    original = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    canonical = reo.to_canonical(original)
    assert canonical.shape == SHAPE
    assert canonical.flags.c_contiguous
    np.testing.assert_array_equal(reo.from_canonical(canonical), original)


@pytest.mark.parametrize("codes", ORIENTATIONS)
def test_voxel_maps_agree_with_arrays_and_world(codes):
    affine, shape = _file_grid(codes, rotation_deg=10.0)
    reo = Reorientation(affine, shape)
    original = np.arange(np.prod(shape)).reshape(shape)
    canonical = reo.to_canonical(original)

    # every integer voxel: its canonical index maps to the original index holding that value
    canonical_ijk = np.argwhere(np.ones(SHAPE, dtype=bool)).astype(float)  # (N, 3)
    original_ijk = reo.canonical_to_original_voxels(canonical_ijk)
    values = original[tuple(np.rint(original_ijk).astype(int).T)]
    np.testing.assert_array_equal(values, canonical.reshape(-1))

    # float coordinates round trip exactly and name the same world point
    points = np.random.default_rng(2).uniform(-1, 6, size=(10, 3))
    back = reo.original_to_canonical_voxels(reo.canonical_to_original_voxels(points))
    np.testing.assert_allclose(back, points, atol=1e-12)
    np.testing.assert_allclose(
        voxel_to_world(reo.canonical_to_original_voxels(points), reo.original_affine),
        voxel_to_world(points, reo.canonical_affine),
        atol=1e-9,
    )


def test_flip_maps_i_to_n_minus_1_minus_i():
    affine, shape = _file_grid("LAS")
    reo = Reorientation(affine, shape)
    mapped = reo.original_to_canonical_voxels(np.array([0.0, 2.0, 3.5]))
    np.testing.assert_allclose(mapped, [SHAPE[0] - 1, 2.0, 3.5])
    np.testing.assert_allclose(reo.canonical_to_original_voxels(mapped), [0.0, 2.0, 3.5])


def test_wrong_array_shape_is_refused():
    affine, shape = _file_grid("PSL")
    reo = Reorientation(affine, shape)
    assert shape != SHAPE
    with pytest.raises(ValueError, match="does not match"):
        reo.to_canonical(np.zeros(SHAPE))


def test_c_order_copies_fortran_data_unchanged():
    """The tiled copy gives np.ascontiguousarray's values for Fortran-ordered and flipped
    arrays, sizes not multiples of the tile included."""
    from cmbdet.geometry import c_order

    volume = np.random.default_rng(0).random((37, 21, 5, 2)).astype(np.float32)
    for array in (np.asfortranarray(volume), volume[::-1, :, ::-1], volume.transpose(1, 0, 2, 3)):
        copied = c_order(array)
        assert copied.flags.c_contiguous
        np.testing.assert_array_equal(copied, array)
