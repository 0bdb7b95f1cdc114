"""The stage-1 network: a small anchor-free single-shot detector (YOLO-style, one pass, dense
predictions on a grid), sized for microbleeds.

CMBs are 2-10 mm, i.e. 3-15 pixels at the model's in-plane spacing, so the head predicts at
stride 4 from a feature pyramid (strides 4, 8, 16) merged top-down. Each output cell predicts
an objectness logit (a CenterNet-style Gaussian heatmap target), the sub-cell centre offset and
the box size. In training mode ``forward`` returns the loss dict; in eval mode the raw head
maps, which :func:`cmbdet.stage1.decode.decode` turns into boxes.

The network may read ``slices_per_pass`` adjacent slice images at once (stacked as channels)
and predict the maps of each of them: one pass per group of slices instead of one per slice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cmbdet.config import JsonConfig, check_each, check_range
from cmbdet.stage1.targets import HeatmapTargets

Stacks = TypeVar("Stacks", np.ndarray, torch.Tensor)


@dataclass(frozen=True)
class Stage1Config(JsonConfig):
    """Architecture of the stage-1 network (stored in model.json)."""

    in_channels: int = 2  # of one slice image: averaged SWI, complemented phase, context
    slices_per_pass: int = 1  # adjacent slice images read, and predicted, in one pass
    # the channels of the K stacked slice images the network reads (indices into K C; see
    # PreprocessConfig.distinct_channels); () reads them all
    pass_channels: tuple[int, ...] = ()
    widths: tuple[int, int, int, int] = (16, 32, 64, 96)  # strides 2, 4, 8, 16
    neck_width: int = 48
    neck_convs: int = 2  # 3x3 convs after the top-down merge, at stride 4
    residual_blocks: tuple[int, int, int] = (1, 1, 1)  # after the downsampling of strides 4-16
    stride: int = 4  # output grid stride, pixels
    focal_alpha: float = 2.0  # CenterNet focal loss exponents
    focal_beta: float = 4.0
    size_weight: float = 0.1
    offset_weight: float = 1.0

    def __post_init__(self):
        check_range("in_channels", self.in_channels, 1, 64)
        check_range("slices_per_pass", self.slices_per_pass, 1, 16)
        check_each("widths", self.widths, 1, 1024)
        check_range("neck_width", self.neck_width, 1, 1024)
        check_range("neck_convs", self.neck_convs, 0, 16)
        check_each("residual_blocks", self.residual_blocks, 0, 16)
        if self.stride != 4:  # two stride-2 stages before the head: fixed by the layers
            raise ValueError(f"stride is {self.stride!r}; this network predicts at stride 4")
        for name in ("focal_alpha", "focal_beta", "size_weight", "offset_weight"):
            check_range(name, getattr(self, name), 0, 1000)
        chosen = tuple(int(c) for c in self.pass_channels)
        stacked = self.in_channels * self.slices_per_pass
        if list(chosen) != sorted(set(chosen)) or any(not 0 <= c < stacked for c in chosen):
            raise ValueError(f"pass_channels {chosen}: not increasing indices below {stacked}")
        object.__setattr__(self, "pass_channels", chosen)


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

    Input: (B, K C, H, W), K = ``slices_per_pass`` adjacent slice images of C channels each,
    slice-major, or the ``pass_channels`` of them (:func:`pass_input`); H and W multiples of
    16 (pad with :func:`pad_to_multiple`).
    Eval output: dict of ``heatmap`` (B, K, H/4, W/4) logits, ``offset`` (B, 2 K, H/4, W/4) in
    cells (x, y order of array axes 0, 1), ``size`` (B, 2 K, H/4, W/4) log box size in pixels;
    channels slice-major (:func:`per_slice` gives one image per slice).
    In training mode the targets are those of the B K slices, in the order of
    :func:`per_slice`.
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
        # objectness starts at ~1% so the focal loss is not swamped by background at step 0
        nn.init.constant_(self.heatmap.bias, -4.6)

    def forward(
        self, images: torch.Tensor, targets: HeatmapTargets | None = None
    ) -> dict[str, torch.Tensor]:
        c2 = self.stage2(self.stem(images))  # (B, w2, H/4, W/4)
        c3 = self.stage3(c2)  # (B, w3, H/8, W/8)
        c4 = self.stage4(c3)  # (B, w4, H/16, W/16)
        p = self.lateral[2](c4)
        p = self.lateral[1](c3) + F.interpolate(p, size=c3.shape[-2:], mode="nearest")
        p = self.lateral[0](c2) + F.interpolate(p, size=c2.shape[-2:], mode="nearest")
        features = self.smooth(p)  # (B, n, H/4, W/4)
        outputs = {
            "heatmap": self.heatmap(features),
            "offset": self.offset(features),
            "size": self.size(features),
        }
        if self.training:
            if targets is None:
                raise ValueError("training mode needs targets")
            return self.loss(per_slice(outputs, self.config.slices_per_pass), targets)
        return outputs

    def loss(self, outputs: dict[str, torch.Tensor], targets: HeatmapTargets) -> dict:
        """Focal loss on the heatmap, L1 on offset and log size at object centres."""
        config = self.config
        heatmap = outputs["heatmap"].float()
        focal = _focal_loss(heatmap, targets.heatmap, config.focal_alpha, config.focal_beta)
        positives = targets.centre_mask.float()  # (B, 1, h, w)
        count = positives.sum().clamp(min=1.0)
        offset = (torch.abs(outputs["offset"] - targets.offset) * positives).sum() / count
        size = (torch.abs(outputs["size"] - targets.log_size) * positives).sum() / count
        total = focal + config.offset_weight * offset + config.size_weight * size
        return {"loss": total, "focal": focal, "offset": offset, "size": size}


def pass_input(stacks: Stacks, pass_channels: tuple[int, ...]) -> Stacks:
    """(B, K C, H, W) stacked slice images (NumPy or torch) -> the channels a network with
    these ``pass_channels`` reads (a copy), or the stacks themselves where it reads them all."""
    return stacks[:, list(pass_channels)] if pass_channels else stacks


def per_slice(outputs: dict[str, torch.Tensor], slices_per_pass: int) -> dict[str, torch.Tensor]:
    """Head maps of B passes over K slices each -> the maps of B K single slices.

    ``heatmap`` (B, K, h, w) -> (B K, 1, h, w); ``offset`` and ``size`` (B, 2 K, h, w) ->
    (B K, 2, h, w); slice j of pass b becomes image b K + j (views where the layout allows).
    """
    if slices_per_pass == 1:
        return outputs
    return {
        name: maps.reshape(-1, maps.shape[1] // slices_per_pass, *maps.shape[2:])
        for name, maps in outputs.items()
    }


def _focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float, beta: float):
    """CenterNet's penalty-reduced focal loss, normalised by the number of objects."""
    probability = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    positive = target.eq(1.0).float()
    negative = 1.0 - positive
    positive_loss = -torch.log(probability) * (1 - probability) ** alpha * positive
    negative_loss = (
        -torch.log(1 - probability) * probability**alpha * (1 - target) ** beta * negative
    )
    count = positive.sum().clamp(min=1.0)
    return (positive_loss.sum() + negative_loss.sum()) / count


def pad_to_multiple(images: torch.Tensor, multiple: int = 16) -> torch.Tensor:
    """Zero-pad (B, C, H, W) at the high end of H and W to multiples of ``multiple``."""
    height, width = images.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    return F.pad(images, (0, pad_w, 0, pad_h)) if pad_h or pad_w else images
