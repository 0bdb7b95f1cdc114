"""Phase made canonical: radians, high-pass filtered, right-handed (DESIGN.md, "Phase").

Scanner phase arrives in radians or integer units, raw (wrapped, with background fields) or
already high-pass filtered, and in either handedness. Each of the three is detected from the data
and can be overridden; :func:`canonical_phase` applies them in order

1. units -> radians in [-pi, pi),
2. raw phase -> homodyne high-pass filter (:func:`cmbdet.swi.homodyne_highpass`),
3. handedness -> negate left-handed phase,

and records every decision in a :class:`PhaseDecisions` for the run record.

All arrays are canonical RAS+ (X, Y, Z), axial slices along the last axis.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import partial
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from cmbdet.preprocess.config import HP_WINDOW_PER_256MM
from cmbdet.preprocess.handedness import (
    BRAIN_EROSION_MM,
    detect_handedness,
    detect_handedness_from_lobes,
    erode_mm,
)
from cmbdet.preprocess.slabs import by_slabs
from cmbdet.swi import homodyne_highpass

UNITS = ("radians", "integer")
KINDS = ("filtered", "raw")
HANDEDNESS = ("right", "left")

RADIAN_LIMIT = 2 * math.pi + 0.05
"""Largest |value| that radians may reach ([-pi, pi) or [0, 2pi), with rounding slack)."""
INTEGER_MIN_RANGE = 8.0
"""Integer-valued phase must reach |value| above this to be read as scanner integer units."""
SWI_MODULUS_SIGMA_MM = 1.5
"""In-plane smoothing of SWI used as the homodyne modulus (no magnitude given)."""
RAW_LOWPASS_SIGMA_MM = 4.0
"""In-plane smoothing of exp(i phase) when telling raw from filtered phase."""
RAW_FRACTION = 0.1
"""Raw phase: more than this fraction of the brain has |low-pass phase| > pi / 4."""


class PhaseScale(NamedTuple):
    """How stored phase values map to radians: ``radians = (value - zero_at) * radians_per_unit``,
    then wrapped into [-pi, pi)."""

    radians_per_unit: float
    zero_at: float


@dataclass(frozen=True)
class PhaseDecisions:
    """What :func:`canonical_phase` did, for ``run.json``.

    Attributes:
        units: "radians" or "integer" (the stored units).
        units_detected: True when ``units`` was detected, False when given.
        radians_per_unit: stored value -> radians scale (1 for radians).
        zero_at: stored value that means 0 rad (e.g. 2048 for unsigned 0..4095 phase).
        kind: "filtered" or "raw" (the stored kind).
        kind_detected: True when detected.
        handedness: "right" or "left" (the stored handedness).
        handedness_detected: True when detected.
        handedness_confidence: see :class:`HandednessEstimate`; None when given.
        hp_window: homodyne window in k-space samples, None when the phase was used as stored.
        handedness_method: how a detected handedness was decided: ``dark voxels`` (of the
            SWI, or the homodyne modulus) or ``dipole lobes`` (around the magnitude's dark
            voxels, :func:`detect_handedness_from_lobes`).
    """

    units: str
    units_detected: bool
    radians_per_unit: float
    zero_at: float
    kind: str
    kind_detected: bool
    handedness: str
    handedness_detected: bool
    handedness_confidence: float | None
    hp_window: int | None
    handedness_method: str = "dark voxels"

    def to_json(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------- units


def detect_phase_units(phase: np.ndarray, brain: np.ndarray | None = None) -> str:
    """Tell radians from scanner integer units.

    Integer-valued phase reaching |value| > 8 is integer units; anything within
    [-2pi - 0.05, 2pi + 0.05] is radians. The whole volume is used (background noise spans the
    full range); ``brain`` is accepted for symmetry with the other detectors and ignored.

    Args:
        phase: (X, Y, Z) stored phase.
        brain: unused.

    Returns:
        "radians" or "integer".

    Raises:
        ValueError: non-integer values beyond 2pi (e.g. degrees): units cannot be told.
    """
    del brain
    values = _sample(phase)
    largest = float(np.abs(values).max())
    integer_valued = bool(np.all(np.abs(values - np.round(values)) < 1e-3))
    if integer_valued and largest > INTEGER_MIN_RANGE:
        return "integer"
    if largest <= RADIAN_LIMIT:
        return "radians"
    raise ValueError(
        f"phase values reach {largest:.4g}: neither radians (|phase| <= 2 pi) nor integer "
        "scanner units; convert the phase to radians"
    )


def integer_phase_scale(phase: np.ndarray) -> PhaseScale:
    """Scale of integer phase, read from its range.

    Signed data (minimum < 0) stand for [-pi, pi) over the smallest power-of-two half-range H
    with -H <= min and max < H (e.g. -4096..4095 -> H = 4096); unsigned data (minimum >= 0) over
    0..2H-1 centred at H (e.g. 0..4095 -> 2048 means 0 rad).

    Args:
        phase: (X, Y, Z) integer-valued phase.
    """
    values = _sample(phase)
    low, high = float(values.min()), float(values.max())
    if low < 0:
        half = _power_of_two_at_least(max(-low, high + 1))
        zero_at = 0.0
    else:
        half = _power_of_two_at_least((high + 1) / 2)
        zero_at = float(half)
    return PhaseScale(math.pi / half, zero_at)


def phase_to_radians(
    phase: np.ndarray, units: str, scale: PhaseScale | None = None
) -> tuple[np.ndarray, PhaseScale]:
    """Stored phase -> radians wrapped into [-pi, pi).

    Radians in [0, 2pi) are wrapped (values >= pi lose 2pi); integer units are scaled by
    :func:`integer_phase_scale` unless ``scale`` is given.

    Args:
        phase: (X, Y, Z) stored phase.
        units: "radians" or "integer".
        scale: override of the integer scale.

    Returns:
        (X, Y, Z) float32 radians in [-pi, pi), and the scale used.
    """
    if units not in UNITS:
        raise ValueError(f"phase units must be one of {UNITS}, got {units!r}")
    if scale is None:
        scale = PhaseScale(1.0, 0.0) if units == "radians" else integer_phase_scale(phase)
    radians = (phase.astype(np.float32) - np.float32(scale.zero_at)) * np.float32(
        scale.radians_per_unit
    )
    return wrap(radians), scale


def wrap(phase: np.ndarray) -> np.ndarray:
    """Wrap radians into [-pi, pi), float32; values already inside are kept bit for bit."""
    phase = np.array(phase, dtype=np.float32)
    pi = np.float32(np.pi)
    outside = (phase < -pi) | (phase >= pi)
    if outside.any():
        phase[outside] = np.mod(phase[outside] + pi, np.float32(2 * np.pi)) - pi
        phase[phase >= pi] = -pi  # float32 rounding at the upper edge
    return phase


def _power_of_two_at_least(value: float) -> int:
    return 1 << max(0, math.ceil(math.log2(max(value, 1.0)) - 1e-9))


def _sample(array: np.ndarray, n: int = 2_000_000) -> np.ndarray:
    """A strided subsample (flattened) of at most about ``n`` values, always incl. min and max."""
    flat = array.reshape(-1)
    step = max(1, flat.size // n)
    return np.concatenate([flat[::step], [flat.min(), flat.max()]]).astype(np.float64)


# ----------------------------------------------------------------------------- kind


def detect_phase_kind(
    phase_rad: np.ndarray, brain: np.ndarray, spacing_mm: tuple[float, float, float] = (1, 1, 1)
) -> str:
    """Tell raw wrapped phase from high-pass filtered phase.

    Raw phase carries smooth background fields (shim, air, coil offset) of several radians, so
    the phase of in-plane low-passed ``exp(i phase)`` is large over much of the brain; filtered
    phase has almost none left. A constant offset (e.g. filtered phase stored in [0, 2pi) and
    centred at pi) also counts as raw, and the homodyne filter then removes it.

    Args:
        phase_rad: (X, Y, Z) phase, radians.
        brain: (X, Y, Z) bool brain mask.
        spacing_mm: voxel size (x, y, z), mm.

    Returns:
        "raw" when more than ``RAW_FRACTION`` of the brain has |low-pass phase| > pi / 4,
        else "filtered".
    """
    fraction = lowpass_phase_fraction(phase_rad, brain, spacing_mm)
    return "raw" if fraction > RAW_FRACTION else "filtered"


def lowpass_phase_fraction(
    phase_rad: np.ndarray, brain: np.ndarray, spacing_mm: tuple[float, float, float]
) -> float:
    """Fraction of (eroded) brain voxels whose in-plane low-passed phase exceeds pi / 4, over
    about 24 evenly spaced slices that hold brain (0 without brain)."""
    # A smooth statistic: about 1 mm in-plane sampling is plenty (and 4x faster on HR); each
    # slice is low-passed on its own, so about 24 evenly spaced slices with brain judge it.
    step = [max(1, int(1.0 / s)) for s in spacing_mm[:2]]
    with_brain = np.flatnonzero(brain.any(axis=(0, 1)))
    if with_brain.size == 0:
        return 0.0
    judged = with_brain[:: max(1, with_brain.size // 24)]
    phase_rad = phase_rad[:: step[0], :: step[1], judged]
    brain = brain[:: step[0], :: step[1], judged]
    spacing_mm = (spacing_mm[0] * step[0], spacing_mm[1] * step[1], spacing_mm[2])
    judgement = by_slabs(partial(_lowpass_judged, spacing_mm=spacing_mm), phase_rad, brain)
    inner = np.count_nonzero(judgement)
    return float(np.count_nonzero(judgement == _FAR) / inner) if inner else 0.0


_OUTSIDE, _NEAR, _FAR = 0, 1, 2  # a voxel's judgement by the phase-kind statistic


def _lowpass_judged(
    phase_rad: np.ndarray, brain: np.ndarray, spacing_mm: tuple[float, float, float]
) -> np.ndarray:
    """(X, Y, Z) int8, slice by slice: ``_OUTSIDE`` the eroded brain, ``_NEAR`` within it,
    ``_FAR`` within it where the in-plane low-passed phase exceeds pi / 4 (``_NEAR`` + 1)."""
    inner = erode_mm(brain, spacing_mm, BRAIN_EROSION_MM)
    sigma = (RAW_LOWPASS_SIGMA_MM / spacing_mm[0], RAW_LOWPASS_SIGMA_MM / spacing_mm[1], 0.0)
    weight = brain.astype(np.float32)
    real = ndimage.gaussian_filter(np.cos(phase_rad) * weight, sigma, truncate=3.0)
    imaginary = ndimage.gaussian_filter(np.sin(phase_rad) * weight, sigma, truncate=3.0)
    judged = inner.astype(np.int8)
    judged[inner] += np.abs(np.arctan2(imaginary[inner], real[inner])) > np.pi / 4
    return judged


def default_hp_window(
    shape: tuple[int, int, int],
    spacing_mm: tuple[float, float, float],
    per_256mm: float = HP_WINDOW_PER_256MM,
) -> int:
    """Homodyne window: ``per_256mm`` k-space samples per 256 mm of x field of view, even, at
    least 8 (48 per 256 mm: 48 on a 256 mm FOV, 28 on 144 mm), so it scales with the matrix."""
    fov_mm = shape[0] * spacing_mm[0]
    return max(8, 2 * round(per_256mm * fov_mm / 256.0 / 2))


def homodyne_modulus_from_swi(
    swi: np.ndarray, spacing_mm: tuple[float, float, float]
) -> np.ndarray:
    """A homodyne modulus from SWI when no magnitude is at hand: SWI smoothed in-plane by
    ``SWI_MODULUS_SIGMA_MM``, so that the dots its negative-phase mask blacked out do not punch
    holes in the low-pass (closer to the generator's magnitude-based filter; (X, Y, Z))."""
    sigma = (SWI_MODULUS_SIGMA_MM / spacing_mm[0], SWI_MODULUS_SIGMA_MM / spacing_mm[1], 0.0)
    return ndimage.gaussian_filter(swi.astype(np.float32), sigma)


# ----------------------------------------------------------------------------- handedness


# ----------------------------------------------------------------------------- all together


def canonical_phase(
    phase: np.ndarray,
    brain: np.ndarray,
    magnitude_for_homodyne: np.ndarray | None,
    *,
    spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0),
    units: str = "auto",
    handedness: str = "auto",
    kind: str = "auto",
    hp_window: int | None = None,
    handedness_image: np.ndarray | None = None,
    handedness_from_lobes: bool = False,
) -> tuple[np.ndarray, PhaseDecisions]:
    """Stored phase -> canonical phase: high-pass filtered, radians, right-handed.

    Args:
        phase: (X, Y, Z) stored phase (radians or integer units, raw or filtered, any
            handedness).
        brain: (X, Y, Z) bool brain mask.
        magnitude_for_homodyne: (X, Y, Z) modulus for the homodyne filter of raw phase (the
            magnitude); also the image for handedness detection unless ``handedness_image`` is
            given. None: :func:`homodyne_modulus_from_swi` of ``handedness_image`` (an SWI),
            made only when the phase is raw.
        spacing_mm: voxel size (x, y, z), mm; sets the default homodyne window and the
            detectors' length scales.
        units: "auto", "radians" or "integer".
        handedness: "auto", "right" or "left" (of the stored phase).
        kind: "auto", "filtered" or "raw".
        hp_window: homodyne window in k-space samples; default :func:`default_hp_window`.
        handedness_image: (X, Y, Z) image whose dark voxels decide the handedness (SWI is best).
        handedness_from_lobes: decide it from the dipole lobes around the dark voxels
            (:func:`detect_handedness_from_lobes`: for a magnitude, when there is no SWI).

    Returns:
        (X, Y, Z) float32 canonical phase in [-pi, pi], and the decisions taken.

    Raises:
        ValueError: an unknown option, or units that cannot be detected.
    """
    if magnitude_for_homodyne is None and handedness_image is None:
        raise ValueError("a magnitude or an SWI is needed with the phase")
    _check_option("units", units, UNITS)
    _check_option("handedness", handedness, HANDEDNESS)
    _check_option("kind", kind, KINDS)

    units_detected = units == "auto"
    if units_detected:
        units = detect_phase_units(phase)
    radians, scale = phase_to_radians(phase, units)

    kind_detected = kind == "auto"
    if kind_detected:
        kind = detect_phase_kind(radians, brain, spacing_mm)
    window = None
    if kind == "raw":
        window = hp_window or default_hp_window(phase.shape, spacing_mm)
        modulus = magnitude_for_homodyne
        if modulus is None:
            modulus = homodyne_modulus_from_swi(handedness_image, spacing_mm)
        signal = modulus.astype(np.float32) * np.exp(1j * radians)
        radians = homodyne_highpass(signal, window)
        del signal

    confidence = None
    handedness_detected = handedness == "auto"
    if handedness_detected:
        image = magnitude_for_homodyne if handedness_image is None else handedness_image
        detect = detect_handedness_from_lobes if handedness_from_lobes else detect_handedness
        handedness, confidence = detect(image, radians, brain, spacing_mm)
    if handedness == "left":
        radians = -radians

    decisions = PhaseDecisions(
        units=units,
        units_detected=units_detected,
        radians_per_unit=float(scale.radians_per_unit),
        zero_at=float(scale.zero_at),
        kind=kind,
        kind_detected=kind_detected,
        handedness=handedness,
        handedness_detected=handedness_detected,
        handedness_confidence=confidence,
        hp_window=window,
        handedness_method="dipole lobes" if handedness_from_lobes else "dark voxels",
    )
    return radians.astype(np.float32, copy=False), decisions


def _check_option(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value != "auto" and value not in allowed:
        raise ValueError(f"phase {name} must be 'auto' or one of {allowed}, got {value!r}")
