"""The 3D fast radial symmetry baseline that the speed and quality benchmarks compare with
(``benchmarks/frst.py``; not part of the package)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from frst import frst_candidates  # noqa: E402


def test_frst_finds_dark_spheres_first():
    rng = np.random.default_rng(0)
    image = 1.0 + 0.03 * rng.standard_normal((64, 64, 20)).astype(np.float32)
    spacing = (0.5, 0.5, 2.0)
    grid = np.stack(
        np.meshgrid(
            *[np.arange(n) * s for n, s in zip(image.shape, spacing, strict=True)], indexing="ij"
        ),
        -1,
    )
    centres_mm = np.array([[8.0, 8.0, 20.0], [22.0, 14.0, 10.0]])
    for centre in centres_mm:
        image[np.linalg.norm(grid - centre, axis=-1) < 1.5] = 0.1
    voxels, scores = frst_candidates(image, np.ones(image.shape, bool), spacing)
    top_mm = voxels[:2] * spacing
    for centre in centres_mm:
        assert np.min(np.linalg.norm(top_mm - centre, axis=1)) <= 1.0
    assert scores[1] > 3 * scores[2]
