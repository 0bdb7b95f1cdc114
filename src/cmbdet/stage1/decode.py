"""Stage-1 postprocessing: dense head maps -> scored boxes per slice (outside ``forward``), in
NumPy, whichever backend ran the network."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit


@dataclass(frozen=True)
class SliceDetections:
    """Boxes found on one slice.

    Attributes:
        boxes: (N, 4) xyxy pixels of the model slice grid (x = array axis 0).
        scores: (N,) objectness in [0, 1], highest first.
    """

    boxes: np.ndarray
    scores: np.ndarray

    @property
    def centres(self) -> np.ndarray:
        """(N, 2) box centres in pixels."""
        return (self.boxes[:, :2] + self.boxes[:, 2:]) / 2

    @staticmethod
    def empty() -> SliceDetections:
        return SliceDetections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32))


def decode(
    outputs: dict[str, np.ndarray],
    stride: int,
    score_threshold: float = 0.05,
    max_detections: int = 100,
    valid_shape: tuple[int, int] | None = None,
) -> list[SliceDetections]:
    """Heatmap peaks (3x3 local maxima) above ``score_threshold`` -> boxes, per image.

    Args:
        outputs: eval-mode output of :class:`~cmbdet.stage1.model.CandidateNet` per slice
            (:func:`~cmbdet.stage1.model.per_slice`), as arrays: ``heatmap`` (B, 1, nx, ny)
            logits, ``offset`` and ``size`` (B, 2, nx, ny); torch tensors are read as arrays.
        stride: the network's output stride.
        score_threshold: minimum objectness.
        max_detections: per image, highest scores kept.
        valid_shape: (X, Y) of the unpadded image; peaks in the padding are dropped.
    """
    heatmap, offsets, sizes = (_array(outputs[k]) for k in ("heatmap", "offset", "size"))
    probability = expit(heatmap)  # (B, 1, nx, ny)
    probability = np.where(probability == _max_filter3(probability), probability, 0)
    batch, _, _, ny = probability.shape
    flat = probability.reshape(batch, -1)
    k = min(max_detections, flat.shape[1])
    top = np.argpartition(-flat, k - 1, axis=1)[:, :k]  # the k highest, unordered
    order = np.argsort(-np.take_along_axis(flat, top, axis=1), axis=1, kind="stable")
    indices = np.take_along_axis(top, order, axis=1)  # (B, k), highest first
    scores = np.take_along_axis(flat, indices, axis=1)
    ix, iy = indices // ny, indices % ny
    image = np.arange(batch)[:, None]
    offset = offsets[image, :, ix, iy]  # (B, k, 2)
    size = np.exp(np.clip(sizes[image, :, ix, iy], -2.0, 6.0))  # (B, k, 2)
    cx = (ix + offset[..., 0]) * stride
    cy = (iy + offset[..., 1]) * stride
    half_x, half_y = size[..., 0] / 2, size[..., 1] / 2
    boxes = np.stack([cx - half_x, cy - half_y, cx + half_x, cy + half_y], axis=2)  # (B, k, 4)
    keep = scores >= score_threshold
    if valid_shape is not None:
        keep &= (cx < valid_shape[0]) & (cy < valid_shape[1])
    return [
        SliceDetections(boxes[b][keep[b]].astype(np.float32), scores[b][keep[b]].astype(np.float32))
        for b in range(batch)
    ]


def _array(maps) -> np.ndarray:
    """float32 array of a head map (a torch tensor is detached and moved to the CPU)."""
    if hasattr(maps, "detach"):
        maps = maps.detach().float().cpu().numpy()
    return np.asarray(maps, dtype=np.float32)


def _max_filter3(maps: np.ndarray) -> np.ndarray:
    """The maximum over each 3 x 3 neighbourhood of (..., h, w) maps (nothing beyond the
    edges), as two 1D passes of elementwise maxima."""
    pad = [(0, 0)] * (maps.ndim - 2) + [(1, 1), (1, 1)]
    padded = np.pad(maps, pad, constant_values=-np.inf)
    rows = np.maximum(np.maximum(padded[..., :-2, :], padded[..., 1:-1, :]), padded[..., 2:, :])
    return np.maximum(np.maximum(rows[..., :-2], rows[..., 1:-1]), rows[..., 2:])
