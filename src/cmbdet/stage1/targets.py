"""Training targets for the stage-1 heatmap detector, from boxes on slices.

Boxes are ``(x0, y0, x1, y1)`` in pixels of the model slice grid, with x along array axis 0 and
y along axis 1 of a (X, Y) slice (the canonical RAS in-plane axes), corners at pixel edges: a
box that covers exactly pixel (i, j) is (i, j, i + 1, j + 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class HeatmapTargets:
    """Dense targets on the output grid, all (B, ., nx, ny) float tensors (x along array
    axis 0 of a slice, y along axis 1, as the boxes).

    Attributes:
        heatmap: (B, 1, nx, ny) Gaussian bumps peaking at 1 at each object's centre cell.
        centre_mask: (B, 1, nx, ny) 1 at centre cells.
        offset: (B, 2, nx, ny) sub-cell centre offset (x, y) in cells, at centre cells.
        log_size: (B, 2, nx, ny) log box size (x, y) in pixels, at centre cells.
    """

    heatmap: torch.Tensor
    centre_mask: torch.Tensor
    offset: torch.Tensor
    log_size: torch.Tensor

    def to(self, device) -> HeatmapTargets:
        return HeatmapTargets(
            *(t.to(device) for t in (self.heatmap, self.centre_mask, self.offset, self.log_size))
        )


def make_targets(
    boxes_per_image: list[np.ndarray], image_shape: tuple[int, int], stride: int
) -> HeatmapTargets:
    """Build targets for a batch.

    Args:
        boxes_per_image: one (N_b, 4) array of xyxy pixel boxes per image (N_b may be 0).
        image_shape: (X, Y) of the (padded) network input, pixels.
        stride: output stride.
    """
    nx, ny = image_shape[0] // stride, image_shape[1] // stride  # output cells along x, y
    batch = len(boxes_per_image)
    heatmap = np.zeros((batch, 1, nx, ny), np.float32)
    centre = np.zeros_like(heatmap)
    offset = np.zeros((batch, 2, nx, ny), np.float32)
    log_size = np.zeros_like(offset)
    for b, boxes in enumerate(boxes_per_image):
        for x0, y0, x1, y1 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
            cx, cy = (x0 + x1) / 2 / stride, (y0 + y1) / 2 / stride  # in cells
            ix, iy = int(np.floor(cx)), int(np.floor(cy))
            if not (0 <= ix < nx and 0 <= iy < ny):
                continue
            size_x, size_y = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
            sigma = max(0.5, min(size_x, size_y) / stride / 3.0)
            _draw_gaussian(heatmap[b, 0], ix, iy, sigma)
            centre[b, 0, ix, iy] = 1.0
            offset[b, :, ix, iy] = (cx - ix, cy - iy)
            log_size[b, :, ix, iy] = (np.log(size_x), np.log(size_y))
    return HeatmapTargets(*(torch.from_numpy(a) for a in (heatmap, centre, offset, log_size)))


def _draw_gaussian(plane: np.ndarray, ix: int, iy: int, sigma: float) -> None:
    """Max-combine a Gaussian of peak 1 centred on cell (ix, iy) into ``plane`` (nx, ny)."""
    radius = int(np.ceil(3 * sigma))
    x0, x1 = max(0, ix - radius), min(plane.shape[0], ix + radius + 1)
    y0, y1 = max(0, iy - radius), min(plane.shape[1], iy + radius + 1)
    xs = np.arange(x0, x1)[:, None] - ix
    ys = np.arange(y0, y1)[None, :] - iy
    bump = np.exp(-(xs**2 + ys**2) / (2 * sigma**2))
    np.maximum(plane[x0:x1, y0:y1], bump, out=plane[x0:x1, y0:y1])
