"""Run the stage-1 network over a volume's slices and link the boxes into 3D candidates.

The network runs through a *pass runner*: (n, C, x, y) float32 stacks of slice images (the
channels the network reads, zero-padded to multiples of 16) -> its head maps as float32 arrays.
:func:`torch_pass` makes one from a PyTorch network; the ONNX backend makes another
(:mod:`cmbdet.detect.networks`). Cropping, batching, decoding and linking are NumPy and shared.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cmbdet.stage1.config import Stage1Config
from cmbdet.stage1.decode import SliceDetections, decode
from cmbdet.stage1.layout import pad_to_multiple, pass_input, per_slice
from cmbdet.stage1.link import LinkedCandidate, link_slices

PassRunner = Callable[[np.ndarray], dict[str, np.ndarray]]
"""(n, C, x, y) float32 network input -> ``heatmap``, ``offset``, ``size`` float32 maps."""


BRAIN_MARGIN = 8
"""Pixels of context kept around the brain's in-plane bounding box."""

CROP_MULTIPLE = 16
"""Crops grow to multiples of this many pixels (what the network's strides need) into the
image, so that the network sees real context where it would otherwise see zero padding.
(Multiples of 32 or 64, for fewer distinct input shapes, measured no faster.)"""


def detect_slices(
    net,
    images: np.ndarray,
    brain: np.ndarray | None = None,
    score_threshold: float = 0.05,
    batch_size: int = 8,
) -> list[SliceDetections]:
    """Boxes on every slice by a PyTorch ``CandidateNet`` where it is (device, dtype: see
    :func:`cmbdet.runtime.prepare_for_inference`); see :func:`detect_slices_with`."""
    return detect_slices_with(
        torch_pass(net), net.config, images, brain, score_threshold, batch_size
    )


def detect_slices_with(
    run_pass: PassRunner,
    config: Stage1Config,
    images: np.ndarray,
    brain: np.ndarray | None = None,
    score_threshold: float = 0.05,
    batch_size: int = 8,
) -> list[SliceDetections]:
    """Boxes on every slice, the network of ``config`` run by ``run_pass``.

    Slices without brain are skipped, and each batch of slices is cropped to the
    in-plane bounding box of its brain plus a margin (the brain fills a third less of the
    slices at the top and bottom of the head), grown to a multiple of :data:`CROP_MULTIPLE`.
    A network that reads K > 1 slices per pass gets groups of K adjacent slices from the first
    to the last slice with brain (see :func:`slice_groups`).

    Args:
        run_pass: runs the network on one batch (see :data:`PassRunner`).
        config: the network's configuration (slices per pass, channels read, stride).
        images: (Z', C, X', Y') slice images on the model grid, an array or a
            :class:`~cmbdet.preprocess.pipeline.SliceStack`.
        brain: (X', Y', Z') brain mask on the model grid, or None for the whole slice.
        score_threshold: lowest box score kept.
        batch_size: passes (groups of slices) per forward call.

    Returns:
        One :class:`SliceDetections` per slice, boxes in model-grid pixels of the full slice.
    """
    depth, channels, nx, ny = images.shape
    if brain is not None and brain.any():
        brain_rows, brain_columns = brain.any(axis=1), brain.any(axis=0)  # (X, Z), (Y, Z)
        todo = np.flatnonzero(brain_rows.any(axis=0))
    else:  # the whole of every slice
        brain_rows, brain_columns = np.ones((nx, depth), bool), np.ones((ny, depth), bool)
        todo = np.arange(depth)
    slices_per_pass = config.slices_per_pass
    groups = slice_groups(todo, depth, slices_per_pass)
    results = [SliceDetections.empty() for _ in range(depth)]
    for start in range(0, len(groups), batch_size):
        chosen = groups[start : start + batch_size].ravel()  # slices, group by group
        x0, x1 = _crop_range(brain_rows[:, chosen].any(axis=1))
        y0, y1 = _crop_range(brain_columns[:, chosen].any(axis=1))
        crop = _crop(images, chosen, x0, x1, y0, y1)  # (n K, C, x, y)
        stacks = crop.reshape(-1, slices_per_pass * channels, *crop.shape[2:])  # (n, K C, x, y)
        stacks = pad_to_multiple(pass_input(stacks, config.pass_channels))
        outputs = per_slice(run_pass(stacks), slices_per_pass)
        found = decode(outputs, config.stride, score_threshold, valid_shape=(x1 - x0, y1 - y0))
        shift = np.array([x0, y0, x0, y0], np.float32)
        for z, detections in zip(chosen, found, strict=True):
            results[z] = SliceDetections(detections.boxes + shift, detections.scores)
    return results


def torch_pass(net) -> PassRunner:
    """The pass runner of a PyTorch ``CandidateNet`` (in eval mode, no gradients)."""
    import torch

    from cmbdet.runtime import network_input

    net.eval()

    @torch.inference_mode()
    def run(stacks: np.ndarray) -> dict[str, np.ndarray]:
        outputs = net(network_input(torch.from_numpy(stacks), net))
        return {name: maps.float().cpu().numpy() for name, maps in outputs.items()}

    return run


def slice_groups(todo: np.ndarray, depth: int, slices_per_pass: int) -> np.ndarray:
    """The slices of each pass: (P, K) indices into a stack of ``depth`` slices.

    One slice per pass: the ``todo`` slices. K > 1: runs of K adjacent slices from the first
    to the last of ``todo``, the last run moved back to end at the last slice of the stack
    (it then repeats slices of the run before; the later pass's boxes are kept). A stack of
    fewer than K slices repeats its last slice.
    """
    if slices_per_pass == 1:
        return np.asarray(todo, np.int64)[:, None]
    starts = np.arange(todo[0], todo[-1] + 1, slices_per_pass)
    starts = np.minimum(starts, max(depth - slices_per_pass, 0))
    return np.minimum(starts[:, None] + np.arange(slices_per_pass), depth - 1)


def _crop(images, chosen: np.ndarray, x0: int, x1: int, y0: int, y1: int) -> np.ndarray:
    """images[chosen, :, x0:x1, y0:y1] of a (Z', C, X', Y') array (a view, no copy, when
    ``chosen`` is a run of consecutive slices, as it nearly always is) or of a
    :class:`~cmbdet.preprocess.pipeline.SliceStack` (made for these slices)."""
    if not isinstance(images, np.ndarray):
        return images.crop(chosen, slice(x0, x1), slice(y0, y1))
    if np.all(np.diff(chosen) == 1):
        return images[chosen[0] : chosen[-1] + 1, :, x0:x1, y0:y1]
    return images[chosen, :, x0:x1, y0:y1]


def _crop_range(inside: np.ndarray) -> tuple[int, int]:
    """(start, stop) along one in-plane axis: the span of ``inside`` (n,) bool widened by
    :data:`BRAIN_MARGIN`, then grown to a multiple of :data:`CROP_MULTIPLE` (or the whole axis)."""
    n = len(inside)
    first, last = int(np.argmax(inside)), int(n - np.argmax(inside[::-1]))
    start, stop = max(0, first - BRAIN_MARGIN), min(n, last + BRAIN_MARGIN)
    size = min(n, -(-(stop - start) // CROP_MULTIPLE) * CROP_MULTIPLE)
    start = min(max(0, start - (size - (stop - start)) // 2), n - size)
    return start, start + size


def detect_candidates(
    net,
    images: np.ndarray,
    pixel_mm: float,
    brain: np.ndarray | None = None,
    score_threshold: float = 0.05,
) -> list[LinkedCandidate]:
    """Slices -> boxes -> 3D candidates (model grid), highest score first, by a PyTorch
    ``CandidateNet``."""
    return link_slices(detect_slices(net, images, brain, score_threshold), pixel_mm)


def detect_candidates_with(
    run_pass: PassRunner,
    config: Stage1Config,
    images: np.ndarray,
    pixel_mm: float,
    brain: np.ndarray | None = None,
    score_threshold: float = 0.05,
) -> list[LinkedCandidate]:
    """:func:`detect_candidates` with the network run by ``run_pass``."""
    detections = detect_slices_with(run_pass, config, images, brain, score_threshold)
    return link_slices(detections, pixel_mm)
