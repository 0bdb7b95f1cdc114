"""Stage-1 training data: augmentation, boxes from labels, the slice sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch


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


def test_boxes_follow_a_cmb_onto_resampled_model_slices():
    from cmbdet.stage1.data import boxes_from_labels, slice_overlaps

    labels = np.zeros((20, 16, 24), np.int16)  # 1 mm slices -> 12 model slices of 2 mm
    labels[4:8, 4:8, 10:13] = 3  # native slices 10-12 lie in model slices 5 and 6
    labels[12, 10, 17] = 5  # one native slice: model slice 8 only
    boxes, ids = boxes_from_labels(labels, [3, 5], labels.shape, (20, 16, 12), pixel_mm=1.0)
    assert [k for k, i in enumerate(ids) if 3 in i.tolist()] == [5, 6]
    assert [k for k, i in enumerate(ids) if 5 in i.tolist()] == [8]
    assert sum(len(b) for b in boxes) == 3
    # 3 mm -> 2 mm: native slice 4 spans model slices 6 (wholly) and 7 (half)
    assert slice_overlaps(4, 1.5, 12) == {6: 1.0, 7: 0.5}
    assert slice_overlaps(3, 1.0, 12) == {3: 1.0}
    assert slice_overlaps(11, 0.5, 12) == {5: 0.5}
    assert slice_overlaps(7, 1.5, 11) == {10: 0.5}  # the grid's last slice: half of it


@pytest.mark.parametrize("slices, spacing_mm", [(130, 0.5), (160, 0.6), (120, 0.8), (101, 1.0)])
def test_every_cmb_keeps_a_box_on_thin_or_odd_slices(slices, spacing_mm):
    from cmbdet.preprocess.resample import ResampleMap
    from cmbdet.stage1.data import boxes_from_labels

    grid = ResampleMap.for_target((12, 12, slices), (1.0, 1.0, spacing_mm), 1.0, 2.0)
    labels = np.zeros((12, 12, slices), np.int16)
    for z in range(slices):  # a one-slice CMB on every native slice
        labels[z % 12, (z // 12) % 12, z] = z + 1
    ids = list(range(1, slices + 1))
    _, box_ids = boxes_from_labels(labels, ids, labels.shape, grid.model_shape, pixel_mm=1.0)
    found = {int(i) for slice_ids in box_ids for i in slice_ids}
    assert found == set(ids)
    # each on the model slice that holds its centre, or a neighbour where it straddles
    for k, slice_ids in enumerate(box_ids):
        for i in slice_ids:
            centre = grid.native_to_model(np.array([0.0, 0.0, int(i) - 1]))[2]
            assert abs(k - centre) <= 1.0


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


def test_sampler_varies_the_look_of_crops_replayably():
    from cmbdet.appearance import AppearanceRanges
    from cmbdet.stage1.data import SliceSampler, TrainingVolume

    rng = np.random.default_rng(5)
    images = (1 + 0.05 * rng.standard_normal((6, 3, 64, 64))).astype(np.float16)
    boxes = [np.zeros((0, 4), np.float32) for _ in range(6)]
    boxes[2] = np.array([[20, 20, 26, 26]], np.float32)
    images[2, :, 20:26, 20:26] = 0.2
    volume = TrainingVolume(images, boxes, np.ones(6, bool))
    options = dict(crop=32, batch_size=6, seed=2, slices_per_pass=2)
    plain = SliceSampler([volume], **options)
    varied = SliceSampler([volume], appearance=AppearanceRanges(), **options)
    batch, targets = varied(3)
    again, same_targets = varied(3)
    torch.testing.assert_close(batch, again)
    torch.testing.assert_close(targets.heatmap, same_targets.heatmap)
    assert not torch.allclose(batch, plain(3)[0])
    phase = batch[:, [1, 4]]  # channel 1 of each of the two slices of a pass
    assert phase.min() >= 0 and phase.max() <= 2
