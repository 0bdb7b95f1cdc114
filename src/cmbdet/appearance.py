"""Appearance augmentation of both stages' training crops: what differs between scanners,
protocols and sites but not between a CMB and its mimics, so that a network cannot win on it.

Every channel of a crop is a slice or patch image with tissue at about 1 (see
:mod:`cmbdet.preprocess.intensity`): SWI channels and complemented-phase channels. SWI channels
get an intensity curve (gamma: the SWI mask power and T1/T2* weighting change how dark dark
things are), a contrast change around tissue and a smooth multiplicative bias field; phase
channels a gain (echo time and field strength scale the phase); all channels optionally an
in-plane blur (a coarser acquisition or reconstruction filter) and Gaussian or Rician-like
noise. Parameters are drawn from :class:`AppearanceRanges` (recorded in model.json) by a
seeded generator, so a resumed run replays the same crops.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cmbdet.config import JsonConfig, check_range


@dataclass(frozen=True)
class AppearanceRanges(JsonConfig):
    """How far training crops' appearance is varied, in both stages (recorded in model.json)."""

    swi_gamma: tuple[float, float] = (0.7, 1.4)  # SWI ** gamma, log-uniform
    swi_contrast: tuple[float, float] = (0.75, 1.25)  # (SWI - 1) times this
    phase_gain: tuple[float, float] = (0.6, 1.6)  # (phase - 1) times this, log-uniform
    bias: float = 0.15  # a bias field's largest gradient term across a crop, +-
    blur_share: float = 0.3  # of crops blurred in-plane...
    blur_sd_px: tuple[float, float] = (0.3, 1.0)  # ...by a Gaussian of this SD, pixels
    noise_sd: tuple[float, float] = (0.0, 0.06)  # added noise (tissue = 1)
    rician_share: float = 0.5  # of noisy crops whose SWI noise is Rician-like

    def __post_init__(self):
        floors = {"swi_gamma": 0.1, "phase_gain": 0.1, "swi_contrast": 0.0}
        for name, floor in {**floors, "blur_sd_px": 0.0, "noise_sd": 0.0}.items():
            low, high = getattr(self, name)
            check_range(f"{name}[0]", low, floor, 10.0)
            check_range(f"{name}[1]", high, low, 10.0)
        check_range("bias", self.bias, 0.0, 0.5)
        check_range("blur_share", self.blur_share, 0.0, 1.0)
        check_range("rician_share", self.rician_share, 0.0, 1.0)


@dataclass(frozen=True)
class Appearance:
    """One crop's appearance change (see the module docstring).

    Attributes:
        swi_gamma: SWI -> SWI ** gamma (tissue at 1 stays; < 1 lightens dark spots).
        swi_contrast: (SWI - 1) multiplied by this.
        phase_gain: (complemented phase - 1) multiplied by this.
        bias: (a, b, c) of the field 1 + a u + b v + c u v over the crop, u, v in [-1, 1].
        blur_sd_px: in-plane Gaussian blur, pixels (0: none).
        noise_sd: noise standard deviation (tissue = 1).
        rician: noise added to the SWI as to a magnitude image (|x + n1 + i n2|).
    """

    swi_gamma: float
    swi_contrast: float
    phase_gain: float
    bias: tuple[float, float, float]
    blur_sd_px: float
    noise_sd: float
    rician: bool


def draw_appearance(rng: np.random.Generator, ranges: AppearanceRanges) -> Appearance:
    """An appearance drawn from ``ranges`` (gamma and phase gain log-uniform)."""
    blurred = rng.random() < ranges.blur_share
    return Appearance(
        swi_gamma=float(np.exp(rng.uniform(*np.log(ranges.swi_gamma)))),
        swi_contrast=float(rng.uniform(*ranges.swi_contrast)),
        phase_gain=float(np.exp(rng.uniform(*np.log(ranges.phase_gain)))),
        bias=tuple(float(v) for v in rng.uniform(-1, 1, 3) * ranges.bias * [1, 1, 0.5]),
        blur_sd_px=float(rng.uniform(*ranges.blur_sd_px)) if blurred else 0.0,
        noise_sd=float(rng.uniform(*ranges.noise_sd)),
        rician=bool(rng.random() < ranges.rician_share),
    )


def apply_appearance(
    image: np.ndarray, phase_channels: np.ndarray, look: Appearance, rng: np.random.Generator
) -> np.ndarray:
    """Apply ``look`` to one crop.

    Args:
        image: (C, X, Y) slice images or (C, X, Y, Z) patch, tissue ~ 1 in every channel.
        phase_channels: (C,) bool, True for complemented-phase channels.
        look: the change.
        rng: for the noise.

    Returns:
        float32 array of the same shape; phase channels stay within [0, 2], SWI channels >= 0.
    """
    out = np.array(image, dtype=np.float32)
    phase = np.asarray(phase_channels, bool)
    swi = ~phase
    field = _bias_field(out.shape[1:3], look.bias).reshape(out.shape[1:3] + (1,) * (out.ndim - 3))
    out[swi] = (np.clip(out[swi], 0.0, None) ** look.swi_gamma - 1.0) * look.swi_contrast + 1.0
    out[swi] = np.clip(out[swi], 0.0, None) * field
    out[phase] = np.clip((out[phase] - 1.0) * look.phase_gain + 1.0, 0.0, 2.0)
    if look.blur_sd_px > 0:
        sigma = (0.0, look.blur_sd_px, look.blur_sd_px) + (0.0,) * (out.ndim - 3)
        out = ndimage.gaussian_filter(out, sigma=sigma, mode="nearest")
    if look.noise_sd > 0:
        noise = rng.standard_normal((2, *out.shape)).astype(np.float32) * look.noise_sd
        if look.rician:
            out[swi] = np.hypot(out[swi] + noise[0][swi], noise[1][swi])
            out[phase] += noise[0][phase]
        else:
            out += noise[0]
        out[phase] = np.clip(out[phase], 0.0, 2.0)
    return out


def _bias_field(shape: tuple[int, int], bias: tuple[float, float, float]) -> np.ndarray:
    """(X, Y) float32 field ``1 + a u + b v + c u v``, u and v from -1 to 1 across the crop."""
    u = np.linspace(-1.0, 1.0, shape[0], dtype=np.float32)[:, None]
    v = np.linspace(-1.0, 1.0, shape[1], dtype=np.float32)[None, :]
    a, b, c = bias
    return (1.0 + a * u + b * v + c * u * v).astype(np.float32)
