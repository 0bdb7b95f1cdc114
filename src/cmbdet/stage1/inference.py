"""Run the stage-1 network over a volume's slices and link the boxes into 3D candidates."""

from __future__ import annotations

import numpy as np
import torch

from cmbdet.stage1.decode import SliceDetections, decode
from cmbdet.stage1.link import LinkedCandidate, link_slices
from cmbdet.stage1.model import CandidateNet, pad_to_multiple


@torch.inference_mode()
def detect_slices(
    net: CandidateNet,
    images: np.ndarray,
    brain: np.ndarray | None = None,
    score_threshold: float = 0.05,
    batch_size: int = 8,
    device: torch.device | str = "cpu",
) -> list[SliceDetections]:
    """Boxes on every slice.

    Only the in-plane bounding box of the brain (plus a margin) is processed, and slices
    without brain are skipped.

    Args:
        net: the stage-1 network.
        images: (Z, C, X, Y) slice images on the model grid.
        brain: (X, Y, Z) brain mask on the model grid, or None for the whole slice.
        score_threshold: lowest box score kept.
        batch_size: slices per forward pass.

    Returns:
        One :class:`SliceDetections` per slice, boxes in model-grid pixels of the full slice.
    """
    net.eval().to(device)
    depth, _, nx, ny = images.shape
    if brain is not None and brain.any():
        x_any, y_any = brain.any(axis=(1, 2)), brain.any(axis=(0, 2))
        margin = 8
        x0 = max(0, int(np.argmax(x_any)) - margin)
        x1 = min(nx, int(nx - np.argmax(x_any[::-1])) + margin)
        y0 = max(0, int(np.argmax(y_any)) - margin)
        y1 = min(ny, int(ny - np.argmax(y_any[::-1])) + margin)
        slices_with_brain = brain.any(axis=(0, 1))
    else:
        x0, x1, y0, y1 = 0, nx, 0, ny
        slices_with_brain = np.ones(depth, dtype=bool)
    results = [SliceDetections.empty() for _ in range(depth)]
    todo = np.flatnonzero(slices_with_brain)
    shift = np.array([x0, y0, x0, y0], np.float32)
    for start in range(0, len(todo), batch_size):
        chosen = todo[start : start + batch_size]
        batch = torch.from_numpy(
            np.ascontiguousarray(images[chosen, :, x0:x1, y0:y1], dtype=np.float32)
        )
        outputs = net(pad_to_multiple(batch).to(device))
        outputs = {k: v.cpu() for k, v in outputs.items()}
        found = decode(outputs, net.config.stride, score_threshold, valid_shape=(x1 - x0, y1 - y0))
        for z, detections in zip(chosen, found, strict=True):
            results[z] = SliceDetections(detections.boxes + shift, detections.scores)
    return results


def detect_candidates(
    net: CandidateNet,
    images: np.ndarray,
    pixel_mm: float,
    brain: np.ndarray | None = None,
    score_threshold: float = 0.05,
    device: torch.device | str = "cpu",
) -> list[LinkedCandidate]:
    """Slices -> boxes -> 3D candidates (model grid), highest score first."""
    detections = detect_slices(net, images, brain, score_threshold, device=device)
    return link_slices(detections, pixel_mm)
