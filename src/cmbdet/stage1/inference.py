"""Run the stage-1 network over a volume's slices and link the boxes into 3D candidates."""

from __future__ import annotations

import numpy as np
import torch

from cmbdet.modelio import network_input
from cmbdet.stage1.decode import SliceDetections, decode
from cmbdet.stage1.link import LinkedCandidate, link_slices
from cmbdet.stage1.model import CandidateNet, pad_to_multiple

BRAIN_MARGIN = 8
"""Pixels of context kept around the brain's in-plane bounding box."""


@torch.inference_mode()
def detect_slices(
    net: CandidateNet,
    images: np.ndarray,
    brain: np.ndarray | None = None,
    score_threshold: float = 0.05,
    batch_size: int = 8,
) -> list[SliceDetections]:
    """Boxes on every slice, the network running where it is (device, dtype: see
    :func:`cmbdet.modelio.prepare_for_inference`).

    Slices without brain are skipped, and each batch of neighbouring slices is cropped to the
    in-plane bounding box of its brain (plus a margin): the brain fills a third less of the
    slices at the top and bottom of the head.

    Args:
        net: the stage-1 network.
        images: (Z, C, X, Y) slice images on the model grid.
        brain: (X, Y, Z) brain mask on the model grid, or None for the whole slice.
        score_threshold: lowest box score kept.
        batch_size: slices per forward pass.

    Returns:
        One :class:`SliceDetections` per slice, boxes in model-grid pixels of the full slice.
    """
    net.eval()
    depth = images.shape[0]
    with_brain = brain is not None and brain.any()
    todo = np.flatnonzero(brain.any(axis=(0, 1))) if with_brain else np.arange(depth)
    results = [SliceDetections.empty() for _ in range(depth)]
    for start in range(0, len(todo), batch_size):
        chosen = todo[start : start + batch_size]
        x0, x1, y0, y1 = _crop_box(brain[:, :, chosen] if with_brain else None, images.shape[2:])
        outputs = net(network_input(pad_to_multiple(_crop(images, chosen, x0, x1, y0, y1)), net))
        outputs = {k: v.float().cpu() for k, v in outputs.items()}
        found = decode(outputs, net.config.stride, score_threshold, valid_shape=(x1 - x0, y1 - y0))
        shift = np.array([x0, y0, x0, y0], np.float32)
        for z, detections in zip(chosen, found, strict=True):
            results[z] = SliceDetections(detections.boxes + shift, detections.scores)
    return results


def _crop(images: np.ndarray, chosen: np.ndarray, x0: int, x1: int, y0: int, y1: int):
    """images[chosen, :, x0:x1, y0:y1] as a tensor: a view (no copy) when ``chosen`` is a run
    of consecutive slices, as it nearly always is."""
    if np.all(np.diff(chosen) == 1):
        return torch.from_numpy(images[chosen[0] : chosen[-1] + 1, :, x0:x1, y0:y1])
    return torch.from_numpy(images[chosen, :, x0:x1, y0:y1])


def _crop_box(brain: np.ndarray | None, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """(x0, x1, y0, y1): the in-plane bounding box of ``brain`` (X, Y, n) widened by
    :data:`BRAIN_MARGIN` within ``shape``; the whole slice for None."""
    nx, ny = shape
    if brain is None:
        return 0, nx, 0, ny
    x_any, y_any = brain.any(axis=(1, 2)), brain.any(axis=(0, 2))
    x0 = max(0, int(np.argmax(x_any)) - BRAIN_MARGIN)
    x1 = min(nx, int(nx - np.argmax(x_any[::-1])) + BRAIN_MARGIN)
    y0 = max(0, int(np.argmax(y_any)) - BRAIN_MARGIN)
    y1 = min(ny, int(ny - np.argmax(y_any[::-1])) + BRAIN_MARGIN)
    return x0, x1, y0, y1


def detect_candidates(
    net: CandidateNet,
    images: np.ndarray,
    pixel_mm: float,
    brain: np.ndarray | None = None,
    score_threshold: float = 0.05,
) -> list[LinkedCandidate]:
    """Slices -> boxes -> 3D candidates (model grid), highest score first."""
    detections = detect_slices(net, images, brain, score_threshold)
    return link_slices(detections, pixel_mm)
