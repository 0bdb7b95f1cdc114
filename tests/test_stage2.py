"""Stage 2: patches, the 3D classifier, its training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cmbdet.stage2.model import PatchClassifier, Stage2Config
from cmbdet.stage2.patches import PatchConfig, extract_patches
from cmbdet.stage2.train import BalancedPatchSampler, PatchSet, score_patches
from cmbdet.training import TrainConfig, train

SMALL = Stage2Config(widths=(8, 8, 16, 16, 16), dense=(8, 4))


def test_patches_are_centred_and_padded_at_the_border():
    swi = np.ones((30, 30, 10), np.float32)
    swi[10, 12, 4] = 0.0
    phase = np.zeros_like(swi)
    config = PatchConfig(size=(8, 8, 3))
    patches = extract_patches(swi, phase, np.array([[10, 12, 4], [0, 0, 0]]), config)
    assert patches.shape == (2, 2, 8, 8, 3)
    assert patches[0, 0, 4, 4, 1] == 0.0 and patches[0, 0].sum() == 8 * 8 * 3 - 1
    assert np.all(patches[1] == 1.0)  # outside the volume: tissue level in both channels


def test_forward_shapes_and_every_parameter_gets_a_gradient():
    net = PatchClassifier(SMALL)
    patches = torch.randn(4, 2, 24, 24, 7)
    losses = net.train()(patches, torch.tensor([1.0, 0.0, 0.0, 1.0]))
    losses["loss"].backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == []
    assert net.eval()(patches).shape == (4,)
    with pytest.raises(ValueError):
        net.train()(patches)


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


def test_config_round_trip():
    assert Stage2Config.from_json(SMALL.to_json()) == SMALL
