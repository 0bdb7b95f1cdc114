"""How slice images are stacked for the stage-1 network and how its head maps come back, the
same for NumPy arrays and torch tensors (training and both inference backends use them; no
PyTorch here).

A network that reads K slices per pass takes (B, K C, X, Y) stacks, slice-major, or the
``pass_channels`` of them, with X and Y multiples of :data:`PAD_MULTIPLE`; it returns
``heatmap`` (B, K, h, w) and ``offset`` / ``size`` (B, 2 K, h, w).
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np

Stacks = TypeVar("Stacks")

PAD_MULTIPLE = 16
"""The network's strides need in-plane sizes that are multiples of this."""


def pass_input(stacks: Stacks, pass_channels: tuple[int, ...]) -> Stacks:
    """(B, K C, X, Y) stacked slice images (NumPy or torch) -> the channels a network with
    these ``pass_channels`` reads (a copy), or the stacks themselves where it reads them all."""
    return stacks[:, list(pass_channels)] if pass_channels else stacks


def per_slice(outputs: dict, slices_per_pass: int) -> dict:
    """Head maps of B passes over K slices each (arrays or tensors) -> the maps of B K single
    slices.

    ``heatmap`` (B, K, h, w) -> (B K, 1, h, w); ``offset`` and ``size`` (B, 2 K, h, w) ->
    (B K, 2, h, w); slice j of pass b becomes image b K + j (views where the layout allows).
    """
    if slices_per_pass == 1:
        return outputs
    return {
        name: maps.reshape(-1, maps.shape[1] // slices_per_pass, *maps.shape[2:])
        for name, maps in outputs.items()
    }


def pad_to_multiple(stacks: np.ndarray, multiple: int = PAD_MULTIPLE) -> np.ndarray:
    """Zero-pad (B, C, X, Y) at the high end of X and Y to multiples of ``multiple``;
    float32, contiguous."""
    nx, ny = stacks.shape[-2:]
    pad_x, pad_y = (-nx) % multiple, (-ny) % multiple
    if pad_x or pad_y:
        stacks = np.pad(stacks, [(0, 0), (0, 0), (0, pad_x), (0, pad_y)])
    return np.ascontiguousarray(stacks, dtype=np.float32)
