"""The stage-2 classifier: a small 3D CNN after Al-masni et al. (five 3x3x3 convolutions, two
poolings, dense 32 -> 8 -> 1), with batch norm, in-plane-only pooling (the patch has few
slices) and global average pooling. The default widths are half the paper's 32-64-64-128-128:
on 2 CPU cores a training step is ~8x faster, and our patches are smaller.

``forward`` returns the CMB logit per patch (N,); the training loss lives with the training
code (:func:`cmbdet.training.stage2.classification_loss`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cmbdet.stage2.config import Stage2Config


def _conv3d(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm3d(out_channels),
        nn.ReLU(inplace=True),
    )


class PatchClassifier(nn.Module):
    """(N, C, X, Y, Z) patches -> (N,) CMB logits."""

    def __init__(self, config: Stage2Config = Stage2Config()):
        super().__init__()
        self.config = config
        w = config.widths
        in_plane_pool = nn.MaxPool3d(kernel_size=(2, 2, 1))
        self.features = nn.Sequential(
            _conv3d(config.in_channels, w[0]),
            _conv3d(w[0], w[1]),
            in_plane_pool,
            _conv3d(w[1], w[2]),
            _conv3d(w[2], w[3]),
            nn.MaxPool3d(kernel_size=(2, 2, 1)),
            _conv3d(w[3], w[4]),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(config.dropout),
            nn.Linear(w[4], config.dense[0]),
            nn.ReLU(inplace=True),
            nn.Linear(config.dense[0], config.dense[1]),
            nn.ReLU(inplace=True),
            nn.Linear(config.dense[1], 1),
        )

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        features = self.features(patches)  # (N, w4, X/4, Y/4, Z)
        pooled = F.adaptive_avg_pool3d(features, 1)  # (N, w4, 1, 1, 1)
        return self.head(pooled)[:, 0]  # (N,) logits
