"""Stage-1 network, targets, decoding and slice linking."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cmbdet.stage1.config import Stage1Config
from cmbdet.stage1.decode import SliceDetections, _max_filter3, decode
from cmbdet.stage1.inference import BRAIN_MARGIN, detect_slices, slice_groups
from cmbdet.stage1.link import link_slices
from cmbdet.stage1.model import CandidateNet, pad_to_multiple, pass_input, per_slice
from cmbdet.stage1.targets import make_targets
from cmbdet.training.stage1 import detection_loss


def _small_net(slices_per_pass: int = 1, pass_channels: tuple[int, ...] = ()) -> CandidateNet:
    torch.manual_seed(0)
    config = Stage1Config(
        widths=(8, 16, 16, 16),
        neck_width=16,
        slices_per_pass=slices_per_pass,
        pass_channels=pass_channels,
    )
    return CandidateNet(config)


@pytest.fixture()
def net() -> CandidateNet:
    return _small_net()


def _blob_images(n: int, size: int = 64, seed: int = 0):
    """Noisy images with one dark 6-px square each, and its box."""
    rng = np.random.default_rng(seed)
    images = 1.0 + 0.05 * rng.standard_normal((n, 2, size, size)).astype(np.float32)
    boxes = []
    for b in range(n):
        x, y = rng.integers(8, size - 14, 2)
        images[b, :, x : x + 6, y : y + 6] = 0.1
        boxes.append(np.array([[x, y, x + 6, y + 6]], np.float32))
    return torch.from_numpy(images), boxes


def test_eval_forward_shapes(net):
    net.eval()
    outputs = net(torch.zeros(3, 2, 64, 96))
    assert outputs["heatmap"].shape == (3, 1, 16, 24)
    assert outputs["offset"].shape == (3, 2, 16, 24)
    assert outputs["size"].shape == (3, 2, 16, 24)


def test_a_pass_over_slice_groups_gives_maps_per_slice():
    net = _small_net(slices_per_pass=3)
    outputs = net.eval()(torch.zeros(2, 6, 64, 96))  # 2 passes over 3 slices of 2 channels
    assert outputs["heatmap"].shape == (2, 3, 16, 24)
    assert outputs["offset"].shape == outputs["size"].shape == (2, 6, 16, 24)
    slices = per_slice(outputs, 3)
    assert slices["heatmap"].shape == (6, 1, 16, 24) and slices["offset"].shape == (6, 2, 16, 24)
    # slice 2 of pass 1 is image 5; its offset maps are the pass's channels 4 and 5
    torch.testing.assert_close(slices["heatmap"][5, 0], outputs["heatmap"][1, 2])
    torch.testing.assert_close(slices["offset"][5], outputs["offset"][1, 4:6])
    # a network reading three of the six channels of the stacked slice images
    net = _small_net(slices_per_pass=3, pass_channels=(1, 2, 5))
    stacks = torch.rand(2, 6, 64, 96)
    torch.testing.assert_close(pass_input(stacks, (1, 2, 5)), stacks[:, [1, 2, 5]])
    assert net.eval()(pass_input(stacks, (1, 2, 5)))["heatmap"].shape == (2, 3, 16, 24)
    with pytest.raises(RuntimeError):  # the stem takes three channels, not six
        net(stacks)


def test_pad_to_multiple():
    padded = pad_to_multiple(torch.ones(1, 2, 50, 33))
    assert padded.shape == (1, 2, 64, 48)
    assert padded[0, 0, 49, 32] == 1 and padded[0, 0, 50:, :].abs().sum() == 0


@pytest.mark.parametrize("slices_per_pass", [1, 2])
def test_training_returns_losses_and_every_parameter_gets_a_gradient(slices_per_pass):
    net = _small_net(slices_per_pass)
    images, boxes = _blob_images(2 * slices_per_pass)  # B K slices -> B passes of K
    images = images.reshape(2, 2 * slices_per_pass, *images.shape[-2:])
    targets = make_targets(boxes, images.shape[-2:], net.config.stride)
    losses = detection_loss(net.train(), images, targets)
    assert set(losses) == {"loss", "focal", "offset", "size"}
    losses["loss"].backward()
    missing = [
        name
        for name, p in net.named_parameters()
        if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0
    ]
    assert missing == []


def test_empty_slices_train_without_error(net):
    images = torch.ones(2, 2, 32, 32)
    losses = detection_loss(net.train(), images, make_targets([np.zeros((0, 4))] * 2, (32, 32), 4))
    assert torch.isfinite(losses["loss"]) and losses["offset"] == 0 and losses["size"] == 0


@pytest.mark.parametrize("slices_per_pass", [1, 2])
def test_loss_decreases_and_the_blob_is_found(slices_per_pass):
    net = _small_net(slices_per_pass)
    images, boxes = _blob_images(8)  # 8 slices, read 1 or 2 per pass
    targets = make_targets(boxes, images.shape[-2:], net.config.stride)
    images = images.reshape(8 // slices_per_pass, -1, *images.shape[-2:])
    optimiser = torch.optim.AdamW(net.parameters(), lr=3e-3)
    net.train()
    first = None
    for _ in range(60):
        loss = detection_loss(net, images, targets)["loss"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        first = loss.item() if first is None else first
    assert loss.item() < 0.3 * first
    detections = decode(per_slice(net.eval()(images), slices_per_pass), 4, score_threshold=0.2)
    for found, truth in zip(detections, boxes, strict=True):
        assert len(found.scores) >= 1
        best = found.centres[0]
        assert np.linalg.norm(best - (truth[0, :2] + truth[0, 2:]) / 2) < 3.0


def test_targets_put_the_centre_and_size_in_the_right_cell():
    targets = make_targets([np.array([[10, 20, 16, 30]])], (64, 64), 4)
    # centre (13, 25) px -> cell (3, 6), offset (0.25, 0.25) cells
    assert targets.centre_mask[0, 0, 3, 6] == 1 and targets.centre_mask.sum() == 1
    assert targets.heatmap[0, 0, 3, 6] == 1
    np.testing.assert_allclose(targets.offset[0, :, 3, 6].numpy(), [0.25, 0.25])
    np.testing.assert_allclose(targets.log_size[0, :, 3, 6].numpy(), np.log([6, 10]), rtol=1e-6)


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
    torch.testing.assert_close(_max_filter3(maps), F.max_pool2d(maps, 3, stride=1, padding=1))


def test_decode_of_nothing_is_empty():
    zero = torch.zeros(2, 2, 8, 8)
    found = decode(
        {"heatmap": torch.full((2, 1, 8, 8), -10.0), "offset": zero, "size": zero}, stride=4
    )
    assert [len(f.scores) for f in found] == [0, 0]


def _slice(boxes, scores):
    return SliceDetections(np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32))


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


def test_linking_joins_a_blob_over_three_slices_and_keeps_others_apart():
    detections = [
        _slice([[10, 10, 14, 14]], [0.5]),
        _slice([[11, 10, 15, 14], [50, 50, 54, 54]], [0.9, 0.3]),
        _slice([[10, 11, 14, 15]], [0.6]),
        SliceDetections.empty(),
        _slice([[10, 10, 14, 14]], [0.4]),  # two slices away: a new candidate
    ]
    candidates = link_slices(detections, pixel_mm=0.5, max_distance_mm=3.0)
    assert [c.slices for c in candidates] == [3, 1, 1]
    assert [c.score for c in candidates] == pytest.approx([0.9, 0.4, 0.3])
    first = candidates[0]
    expected = (
        0.5 * np.array([12, 12, 0]) + 0.9 * np.array([13, 12, 1]) + 0.6 * np.array([12, 13, 2])
    ) / 2.0
    np.testing.assert_allclose(first.centre, expected)


def test_linking_of_no_detections_is_empty():
    assert link_slices([SliceDetections.empty()] * 4, pixel_mm=0.5) == []
    assert link_slices([], pixel_mm=0.5) == []


def test_linking_respects_the_distance_limit():
    detections = [_slice([[0, 0, 4, 4]], [0.5]), _slice([[8, 0, 12, 4]], [0.5])]
    assert len(link_slices(detections, pixel_mm=0.5, max_distance_mm=3.0)) == 2
    assert len(link_slices(detections, pixel_mm=0.5, max_distance_mm=5.0)) == 1


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


def test_augmentation_moves_boxes_with_the_image():
    from cmbdet.stage1.data import AugmentParams, augment

    image = np.ones((2, 64, 64), np.float32)
    image[:, 10:16, 40:50] = 0.0
    boxes = np.array([[10, 40, 16, 50]], np.float32)
    rng = np.random.default_rng(0)
    for flip_x in (False, True):
        for rotations in range(4):
            for scale in (0.9, 1.0, 1.1):
                params = AugmentParams(
                    flip_x, not flip_x, rotations, (1.0, 1.0), (0.0, 0.0), 0.0, scale
                )
                out, moved = augment(image, boxes, params, rng)
                x0, y0, x1, y1 = np.round(moved[0]).astype(int)
                inside = out[0, x0 + 1 : x1 - 1, y0 + 1 : y1 - 1]
                assert inside.size and inside.max() < 0.3, (flip_x, rotations, scale)
                assert out[0].mean() > 0.9


def test_sampler_is_replayable_and_centres_positive_crops_on_cmbs():
    from cmbdet.stage1.data import SliceSampler, TrainingVolume

    rng = np.random.default_rng(1)
    images = (1 + 0.05 * rng.standard_normal((6, 2, 96, 80))).astype(np.float16)
    boxes = [np.zeros((0, 4), np.float32) for _ in range(6)]
    boxes[3] = np.array([[40, 30, 46, 36]], np.float32)
    images[3, :, 40:46, 30:36] = 0.1
    volume = TrainingVolume(images, boxes, np.ones(6, bool))
    sampler = SliceSampler([volume], crop=48, batch_size=8, positive_fraction=1.0, seed=3)
    first, targets = sampler(5)
    again, _ = sampler(5)
    torch.testing.assert_close(first, again)
    assert first.shape == (8, 2, 48, 48)
    assert targets.centre_mask.sum() == 8  # every positive crop keeps its CMB

    sampler = SliceSampler(
        [volume], crop=48, batch_size=8, positive_fraction=1.0, seed=3, slices_per_pass=3
    )
    groups, targets = sampler(5)
    assert groups.shape == (8, 6, 48, 48) and targets.heatmap.shape == (24, 1, 12, 12)
    # the CMB's slice sits anywhere in the run; its target is the one of the dark slice
    dark = groups[:, 0::2].amin(dim=(2, 3)) < 0.5  # (crop, slice of the run)
    assert dark.sum(dim=1).tolist() == [1] * 8 and len(set(dark.float().argmax(1).tolist())) > 1
    torch.testing.assert_close(targets.centre_mask.sum(dim=(1, 2, 3)), dark.flatten().float())
    # the same draws for a network that reads the first channel of each slice only
    sampler = SliceSampler(
        [volume],
        crop=48,
        batch_size=8,
        positive_fraction=1.0,
        seed=3,
        slices_per_pass=3,
        pass_channels=(0, 2, 4),
    )
    chosen, same_targets = sampler(5)
    torch.testing.assert_close(chosen, groups[:, 0::2])
    torch.testing.assert_close(same_targets.heatmap, targets.heatmap)


def test_boxes_from_labels_name_the_cmb_of_each_box():
    from cmbdet.stage1.data import MIN_BOX_MM, boxes_from_labels

    labels = np.zeros((20, 16, 6), np.int16)
    labels[4:8, 4:8, 1:4] = 3  # a CMB on three slices
    labels[12, 10, 3] = 5  # a small one: one voxel
    labels[2, 2, 5] = 9  # a mimic: not asked for
    boxes, ids = boxes_from_labels(labels, [3, 5], labels.shape, (40, 32, 6), pixel_mm=0.5)
    assert [len(b) for b in boxes] == [0, 1, 1, 2, 0, 0]
    assert [i.tolist() for i in ids] == [[], [3], [3], [3, 5], [], []]
    np.testing.assert_allclose(boxes[3][0], [8, 8, 16, 16])  # native 4..8 x2 on the model grid
    side = MIN_BOX_MM / 0.5  # its 2 x 2 model pixels grow to the 2 mm minimum (4 pixels)
    grown = np.array([25, 21, 25, 21]) + np.array([-1, -1, 1, 1]) * side / 2
    np.testing.assert_allclose(boxes[3][1], grown)


def test_positive_crops_per_cmb_draw_small_cmbs_as_often_as_large_ones():
    from cmbdet.stage1.data import SliceSampler, TrainingVolume

    rng = np.random.default_rng(2)
    images = (1 + 0.05 * rng.standard_normal((6, 2, 96, 80))).astype(np.float16)
    boxes = [np.zeros((0, 4), np.float32) for _ in range(6)]
    ids = [np.zeros(0, np.int64) for _ in range(6)]
    for z in range(1, 5):  # a large CMB on four slices, dark in channel 0
        boxes[z], ids[z] = np.array([[10, 10, 18, 18]], np.float32), np.array([1])
        images[z, 0, 10:18, 10:18] = 0.1
    boxes[5], ids[5] = np.array([[80, 64, 84, 68]], np.float32), np.array([2])  # small, channel 1
    images[5, 1, 80:84, 64:68] = 0.1
    volume = TrainingVolume(images, boxes, np.ones(6, bool), tuple(ids))
    assert volume.cmb_boxes() == [[(1, 0), (2, 0), (3, 0), (4, 0)], [(5, 0)]]
    shares = {}
    for unit in ("slice", "cmb"):
        sampler = SliceSampler(
            [volume], crop=48, batch_size=100, positive_fraction=1.0, seed=5, positives_per=unit
        )
        crops, targets = sampler(0)
        small = crops[:, 1].amin(dim=(1, 2)) < 0.5
        assert torch.all(small != (crops[:, 0].amin(dim=(1, 2)) < 0.5))  # one CMB per crop
        assert targets.centre_mask.sum() == 100
        shares[unit] = small.float().mean().item()
    assert 0.1 < shares["slice"] < 0.3 and 0.4 < shares["cmb"] < 0.6, shares
    # boxes of unknown CMBs count one each
    assert len(TrainingVolume(images, boxes, np.ones(6, bool)).cmb_boxes()) == 5
    with pytest.raises(ValueError, match="positives_per"):
        SliceSampler([volume], positives_per="lesion")


def test_positive_crops_per_cmb_centre_on_the_drawn_cmb_of_a_slice():
    from cmbdet.stage1.data import SliceSampler, TrainingVolume

    rng = np.random.default_rng(3)
    images = (1 + 0.05 * rng.standard_normal((4, 2, 96, 80))).astype(np.float16)
    boxes = [np.zeros((0, 4), np.float32) for _ in range(4)]
    ids = [np.zeros(0, np.int64) for _ in range(4)]
    boxes[1], ids[1] = np.array([[8, 8, 14, 14], [80, 64, 86, 70]], np.float32), np.array([4, 6])
    images[1, 0, 8:14, 8:14] = 0.1  # CMB 4, dark in channel 0
    images[1, 1, 80:86, 64:70] = 0.1  # CMB 6, far away, dark in channel 1
    volume = TrainingVolume(images, boxes, np.ones(4, bool), tuple(ids))
    for k in (1, 3):
        sampler = SliceSampler(
            [volume],
            crop=48,
            batch_size=40,
            positive_fraction=1.0,
            slices_per_pass=k,
            positives_per="cmb",
        )
        crops, targets = sampler(1)  # (40, 2 k, 48, 48)
        first = crops[:, 0::2].amin(dim=(1, 2, 3)) < 0.5
        second = crops[:, 1::2].amin(dim=(1, 2, 3)) < 0.5
        assert torch.all(first != second) and 10 < first.sum() < 30, k
        assert targets.centre_mask.sum() == 40
    with pytest.raises(ValueError, match="box_lesions"):
        TrainingVolume(images, boxes, np.ones(4, bool), tuple(ids[:3]))
    with pytest.raises(ValueError, match="box_lesions"):
        TrainingVolume(images, boxes, np.ones(4, bool), (ids[0], ids[1][:1], ids[2], ids[3]))


def test_stage1_model_folder_round_trip(tmp_path):
    from cmbdet.detect.model_spec import read_model_spec
    from cmbdet.io.model_folder import load_weights, save_weights, write_model_json
    from cmbdet.preprocess.config import PreprocessConfig
    from cmbdet.training.config import TrainConfig

    config = Stage1Config(
        widths=(4, 8, 8, 8), neck_width=8, slices_per_pass=2, pass_channels=(1, 2)
    )
    net = CandidateNet(config)
    stage1 = {
        "config": config.to_json(),
        "weights": save_weights(tmp_path, "stage1", net),
        "training": TrainConfig(steps=3).to_json(),
    }
    preprocessing = PreprocessConfig(target_in_plane_mm=0.7).to_json()
    write_model_json(tmp_path, {"preprocessing": preprocessing, "stage1": stage1})
    spec = read_model_spec(tmp_path)
    loaded = load_weights(tmp_path, spec.stage1_weights.to_json(), CandidateNet(spec.stage1))
    assert spec.preprocess.target_in_plane_mm == 0.7
    assert spec.info["stage1"]["training"]["steps"] == 3
    assert loaded.config == config  # the channels it reads included
    net.eval()
    images = torch.randn(1, 2, 32, 32)
    torch.testing.assert_close(net(images)["heatmap"], loaded(images)["heatmap"])
