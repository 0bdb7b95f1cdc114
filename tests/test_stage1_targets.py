"""Stage-1 training targets from boxes."""

from __future__ import annotations

import numpy as np

from cmbdet.stage1.targets import make_targets


def test_targets_put_the_centre_and_size_in_the_right_cell():
    targets = make_targets([np.array([[10, 20, 16, 30]])], (64, 64), 4)
    # centre (13, 25) px -> cell (3, 6), offset (0.25, 0.25) cells
    assert targets.centre_mask[0, 0, 3, 6] == 1 and targets.centre_mask.sum() == 1
    assert targets.heatmap[0, 0, 3, 6] == 1
    np.testing.assert_allclose(targets.offset[0, :, 3, 6].numpy(), [0.25, 0.25])
    np.testing.assert_allclose(targets.log_size[0, :, 3, 6].numpy(), np.log([6, 10]), rtol=1e-6)
