"""Stage-2 inference: CMB probabilities of candidate patches, averaged over test-time views."""

from __future__ import annotations

import numpy as np
import torch

from cmbdet.runtime import network_input
from cmbdet.stage2.model import PatchClassifier
from cmbdet.stage2.views import VIEWS


def _view(patches: torch.Tensor, view: tuple[int, bool, bool]) -> torch.Tensor:
    """One symmetry of (N, C, X, Y, Z) patches (square in-plane; see
    :func:`cmbdet.stage2.views.view_of`)."""
    turns, flip_x, flip_slices = view
    if flip_x:
        patches = patches.flip(2)
    if flip_slices:
        patches = patches.flip(4)
    return torch.rot90(patches, turns, dims=(2, 3)) if turns else patches


@torch.inference_mode()
def score_patches(
    net: PatchClassifier,
    patches: np.ndarray,
    batch_size: int = 128,
    views: int = 1,
) -> np.ndarray:
    """CMB probability (N,) of each patch (N, C, X, Y, Z), the network running where it is
    (device, dtype: see :func:`cmbdet.runtime.prepare_for_inference`).

    ``views`` > 1 averages the logits over the first ``views`` symmetries of :data:`VIEWS`
    (test-time augmentation; the model's threshold must have been chosen with the same count).
    """
    if not 1 <= views <= len(VIEWS):
        raise ValueError(f"views must be 1..{len(VIEWS)}, got {views}")
    net.eval()
    scores = []
    for i in range(0, len(patches), batch_size):
        # to the network's device and dtype once; each view only needs its layout restored
        batch = network_input(torch.from_numpy(patches[i : i + batch_size]), net)
        views_logits = [net(network_input(_view(batch, view), net)) for view in VIEWS[:views]]
        logits = torch.stack(views_logits).float().mean(0)
        scores.append(torch.sigmoid(logits).cpu())
    return torch.cat(scores).numpy() if scores else np.zeros(0, np.float32)
