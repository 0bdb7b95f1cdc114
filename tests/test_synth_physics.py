"""Physics checks of the synthetic SWI generator.

Dipole field (FFT kernel against the analytic sphere), phase sign and handedness of a CMB and a
calcification after Haacke SWI processing, blooming against the documented calibration, the
visibility flag, and the homodyne high-pass filter. Conventions are those of
``shared/reference/swi-physics.md``: ppm fields, right-handed phase, canonical RAS arrays with
axial slices along the last axis.
"""

from __future__ import annotations

import numpy as np
import pytest

from cmbdet.swi import homodyne_highpass, negative_phase_mask, swi_from
from cmbdet.synth.field import (
    dipole_kernel,
    field_from_susceptibility,
    radians_per_ppm,
    sphere_field,
    tilted_b0,
)
from cmbdet.synth.lesions import (
    FocalLesion,
    apparent_diameter_mm,
    is_visible,
    lesion_patch,
)

B0_AXIAL = np.array([0.0, 0.0, 1.0])
FIELD_T = 3.0


def _sphere_lesion(
    radius_mm: float,
    delta_chi_ppm: float,
    centre_mm: np.ndarray,
    kind: str = "cmb",
    core_signal: float = 0.1,
) -> FocalLesion:
    return FocalLesion(
        kind=kind,
        centre_mm=np.asarray(centre_mm, dtype=float),
        offsets_mm=np.zeros((1, 3)),
        radii_mm=np.array([radius_mm]),
        delta_chi_ppm=delta_chi_ppm,
        core_signal=core_signal,
        region="lobar",
        shape="spherical",
    )


def _voxel_centre_mm(voxel: tuple[int, int, int], shape, spacing_mm) -> np.ndarray:
    """Subject mm of a voxel centre: mm = (index - (shape - 1) / 2) * spacing."""
    return (np.asarray(voxel) - (np.asarray(shape) - 1) / 2) * np.asarray(spacing_mm)


# --- radians per ppm and B0 direction ---------------------------------------------------------


def test_radians_per_ppm_is_negative_and_about_16_rad_at_3t_20ms():
    value = radians_per_ppm(3.0, 0.020)
    assert value == pytest.approx(-2 * np.pi * 42.577478 * 3.0 * 0.020, rel=1e-9)
    assert value == pytest.approx(-16.05, abs=0.01)
    assert radians_per_ppm(3.0, 0.010) == pytest.approx(value / 2)


def test_tilted_b0_is_a_unit_vector_at_the_requested_angles():
    b0 = tilted_b0(15, 30)
    assert np.linalg.norm(b0) == pytest.approx(1.0)
    assert np.degrees(np.arccos(b0[2])) == pytest.approx(15.0)
    assert np.degrees(np.arctan2(b0[1], b0[0])) == pytest.approx(30.0)
    np.testing.assert_allclose(tilted_b0(0, 123), B0_AXIAL, atol=1e-12)


# --- dipole kernel ----------------------------------------------------------------------------


@pytest.mark.parametrize("b0_dir", [B0_AXIAL, tilted_b0(15, 30)], ids=["axial", "tilted"])
def test_dipole_kernel_dc_is_zero_and_values_lie_in_minus_two_thirds_one_third(b0_dir):
    shape, spacing = (32, 28, 20), (0.5, 0.5, 2.0)
    full = dipole_kernel(shape, spacing, b0_dir, real_fft=False)
    half = dipole_kernel(shape, spacing, b0_dir, real_fft=True)
    assert full.shape == shape
    assert half.shape == (32, 28, 20 // 2 + 1)
    assert full[0, 0, 0] == 0.0
    assert half[0, 0, 0] == 0.0
    eps = 1e-6
    assert full.min() >= -2 / 3 - eps
    assert full.max() <= 1 / 3 + eps
    # Below Nyquist the half spectrum is the non-negative-kz part of the full one.
    np.testing.assert_allclose(half[:, :, :10], full[:, :, :10], atol=1e-6)
    # At Nyquist the half spectrum holds kz = +N/2 and the full one kz = -N/2; D is even in k,
    # so the half-spectrum plane is the full one point-reflected in (kx, ky).
    # (The kx and ky Nyquist lines are themselves ambiguous in sign, so they are left out.)
    reflected = np.roll(full[::-1, ::-1, 10], shift=(1, 1), axis=(0, 1))
    unambiguous = np.ones((32, 28), dtype=bool)
    unambiguous[16, :] = unambiguous[:, 14] = False
    np.testing.assert_allclose(half[:, :, 10][unambiguous], reflected[unambiguous], atol=1e-6)


def test_dipole_kernel_extremes_along_and_across_b0():
    kernel = dipole_kernel((16, 16, 16), (1.0, 1.0, 1.0), B0_AXIAL, real_fft=False)
    assert kernel[0, 0, 3] == pytest.approx(-2 / 3, abs=1e-6)  # k parallel to B0
    assert kernel[3, 0, 0] == pytest.approx(1 / 3, abs=1e-6)  # k perpendicular to B0
    assert kernel[0, 5, 0] == pytest.approx(1 / 3, abs=1e-6)
    assert kernel.min() == pytest.approx(-2 / 3, abs=1e-6)
    assert kernel.max() == pytest.approx(1 / 3, abs=1e-6)


# --- FFT field of a voxelised sphere against the analytic field -------------------------------

GRID_N = 96
GRID_MM = 0.25
SPHERE_RADIUS_MM = 2.0
SPHERE_CHI_PPM = 1.0


@pytest.fixture(scope="module")
def voxelised_sphere():
    """A 2 mm sphere on a 96^3 grid of 0.25 mm, partial volume from 4^3 samples per voxel.

    Returns the susceptibility map (ppm) and the voxel-centre offsets from the sphere centre
    as three broadcastable arrays (mm).
    """
    n, h, a, sub = GRID_N, GRID_MM, SPHERE_RADIUS_MM, 4
    centre = n // 2  # the sphere centre sits on a voxel centre
    half = int(np.ceil(a / h)) + 2
    lo, hi = centre - half, centre + half + 1
    fine = ((np.arange(lo * sub, hi * sub) + 0.5) / sub - 0.5 - centre) * h  # sample mm
    inside = (
        fine[:, None, None] ** 2 + fine[None, :, None] ** 2 + fine[None, None, :] ** 2 <= a * a
    ).astype(np.float32)
    width = hi - lo
    fraction = inside.reshape(width, sub, width, sub, width, sub).mean(axis=(1, 3, 5))
    chi = np.zeros((n, n, n), dtype=np.float32)
    chi[lo:hi, lo:hi, lo:hi] = SPHERE_CHI_PPM * fraction
    assert chi.sum() * h**3 == pytest.approx(4 / 3 * np.pi * a**3 * SPHERE_CHI_PPM, rel=0.01)
    axis_mm = (np.arange(n) - centre) * h
    offsets = (axis_mm[:, None, None], axis_mm[None, :, None], axis_mm[None, None, :])
    return chi, offsets


@pytest.mark.parametrize("b0_dir", [B0_AXIAL, tilted_b0(15, 30)], ids=["axial", "tilted"])
def test_fft_field_of_sphere_matches_analytic_outside(voxelised_sphere, b0_dir):
    chi, (dx, dy, dz) = voxelised_sphere
    a = SPHERE_RADIUS_MM
    spacing = (GRID_MM,) * 3
    fft_field = field_from_susceptibility(chi, spacing, b0_dir)
    analytic = sphere_field((dx, dy, dz), a, SPHERE_CHI_PPM, b0_dir)
    assert fft_field.shape == chi.shape
    assert fft_field.dtype == np.float32

    r = np.sqrt(dx**2 + dy**2 + dz**2)
    cos_theta = (dx * b0_dir[0] + dy * b0_dir[1] + dz * b0_dir[2]) / np.maximum(r, 1e-9)
    shell = (r >= 1.5 * a) & (r <= 4.0 * a)
    on_axis = shell & (cos_theta**2 > 0.95)
    equatorial = shell & (cos_theta**2 < 0.01)
    assert on_axis.sum() > 100 and equatorial.sum() > 100

    peak = 2 / 3 * SPHERE_CHI_PPM  # |field| at the surface on the B0 axis
    error = np.abs(fft_field - analytic) / peak
    assert error[shell].max() < 0.03
    assert error[on_axis].max() < 0.03
    assert error[equatorial].max() < 0.03
    # The lobes themselves, not just small numbers: positive along B0, negative across it.
    assert np.all(fft_field[on_axis] > 0)
    assert np.all(fft_field[equatorial] < 0)
    # Inside a uniformly magnetised sphere the Lorentz-corrected field is 0.
    assert np.abs(fft_field[r <= 0.5 * a]).max() < 0.03 * peak


# --- analytic sphere --------------------------------------------------------------------------


@pytest.mark.parametrize("b0_dir", [B0_AXIAL, tilted_b0(15, 30)], ids=["axial", "tilted"])
def test_sphere_field_exact_values(b0_dir):
    a, chi = 1.5, 0.8
    # Two unit vectors perpendicular to B0 span the equatorial plane.
    perp1 = np.cross(b0_dir, [1.0, 0.0, 0.0])
    perp1 /= np.linalg.norm(perp1)
    perp2 = np.cross(b0_dir, perp1)
    points = np.stack(
        [
            2 * a * b0_dir,  # on axis, r = 2a
            -3 * a * b0_dir,  # on axis, other side, r = 3a
            2 * a * perp1,  # equatorial, r = 2a
            2 * a * perp2,
            np.zeros(3),  # centre
            0.9 * a * b0_dir,  # inside, near the surface
            0.5 * a * perp1,
        ]
    )
    field = sphere_field(points, a, chi, b0_dir)
    expected = [chi / 3 / 8 * 2, chi / 3 / 27 * 2, -chi / 3 / 8, -chi / 3 / 8, 0.0, 0.0, 0.0]
    np.testing.assert_allclose(field, expected, atol=1e-6)
    assert field.dtype == np.float32


def test_sphere_field_signs_and_broadcast_form_agree():
    rng = np.random.default_rng(0)
    a, chi = 1.0, 1.0
    points = rng.uniform(-5, 5, size=(2000, 3))
    stacked = sphere_field(points, a, chi, B0_AXIAL)
    split = sphere_field((points[:, 0], points[:, 1], points[:, 2]), a, chi, B0_AXIAL)
    np.testing.assert_allclose(stacked, split, rtol=1e-6)

    r = np.linalg.norm(points, axis=1)
    cos2 = points[:, 2] ** 2 / r**2
    assert np.all(stacked[r <= a] == 0.0)
    outside = r > a
    # Sign is that of 3 cos^2 - 1 for a paramagnetic sphere, flipped for a diamagnetic one.
    assert np.all(stacked[outside & (cos2 > 0.4)] > 0)
    assert np.all(stacked[outside & (cos2 < 0.3)] < 0)
    np.testing.assert_allclose(sphere_field(points, a, -0.5, B0_AXIAL), -0.5 * stacked, rtol=1e-6)
    # Dipole fall-off: doubling the distance divides the field by 8.
    direction = np.array([[0.3, -0.4, 0.866]])
    near = sphere_field(2 * direction, a, chi, B0_AXIAL)
    far = sphere_field(4 * direction, a, chi, B0_AXIAL)
    assert far[0] == pytest.approx(near[0] / 8, rel=1e-5)


# --- a CMB and a calcification through Haacke SWI processing ----------------------------------

SLAB_SHAPE = (64, 64, 24)
SLAB_SPACING = (0.5, 0.5, 2.0)
LESION_VOXEL = (32, 32, 12)


def _slab_with_lesion(delta_chi_ppm: float, kind: str, seed: int = 0) -> np.ndarray:
    """Uniform 1+0j slab, one 1 mm sphere at LESION_VOXEL, complex noise (sigma 0.02)."""
    rng = np.random.default_rng(seed)
    centre_mm = _voxel_centre_mm(LESION_VOXEL, SLAB_SHAPE, SLAB_SPACING)
    lesion = _sphere_lesion(1.0, delta_chi_ppm, centre_mm, kind=kind)
    patch = lesion_patch(
        lesion, SLAB_SHAPE, SLAB_SPACING, B0_AXIAL, radians_per_ppm(FIELD_T, 0.020)
    )
    signal = np.ones(SLAB_SHAPE, dtype=np.complex64)
    signal[patch.box] *= patch.factor
    noise = rng.standard_normal(SLAB_SHAPE) + 1j * rng.standard_normal(SLAB_SHAPE)
    return signal + (0.02 * noise).astype(np.complex64)


def test_cmb_is_dark_in_swi_with_negative_phase_above_and_below():
    signal = _slab_with_lesion(+1.0, "cmb")
    hp_phase = homodyne_highpass(signal, 16)
    swi = swi_from(np.abs(signal), hp_phase)
    i, j, k = LESION_VOXEL
    assert swi[i, j, k] < 0.5 * np.median(swi)
    assert hp_phase[i, j, k - 1] < -0.2
    assert hp_phase[i, j, k + 1] < -0.2
    # Far from the lesion the background is flat: phase ~0, SWI ~ magnitude.
    assert np.abs(hp_phase[:, :, 0]).max() < 0.15
    assert np.median(swi) == pytest.approx(1.0, abs=0.05)


def test_calcification_has_positive_phase_above_and_below():
    signal = _slab_with_lesion(-0.5, "calcification")
    hp_phase = homodyne_highpass(signal, 16)
    i, j, k = LESION_VOXEL
    assert hp_phase[i, j, k - 1] > 0.2
    assert hp_phase[i, j, k + 1] > 0.2
    # A right-handed negative-phase mask leaves positive phase (mostly) alone above and below.
    mask = negative_phase_mask(hp_phase)
    assert mask[i, j, k - 1] == 1.0 and mask[i, j, k + 1] == 1.0


def test_handedness_flips_the_paramagnetic_sign():
    i, j, k = LESION_VOXEL
    cmb = _slab_with_lesion(+1.0, "cmb")
    calcification = _slab_with_lesion(-0.5, "calcification")
    right_cmb = homodyne_highpass(cmb, 16)
    right_calc = homodyne_highpass(calcification, 16)
    # A left-handed dataset stores the negated phase.
    left_cmb, left_calc = -right_cmb, -right_calc
    # The same dataset acquired left-handed is the complex conjugate of the right-handed one;
    # high-pass filtering it gives the opposite signs too.
    conj_cmb = homodyne_highpass(np.conj(cmb), 16)
    conj_calc = homodyne_highpass(np.conj(calcification), 16)
    for above_below in (k - 1, k + 1):
        assert right_cmb[i, j, above_below] < 0 < left_cmb[i, j, above_below]
        assert right_calc[i, j, above_below] > 0 > left_calc[i, j, above_below]
        assert conj_cmb[i, j, above_below] > 0.2
        assert conj_calc[i, j, above_below] < -0.2
        # Paramagnetic and diamagnetic signs are opposite in either handedness.
        assert np.sign(right_cmb[i, j, above_below]) == -np.sign(right_calc[i, j, above_below])
        assert np.sign(left_cmb[i, j, above_below]) == -np.sign(left_calc[i, j, above_below])
    # The negative-phase mask darkens the CMB surroundings only in the right-handed convention.
    assert negative_phase_mask(right_cmb)[i, j, k - 1] < 1.0
    assert negative_phase_mask(left_cmb)[i, j, k - 1] == 1.0


# --- blooming, calibration and visibility -----------------------------------------------------

LR_SHAPE = (96, 96, 40)
LR_SPACING = (0.8, 0.8, 2.0)
LR_CENTRE_MM = _voxel_centre_mm((48, 48, 20), LR_SHAPE, LR_SPACING)


def _lr_patch(radius_mm, delta_chi_ppm, te_s, centre_mm=LR_CENTRE_MM):
    lesion = _sphere_lesion(radius_mm, delta_chi_ppm, centre_mm)
    return lesion_patch(lesion, LR_SHAPE, LR_SPACING, B0_AXIAL, radians_per_ppm(FIELD_T, te_s))


def test_blooming_grows_with_echo_time():
    short = _lr_patch(1.0, 1.0, 0.010)
    long = _lr_patch(1.0, 1.0, 0.025)
    assert apparent_diameter_mm(long, LR_SPACING) > apparent_diameter_mm(short, LR_SPACING)
    assert long.apparent.sum() > short.apparent.sum()
    assert apparent_diameter_mm(short, LR_SPACING) > 0


def test_blooming_grows_with_susceptibility():
    diameters = [
        apparent_diameter_mm(_lr_patch(1.0, chi, 0.020), LR_SPACING) for chi in (0.5, 1.0, 3.0)
    ]
    counts = [_lr_patch(1.0, chi, 0.020).apparent.sum() for chi in (0.5, 1.0, 3.0)]
    assert diameters[0] < diameters[1] < diameters[2]
    assert counts[0] < counts[1] < counts[2]


@pytest.mark.parametrize(
    ("radius_mm", "delta_chi_ppm", "documented_mm"),
    [(1.0, 1.0, 3.1), (2.5, 3.0, 9.0)],
    ids=["2mm-1ppm", "5mm-3ppm"],
)
def test_apparent_diameter_matches_documented_calibration(radius_mm, delta_chi_ppm, documented_mm):
    # 3 T, 0.8x0.8x2 mm, TE 20 ms; averaged over seeded sub-voxel positions of the centre.
    rng = np.random.default_rng(7)
    jitters = np.vstack([np.zeros(3), rng.uniform(-0.5, 0.5, size=(5, 3))])
    diameters = [
        apparent_diameter_mm(
            _lr_patch(radius_mm, delta_chi_ppm, 0.020, LR_CENTRE_MM + jitter * LR_SPACING),
            LR_SPACING,
        )
        for jitter in jitters
    ]
    assert np.mean(diameters) == pytest.approx(documented_mm, rel=0.3)
    assert all(d > 2 * radius_mm for d in diameters)  # blooming: larger than the lesion


def test_visibility_flag():
    faint = _lr_patch(0.3, 0.3, 0.020)
    clear = _lr_patch(1.0, 1.0, 0.020)
    assert not is_visible(faint)
    assert is_visible(clear)
    assert np.abs(faint.factor).min() > 0.6
    assert np.abs(clear.factor).min() <= 0.6


# --- homodyne high-pass -----------------------------------------------------------------------


def _ramp_volume(bump_rad: float = 0.0) -> np.ndarray:
    """(64, 64, 8) unit-magnitude volume with a non-periodic linear phase ramp of ~17 rad along
    x and ~8 rad along y, plus an optional Gaussian phase bump (sigma 1 voxel) at (32, 32)."""
    n, nz = 64, 8
    x = np.arange(n)[:, None, None]
    y = np.arange(n)[None, :, None]
    ramp = 2 * np.pi * (2.7 * x / n + 1.3 * y / n) + np.zeros((1, 1, nz))
    bump = bump_rad * np.exp(-((x - 32) ** 2 + (y - 32) ** 2) / 2.0)
    return np.exp(1j * (ramp + bump)).astype(np.complex64)


def test_homodyne_highpass_removes_a_smooth_phase_ramp():
    hp_phase = homodyne_highpass(_ramp_volume(), 16)
    assert hp_phase.shape == (64, 64, 8)
    assert hp_phase.dtype == np.float32
    centre = hp_phase[16:48, 16:48, :]
    assert np.median(np.abs(centre)) < 0.05
    assert np.abs(centre).max() < 0.02


def test_homodyne_highpass_keeps_a_small_local_phase_bump():
    bump_rad = -1.0
    hp_phase = homodyne_highpass(_ramp_volume(bump_rad), 16)
    background = homodyne_highpass(_ramp_volume(), 16)
    peak = hp_phase[32, 32, :] - background[32, 32, :]
    assert np.all(peak < 0.6 * bump_rad)  # most of the bump survives the high-pass
    centre = hp_phase[16:48, 16:48, 0]  # away from the edges of the non-periodic ramp
    assert np.unravel_index(np.argmin(centre), centre.shape) == (16, 16)
    # Away from the bump the filtered phase is unchanged.
    np.testing.assert_allclose(hp_phase[:, 2:12, :], background[:, 2:12, :], atol=0.05)


def test_homodyne_highpass_is_conjugation_symmetric_for_even_window():
    signal = _slab_with_lesion(1.0, "cmb")
    np.testing.assert_allclose(
        homodyne_highpass(np.conj(signal), 16), -homodyne_highpass(signal, 16), atol=1e-4
    )


def test_homodyne_highpass_of_a_real_image_has_no_phase():
    x = np.arange(64)[:, None, None] - 32
    y = np.arange(64)[None, :, None] - 32
    disk = np.where(x**2 + y**2 < 20**2, 1.0, 0.5) * np.ones((1, 1, 4))
    assert np.abs(homodyne_highpass(disk.astype(np.complex64), 16)).max() < 1e-5
