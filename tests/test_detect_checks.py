"""Inputs the detector refuses before any work: wrong units, no head, not enough memory."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from cmbdet.cli import main
from cmbdet.detect.checks import (
    BASE_BYTES,
    BYTES_PER_INPUT_VOXEL,
    BYTES_PER_MODEL_VOXEL,
    check_memory,
    check_swi_geometry,
    estimated_peak_bytes,
)
from cmbdet.errors import InputError
from cmbdet.geometry import Reorientation
from cmbdet.io.nifti import Volume, load_volume
from cmbdet.preprocess.config import PreprocessConfig


def _volume(shape, spacing, path="swi.nii.gz") -> Volume:
    affine = np.diag([*spacing, 1.0])
    return Volume(np.ones(shape, np.float32), Reorientation(affine, shape), path, tuple(spacing))


def test_swi_voxel_sizes_pass():
    check_swi_geometry(_volume((288, 252, 72), (0.8, 0.8, 2.0)))
    check_swi_geometry(_volume((512, 448, 72), (0.5, 0.5, 2.0)))


@pytest.mark.parametrize(
    ("spacing", "problem"),
    [
        ((0.05, 0.05, 0.2), "in-plane voxel size 0.05x0.05 mm"),  # cm in the header
        ((8.0, 8.0, 2.0), "in-plane voxel size 8x8 mm"),
        ((0.8, 0.8, 20.0), "slice thickness 20 mm"),
    ],
)
def test_implausible_voxel_sizes_are_wrong_units(spacing, problem):
    with pytest.raises(InputError, match=problem) as caught:
        check_swi_geometry(_volume((288, 252, 72), spacing))
    assert "wrong units" in str(caught.value) and "swi.nii.gz" in str(caught.value)


def test_a_field_of_view_smaller_than_a_head_is_refused():
    with pytest.raises(InputError, match="too small for a head"):
        check_swi_geometry(_volume((40, 252, 72), (0.8, 0.8, 2.0)))  # 32 mm wide
    with pytest.raises(InputError, match="2 slices"):
        check_swi_geometry(_volume((288, 252, 2), (0.8, 0.8, 2.0)))


def test_memory_estimate_counts_input_and_model_grid_voxels():
    # 0.625 mm input on a 0.625 mm model grid: as many model voxels as input voxels
    n = 100 * 80 * 10
    assert estimated_peak_bytes((100, 80, 10), (0.625, 0.625, 2.0), 0.625) == (
        BASE_BYTES + (BYTES_PER_INPUT_VOXEL + BYTES_PER_MODEL_VOXEL) * n
    )
    # half the voxel size: four times the input voxels, the same model grid
    assert estimated_peak_bytes((200, 160, 10), (0.3125, 0.3125, 2.0), 0.625) == (
        BASE_BYTES + BYTES_PER_INPUT_VOXEL * 4 * n + BYTES_PER_MODEL_VOXEL * n
    )
    # 2 mm model slices: 3 mm slices grow to 15, 1 mm ones (20) count while resampled in-plane
    thick = estimated_peak_bytes((100, 80, 10), (0.625, 0.625, 3.0), 0.625, 2.0)
    thin = estimated_peak_bytes((100, 80, 20), (0.625, 0.625, 1.0), 0.625, 2.0)
    assert thick == BASE_BYTES + BYTES_PER_INPUT_VOXEL * n + BYTES_PER_MODEL_VOXEL * n * 3 // 2
    assert thin == BASE_BYTES + (BYTES_PER_INPUT_VOXEL + BYTES_PER_MODEL_VOXEL) * 2 * n


def test_a_volume_too_large_for_the_memory_is_refused_with_the_numbers():
    big = _volume((1024, 1024, 200), (0.225, 0.197, 0.72))
    with pytest.raises(InputError, match=r"1024x1024x200 volume needs about .* GiB") as caught:
        check_memory(big, PreprocessConfig(target_in_plane_mm=0.625), available=4 * 2**30)
    assert "4.0 GiB is available" in str(caught.value)
    check_memory(big, PreprocessConfig(target_in_plane_mm=0.625), available=64 * 2**30)


def test_detect_refuses_a_header_in_the_wrong_units(tmp_path, capsys):
    rng = np.random.default_rng(0)
    shape = (64, 60, 12)
    affine = np.diag([0.08, 0.08, 0.2, 1.0])  # a 0.8 mm scan written in cm
    paths = {}
    for name in ("swi", "phase"):
        paths[name] = tmp_path / f"{name}.nii.gz"
        data = rng.uniform(1, 2, shape).astype(np.float32)
        nib.save(nib.Nifti1Image(data, affine), paths[name])
    assert load_volume(paths["swi"]).spacing_mm == pytest.approx((0.08, 0.08, 0.2))
    out = tmp_path / "out"
    code = main(["detect", "--swi", str(paths["swi"]), "--phase", str(paths["phase"]),
                 "--out", str(out)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "wrong units" in err and str(paths["swi"]) in err
    assert err.count("\n") == 1 and not out.exists()
