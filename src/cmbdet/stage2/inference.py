"""Stage-2 inference in PyTorch: CMB probabilities of candidate patches, averaged over
test-time views (:func:`cmbdet.stage2.views.score_with`)."""

from __future__ import annotations

import numpy as np
import torch

from cmbdet.runtime import network_input
from cmbdet.stage2.model import PatchClassifier
from cmbdet.stage2.views import LogitsRunner, score_with


def torch_logits(net: PatchClassifier) -> LogitsRunner:
    """The logits runner of a PyTorch patch classifier, running where it is (device, dtype:
    see :func:`cmbdet.runtime.prepare_for_inference`), in eval mode without gradients."""
    net.eval()

    @torch.inference_mode()
    def run(patches: np.ndarray) -> np.ndarray:
        return net(network_input(torch.from_numpy(patches), net)).float().cpu().numpy()

    return run


def score_patches(
    net: PatchClassifier,
    patches: np.ndarray,
    batch_size: int = 128,
    views: int = 1,
) -> np.ndarray:
    """CMB probability (N,) of each patch (N, C, X, Y, Z) by ``net``, the logits averaged over
    the first ``views`` test-time views (see :func:`cmbdet.stage2.views.score_with`)."""
    return score_with(torch_logits(net), patches, views, batch_size)
