"""Stage-1 decoding: head maps to boxes."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from cmbdet.stage1.decode import _max_filter3, decode


def test_decode_reads_a_hand_made_peak():
    heatmap = torch.full((1, 1, 8, 8), -10.0)
    heatmap[0, 0, 2, 5] = 3.0
    offset = torch.zeros(1, 2, 8, 8)
    offset[0, :, 2, 5] = torch.tensor([0.5, 0.25])
    size = torch.zeros(1, 2, 8, 8)
    size[0, :, 2, 5] = torch.log(torch.tensor([8.0, 4.0]))
    (found,) = decode({"heatmap": heatmap, "offset": offset, "size": size}, stride=4)
    assert found.scores.shape == (1,)
    np.testing.assert_allclose(found.boxes[0], [6.0, 19.0, 14.0, 23.0], atol=1e-5)


def test_the_3x3_max_filter_is_max_pooling():
    maps = torch.randint(0, 4, (3, 1, 9, 7)).float()  # many ties
    maps[0, 0, 0, 0] = float("-inf")
    pooled = F.max_pool2d(maps, 3, stride=1, padding=1).numpy()
    np.testing.assert_array_equal(_max_filter3(maps.numpy()), pooled)


def test_decode_of_nothing_is_empty():
    zero = torch.zeros(2, 2, 8, 8)
    found = decode(
        {"heatmap": torch.full((2, 1, 8, 8), -10.0), "offset": zero, "size": zero}, stride=4
    )
    assert [len(f.scores) for f in found] == [0, 0]
