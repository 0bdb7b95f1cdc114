"""Stage 1 over a volume: brain crops, passes over slice groups, boxes mapped back."""

from __future__ import annotations

import math

import numpy as np
import torch

from cmbdet.stage1.config import Stage1Config
from cmbdet.stage1.inference import BRAIN_MARGIN, detect_slices, slice_groups


class _CornerNet(torch.nn.Module):
    """Stands in for the stage-1 network: one confident 4-px box at the first pixel of every
    image it is given, and a log of the batch shapes."""

    config = Stage1Config()

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))
        self.shapes = []

    def forward(self, images):
        self.shapes.append(tuple(images.shape))
        batch, _, height, width = images.shape
        heatmap = torch.full((batch, 1, height // 4, width // 4), -10.0)
        heatmap[:, :, 0, 0] = 10.0
        zeros = torch.zeros((batch, 2, height // 4, width // 4))
        return {"heatmap": heatmap, "offset": zeros, "size": zeros + math.log(4)}


def test_each_batch_of_slices_is_cropped_to_its_own_brain_and_boxes_map_back():
    images = np.ones((12, 2, 150, 90), np.float32)
    brain = np.zeros((150, 90, 12), bool)
    brain[30:50, 40:60, 0:8] = True  # one batch of 8 slices with a small brain
    brain[20:100, 10:70, 8:10] = True  # the next two larger; slices 10 and 11 without brain
    net = _CornerNet()
    found = detect_slices(net, images, brain, batch_size=8)
    # brain spans + margins: 36 x 36 px, grown to 48 x 48; 96 x 76 -> 96 x 80
    assert net.shapes == [(8, 2, 48, 48), (2, 2, 96, 80)]
    assert [len(d.scores) for d in found] == [1] * 10 + [0, 0]
    for slices, low, high, size in (
        (range(8), (30, 40), (50, 60), (48, 48)),
        (range(8, 10), (20, 10), (100, 70), (96, 80)),
    ):
        for z in slices:  # the corner box sits at the crop's origin, in full-slice pixels
            origin = found[z].centres[0]
            assert np.all(origin <= np.subtract(low, BRAIN_MARGIN)) and np.all(origin >= 0)
            assert np.all(origin + size >= np.add(high, BRAIN_MARGIN))
            assert np.all(origin + size <= images.shape[2:])
    found = detect_slices(_CornerNet(), images, None)  # no mask: whole slices, all of them
    assert all(np.allclose(d.centres, [[0, 0]]) for d in found)


class _SliceNumberNet(torch.nn.Module):
    """Stands in for a stage-1 network reading two slices per pass: for each slice of a pass,
    one confident box in the output cell whose x index is the slice image's value (images of
    slice z are filled with z)."""

    config = Stage1Config(slices_per_pass=2)

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))

    def forward(self, images):
        batch, channels, height, width = images.shape
        heatmap = torch.full((batch, 2, height // 4, width // 4), -10.0)
        for b in range(batch):
            for j in range(2):
                heatmap[b, j, int(images[b, j * channels // 2, 0, 0]), 0] = 10.0
        zeros = torch.zeros((batch, 4, height // 4, width // 4))
        return {"heatmap": heatmap, "offset": zeros, "size": zeros + math.log(4)}


def test_passes_over_slice_groups_map_boxes_back_to_their_slices():
    images = np.broadcast_to(
        np.arange(5, dtype=np.float32)[:, None, None, None], (5, 2, 64, 32)
    ).copy()
    for batch_size in (1, 8):  # a forward call per pass, or all passes at once
        found = detect_slices(_SliceNumberNet(), images, None, batch_size=batch_size)
        assert [d.centres[0, 0] for d in found] == [4.0 * z for z in range(5)]
    # a network reading some channels of each pass gets those channels of those slices
    images[:, 1] += 0.5  # channel c of slice z holds z + c / 2
    net = _RecordingNet(Stage1Config(slices_per_pass=2, pass_channels=(1, 2, 3)))
    assert len(detect_slices(net, images, None)) == 5
    (batch,) = net.inputs  # passes over slices 0-1, 2-3, 3-4 (the last moved back)
    starts = torch.tensor([0.0, 2.0, 3.0])[:, None]
    want = torch.cat([starts + 0.5, starts + 1.0, starts + 1.5], dim=1)  # (pass, channel)
    torch.testing.assert_close(batch[:, :, 0, 0], want)


class _RecordingNet(torch.nn.Module):
    """Stands in for a stage-1 network: keeps its inputs, finds nothing."""

    def __init__(self, config: Stage1Config):
        super().__init__()
        self.config, self.inputs = config, []
        self.unused = torch.nn.Parameter(torch.zeros(1))

    def forward(self, images):
        self.inputs.append(images)
        batch, _, height, width = images.shape
        k = self.config.slices_per_pass
        maps = torch.zeros((batch, 2 * k, height // 4, width // 4))
        return {"heatmap": maps[:, :k] - 10.0, "offset": maps, "size": maps}


def test_slice_groups_cover_the_brain_slices_in_runs():
    todo = np.arange(2, 10)
    np.testing.assert_array_equal(slice_groups(todo, 12, 1)[:, 0], todo)
    np.testing.assert_array_equal(slice_groups(todo, 12, 3), [[2, 3, 4], [5, 6, 7], [8, 9, 10]])
    # the last run ends at the last slice; a stack shorter than a run repeats its last slice
    np.testing.assert_array_equal(slice_groups(np.arange(5), 5, 3), [[0, 1, 2], [2, 3, 4]])
    np.testing.assert_array_equal(slice_groups(np.arange(2), 2, 3), [[0, 1, 1]])
