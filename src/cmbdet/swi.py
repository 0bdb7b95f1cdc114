"""Haacke SWI processing: homodyne high-pass phase, negative-phase mask, SWI.

Shared by the synthetic generator (which makes SWI the way a scanner does) and by the
detector's preprocessing (which high-pass filters raw phase when asked).

Phase here is right-handed: a paramagnetic source gives negative phase above and below it.
"""

from __future__ import annotations

import numpy as np
import scipy.fft


def hanning_window_2d(shape: tuple[int, int], width: int) -> np.ndarray:
    """2D Hanning window of ``width`` k-space samples across, centred exactly on DC.

    Returned unshifted (DC at [0, 0]) to multiply an ``fft2`` spectrum directly; symmetric under
    k -> -k for any width, so a real image gets a real low-pass and no false phase. (nx, ny).
    """
    per_axis = []
    for n in shape:
        k = scipy.fft.fftfreq(n) * n  # integer sample offsets from DC
        half = min(width, n) / 2
        per_axis.append(np.where(np.abs(k) < half, 0.5 * (1 + np.cos(np.pi * k / half)), 0.0))
    return np.outer(*per_axis).astype(np.float32)


def homodyne_highpass(signal: np.ndarray, window: int, *, workers: int | None = None) -> np.ndarray:
    """High-pass phase of a complex volume by homodyne filtering, slice by slice.

    ``hp = angle(rho * conj(rho_lowpass))`` where ``rho_lowpass`` keeps the centre of each axial
    slice's k-space under a 2D Hanning window. This removes background fields and wraps.

    Args:
        signal: (X, Y, Z) complex signal; axial slices along the last axis.
        window: Hanning window width in k-space samples (e.g. 32-64 on a 512 matrix).
        workers: threads for scipy.fft.

    Returns:
        (X, Y, Z) float32 high-pass phase in radians, in (-pi, pi].
    """
    signal = signal.astype(np.complex64, copy=False)
    spectrum = scipy.fft.fft2(signal, axes=(0, 1), workers=workers)
    spectrum *= hanning_window_2d(signal.shape[:2], window)[:, :, None]
    lowpass = scipy.fft.ifft2(spectrum, axes=(0, 1), workers=workers)
    return np.angle(signal * np.conj(lowpass)).astype(np.float32)


def negative_phase_mask(hp_phase: np.ndarray, power: int = 4) -> np.ndarray:
    """``((pi + phi) / pi) ** power`` where phi < 0, else 1 (right-handed phase, radians)."""
    mask = np.where(hp_phase < 0, (np.pi + hp_phase) / np.pi, 1.0).astype(np.float32)
    return np.clip(mask, 0.0, 1.0) ** power


def swi_from(magnitude: np.ndarray, hp_phase: np.ndarray, power: int = 4) -> np.ndarray:
    """Haacke SWI: magnitude times the negative phase mask to the ``power``, float32."""
    return (magnitude * negative_phase_mask(hp_phase, power)).astype(np.float32)
