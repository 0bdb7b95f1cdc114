"""Report crops: orientation, padding at the edge, PNG encoding."""

from __future__ import annotations

import io

import matplotlib.image
import numpy as np

from cmbdet.report.crops import CROP_PIXELS, darkest_point, png_bytes, sample_view


def test_crops_follow_the_radiological_convention():
    shape = (40, 40, 20)
    x, y, z = np.indices(shape).astype(np.float32)  # value = canonical index on one axis
    centre = np.array([20.0, 20.0, 10.0])
    spacing = (1.0, 1.0, 2.0)
    axial_x = sample_view(x, spacing, centre, "axial")
    axial_y = sample_view(y, spacing, centre, "axial")
    assert axial_x[32, 0] > axial_x[32, -1]  # the patient's right (+x) on the image's left
    assert axial_y[0, 32] > axial_y[-1, 32]  # anterior at the top
    sagittal_y = sample_view(y, spacing, centre, "sagittal")
    sagittal_z = sample_view(z, spacing, centre, "sagittal")
    assert sagittal_y[32, 0] > sagittal_y[32, -1]  # anterior on the left
    assert sagittal_z[0, 32] > sagittal_z[-1, 32]  # superior at the top
    coronal_z = sample_view(z, spacing, centre, "coronal")
    assert coronal_z[0, 32] > coronal_z[-1, 32]
    # the pixel grid is square in mm: 25.6 mm span 25.6 / 2 slices on z, 25.6 voxels on y
    np.testing.assert_allclose(np.ptp(sagittal_z) * 2.0, np.ptp(sagittal_y), rtol=0.05)


def test_a_detection_at_the_volume_edge_gets_a_padded_crop():
    data = np.full((30, 30, 8), 5.0, dtype=np.float32)
    image = sample_view(data, (1.0, 1.0, 2.0), np.array([0.0, 29.0, 4.0]), "axial")
    assert image.shape == (CROP_PIXELS, CROP_PIXELS)
    # corner voxel: x = 0 is the patient's far left (the image's right), y = 29 the anterior
    # end (the top); beyond them, half a voxel past the last centre, the crop is padded
    assert np.isnan(image[:, 34:]).all() and np.isnan(image[:30]).all()
    assert np.allclose(image[34:, :30], 5.0)


def test_png_encoding_round_trips():
    grey = np.random.default_rng(3).integers(0, 256, (17, 23), dtype=np.uint8)
    decoded = matplotlib.image.imread(io.BytesIO(png_bytes(grey)), format="png")
    np.testing.assert_array_equal(np.round(decoded * 255).astype(np.uint8), grey)


def _track_phantom() -> np.ndarray:
    """A CMB spanning slices 7-13, darkest on slice 12 and off-centre in-plane there, and a
    darker vein 5 voxels (2.5 mm) away."""
    rng = np.random.default_rng(0)
    swi = 1.0 + rng.normal(0, 0.02, (40, 40, 21)).astype(np.float32)
    for z, depth in zip(range(7, 14), (0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 0.4), strict=True):
        x = 20 if z != 12 else 21
        swi[x - 1 : x + 2, 19:22, z] -= depth
    swi[26:29, :, :] = 0.05  # the vein: darker than the CMB, outside its radius
    return swi


def test_the_crop_moves_to_the_darkest_slice_of_a_track_and_stays_on_the_cmb():
    swi = _track_phantom()
    spacing = (0.5, 0.5, 1.0)
    track_middle = np.array([20.0, 20.0, 10.0])
    found = darkest_point(swi, spacing, track_middle, reach_mm=(1.0, 3.0))
    assert tuple(found) == (21.0, 20.0, 12.0)
    assert tuple(darkest_point(swi, spacing, track_middle, (1.0, 1.0))) == (20.0, 20.0, 11.0)
    at_edge = np.array([0.0, 0.0, 0.0])  # a search box clipped by the volume still works
    assert darkest_point(swi, spacing, at_edge, (1.0, 1.0)).shape == (3,)
    outside = np.array([-50.0, 5.0, 5.0])
    assert tuple(darkest_point(swi, spacing, outside, (1.0, 1.0))) == (-50.0, 5.0, 5.0)
