"""The shared training loop: it learns, resumes exactly, and refuses to diverge silently."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cmbdet.training.config import TrainConfig
from cmbdet.training.loop import learning_rate_at, train


class _Regressor(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 1)

    def forward(self, inputs, targets):
        return {"loss": ((self.linear(inputs)[:, 0] - targets) ** 2).mean()}


def _batches(step: int):
    generator = torch.Generator().manual_seed(step)
    inputs = torch.randn(16, 3, generator=generator)
    return inputs, inputs @ torch.tensor([1.0, -2.0, 0.5]) + 0.3


CONFIG = TrainConfig(steps=80, learning_rate=0.1, warmup_steps=5, checkpoint_every=10, log_every=20)


def test_training_fits_a_linear_map():
    torch.manual_seed(0)
    model = _Regressor()
    seen = []
    final = train(model, _batches, CONFIG, hooks=[lambda step, losses: seen.append(step)])
    assert seen == [20, 40, 60, 80]
    assert final["loss"] < 0.05
    np.testing.assert_allclose(model.linear.weight.detach().numpy()[0], [1, -2, 0.5], atol=0.15)


def test_resumed_training_equals_uninterrupted(tmp_path):
    torch.manual_seed(0)
    straight = _Regressor()
    train(straight, _batches, CONFIG)

    def crash_at_step_40(step, losses):
        if step >= 40:
            raise KeyboardInterrupt  # step 40's checkpoint is never written; 30's is

    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        train(_Regressor(), _batches, CONFIG, checkpoint_dir=tmp_path, hooks=[crash_at_step_40])
    assert (tmp_path / "checkpoint.safetensors").exists()
    resumed = _Regressor()  # fresh weights: everything must come from the checkpoint
    train(resumed, _batches, CONFIG, checkpoint_dir=tmp_path)
    for a, b in zip(straight.parameters(), resumed.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_non_finite_losses_stop_training():
    def bad_batches(step):
        inputs, targets = _batches(step)
        return inputs, targets * float("nan")

    with pytest.raises(FloatingPointError):
        train(_Regressor(), bad_batches, CONFIG)


def test_learning_rate_warms_up_then_decays():
    rates = [learning_rate_at(step, CONFIG) for step in range(CONFIG.steps)]
    assert rates[0] < rates[4] == pytest.approx(CONFIG.learning_rate)
    assert rates[-1] < 0.1 * CONFIG.learning_rate
