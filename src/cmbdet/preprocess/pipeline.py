"""SWI + phase -> the networks' view: canonical phase, brain mask, normalised intensities on
the model grid, and the paper's two-channel slice images.

Order of work (native grid first, because the homodyne window and the detectors' length scales
belong to the acquisition):

1. brain mask: given, or :func:`~cmbdet.preprocess.mask.estimate_brain_mask` from SWI (from
   the magnitude when there is no SWI);
2. phase: :func:`~cmbdet.preprocess.phase.canonical_phase` (units, raw -> homodyne with the
   magnitude as modulus, or a lightly smoothed SWI when no magnitude is given, handedness from
   the SWI's dark voxels, or the magnitude's when there is no SWI);
3. without an SWI, the SWI computed from the magnitude and the canonical phase (Haacke,
   :data:`COMPUTED_SWI_POWER`); SWI / median in the brain;
4. resampling to the model grid, ``target_in_plane_mm`` pixels and, when set,
   ``target_slice_mm`` slices (images linear, phase through its phasor, mask nearest);
5. phase normalised to [-1, 1].

A phase-free model (``PreprocessConfig.reads_phase`` False) skips 2, 3 and 5: its image (SWI
or T2*-weighted magnitude) is normalised and resampled as an SWI is, and its phase arrays are
zeros.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cmbdet.errors import InputError
from cmbdet.io.nifti import Volume, check_same_grid
from cmbdet.preprocess.config import PreprocessConfig
from cmbdet.preprocess.handedness import detect_handedness_from_lobes
from cmbdet.preprocess.intensity import complemented_phase, normalise_phase, normalise_swi
from cmbdet.preprocess.mask import estimate_brain_mask
from cmbdet.preprocess.phase import (
    PhaseDecisions,
    canonical_phase,
    default_hp_window,
)
from cmbdet.preprocess.resample import ResampleMap, resample_phase_to
from cmbdet.swi import swi_from

COMPUTED_SWI_POWER = 4
"""Negative-phase mask power of an SWI computed from magnitude and phase (Haacke's usual)."""
SIGN_CONFLICT_CONFIDENCE = 0.1
"""With an SWI and a magnitude, a detected handedness that the magnitude's dipole lobes
contradict with at least this confidence means the SWI was made with the other phase sign."""


class SwiSignConflict(ValueError):
    """The SWI's dark voxels and the magnitude's dipole lobes disagree on the phase sign."""


@dataclass(frozen=True, eq=False)
class Preprocessed:
    """One subject, ready for the networks. Arrays are canonical RAS+ on the *model* grid
    (X', Y', Z'): axial slices along the last axis, resampled in-plane, and through-plane when
    the config sets a slice thickness (otherwise the slices are as acquired).

    Attributes:
        swi: (X', Y', Z') float32 SWI / brain median, clipped to [0, 2].
        phase_rad: (X', Y', Z') float32 canonical phase: high-pass, radians, right-handed.
        phase_norm: (X', Y', Z') float32 ``clip(phase_rad / phase_scale_rad, -1, 1)``.
        brain: (X', Y', Z') bool brain mask.
        spacing_mm: model-grid voxel size (x, y, z), mm.
        native_shape: canonical (X, Y, Z) of the input.
        native_spacing_mm: canonical input voxel size, mm.
        grid: exact native <-> model voxel map.
        decisions: what was found or assumed about the phase (for ``run.json``); None for a
            phase-free model (``config.reads_phase`` False), whose phase arrays are zeros.
        mask_estimated: True when the brain mask was estimated from SWI.
        config: the settings used.
        phase_native: (X, Y, Z) float32 canonical phase on the input's canonical grid (what
            the report shows), kept only when asked for; else None.
        swi_native: (X, Y, Z) float32 SWI computed from the magnitude and phase on the
            input's canonical grid (stored intensity scale); None when an SWI was given.
    """

    swi: np.ndarray
    phase_rad: np.ndarray
    phase_norm: np.ndarray
    brain: np.ndarray
    spacing_mm: tuple[float, float, float]
    native_shape: tuple[int, int, int]
    native_spacing_mm: tuple[float, float, float]
    grid: ResampleMap
    decisions: PhaseDecisions | None
    mask_estimated: bool
    config: PreprocessConfig
    phase_native: np.ndarray | None = None
    swi_native: np.ndarray | None = None

    def record(self) -> dict:
        """What preprocessing did, JSON-ready (for ``run.json``)."""
        computed = (
            f"computed: magnitude x negative-phase mask^{COMPUTED_SWI_POWER} of the canonical "
            "phase; phase handedness decided from the dipole lobes around the magnitude's "
            "dark voxels"
        )
        image = "SWI" if self.swi_native is None else "magnitude"
        swi = "given" if self.swi_native is None else computed
        if self.decisions is None:  # a phase-free model's run
            image, swi = "the image", "the image as given (SWI or magnitude), no phase"
        return {
            "config": self.config.to_json(),
            "swi": swi,
            "phase": None if self.decisions is None else self.decisions.to_json(),
            "brain_mask": f"estimated from {image}" if self.mask_estimated else "given",
            "native_shape": list(self.native_shape),
            "native_spacing_mm": list(self.native_spacing_mm),
            "model_shape": list(self.grid.model_shape),
            "model_spacing_mm": list(self.spacing_mm),
        }


def preprocess(
    swi: Volume | None,
    phase: Volume | None,
    *,
    magnitude: Volume | None = None,
    mask: np.ndarray | None = None,
    config: PreprocessConfig = PreprocessConfig(),
    phase_units: str = "auto",
    handedness: str = "auto",
    phase_kind: str = "auto",
    keep_native_phase: bool = False,
) -> Preprocessed:
    """Prepare one subject from its volumes (see :func:`preprocess_arrays`).

    Args:
        swi: SWI volume; None to compute it from ``magnitude`` and the phase (or, for a
            phase-free model, to use the magnitude as it is).
        phase: phase volume on the same grid; None (or ignored) for a phase-free model
            (``config.reads_phase`` False).
        magnitude: optional magnitude on the same grid (homodyne modulus for raw phase);
            required without ``swi``.
        mask: optional (X, Y, Z) bool brain mask on the canonical grid (e.g. from
            :func:`cmbdet.io.nifti.load_mask`).
        config: preprocessing settings.
        phase_units, handedness, phase_kind: "auto" or the stored phase's units
            ("radians"/"integer"), handedness ("right"/"left") and kind ("filtered"/"raw").
        keep_native_phase: keep the canonical phase on the input grid (``phase_native``).

    Raises:
        InputError: grids differ, the mask has another shape, the phase units cannot be
            told, or a model that reads phase is given none.
    """
    reference = swi if swi is not None else magnitude
    if reference is None:
        raise InputError(None if phase is None else phase.path, "an SWI or a magnitude is needed")
    if not config.reads_phase:
        phase = None  # a phase-free model never reads it
    elif phase is None:
        raise InputError(reference.path, "this model needs the phase image too")
    else:
        check_same_grid(phase, reference)
    if magnitude is not None:
        check_same_grid(magnitude, reference)
    if mask is not None and mask.shape != reference.shape:
        raise InputError(None, f"brain mask shape {mask.shape} differs from {reference.shape}")
    try:
        return preprocess_arrays(
            None if swi is None else swi.data,
            None if phase is None else phase.data,
            reference.spacing_mm,
            magnitude=None if magnitude is None else magnitude.data,
            brain=mask,
            config=config,
            phase_units=phase_units,
            handedness=handedness,
            phase_kind=phase_kind,
            keep_native_phase=keep_native_phase,
        )
    except SwiSignConflict as error:
        raise InputError(swi.path, str(error)) from None
    except ValueError as error:
        raise InputError((phase or reference).path, str(error)) from None


def preprocess_arrays(
    swi: np.ndarray | None,
    phase: np.ndarray | None,
    spacing_mm: tuple[float, float, float],
    *,
    magnitude: np.ndarray | None = None,
    brain: np.ndarray | None = None,
    config: PreprocessConfig = PreprocessConfig(),
    phase_units: str = "auto",
    handedness: str = "auto",
    phase_kind: str = "auto",
    keep_native_phase: bool = False,
) -> Preprocessed:
    """Prepare canonical arrays (the in-memory form of :func:`preprocess`).

    Args:
        swi: (X, Y, Z) SWI, any positive scale, canonical RAS+; None to compute it from
            ``magnitude`` and the canonical phase (a phase-free model reads the magnitude).
        phase: (X, Y, Z) stored phase (any units, kind, handedness); None for a phase-free
            model (``config.reads_phase`` False), which ignores any phase given.
        spacing_mm: voxel size (x, y, z), mm.
        magnitude: (X, Y, Z) magnitude or None.
        brain: (X, Y, Z) bool brain mask or None (then estimated from SWI).
        config, phase_units, handedness, phase_kind, keep_native_phase: see
            :func:`preprocess`.

    Raises:
        ValueError: an unknown option, or phase units that cannot be told.
    """
    spacing = tuple(float(s) for s in spacing_mm)
    if not config.reads_phase:
        return _phase_free(swi if swi is not None else magnitude, spacing, brain, config)
    if phase is None:
        raise ValueError("this model needs the phase image too")
    computed = swi is None
    if computed and magnitude is None:
        raise ValueError("an SWI or a magnitude is needed with the phase")
    if magnitude is not None:
        magnitude = np.asarray(magnitude, dtype=np.float32)
    intensity = magnitude if computed else np.asarray(swi, dtype=np.float32)
    mask_estimated = brain is None
    if brain is None:
        brain = estimate_brain_mask(intensity, spacing)
    brain = np.asarray(brain, bool)
    hp_window = default_hp_window(intensity.shape, spacing, config.hp_window_per_256mm)
    phase_rad, decisions = canonical_phase(
        np.asarray(phase),
        brain,
        magnitude,  # None: a smoothed SWI stands in, for raw phase only
        spacing_mm=spacing,
        units=phase_units,
        handedness=handedness,
        kind=phase_kind,
        hp_window=hp_window,
        handedness_image=intensity,
        handedness_from_lobes=computed,
    )
    if not computed and magnitude is not None and decisions.handedness_detected:
        _check_swi_sign(magnitude, phase_rad, brain, spacing)
    swi = swi_from(magnitude, phase_rad, COMPUTED_SWI_POWER) if computed else intensity
    swi_norm = normalise_swi(swi, brain)

    grid = ResampleMap.for_target(
        swi.shape, spacing, config.target_in_plane_mm, config.target_slice_mm
    )
    swi_model = grid.to_model(swi_norm, order=1)
    phase_model = resample_phase_to(phase_rad, grid.model_shape)
    brain_model = grid.to_model(brain, order=0)
    return Preprocessed(
        swi=swi_model,
        phase_rad=phase_model,
        phase_norm=normalise_phase(phase_model, config.phase_scale_rad),
        brain=brain_model,
        spacing_mm=grid.model_spacing_mm,
        native_shape=grid.native_shape,
        native_spacing_mm=grid.native_spacing_mm,
        grid=grid,
        decisions=decisions,
        mask_estimated=mask_estimated,
        config=config,
        phase_native=phase_rad if keep_native_phase else None,
        swi_native=swi if computed else None,
    )


def _phase_free(
    image: np.ndarray | None,
    spacing: tuple[float, float, float],
    brain: np.ndarray | None,
    config: PreprocessConfig,
) -> Preprocessed:
    """A phase-free model's view of an SWI or a T2*-weighted magnitude: the image normalised and
    resampled as an SWI is, and zero phase (the networks' phase inputs carry nothing)."""
    if image is None:
        raise ValueError("an SWI or a magnitude is needed")
    image = np.asarray(image, dtype=np.float32)
    mask_estimated = brain is None
    brain = np.asarray(estimate_brain_mask(image, spacing) if brain is None else brain, bool)
    grid = ResampleMap.for_target(
        image.shape, spacing, config.target_in_plane_mm, config.target_slice_mm
    )
    zero_phase = np.zeros(grid.model_shape, dtype=np.float32)
    return Preprocessed(
        swi=grid.to_model(normalise_swi(image, brain), order=1),
        phase_rad=zero_phase,
        phase_norm=zero_phase,
        brain=grid.to_model(brain, order=0),
        spacing_mm=grid.model_spacing_mm,
        native_shape=grid.native_shape,
        native_spacing_mm=grid.native_spacing_mm,
        grid=grid,
        decisions=None,
        mask_estimated=mask_estimated,
        config=config,
    )


def _check_swi_sign(magnitude, phase_rad, brain, spacing) -> None:
    """Refuse an SWI made with the other phase sign: its dark voxels (which decided the
    handedness) then sit where the phase is positive, and the magnitude's dipole lobes
    (:func:`~cmbdet.preprocess.handedness.detect_handedness_from_lobes`) say "left" of a phase
    already made right-handed.

    Raises:
        SwiSignConflict: with advice.
    """
    every = max(1, magnitude.shape[2] // 24)  # a quick check: about 24 slices judged
    check = detect_handedness_from_lobes(magnitude, phase_rad, brain, spacing, every=every)
    if check.handedness == "left" and check.confidence >= SIGN_CONFLICT_CONFIDENCE:
        raise SwiSignConflict(
            "SWI looks made with the other phase sign: its dark voxels and the dipoles around "
            f"the magnitude's dark voxels disagree (confidence {check.confidence:.2f}); leave "
            "out --swi to have cmbdet compute one, or give --phase-handedness"
        )


def slice_images(pre: Preprocessed) -> np.ndarray:
    """The paper's two-channel slice images on the model grid, plus any context slices.

    Channel 0: normalised SWI averaged over each slice and ``config.slab_average`` neighbours
    on each side (the available ones at the ends of the slab). Channel 1: the complemented
    phase ``1 + phase_norm`` (tissue ~ 1, CMBs dark; see :mod:`cmbdet.preprocess.intensity`).
    Channels 2...: the SWI of the slice ``d`` slices away for each ``d`` in
    ``config.context_slices`` (the end slice repeated beyond the slab).

    Returns:
        (Z', C, X', Y') float32 (one image per model slice), C = ``config.channels``; the
        whole stack that :class:`SliceStack` makes part by part.
    """
    stack = SliceStack(pre)
    return stack.crop(np.arange(stack.shape[0]), slice(None), slice(None))


class SliceStack:
    """The slice images of :func:`slice_images`, made a few slices at a time where they are
    read (detection's stage 1): without the whole (Z', C, X', Y') stack in memory, and only
    within the part of the slices a batch reads.

    Attributes:
        shape: (Z', C, X', Y'), the shape of the stack :func:`slice_images` would make.
    """

    def __init__(self, pre: Preprocessed):
        self._swi, self._phase, self._config = pre.swi, pre.phase_norm, pre.config
        nx, ny, depth = pre.swi.shape
        self.shape = (depth, pre.config.channels, nx, ny)

    def crop(self, chosen: np.ndarray, x: slice, y: slice) -> np.ndarray:
        """``slice_images(pre)[chosen][:, :, x, y]``: (N, C, x, y) float32 for the N slice
        indices ``chosen``.

        The slices within reach of ``chosen`` are first copied slice-major, (z, x, y): every
        slice the images take is then one contiguous plane, where taking slices across the
        last axis of the (X', Y', Z') volume gathered single values (~3x slower).
        """
        depth = self.shape[0]
        chosen = np.asarray(chosen)
        neighbours = max(self._config.slab_average, 0)
        reach = max([neighbours, *(abs(offset) for offset in self._config.context_slices)])
        copied = slice(0, 0)  # no slices chosen: nothing to copy
        if chosen.size:
            copied = slice(
                max(int(chosen.min()) - reach, 0), min(int(chosen.max()) + reach + 1, depth)
            )

        def slice_major(volume: np.ndarray) -> np.ndarray:  # (X', Y', Z') -> (z, x, y)
            return np.ascontiguousarray(np.moveaxis(volume[x, y, copied], 2, 0))

        def slices(copy: np.ndarray, offset: int) -> np.ndarray:  # (N, x, y)
            """Slices ``chosen + offset`` (the end slice beyond the stack) of a slice-major
            copy, whose index 0 is slice ``copied.start``."""
            return copy[np.clip(chosen + offset, 0, depth - 1) - copied.start]

        swi = slice_major(self._swi)
        out = np.empty((len(chosen), self.shape[1], *swi.shape[1:]), dtype=np.float32)
        total = slices(swi, 0).astype(np.float32)  # the slice, then its neighbours outwards
        for offset in range(1, neighbours + 1):
            total += np.where((chosen >= offset)[:, None, None], slices(swi, -offset), 0)
            total += np.where((chosen < depth - offset)[:, None, None], slices(swi, offset), 0)
        first_averaged = np.maximum(chosen - neighbours, 0)
        counts = np.minimum(chosen + neighbours, depth - 1) - first_averaged + 1
        out[:, 0] = total / counts.astype(np.float32)[:, None, None]
        out[:, 1] = complemented_phase(slices(slice_major(self._phase), 0))
        for channel, offset in enumerate(self._config.context_slices, start=2):
            out[:, channel] = slices(swi, offset)
        return out
