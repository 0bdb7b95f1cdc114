"""The stage-1 network: shapes, passes over slice groups, padding, its config."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cmbdet.stage1.config import Stage1Config
from cmbdet.stage1.layout import pad_to_multiple, pass_input, per_slice


def test_eval_forward_shapes(net):
    net.eval()
    outputs = net(torch.zeros(3, 2, 64, 96))
    assert outputs["heatmap"].shape == (3, 1, 16, 24)
    assert outputs["offset"].shape == (3, 2, 16, 24)
    assert outputs["size"].shape == (3, 2, 16, 24)


def test_a_pass_over_slice_groups_gives_maps_per_slice(small_stage1):
    net = small_stage1(slices_per_pass=3)
    outputs = net.eval()(torch.zeros(2, 6, 64, 96))  # 2 passes over 3 slices of 2 channels
    assert outputs["heatmap"].shape == (2, 3, 16, 24)
    assert outputs["offset"].shape == outputs["size"].shape == (2, 6, 16, 24)
    slices = per_slice(outputs, 3)
    assert slices["heatmap"].shape == (6, 1, 16, 24) and slices["offset"].shape == (6, 2, 16, 24)
    # slice 2 of pass 1 is image 5; its offset maps are the pass's channels 4 and 5
    torch.testing.assert_close(slices["heatmap"][5, 0], outputs["heatmap"][1, 2])
    torch.testing.assert_close(slices["offset"][5], outputs["offset"][1, 4:6])
    # a network reading three of the six channels of the stacked slice images
    net = small_stage1(slices_per_pass=3, pass_channels=(1, 2, 5))
    stacks = torch.rand(2, 6, 64, 96)
    torch.testing.assert_close(pass_input(stacks, (1, 2, 5)), stacks[:, [1, 2, 5]])
    assert net.eval()(pass_input(stacks, (1, 2, 5)))["heatmap"].shape == (2, 3, 16, 24)
    with pytest.raises(RuntimeError):  # the stem takes three channels, not six
        net(stacks)


def test_pad_to_multiple():
    padded = pad_to_multiple(np.ones((1, 2, 50, 33), np.float32))
    assert padded.shape == (1, 2, 64, 48)
    assert padded[0, 0, 49, 32] == 1 and np.abs(padded[0, 0, 50:, :]).sum() == 0


def test_pass_channels_must_be_increasing_indices_into_the_stack():
    assert Stage1Config(slices_per_pass=2, pass_channels=[1, 3]).pass_channels == (1, 3)
    for wrong in ((3, 1), (1, 1), (4,), (-1,)):  # 2 slices of 2 channels: indices 0-3
        with pytest.raises(ValueError, match="pass_channels"):
            Stage1Config(slices_per_pass=2, pass_channels=wrong)


def test_config_round_trips_and_rejects_unknown_keys():
    config = Stage1Config()
    assert Stage1Config.from_json(config.to_json()) == config
    with pytest.raises(ValueError):
        Stage1Config.from_json({"widths": [8, 8, 8, 8], "colour": 3})
