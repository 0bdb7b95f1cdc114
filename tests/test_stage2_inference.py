"""Stage-2 inference: test-time views."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cmbdet.stage2.inference import score_patches
from cmbdet.stage2.views import VIEWS


class _Probe(torch.nn.Module):
    """A fixed random linear read-out of the patch: no symmetry of its own."""

    def __init__(self, shape):
        super().__init__()
        self.weight = torch.nn.Parameter(
            torch.randn(shape, generator=torch.Generator().manual_seed(0))
        )

    def forward(self, patches):
        return (patches * self.weight).sum(dim=(1, 2, 3, 4)) * 0.1


def test_views_are_symmetries_and_averaging_them_is_invariant():
    patches = np.random.default_rng(0).normal(1.0, 0.5, (3, 2, 12, 12, 5)).astype(np.float32)
    net = _Probe(patches.shape[1:])
    single = score_patches(net, patches)
    assert single == pytest.approx(score_patches(net, patches, views=1))
    # the 8 views are closed under x flips of the input, so the 8-view score of a flipped
    # patch equals that of the original; one view alone is not invariant
    flipped = np.ascontiguousarray(patches[:, :, ::-1])
    np.testing.assert_allclose(
        score_patches(net, flipped, views=len(VIEWS)),
        score_patches(net, patches, views=8),
        rtol=1e-4,
    )
    assert np.abs(score_patches(net, flipped) - single).max() > 0.05
    assert len(set(VIEWS)) == len(VIEWS)
    with pytest.raises(ValueError):
        score_patches(net, patches, views=0)
