"""Stage-2 patches around candidates."""

from __future__ import annotations

import numpy as np

from cmbdet.stage2.patches import PatchConfig, extract_patches


def test_patches_are_centred_and_padded_at_the_border():
    swi = np.ones((30, 30, 10), np.float32)
    swi[10, 12, 4] = 0.0
    phase = np.zeros_like(swi)
    config = PatchConfig(size=(8, 8, 3))
    patches = extract_patches(swi, phase, np.array([[10, 12, 4], [0, 0, 0]]), config)
    assert patches.shape == (2, 2, 8, 8, 3)
    assert patches[0, 0, 4, 4, 1] == 0.0 and patches[0, 0].sum() == 8 * 8 * 3 - 1
    assert np.all(patches[1] == 1.0)  # outside the volume: tissue level in both channels
