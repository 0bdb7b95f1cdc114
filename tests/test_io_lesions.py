"""Lesion tables (lesions.csv) and CMB masks read as components."""

from __future__ import annotations

import dataclasses

import nibabel as nib
import numpy as np
import pytest

from cmbdet.errors import InputError
from cmbdet.io.lesions import (
    LESION_COLUMNS,
    Lesion,
    lesions_from_mask,
    read_lesions_csv,
    write_lesions_csv,
)

LESIONS = [
    Lesion(1, "cmb", -10.25, 3.5, 20.0, 10.5, 20.25, 30.0, 3.2, True, 1.1, 0.8, "lobar", "sphere"),
    Lesion(2, "cmb", 0.0, -0.0004, 1.0, 1.0, 2.0, 3.0, 2.0, False),
    Lesion(3, "calcification", 5.0, 6.0, 7.0, 4.0, 5.0, 6.0, 4.5, True, delta_chi_ppm=-1.5),
]


def _nifti(path, data, affine=None):
    affine = np.diag([0.5, 0.5, 2.0, 1.0]) if affine is None else affine
    nib.save(nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine), str(path))
    return path


def test_lesions_csv_round_trip_is_exact_and_deterministic(tmp_path):
    path = write_lesions_csv(tmp_path / "lesions.csv", LESIONS)
    text = path.read_text()
    assert text.splitlines()[0].split(",")[: len(LESION_COLUMNS)] == list(LESION_COLUMNS)
    assert "2,cmb,0.000,0.000,1.000,1.000,2.000,3.000,2.000,0,,,," in text  # -0.000 -> 0.000
    lesions = read_lesions_csv(path)
    assert lesions == LESIONS[:1] + [dataclasses.replace(LESIONS[1], y_mm=0.0)] + LESIONS[2:]
    assert [lesion.is_cmb for lesion in lesions] == [True, True, False]
    np.testing.assert_array_equal(lesions[0].centre_mm, [-10.25, 3.5, 20.0])
    write_lesions_csv(tmp_path / "again.csv", lesions)
    assert (tmp_path / "again.csv").read_text() == text


def test_lesions_csv_minimal_columns_any_order_and_extras(tmp_path):
    path = tmp_path / "lesions.csv"
    path.write_text(
        "note,visible,kind,lesion_id,x_mm,y_mm,z_mm,i,j,k,diameter_mm\n"
        "hello,true,cmb,7,1,2,3,4,5,6,2.5\n"
    )
    (lesion,) = read_lesions_csv(path)
    assert lesion == Lesion(7, "cmb", 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 2.5, True)


def test_lesions_csv_missing_columns_are_named(tmp_path):
    path = tmp_path / "lesions.csv"
    path.write_text("lesion_id,kind,x_mm,y_mm,z_mm,i,j,k\n1,cmb,1,2,3,4,5,6\n")
    with pytest.raises(InputError, match="diameter_mm, visible"):
        read_lesions_csv(path)


def test_lesions_csv_bad_value_names_line_and_column(tmp_path):
    path = write_lesions_csv(tmp_path / "lesions.csv", LESIONS)
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace("1.000,2.000,3.000", "1.000,abc,3.000", 1)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match="line 3, column j: 'abc' is not a number"):
        read_lesions_csv(path)


def test_lesions_csv_duplicate_ids(tmp_path):
    path = write_lesions_csv(tmp_path / "lesions.csv", [LESIONS[0], LESIONS[0]])
    with pytest.raises(InputError, match="duplicate lesion_id"):
        read_lesions_csv(path)


def test_mask_components_use_26_connectivity():
    mask = np.zeros((10, 10, 10), dtype=np.uint8)
    mask[1, 1, 1] = mask[2, 2, 2] = 1  # touch only at a corner: one component
    mask[6:8, 6:8, 6:8] = 3  # a 2x2x2 cube, label value 3: its own component
    mask[1, 8, 8] = 1  # isolated voxel
    affine = np.diag([0.5, 0.5, 2.0, 1.0])
    lesions = lesions_from_mask(mask, affine)
    assert [lesion.lesion_id for lesion in lesions] == [1, 2, 3]
    first, isolated, cube = lesions
    np.testing.assert_allclose([first.i, first.j, first.k], [1.5, 1.5, 1.5])
    np.testing.assert_allclose([isolated.i, isolated.j, isolated.k], [1, 8, 8])
    np.testing.assert_allclose([cube.i, cube.j, cube.k], [6.5, 6.5, 6.5])
    np.testing.assert_allclose(cube.centre_mm, [3.25, 3.25, 13.0])
    voxel_mm3 = 0.5 * 0.5 * 2.0
    np.testing.assert_allclose(cube.diameter_mm, (6 * 8 * voxel_mm3 / np.pi) ** (1 / 3))
    assert all(lesion.is_cmb and lesion.visible for lesion in lesions)


def test_mask_file_gives_file_order_voxels(tmp_path):
    lps = np.diag([-0.5, -0.5, 2.0, 1.0])
    mask = np.zeros((8, 9, 4))
    mask[1, 2, 3] = 1
    (lesion,) = lesions_from_mask(_nifti(tmp_path / "mask.nii.gz", mask, lps))
    np.testing.assert_allclose([lesion.i, lesion.j, lesion.k], [1, 2, 3])
    np.testing.assert_allclose(lesion.centre_mm, [-0.5, -1.0, 6.0])
    assert lesions_from_mask(np.zeros((3, 3, 3)), lps) == []
