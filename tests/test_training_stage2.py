"""Stage-2 training: the loss and its gradients, balanced batches, a classifier that learns."""

from __future__ import annotations

import numpy as np
import torch

from cmbdet.stage2.config import Stage2Config
from cmbdet.stage2.inference import score_patches
from cmbdet.stage2.model import PatchClassifier
from cmbdet.training.config import TrainConfig
from cmbdet.training.loop import train
from cmbdet.training.stage2 import BalancedPatchSampler, PatchSet, classification_loss

SMALL = Stage2Config(widths=(8, 8, 16, 16, 16), dense=(8, 4))


def test_forward_shapes_and_every_parameter_gets_a_gradient():
    net = PatchClassifier(SMALL)
    patches = torch.randn(4, 2, 24, 24, 7)
    losses = classification_loss(net.train(), patches, torch.tensor([1.0, 0.0, 0.0, 1.0]))
    losses["loss"].backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == []
    assert net.eval()(patches).shape == (4,)


def _toy_patches(n: int, seed: int) -> PatchSet:
    """Positives: a dark ball on few slices; negatives: a dark tube through every slice."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(
        np.arange(16) - 7.5, np.arange(16) - 7.5, (np.arange(5) - 2) * 4, indexing="ij"
    )
    ball = np.sqrt(x**2 + y**2 + z**2) < 3.5
    tube = np.sqrt(x**2 + y**2) < 2.5
    labels = rng.integers(0, 2, n)
    patches = 1 + 0.05 * rng.standard_normal((n, 2, 16, 16, 5))
    for i, label in enumerate(labels):
        patches[i, :, (ball if label else tube)] = 0.2
    return PatchSet(patches.astype(np.float16), labels)


def test_training_separates_balls_from_tubes():
    torch.manual_seed(0)
    net = PatchClassifier(SMALL)
    data = _toy_patches(64, 0)
    train(
        net,
        BalancedPatchSampler(data, batch_size=16, positive_fraction=0.5, seed=1),
        TrainConfig(steps=100, learning_rate=3e-3, warmup_steps=5, log_every=100),
        loss=classification_loss,
    )
    test = _toy_patches(40, 1)
    scores = score_patches(net, test.patches)
    positives, negatives = scores[test.labels == 1], scores[test.labels == 0]
    assert positives.mean() > negatives.mean() + 0.3


def test_sampler_is_replayable_and_balanced():
    data = _toy_patches(50, 2)
    sampler = BalancedPatchSampler(data, batch_size=10, positive_fraction=0.3, seed=4)
    first, labels = sampler(3)
    again, _ = sampler(3)
    torch.testing.assert_close(first, again)
    assert labels.sum() == 3 and first.shape == (10, 2, 16, 16, 5)


def test_sampler_draws_hard_negatives_more_often():
    data = _toy_patches(40, 3)
    hard = np.zeros(len(data.labels), bool)
    negatives = np.flatnonzero(data.labels == 0)
    hard[negatives[: len(negatives) // 4]] = True  # a quarter of the negatives
    data = PatchSet(data.patches, data.labels, hard)
    assert data.hard_negatives.sum() == len(negatives) // 4
    drawn = {1.0: [], 3.0: []}
    for weight, shares in drawn.items():
        sampler = BalancedPatchSampler(data, batch_size=20, seed=1, hard_negative_weight=weight)
        for step in range(40):
            picked = sampler.draw(np.random.default_rng([1, step]))[sampler.n_positive :]
            assert np.all(data.labels[picked] == 0)
            shares.append(hard[picked].mean())
    # uniform: about a quarter; three times as often: 3 / (3 + 3) = a half
    assert abs(np.mean(drawn[1.0]) - 0.25) < 0.06 and abs(np.mean(drawn[3.0]) - 0.5) < 0.06
    merged = PatchSet.concatenate([data, PatchSet(data.patches[:2], data.labels[:2])])
    assert merged.hard_negatives.sum() == hard.sum()
    kept = data.subset(np.arange(len(data.labels)) % 2 == 0)
    assert len(kept.labels) == len(kept.patches) == len(kept.hard) == 20
    assert kept.hard_negatives.sum() == hard[::2].sum()


def test_sampler_crops_shift_the_centre_within_the_margin():
    patches = np.ones((1, 2, 12, 12, 5), np.float16)
    patches[0, :, 6, 6, 2] = 0.0  # a dark voxel at the centre of the enlarged patch
    data = PatchSet(np.repeat(patches, 4, axis=0), np.array([1, 1, 0, 0]))
    sampler = BalancedPatchSampler(data, batch_size=4, seed=0, crop=(8, 8, 3))
    centres = set()
    for step in range(30):
        batch, _ = sampler(step)
        assert batch.shape == (4, 2, 8, 8, 3)
        for patch in batch.numpy():
            dark = np.argwhere(patch[0] < 0.5)  # noise sd <= 0.04, so only the dark voxel
            assert len(dark) == 1
            centres.add(tuple(dark[0]))
    assert len(centres) > 5  # the crop moves (flips and turns move it too)
    # the voxel sits at 6 - start (start 0..4) in x and y, mirrored to 7 - that by flips
    assert all(1 <= x <= 6 and 1 <= y <= 6 and 0 <= z <= 2 for x, y, z in centres)
