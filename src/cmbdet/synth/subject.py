"""One synthetic subject, end to end: anatomy -> susceptibility -> field -> complex GRE signal
with veins and focal lesions -> noise -> homodyne high-pass phase and SWI.

Everything here works in the canonical RAS frame of the acquisition; the dataset writer turns
it into files (any storage orientation, handedness and phase units).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import numpy as np
import scipy.fft
import torch
import torch.nn.functional as F
from scipy import ndimage

from cmbdet.io.lesions import Lesion
from cmbdet.swi import homodyne_highpass, swi_from
from cmbdet.synth.anatomy import (
    WorkAnatomy,
    load_atlas,
    random_warp,
    warp_atlas,
    work_grid_coordinates,
)
from cmbdet.synth.background import air_cavities, coil_phase, intensity_bias, shim_residual
from cmbdet.synth.config import (
    TISSUES,
    Grid,
    Protocol,
    SynthConfig,
    Tissue,
    draw_protocol,
    gre_signal,
)
from cmbdet.synth.field import field_from_susceptibility, radians_per_ppm
from cmbdet.synth.lesions import (
    IRON_R2STAR_PER_PPM,
    apparent_diameter_mm,
    is_visible,
    lesion_patch,
    random_lesions,
)
from cmbdet.synth.records import focal_record, to_world, vein_record
from cmbdet.synth.vessels import Vein, random_veins, rasterise_veins

VENOUS_BLOOD = Tissue(m0=0.85, t1_s=1.65, r2star_per_s=75.0, chi_ppm=0.45)  # r2*, chi redrawn
TEXTURE_SIGNAL = np.float32(0.04)  # relative signal variation of tissue texture (1 sd)
TEXTURE_CHI_PPM = np.float32(0.005)  # susceptibility variation of tissue texture (1 sd)
VEIN_LABEL_FRACTION = 0.25
"""Voxels at least this much vein are labelled with the vein's id."""


@dataclass(frozen=True)
class SyntheticSubject:
    """A generated subject in the canonical RAS frame.

    Attributes:
        magnitude: (X, Y, Z) float32 magnitude, stored intensity scale.
        swi: (X, Y, Z) float32 Haacke SWI, same scale.
        hp_phase: (X, Y, Z) float32 high-pass phase, radians, right-handed.
        raw_phase: (X, Y, Z) float32 wrapped raw phase, radians, right-handed.
        brain_mask: (X, Y, Z) bool.
        labels: (X, Y, Z) int32 instance map; value n is ``lesions[n - 1]``.
        affine: (4, 4) canonical voxel -> world mm.
        lesions: CMBs, calcifications, iron deposits, cavernomas and veins; voxel indices
            canonical.
        protocol: the acquisition it was made with.
        families: the value of each family axis it drew (:mod:`cmbdet.synth.families`).
        noise_sigma: complex noise per channel, signal units (before intensity scaling).
        intensity_scale: signal -> stored intensity factor.
    """

    magnitude: np.ndarray
    swi: np.ndarray
    hp_phase: np.ndarray
    raw_phase: np.ndarray
    brain_mask: np.ndarray
    labels: np.ndarray
    affine: np.ndarray
    lesions: list[Lesion]
    protocol: Protocol
    families: dict[str, str]
    noise_sigma: float = 0.0
    intensity_scale: float = 1.0


@dataclass(frozen=True)
class EchoOf:
    """Another echo of an already generated subject: the same draws (anatomy, lesions,
    noise), echo time ``te_s``, and the reference echo's noise level and intensity scale (a
    scanner scales every echo alike; later echoes have less signal, not less noise)."""

    te_s: float
    noise_sigma: float
    intensity_scale: float


def generate_subject(
    config: SynthConfig, seed: np.random.SeedSequence, echo: EchoOf | None = None
) -> SyntheticSubject:
    """Generate one subject; the same ``seed`` always gives the same arrays. With ``echo``,
    the same subject at another echo time (:mod:`cmbdet.synth.echoes`)."""
    rng = np.random.default_rng(seed)
    extra = np.random.default_rng(_extra_seed(seed))  # families and artefacts: their own stream
    families = config.families.draw(extra)
    grid = config.grid
    protocol = draw_protocol(config.protocol, grid, rng, families)
    if echo is not None:
        protocol = replace(protocol, te_s=echo.te_s)
    scene = _tissue_and_veins(config, protocol, families, rng, extra)
    labels, lesions = _add_focal_lesions(scene, config, protocol, rng)
    images = _acquire(scene, protocol, families, rng, extra, echo)
    if families["skull"] == "stripped":
        _strip_skull(images.volumes(), images.brain_mask, grid.spacing_mm)
    affine = _acquisition_affine(grid, rng)
    return SyntheticSubject(
        magnitude=images.magnitude,
        swi=images.swi,
        hp_phase=images.hp_phase,
        raw_phase=images.raw_phase,
        brain_mask=images.brain_mask,
        labels=labels,
        affine=affine,
        lesions=[to_world(lesion, grid, affine) for lesion in lesions],
        protocol=protocol,
        families=families,
        noise_sigma=images.noise_sigma,
        intensity_scale=images.intensity_scale,
    )


@dataclass
class _Scene:
    """A subject before its focal lesions and the scanner: the complex (X, Y, Z) ``signal``
    of tissue and veins (no noise), the work-grid ``anatomy``, the acquisition-grid
    ``smooth`` maps (brain fraction, coil bias, ...), the ``veins`` and their (X, Y, Z) partial
    volume ``vein_fraction`` and ``vein_owner`` (1 + vein index)."""

    signal: np.ndarray
    anatomy: WorkAnatomy
    smooth: dict[str, np.ndarray]
    veins: list[Vein]
    vein_fraction: np.ndarray
    vein_owner: np.ndarray


def _tissue_and_veins(
    config: SynthConfig,
    protocol: Protocol,
    families: dict[str, str],
    rng: np.random.Generator,
    extra: np.random.Generator,
) -> _Scene:
    """Anatomy, susceptibility, field and the GRE signal of tissue and veins."""
    grid, work = config.grid, config.grid.work_grid()
    phase_per_ppm = radians_per_ppm(protocol.field_t, protocol.te_s)
    b0 = np.asarray(protocol.b0_dir)
    anatomy = warp_atlas(
        load_atlas(), random_warp(rng, grid.fov_mm[2]), work.shape, work.spacing_mm
    )
    maps = _smooth_maps(anatomy, protocol, work, rng, _iron_scale(families["iron"], extra))
    smooth = _upsample(maps, grid.shape)
    veins = random_veins(anatomy, rng, config.veins, families["veins"])
    vein_fraction, vein_owner, vein_orientation = rasterise_veins(
        veins, grid.shape, grid.spacing_mm, b0_dir=b0
    )

    chi = smooth["chi"] + vein_fraction * np.float32(protocol.venous_delta_chi_ppm)
    phase = field_from_susceptibility(chi, grid.spacing_mm, b0, workers=_fft_workers())
    phase *= np.float32(phase_per_ppm)
    phase += smooth["background_phase"]
    del chi
    magnitude = _partial_volume_signal(
        smooth["signal"], vein_fraction, vein_orientation, protocol, phase_per_ppm
    )
    del vein_orientation
    magnitude *= _dephasing(phase)
    signal = np.empty(grid.shape, dtype=np.complex64)  # magnitude * exp(i phase), in float32
    signal.real = magnitude * np.cos(phase)
    signal.imag = magnitude * np.sin(phase)
    return _Scene(signal, anatomy, smooth, veins, vein_fraction, vein_owner)


def _add_focal_lesions(
    scene: _Scene, config: SynthConfig, protocol: Protocol, rng: np.random.Generator
) -> tuple[np.ndarray, list[Lesion]]:
    """CMBs and mimics multiplied into ``scene.signal`` (in place); returns the (X, Y, Z)
    int32 label map (focal lesions, then veins) and the lesion records (canonical voxels)."""
    grid = config.grid
    phase_per_ppm = radians_per_ppm(protocol.field_t, protocol.te_s)
    b0 = np.asarray(protocol.b0_dir)
    focal = random_lesions(
        scene.anatomy,
        rng,
        protocol.te_s,
        config.lesions,
        veins=scene.veins,
        field_t=protocol.field_t,
    )
    labels = np.zeros(grid.shape, dtype=np.int32)
    lesions = []
    for index, lesion in enumerate(focal, start=1):
        patch = lesion_patch(lesion, grid.shape, grid.spacing_mm, b0, phase_per_ppm)
        scene.signal[patch.box] *= patch.factor
        labels[patch.box][patch.apparent & (labels[patch.box] == 0)] = index
        lesions.append(
            focal_record(
                index, lesion, apparent_diameter_mm(patch, grid.spacing_mm), is_visible(patch)
            )
        )
    first_vein_id = len(focal) + 1
    vein_voxels = (scene.vein_fraction >= VEIN_LABEL_FRACTION) & (labels == 0)
    labels[vein_voxels] = scene.vein_owner[vein_voxels] + (first_vein_id - 1)
    lesions += [vein_record(first_vein_id + n, vein) for n, vein in enumerate(scene.veins)]
    return labels, lesions


@dataclass
class _Images:
    """What the scanner gives: (X, Y, Z) float32 ``magnitude`` and ``swi`` (stored intensity
    scale), ``hp_phase`` and ``raw_phase`` (radians), and the bool ``brain_mask``; the noise
    level and intensity scale used."""

    magnitude: np.ndarray
    swi: np.ndarray
    hp_phase: np.ndarray
    raw_phase: np.ndarray
    brain_mask: np.ndarray
    noise_sigma: float
    intensity_scale: float

    def volumes(self) -> tuple[np.ndarray, ...]:
        return self.magnitude, self.swi, self.hp_phase, self.raw_phase


def _acquire(
    scene: _Scene,
    protocol: Protocol,
    families: dict[str, str],
    rng: np.random.Generator,
    extra: np.random.Generator,
    echo: EchoOf | None = None,
) -> _Images:
    """Coil bias, noise and artefacts on ``scene.signal`` (in place), then the images."""
    signal = scene.signal
    signal *= scene.smooth["bias"]
    sigma = gre_signal(TISSUES["wm"], protocol) / protocol.snr_white_matter
    sigma = float(sigma) if echo is None else echo.noise_sigma
    _add_complex_noise(signal, sigma, rng)
    add_artefacts(signal, families["artefacts"], extra)  # on what was acquired, noise and all
    hp_phase = homodyne_highpass(signal, protocol.hp_window, workers=_fft_workers())
    magnitude = np.abs(signal)
    if echo is None:
        scale = protocol.stored_max_intensity / np.percentile(magnitude[::4, ::4], 99.9)
    else:
        scale = echo.intensity_scale
    magnitude *= np.float32(scale)
    raw_phase = np.angle(signal).astype(np.float32)
    swi = swi_from(magnitude, hp_phase, power=int(families["swi_power"]))
    brain = scene.smooth["brain"] >= 0.5
    return _Images(magnitude, swi, hp_phase, raw_phase, brain, sigma, float(scale))


def _extra_seed(seed: np.random.SeedSequence) -> np.random.SeedSequence:
    """A stream of the subject's own, apart from the main one (families, artefacts)."""
    return np.random.SeedSequence(seed.entropy, spawn_key=(*seed.spawn_key, 2**31 - 1))


IRON_SCALES = {"faint": (0.3, 0.7), "typical": (0.8, 1.3), "dark": (1.6, 2.6)}
"""Deep grey-matter iron of each ``iron`` family, times the atlas' nucleus values."""


def _iron_scale(family: str, rng: np.random.Generator) -> float:
    return float(rng.uniform(*IRON_SCALES[family]))


def add_artefacts(signal: np.ndarray, family: str, rng: np.random.Generator) -> None:
    """Acquisition artefacts of an ``artefacts`` family, in place on the complex (X, Y, Z)
    signal, along the phase-encoding axis y: ``ringing`` keeps only the central 60-85% of
    k-space (Gibbs rings, blur), ``motion`` shifts the phase of 8-20% of k-space lines (ghosts),
    ``both`` does both, ``none`` nothing."""
    if family == "none":
        return
    spectrum = scipy.fft.fft(signal, axis=1, workers=_fft_workers())  # (X, ky, Z)
    ny = signal.shape[1]
    k = np.abs(scipy.fft.fftfreq(ny) * ny)  # (ky,) distance from the centre, samples
    if family in ("ringing", "both"):
        spectrum[:, k > rng.uniform(0.6, 0.85) * ny / 2, :] = 0
    if family in ("motion", "both"):
        moved = rng.random(ny) < rng.uniform(0.08, 0.2)
        moved &= k > 4  # the centre of k-space, acquired in a breath, stays
        shift = np.exp(1j * rng.uniform(-np.pi / 4, np.pi / 4, ny)).astype(np.complex64)
        spectrum[:, moved, :] *= shift[moved][None, :, None]
    signal[...] = scipy.fft.ifft(spectrum, axis=1, workers=_fft_workers())


def _strip_skull(volumes, brain: np.ndarray, spacing_mm) -> None:
    """Zero the (X, Y, Z) ``volumes`` in place farther than 2 mm outside the (X, Y, Z) bool
    ``brain`` mask, as a skull-stripped input is; ``spacing_mm`` is the voxel size."""
    kept = ndimage.distance_transform_edt(~brain, sampling=spacing_mm) <= 2.0
    for volume in volumes:
        volume[~kept] = 0


def _fft_workers() -> int:
    """FFT threads: ``$CMBDET_THREADS`` when set (parallel subjects), else all cores."""
    return int(os.environ.get("CMBDET_THREADS", "0")) or -1


def _smooth_maps(
    anatomy: WorkAnatomy,
    protocol: Protocol,
    work: Grid,
    rng: np.random.Generator,
    iron_scale: float = 1.0,
) -> dict[str, np.ndarray]:
    """Tissue susceptibility and signal, brain fraction, background phase and coil bias on the
    work grid (all (x, y, z) float32); deep grey-matter iron ``iron_scale`` times the atlas'."""
    channels = anatomy.channels
    iron = channels["iron_chi"] * np.float32(iron_scale)
    chi = sum(channels[name] * np.float32(t.chi_ppm) for name, t in TISSUES.items())
    chi = chi + iron
    signal = sum(
        channels[name] * np.float32(gre_signal(t, protocol)) for name, t in TISSUES.items()
    )
    # iron's R2* is all mesoscopic dephasing, proportional to B0 (tissue R2* has a
    # field-independent R2 part, see config.r2star_scale)
    iron_r2star = IRON_R2STAR_PER_PPM * protocol.field_t / 3.0  # per ppm, at this field
    signal = signal * np.exp(-protocol.te_s * iron_r2star * iron)
    texture = _tissue_texture(anatomy.shape, rng) * (channels["gm"] + channels["wm"])
    signal *= 1.0 + TEXTURE_SIGNAL * texture
    chi += TEXTURE_CHI_PPM * texture
    coordinates = work_grid_coordinates(work.shape, work.spacing_mm)
    half_fov = np.asarray(work.fov_mm) / 2
    b0 = np.asarray(protocol.b0_dir)
    background_field, air = air_cavities(coordinates, anatomy.warp, b0, rng)
    signal[air] = 0.0  # nothing to image inside the sinuses
    background_field += shim_residual(coordinates, half_fov, rng)
    background_phase = radians_per_ppm(protocol.field_t, protocol.te_s) * background_field
    background_phase += coil_phase(coordinates, half_fov, rng)
    return {
        "chi": chi,
        "signal": signal,
        "brain": anatomy.brain,
        "background_phase": background_phase,
        "bias": intensity_bias(coordinates, half_fov, rng),
    }


def _tissue_texture(shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """Unit-variance random texture with about 1-2 mm grain (X, Y, Z float32): the template's
    1 mm tissue maps alone are smoother than real tissue."""
    noise = rng.standard_normal(shape, dtype=np.float32)
    texture = ndimage.gaussian_filter(noise, sigma=(0.8, 0.8, 0.4))
    return texture / np.float32(texture.std() + 1e-6)


def _upsample(maps: dict[str, np.ndarray], shape: tuple[int, int, int]) -> dict[str, np.ndarray]:
    """Trilinear interpolation of work-grid maps onto the acquisition grid (same FOV)."""
    names = list(maps)
    stacked = torch.from_numpy(np.stack([maps[n].astype(np.float32) for n in names]))[None]
    if tuple(stacked.shape[2:]) != tuple(shape):
        stacked = F.interpolate(stacked, size=shape, mode="trilinear", align_corners=False)
    return {name: stacked[0, c].numpy() for c, name in enumerate(names)}  # each (X, Y, Z)


def _partial_volume_signal(
    tissue_signal: np.ndarray,
    vein_fraction: np.ndarray,
    vein_orientation: np.ndarray,
    protocol: Protocol,
    phase_per_ppm: float,
) -> np.ndarray:
    """|tissue + blood| of voxels partly filled by a vein (X, Y, Z float32).

    Blood inside a vessel at angle theta to B0 precesses with an extra
    ``delta_chi / 6 * (3 cos^2 theta - 1)`` ppm against the tissue around it, so the two parts
    of a partial-volume voxel partly cancel: the reason veins are dark in SWI magnitude.
    """
    blood = Tissue(VENOUS_BLOOD.m0, VENOUS_BLOOD.t1_s, protocol.venous_r2star_per_s, 0.0)  # 3 T
    blood_signal = np.float32(gre_signal(blood, protocol))
    inside_phase = np.float32(phase_per_ppm * protocol.venous_delta_chi_ppm / 6.0)
    inside_phase = inside_phase * vein_orientation  # (X, Y, Z) radians relative to tissue
    real = tissue_signal * (1.0 - vein_fraction) + blood_signal * vein_fraction * np.cos(
        inside_phase
    )
    imaginary = blood_signal * vein_fraction * np.sin(inside_phase)
    return np.sqrt(real * real + imaginary * imaginary)


def _dephasing(phase: np.ndarray) -> np.ndarray:
    """Intra-voxel dephasing of a smooth phase: prod over axes of |sinc(d phase / 2 pi)|,
    where d phase is the phase change across one voxel (radians)."""
    attenuation = np.ones(phase.shape, dtype=np.float32)
    for axis in range(3):
        across_voxel = np.gradient(phase, axis=axis)
        attenuation *= np.abs(np.sinc(across_voxel / np.float32(2 * np.pi)))
    return attenuation


def _add_complex_noise(signal: np.ndarray, sigma: float, rng: np.random.Generator) -> None:
    """Add circular complex Gaussian noise of standard deviation ``sigma`` per channel."""
    signal.real += rng.standard_normal(signal.shape, dtype=np.float32) * np.float32(sigma)
    signal.imag += rng.standard_normal(signal.shape, dtype=np.float32) * np.float32(sigma)


def _acquisition_affine(grid: Grid, rng: np.random.Generator) -> np.ndarray:
    """Canonical RAS voxel -> world mm; FOV centred near the magnet isocentre."""
    spacing = np.asarray(grid.spacing_mm)
    table_offset = rng.uniform(-15.0, 15.0, 3)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = -(np.asarray(grid.shape) - 1) / 2 * spacing + table_offset
    return affine
