"""Robust intensity normalisation inside the brain, and the paper's two image channels.

Both channels put brain tissue at about 1 and a CMB below it (dark on dark), in [0, 2]:

- SWI: divided by its median inside the brain, clipped to [0, 2].
- Phase: the canonical (right-handed, high-pass, radians) phase ``phi`` is normalised to
  ``p = clip(phi / scale, -1, 1)`` (``scale`` = pi by default, so p is the phase as a fraction
  of pi). The *complemented* phase channel is ``1 + p``. This is the paper's grey-scale
  inversion: its (left-handed) phase ``phi_L = -phi`` shown on [0, 1] is
  ``g = (1 + phi_L / pi) / 2``, and its complement ``1 - g = (1 + phi / pi) / 2``; we use twice
  that, so that tissue (phi ~ 0) sits at 1 like the SWI channel. A paramagnetic CMB (negative
  phase) is dark, a diamagnetic calcification bright.
"""

from __future__ import annotations

import math

import numpy as np

SWI_CLIP = (0.0, 2.0)
"""Range of the normalised SWI (brain median = 1)."""
PHASE_SCALE_RAD = math.pi
"""Default phase normalisation: radians that map to -1 / +1."""


def normalise_swi(swi: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """SWI divided by its median inside the brain (tissue ~ 1), clipped to [0, 2].

    Args:
        swi: (X, Y, Z) SWI, any positive scale.
        brain: (X, Y, Z) bool brain mask; the whole volume's positive voxels when empty.

    Returns:
        (X, Y, Z) float32 in [0, 2].
    """
    inside = swi[brain] if brain.any() else swi[swi > 0]
    median = float(np.median(inside)) if inside.size else 1.0
    scaled = np.divide(swi, np.float32(max(median, 1e-6)), dtype=np.float32)
    return np.clip(scaled, *SWI_CLIP, out=scaled)


def normalise_phase(phase_rad: np.ndarray, scale_rad: float = PHASE_SCALE_RAD) -> np.ndarray:
    """Canonical phase as a fraction of ``scale_rad``, clipped to [-1, 1].

    Args:
        phase_rad: (X, Y, Z) canonical phase, radians, right-handed, high-pass filtered.
        scale_rad: radians mapped to +-1.

    Returns:
        (X, Y, Z) float32 in [-1, 1]; CMBs negative.
    """
    scaled = np.divide(phase_rad, np.float32(scale_rad), dtype=np.float32)
    return np.clip(scaled, -1.0, 1.0, out=scaled)


def complemented_phase(phase_norm: np.ndarray) -> np.ndarray:
    """The paper's complemented phase channel, ``1 + phase_norm`` in [0, 2] (tissue ~ 1, CMB
    dark); see the module docstring.

    Args:
        phase_norm: (..., X, Y) normalised phase from :func:`normalise_phase`.
    """
    return (1.0 + phase_norm).astype(np.float32, copy=False)
