"""Stage-1 training: the loss, its gradients, and a network that learns a blob."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cmbdet.stage1.decode import decode
from cmbdet.stage1.layout import per_slice
from cmbdet.stage1.targets import make_targets
from cmbdet.training.stage1 import detection_loss


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


@pytest.mark.parametrize("slices_per_pass", [1, 2])
def test_training_returns_losses_and_every_parameter_gets_a_gradient(slices_per_pass, small_stage1):
    net = small_stage1(slices_per_pass)
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
def test_loss_decreases_and_the_blob_is_found(slices_per_pass, small_stage1):
    net = small_stage1(slices_per_pass)
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
