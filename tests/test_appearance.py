"""Appearance augmentation of training crops: what it changes, what it keeps, replay."""

from __future__ import annotations

import numpy as np
import pytest

from cmbdet.appearance import (
    Appearance,
    AppearanceRanges,
    apply_appearance,
    draw_appearance,
)


def crop() -> tuple[np.ndarray, np.ndarray]:
    """(3, 32, 32): SWI, complemented phase, SWI; a dark CMB in the middle, dark on all."""
    image = np.ones((3, 32, 32), np.float32)
    image[:, 14:18, 14:18] = 0.3
    image[1, 14:18, 14:18] = 0.4  # phase: 1 + phase_norm
    return image, np.array([False, True, False])


def look(**changes) -> Appearance:
    plain = dict(
        swi_gamma=1.0,
        swi_contrast=1.0,
        phase_gain=1.0,
        bias=(0.0, 0.0, 0.0),
        blur_sd_px=0.0,
        noise_sd=0.0,
        rician=False,
    )
    return Appearance(**{**plain, **changes})


def test_no_change_keeps_the_crop():
    image, phase = crop()
    out = apply_appearance(image, phase, look(), np.random.default_rng(0))
    np.testing.assert_allclose(out, image, atol=1e-6)
    assert out is not image and out.dtype == np.float32


def test_curves_change_how_dark_a_cmb_is_but_keep_tissue():
    image, phase = crop()
    rng = np.random.default_rng(0)
    lighter = apply_appearance(image, phase, look(swi_gamma=0.7, swi_contrast=0.8), rng)
    darker = apply_appearance(image, phase, look(swi_gamma=1.4), rng)
    assert lighter[0, 15, 15] > image[0, 15, 15] > darker[0, 15, 15]
    for out in (lighter, darker):
        assert out[0, 2, 2] == pytest.approx(1.0) and out[2, 30, 30] == pytest.approx(1.0)
        np.testing.assert_allclose(out[1], image[1], atol=1e-6)  # the phase is not an SWI
    weaker = apply_appearance(image, phase, look(phase_gain=0.5), rng)
    stronger = apply_appearance(image, phase, look(phase_gain=3.0), rng)
    assert weaker[1, 15, 15] == pytest.approx(0.7)
    assert stronger[1, 15, 15] == 0.0  # clipped to the complemented phase's range
    np.testing.assert_allclose(weaker[0], image[0], atol=1e-6)


def test_bias_blur_and_noise():
    image, phase = crop()
    rng = np.random.default_rng(1)
    biased = apply_appearance(image, phase, look(bias=(0.1, 0.0, 0.0)), rng)
    assert biased[0, 0, 5] == pytest.approx(0.9) and biased[0, 31, 5] == pytest.approx(1.1)
    np.testing.assert_allclose(biased[1], image[1], atol=1e-6)
    blurred = apply_appearance(image, phase, look(blur_sd_px=1.0), rng)
    assert blurred[0, 15, 15] > 0.3 and blurred[0, 12, 15] < 1.0
    assert blurred[0].sum() == pytest.approx(image[0].sum(), rel=1e-4)
    for rician in (False, True):
        noisy = apply_appearance(image, phase, look(noise_sd=0.05, rician=rician), rng)
        background = noisy[0, :10, :10]
        assert 0.03 < background.std() < 0.07
        assert noisy[1].min() >= 0 and noisy[1].max() <= 2
    patch = np.ones((2, 8, 8, 5), np.float32)  # stage 2: (C, X, Y, Z), the bias in-plane
    out = apply_appearance(patch, np.array([False, True]), look(bias=(0.0, 0.2, 0.0)), rng)
    assert out.shape == patch.shape and np.allclose(out[0, :, 0, :], 0.8)


def test_draws_stay_in_their_ranges_and_replay():
    ranges = AppearanceRanges()
    looks = [draw_appearance(np.random.default_rng([4, n]), ranges) for n in range(300)]
    assert looks[7] == draw_appearance(np.random.default_rng([4, 7]), ranges)
    gammas = np.array([x.swi_gamma for x in looks])
    assert gammas.min() >= 0.7 and gammas.max() <= 1.4 and gammas.std() > 0.1
    blurred = np.mean([x.blur_sd_px > 0 for x in looks])
    assert 0.2 < blurred < 0.4
    assert all(abs(x.bias[0]) <= ranges.bias and abs(x.bias[2]) <= ranges.bias / 2 for x in looks)
    with pytest.raises(ValueError, match="swi_gamma"):
        AppearanceRanges(swi_gamma=(1.2, 0.8))
    assert AppearanceRanges.from_json(ranges.to_json()) == ranges
