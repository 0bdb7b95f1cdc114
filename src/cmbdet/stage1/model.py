"""The stage-1 network: a small anchor-free single-shot detector (YOLO-style, one pass, dense
predictions on a grid), sized for microbleeds.

CMBs are 2-10 mm, i.e. 3-15 pixels at the model's in-plane spacing, so the head predicts at
stride 4 from a feature pyramid (strides 4, 8, 16) merged top-down. Each output cell predicts
an objectness logit (a CenterNet-style Gaussian heatmap target), the sub-cell centre offset and
the box size. ``forward`` returns the raw head maps, which
:func:`cmbdet.stage1.decode.decode` turns into boxes; the training loss lives with the training
code (:func:`cmbdet.training.stage1.detection_loss`), so that detection never imports it.

The network may read ``slices_per_pass`` adjacent slice images at once (stacked as channels)
and predict the maps of each of them: one pass per group of slices instead of one per slice.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cmbdet.stage1.config import Stage1Config


def _conv(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    """3x3 conv, batch norm, SiLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.SiLU(inplace=True),
    )


class _Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(_conv(channels, channels), _conv(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _downsample_stage(in_channels: int, out_channels: int, blocks: int) -> nn.Sequential:
    """Stride-2 conv, then ``blocks`` residual blocks."""
    residuals = [_Residual(out_channels) for _ in range(blocks)]
    return nn.Sequential(_conv(in_channels, out_channels, stride=2), *residuals)


class CandidateNet(nn.Module):
    """Backbone (strides 2-16), top-down neck to stride 4, dense head.

    Input: (B, K C, X, Y), K = ``slices_per_pass`` adjacent slice images of C channels each,
    slice-major, or the ``pass_channels`` of them; X and Y multiples of 16 (see
    :mod:`cmbdet.stage1.layout`).
    Output: dict of ``heatmap`` (B, K, X/4, Y/4) logits, ``offset`` (B, 2 K, X/4, Y/4) in
    cells (x, y order of array axes 0, 1), ``size`` (B, 2 K, X/4, Y/4) log box size in pixels;
    channels slice-major (:func:`cmbdet.stage1.layout.per_slice` gives one image per slice,
    the order training targets follow).
    """

    def __init__(self, config: Stage1Config = Stage1Config()):
        super().__init__()
        self.config = config
        w1, w2, w3, w4 = config.widths
        k = config.slices_per_pass
        self.stem = _conv(len(config.pass_channels) or config.in_channels * k, w1, stride=2)
        blocks2, blocks3, blocks4 = config.residual_blocks
        self.stage2 = _downsample_stage(w1, w2, blocks2)
        self.stage3 = _downsample_stage(w2, w3, blocks3)
        self.stage4 = _downsample_stage(w3, w4, blocks4)
        n = config.neck_width
        self.lateral = nn.ModuleList([nn.Conv2d(w, n, 1) for w in (w2, w3, w4)])
        self.smooth = nn.Sequential(*[_conv(n, n) for _ in range(config.neck_convs)])
        self.heatmap = nn.Conv2d(n, k, 1)
        self.offset = nn.Conv2d(n, 2 * k, 1)
        self.size = nn.Conv2d(n, 2 * k, 1)
        # objectness starts at ~1%, so that training is not swamped by background at step 0
        nn.init.constant_(self.heatmap.bias, -4.6)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        c2 = self.stage2(self.stem(images))  # (B, w2, X/4, Y/4)
        c3 = self.stage3(c2)  # (B, w3, X/8, Y/8)
        c4 = self.stage4(c3)  # (B, w4, X/16, Y/16)
        p = self.lateral[2](c4)
        p = self.lateral[1](c3) + F.interpolate(p, size=c3.shape[-2:], mode="nearest")
        p = self.lateral[0](c2) + F.interpolate(p, size=c2.shape[-2:], mode="nearest")
        features = self.smooth(p)  # (B, n, X/4, Y/4)
        return {
            "heatmap": self.heatmap(features),
            "offset": self.offset(features),
            "size": self.size(features),
        }
