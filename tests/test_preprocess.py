"""Preprocessing: phase units, kind and handedness, brain mask, normalisation, resampling,
slice images. Small in-memory ``tiny`` subjects, generated once per module."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage

from cmbdet.errors import InputError
from cmbdet.preprocess.config import PreprocessConfig
from cmbdet.preprocess.handedness import detect_handedness
from cmbdet.preprocess.intensity import normalise_phase, normalise_swi
from cmbdet.preprocess.mask import (
    dilate_in_plane,
    erode_in_plane,
    estimate_brain_mask,
)
from cmbdet.preprocess.phase import (
    canonical_phase,
    detect_phase_kind,
    detect_phase_units,
    phase_to_radians,
)
from cmbdet.preprocess.pipeline import SliceStack, preprocess, preprocess_arrays, slice_images
from cmbdet.preprocess.resample import resample_to
from cmbdet.synth.config import PRESETS, SynthConfig
from cmbdet.synth.families import standard_weights
from cmbdet.synth.subject import generate_subject

SHAPE, SPACING = PRESETS["tiny"].shape, PRESETS["tiny"].spacing_mm
SEEDS = (0, 3, 1)  # seed 1 has ten visible CMBs
# the phase conventions are tested on the standard appearance (skull-stripped or ringing
# subjects have their own tests in test_synth_*)
STANDARD_TINY = SynthConfig(preset="tiny", families=standard_weights())


@pytest.fixture(scope="module")
def subjects():
    return {k: generate_subject(STANDARD_TINY, np.random.SeedSequence(k)) for k in SEEDS}


def stored(phase: np.ndarray, handedness: str = "right", units: str = "radians") -> np.ndarray:
    """Phase as a scanner might store it (the generator's conventions, plus unsigned)."""
    if handedness == "left":
        phase = -phase
    if units == "integer":  # -4096..4095 for -pi..pi
        return np.clip(np.round(phase / np.pi * 4096), -4096, 4095).astype(np.float32)
    if units == "unsigned":  # 0..4095, 2048 = 0 rad
        return np.clip(np.round(phase / np.pi * 2048) + 2048, 0, 4095).astype(np.float32)
    return phase


# ----------------------------------------------------------------------------- units


@pytest.mark.parametrize(
    ("units", "detected", "radians_per_unit", "zero_at"),
    [
        ("radians", "radians", 1.0, 0.0),
        ("integer", "integer", np.pi / 4096, 0.0),
        ("unsigned", "integer", np.pi / 2048, 2048.0),
    ],
)
def test_units_detected_and_rescaled(subjects, units, detected, radians_per_unit, zero_at):
    subject = subjects[0]
    phase = stored(subject.hp_phase, units=units)
    assert detect_phase_units(phase, subject.brain_mask) == detected
    radians, scale = phase_to_radians(phase, detected)
    assert radians.dtype == np.float32
    assert scale.radians_per_unit == pytest.approx(radians_per_unit)
    assert scale.zero_at == zero_at
    assert radians.min() >= -np.pi and radians.max() < np.pi
    error = np.angle(np.exp(1j * (radians - subject.hp_phase)))  # wrap-aware difference
    assert np.abs(error).max() < 2 * radians_per_unit


def test_units_signed_2048_range_and_radians_0_to_2pi():
    rng = np.random.default_rng(0)
    truth = rng.uniform(-np.pi, np.pi, (20, 20, 3)).astype(np.float32)
    half = np.clip(np.round(truth / np.pi * 2048), -2048, 2047)
    radians, scale = phase_to_radians(half, detect_phase_units(half))
    assert scale.radians_per_unit == pytest.approx(np.pi / 2048)
    assert np.abs(np.angle(np.exp(1j * (radians - truth)))).max() < 2e-3
    shifted = np.mod(truth, 2 * np.pi)  # [0, 2 pi)
    assert detect_phase_units(shifted) == "radians"
    radians, _ = phase_to_radians(shifted, "radians")
    assert radians.min() >= -np.pi and radians.max() < np.pi
    np.testing.assert_allclose(radians, truth, atol=1e-5)


def test_units_undecidable_is_an_error():
    with pytest.raises(ValueError, match="neither radians"):
        detect_phase_units(np.linspace(-180.5, 179.5, 1000))  # degrees


# ----------------------------------------------------------------------------- kind, handedness


@pytest.mark.parametrize("seed", SEEDS)
def test_kind_raw_vs_filtered(subjects, seed):
    subject = subjects[seed]
    for phase, kind in ((subject.hp_phase, "filtered"), (subject.raw_phase, "raw")):
        for handedness in ("right", "left"):
            found = detect_phase_kind(stored(phase, handedness), subject.brain_mask, SPACING)
            assert found == kind


@pytest.mark.parametrize("seed", SEEDS)
def test_handedness_detected_from_swi(subjects, seed):
    subject = subjects[seed]
    right = detect_handedness(subject.swi, subject.hp_phase, subject.brain_mask, SPACING)
    left = detect_handedness(subject.swi, -subject.hp_phase, subject.brain_mask, SPACING)
    assert right.handedness == "right" and left.handedness == "left"
    assert right.confidence > 0.5 and left.confidence > 0.5


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("handedness", ["right", "left"])
def test_canonical_phase_integer_raw_any_handedness(subjects, seed, handedness):
    subject = subjects[seed]
    phase = stored(subject.raw_phase, handedness, "integer")
    canonical, decisions = canonical_phase(
        phase,
        subject.brain_mask,
        subject.magnitude,
        spacing_mm=SPACING,
        handedness_image=subject.swi,
    )
    assert (decisions.units, decisions.kind, decisions.handedness) == ("integer", "raw", handedness)
    assert decisions.units_detected and decisions.kind_detected and decisions.handedness_detected
    assert decisions.hp_window == 2 * round(48 * SHAPE[0] * SPACING[0] / 256 / 2)  # 48 / 256 mm
    brain = subject.brain_mask
    assert np.corrcoef(canonical[brain], subject.hp_phase[brain])[0, 1] > 0.6


def test_canonical_phase_same_for_every_storage(subjects):
    subject = subjects[3]
    brain = subject.brain_mask
    reference, _ = canonical_phase(subject.hp_phase, brain, subject.swi, spacing_mm=SPACING)
    np.testing.assert_allclose(reference, subject.hp_phase, atol=1e-6)
    for handedness, units in (("left", "radians"), ("right", "integer"), ("left", "unsigned")):
        phase = stored(subject.hp_phase, handedness, units)
        canonical, decisions = canonical_phase(phase, brain, subject.swi, spacing_mm=SPACING)
        assert decisions.kind == "filtered" and decisions.hp_window is None
        assert decisions.handedness == handedness
        error = np.angle(np.exp(1j * (canonical - reference)))
        assert np.abs(error).max() < 2e-3  # integer rounding only


def test_overrides_are_used_and_recorded(subjects):
    subject = subjects[0]
    canonical, decisions = canonical_phase(
        subject.hp_phase,
        subject.brain_mask,
        subject.swi,
        spacing_mm=SPACING,
        units="radians",
        kind="filtered",
        handedness="left",
    )
    np.testing.assert_allclose(canonical, -subject.hp_phase)
    assert not (decisions.units_detected or decisions.kind_detected)
    assert not decisions.handedness_detected and decisions.handedness_confidence is None
    with pytest.raises(ValueError, match="handedness"):
        canonical_phase(subject.hp_phase, subject.brain_mask, subject.swi, handedness="up")


def test_raw_phase_homodyne_matches_generator(subjects):
    """With the generator's modulus and window the filter reproduces its high-pass phase."""
    for subject in subjects.values():
        brain = subject.brain_mask
        canonical, decisions = canonical_phase(
            subject.raw_phase,
            brain,
            subject.magnitude,
            spacing_mm=SPACING,
            hp_window=subject.protocol.hp_window,
        )
        assert decisions.kind == "raw" and decisions.hp_window == subject.protocol.hp_window
        assert np.corrcoef(canonical[brain], subject.hp_phase[brain])[0, 1] > 0.99


# ----------------------------------------------------------------------------- mask, intensity


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


@pytest.mark.parametrize("seed", SEEDS)
def test_brain_mask_from_swi(subjects, seed):
    subject = subjects[seed]
    mask = estimate_brain_mask(subject.swi, SPACING)
    assert mask.dtype == bool and mask.shape == subject.swi.shape
    assert dice(mask, subject.brain_mask) > 0.85


def test_brain_mask_of_nothing_is_empty():
    assert not estimate_brain_mask(np.zeros((16, 16, 4), np.float32), (1.0, 1.0, 2.0)).any()


def test_normalised_swi_and_phase(subjects):
    subject = subjects[0]
    swi = normalise_swi(subject.swi * 7.5, subject.brain_mask)
    assert swi.dtype == np.float32 and swi.min() >= 0 and swi.max() <= 2
    assert np.median(swi[subject.brain_mask]) == pytest.approx(1.0, abs=0.01)
    phase = normalise_phase(np.array([-4.0, -np.pi / 2, 0.0, 1.0], np.float32))
    np.testing.assert_allclose(phase, [-1.0, -0.5, 0.0, 1 / np.pi], rtol=1e-6)


# ----------------------------------------------------------------------------- resampling


# ----------------------------------------------------------------------------- pipeline


@pytest.fixture(scope="module")
def prepared(subjects):
    subject = subjects[1]
    phase = stored(subject.hp_phase, "left", "integer")
    config = PreprocessConfig(target_in_plane_mm=0.8)
    return subject, preprocess_arrays(subject.swi, phase, SPACING, config=config)


def test_preprocess_grid_and_record(prepared):
    subject, pre = prepared
    model_shape = (round(SHAPE[0] * SPACING[0] / 0.8), round(SHAPE[1] * SPACING[1] / 0.8), SHAPE[2])
    assert pre.native_shape == SHAPE
    assert pre.grid.model_shape == model_shape == pre.swi.shape == pre.brain.shape
    assert pre.spacing_mm == pytest.approx((0.8, 0.8, 2.0))
    assert pre.mask_estimated and pre.brain.dtype == bool
    assert pre.decisions.units == "integer" and pre.decisions.handedness == "left"
    assert np.median(pre.swi[pre.brain]) == pytest.approx(1.0, abs=0.02)
    assert pre.phase_norm.min() >= -1 and pre.phase_norm.max() <= 1
    record = pre.record()
    assert record["phase"]["handedness"] == "left" and record["brain_mask"] == "estimated from SWI"


def test_slice_images_channels(prepared):
    _, pre = prepared
    images = slice_images(pre)
    depth = pre.swi.shape[2]
    assert images.shape == (depth, 2, *pre.swi.shape[:2]) and images.dtype == np.float32
    for k in (0, 5, depth - 1):
        window = pre.swi[:, :, max(0, k - 1) : k + 2]
        np.testing.assert_allclose(images[k, 0], window.mean(axis=2), atol=1e-5)
    np.testing.assert_allclose(images[:, 1], 1 + pre.phase_norm.transpose(2, 0, 1))


def test_context_slices_are_the_swi_of_offset_slices_clamped_at_the_ends(prepared):
    _, pre = prepared
    config = replace(pre.config, context_slices=[-2, 0, 2])  # a JSON list becomes a tuple
    assert config.context_slices == (-2, 0, 2) and config.channels == 5
    assert PreprocessConfig(**config.to_json()) == config
    images = slice_images(replace(pre, config=config))
    depth = pre.swi.shape[2]
    assert images.shape == (depth, 5, *pre.swi.shape[:2])
    np.testing.assert_array_equal(images[:, :2], slice_images(pre))
    for k in (0, 1, 5, depth - 2, depth - 1):
        np.testing.assert_array_equal(images[k, 2], pre.swi[:, :, max(k - 2, 0)])
        np.testing.assert_array_equal(images[k, 3], pre.swi[:, :, k])
        np.testing.assert_array_equal(images[k, 4], pre.swi[:, :, min(k + 2, depth - 1)])


@pytest.mark.parametrize("slices", [1, 2, 3, 4])
def test_distinct_channels_of_a_run_of_slices_drop_only_repeats(prepared, slices):
    _, pre = prepared
    config = replace(pre.config, context_slices=(-2, 0, 2))
    stack = slice_images(replace(pre, config=config))[5 : 5 + slices].reshape(
        -1, *pre.swi.shape[:2]
    )
    kept = config.distinct_channels(slices)
    assert len(kept) == {1: 5, 2: 8, 3: 10, 4: 12}[slices] and kept == tuple(sorted(kept))
    distinct = stack[list(kept)]
    for i in range(len(kept)):  # no kept channel repeats another
        assert all(not np.array_equal(distinct[i], distinct[j]) for j in range(i))
    for dropped in sorted(set(range(len(stack))) - set(kept)):
        repeated = any(np.array_equal(stack[dropped], channel) for channel in distinct)
        j = dropped // config.channels  # slice of the run: its averaged SWI is the mean of
        averaged = pre.swi[:, :, 5 + j - 1 : 5 + j + 2]  # three SWI slices, all of them read
        averaged_and_read = (
            dropped % config.channels == 0
            and np.allclose(stack[dropped], averaged.mean(axis=2), atol=1e-5)
            and all(
                any(np.array_equal(a, c) for c in distinct) for a in averaged.transpose(2, 0, 1)
            )
        )
        assert repeated or averaged_and_read, dropped


def test_cmbs_are_dark_in_both_channels(prepared):
    subject, pre = prepared
    images = slice_images(pre)
    medians = [np.median(images[:, c][pre.brain.transpose(2, 0, 1)]) for c in (0, 1)]
    cmbs = [lesion for lesion in subject.lesions if lesion.kind == "cmb" and lesion.visible]
    assert len(cmbs) >= 5
    dark = []
    for lesion in cmbs:
        u, v, k = np.round(pre.grid.native_to_model([lesion.i, lesion.j, lesion.k])).astype(int)
        centre = images[k, :, u - 1 : u + 2, v - 1 : v + 2].min(axis=(1, 2))  # (2,)
        dark.append(centre[0] < medians[0] and centre[1] < medians[1])
    assert np.mean(dark) >= 0.8


@pytest.mark.parametrize("slice_mm", [1.0, 3.0])
def test_slices_of_another_thickness_keep_cmbs_where_they_are(subjects, slice_mm):
    subject = subjects[1]
    config = PreprocessConfig(target_in_plane_mm=0.8, target_slice_mm=slice_mm)
    pre = preprocess_arrays(subject.swi, subject.hp_phase, SPACING, config=config)
    depth = round(SHAPE[2] * SPACING[2] / slice_mm)
    assert pre.swi.shape[2] == pre.brain.shape[2] == depth == pre.grid.model_shape[2]
    assert pre.spacing_mm[2] == pytest.approx(SHAPE[2] * SPACING[2] / depth)
    assert pre.record()["model_spacing_mm"][2] == pytest.approx(pre.spacing_mm[2])
    images = slice_images(pre)
    medians = [np.median(images[:, c][pre.brain.transpose(2, 0, 1)]) for c in (0, 1)]
    dark = []
    for lesion in (x for x in subject.lesions if x.kind == "cmb" and x.visible):
        u, v, k = np.round(pre.grid.native_to_model([lesion.i, lesion.j, lesion.k])).astype(int)
        centre = images[k, :, u - 1 : u + 2, v - 1 : v + 2].min(axis=(1, 2))  # (2,)
        dark.append(centre[0] < medians[0] and centre[1] < medians[1])
    assert len(dark) >= 5 and np.mean(dark) >= 0.8


def test_given_mask_is_used(subjects):
    subject = subjects[0]
    brain = ndimage.binary_erosion(subject.brain_mask, iterations=2)
    pre = preprocess_arrays(subject.swi, subject.hp_phase, SPACING, brain=brain)
    assert not pre.mask_estimated
    assert pre.grid.model_shape == (2 * SHAPE[0], 2 * SHAPE[1], SHAPE[2])  # 1 mm -> 0.5 mm
    assert np.array_equal(pre.brain, resample_to(brain, pre.grid.model_shape, order=0))


def test_preprocess_volumes_from_files(subjects, tmp_path):
    """Files as ``cmbdet synth`` writes them: LPS storage, integer raw left-handed phase."""
    from cmbdet.io.nifti import load_mask, load_volume
    from cmbdet.synth.dataset import write_subject_files

    subject = subjects[3]
    config = SynthConfig(
        preset="tiny",
        handedness="left",
        phase_units="integer",
        phase_kind="raw",
        orientation="LPS",
    )
    write_subject_files(tmp_path, subject, config)
    swi = load_volume(tmp_path / "swi.nii.gz", "SWI")
    phase = load_volume(tmp_path / "phase.nii.gz", "phase")
    magnitude = load_volume(tmp_path / "magnitude.nii.gz", "magnitude")
    mask = load_mask(tmp_path / "brainmask.nii.gz", swi)
    pre = preprocess(
        swi, phase, magnitude=magnitude, mask=mask, config=PreprocessConfig(target_in_plane_mm=1.0)
    )
    decisions = pre.decisions
    assert (decisions.units, decisions.kind, decisions.handedness) == ("integer", "raw", "left")
    assert pre.grid.is_identity and np.array_equal(pre.brain, subject.brain_mask)
    brain = subject.brain_mask
    assert np.corrcoef(pre.phase_rad[brain], subject.hp_phase[brain])[0, 1] > 0.6
    with pytest.raises(InputError, match="shape"):
        preprocess(swi, phase, mask=mask[:-1])


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 2.0), (0.45, 0.6, 3.0), (0.8, 0.8, 2.0)])
@pytest.mark.parametrize("radius_mm", [3.0, 4.0, 2.2])
def test_mask_morphology_equals_thresholded_distance_transforms(spacing, radius_mm):
    """In-plane erosion and dilation by a disk equal thresholding each slice's Euclidean
    distance transform (the edge of the field of view does not erode; empty slices stay empty;
    a slice without background stays whole)."""
    rng = np.random.default_rng(5)
    mask = ndimage.gaussian_filter(rng.random((40, 36, 6)), (2, 2, 0)) > 0.5
    mask[:, :, 0] = False
    mask[:, :, 1] = True
    sampling = np.asarray(spacing[:2])
    eroded = np.stack(
        [
            np.ones(mask.shape[:2], bool)
            if mask[:, :, z].all()
            else ndimage.distance_transform_edt(mask[:, :, z], sampling=sampling) > radius_mm
            for z in range(mask.shape[2])
        ],
        axis=2,
    )
    dilated = np.stack(
        [
            mask[:, :, z].any()
            & (ndimage.distance_transform_edt(~mask[:, :, z], sampling=sampling) <= radius_mm)
            for z in range(mask.shape[2])
        ],
        axis=2,
    )
    assert 0 < eroded[:, :, 2:].sum() < mask[:, :, 2:].sum() < dilated[:, :, 2:].sum()
    np.testing.assert_array_equal(erode_in_plane(mask, np.asarray(spacing), radius_mm), eroded)
    np.testing.assert_array_equal(dilate_in_plane(mask, np.asarray(spacing), radius_mm), dilated)


@pytest.mark.parametrize("spacing", [(0.5, 0.5, 2.0), (0.8, 1.1, 3.0), (3.0, 0.9, 1.0)])
def test_square_erosion_equals_binary_erosion_with_the_square(spacing):
    """The handedness and phase-kind statistics' rim erosion (running minima) equals
    ``binary_erosion`` with the per-slice square, the edge of the array eroding."""
    from cmbdet.preprocess.handedness import erode_mm

    rng = np.random.default_rng(2)
    mask = ndimage.gaussian_filter(rng.random((50, 41, 5)), (2, 2, 0)) > 0.45
    mask[:, :, 1] = True  # a full slice still erodes from the array's edge
    radius = [max(0, round(3.0 / s)) for s in spacing[:2]]
    square = np.ones((2 * radius[0] + 1, 2 * radius[1] + 1, 1), dtype=bool)
    expected = ndimage.binary_erosion(mask, structure=square)
    assert 0 < expected.sum() < mask.sum()
    np.testing.assert_array_equal(erode_mm(mask, spacing, 3.0), expected)


def test_holes_filled_in_one_labelling_equal_filling_each_slice():
    """The brain mask's holes are filled in one labelling of the volume: the same as
    ``binary_fill_holes`` slice by slice (holes touching the slice's edge stay open, diagonal
    gaps do not connect a hole to the outside, empty and full slices stay so)."""
    from cmbdet.preprocess import mask as mask_module

    rng = np.random.default_rng(11)
    mask = ndimage.gaussian_filter(rng.random((45, 38, 7)), (1.5, 1.5, 0)) > 0.48
    mask[:, :, 0] = False
    mask[:, :, 1] = True
    ring = np.zeros((9, 9), bool)
    ring[2:7, 2:7] = True
    ring[3:6, 3:6] = False
    ring[2, 2] = False  # a hole's corner opening diagonally: still a hole (4-connected)
    mask[:9, :9, 2] = ring
    per_slice = np.stack(
        [ndimage.binary_fill_holes(mask[:, :, z]) for z in range(mask.shape[2])], axis=2
    )
    assert per_slice.sum() > mask.sum()  # there were holes to fill
    np.testing.assert_array_equal(mask_module._fill_holes(mask), per_slice)


def test_the_slice_stack_crops_equal_the_slice_images(prepared):
    """Stage 1 builds its images batch by batch from a SliceStack: every crop equals the same
    part of slice_images, value for value (slab average, phase, context slices at the ends)."""
    _, pre = prepared
    config = replace(pre.config, slab_average=2, context_slices=(-2, 0, 3))
    pre = replace(pre, config=config)
    images, stack = slice_images(pre), SliceStack(pre)
    depth = images.shape[0]
    assert stack.shape == images.shape
    for chosen in ([0, 1, 2], [depth - 2, depth - 1], [5, 9, 3], []):
        crop = stack.crop(np.array(chosen, dtype=int), slice(4, 30), slice(2, 41))
        np.testing.assert_array_equal(crop, images[chosen][:, :, 4:30, 2:41])


def test_mask_and_handedness_on_the_bounding_box_equal_the_whole_plane(prepared, monkeypatch):
    """The brain mask and the locally dark voxels are worked out on an in-plane bounding box
    with room for every step: forcing the whole plane gives the same arrays."""
    from cmbdet.preprocess import handedness, mask

    subject, _ = prepared
    image, spacing = subject.swi, SPACING
    cropped_mask = estimate_brain_mask(image, spacing)
    cropped_dark = handedness._locally_dark(image, cropped_mask, spacing)
    whole = lambda array, margin: (slice(None), slice(None))  # noqa: E731
    monkeypatch.setattr(mask, "in_plane_box", whole)
    monkeypatch.setattr(handedness, "in_plane_box", whole)
    np.testing.assert_array_equal(estimate_brain_mask(image, spacing), cropped_mask)
    np.testing.assert_array_equal(
        handedness._locally_dark(image, cropped_mask, spacing), cropped_dark
    )
    assert cropped_mask.any() and cropped_dark.any()


def test_in_plane_work_on_slabs_of_slices_gives_the_same_arrays(prepared, monkeypatch):
    """The brain mask, the locally dark voxels, the phase-kind statistic and in-plane
    resampling are worked out on slabs of slices in threads (one-subject runs use every core):
    the same arrays and statistic as in one piece."""
    from cmbdet.preprocess import handedness, slabs
    from cmbdet.preprocess.phase import lowpass_phase_fraction
    from cmbdet.preprocess.resample import resample_phase_to, resample_to

    subject, _ = prepared
    swi, brain, phase, spacing = subject.swi, subject.brain_mask, subject.hp_phase, SPACING
    # a brain that erodes to nothing in the upper slices (the top of the head): the rim
    # erosion's fallback is the whole volume's decision, never one slab's
    top = np.zeros_like(brain)
    top[:, :, : SHAPE[2] // 2] = brain[:, :, : SHAPE[2] // 2]
    top[20:23, 20:23, SHAPE[2] // 2 :] = True
    dim = swi.copy()
    dim[21, 21, SHAPE[2] - 1] = 0.0  # a dark voxel where the brain erodes away

    def computed():
        model_shape = (SHAPE[0] + 7, SHAPE[1] - 5, SHAPE[2])  # in-plane resampling
        return (
            estimate_brain_mask(swi, spacing),
            handedness._locally_dark(swi, brain, spacing),
            handedness._locally_dark(dim, top, spacing),
            lowpass_phase_fraction(phase, brain, spacing),
            resample_to(swi, model_shape, order=1),
            resample_phase_to(phase, model_shape),
        )

    monkeypatch.setattr(slabs, "MIN_SLAB_VOXELS", 1)
    monkeypatch.setattr(slabs, "math_threads", lambda: 3)
    in_slabs = computed()
    monkeypatch.setattr(slabs, "math_threads", lambda: 1)
    whole = computed()
    assert in_slabs[0].any() and in_slabs[1].any()
    for a, b in zip(in_slabs, whole, strict=True):
        np.testing.assert_array_equal(a, b)
