"""What the detector can take: SWI-like voxel sizes, a head-sized field of view, and memory.

These run after loading and before any work, so that a file with the wrong units or a volume
too large for this machine ends with one clear message instead of a crash or the OOM killer.
"""

from __future__ import annotations

import os

import numpy as np

from cmbdet.errors import InputError
from cmbdet.io.nifti import Volume
from cmbdet.preprocess.config import PreprocessConfig
from cmbdet.preprocess.resample import ResampleMap

IN_PLANE_MM = (0.1, 4.0)  # SWI in-plane voxel sizes cmbdet accepts, mm
SLICE_MM = (0.1, 10.0)  # slice thickness, mm
MIN_FIELD_OF_VIEW_MM = 40.0  # in-plane, both axes
MIN_SLICES = 3
# peak memory of one detect: bytes per input voxel and per model-grid voxel, fitted to peaks
# measured on lr (0.71 GiB), hr (0.90 GiB) and 1024 x 1024 x 200 (6.46 GiB) inputs with a
# 20-50% margin (benchmarks/RESULTS.md, "Large inputs")
BYTES_PER_INPUT_VOXEL = 32
BYTES_PER_MODEL_VOXEL = 56
BASE_BYTES = 400 * 2**20  # the interpreter, torch and the models


def check_swi_geometry(swi: Volume) -> None:
    """Refuse voxel sizes and fields of view that an SWI of a head cannot have.

    Raises:
        InputError: naming the SWI file, the values found and what is expected.
    """
    spacing = np.asarray(swi.spacing_mm, dtype=float)
    in_plane, thickness = spacing[:2], spacing[2]
    if in_plane.min() < IN_PLANE_MM[0] or in_plane.max() > IN_PLANE_MM[1]:
        raise InputError(
            swi.path,
            f"in-plane voxel size {_mm(in_plane)} mm is outside {IN_PLANE_MM[0]:g}-"
            f"{IN_PLANE_MM[1]:g} mm: wrong units in the header, or not an SWI",
        )
    if not SLICE_MM[0] <= thickness <= SLICE_MM[1]:
        raise InputError(
            swi.path,
            f"slice thickness {thickness:.4g} mm is outside {SLICE_MM[0]:g}-{SLICE_MM[1]:g} "
            "mm: wrong units in the header, or not an SWI",
        )
    field_of_view = in_plane * np.asarray(swi.shape[:2])
    if field_of_view.min() < MIN_FIELD_OF_VIEW_MM or swi.shape[2] < MIN_SLICES:
        raise InputError(
            swi.path,
            f"field of view {_mm(field_of_view)} mm x {swi.shape[2]} slices is too small for "
            f"a head (at least {MIN_FIELD_OF_VIEW_MM:g} mm in-plane and {MIN_SLICES} slices)",
        )


def estimated_peak_bytes(
    shape: tuple[int, int, int],
    spacing_mm,
    target_in_plane_mm: float,
    target_slice_mm: float = 0.0,
) -> int:
    """Peak memory of detecting one subject of this input grid, bytes (an upper estimate).

    Model-grid voxels count the larger of the acquired and the model slices: resampling is
    in-plane first, so the in-plane model grid holds the acquired slices for a while."""
    input_voxels = int(np.prod(shape, dtype=np.int64))
    grid = ResampleMap.for_target(shape, spacing_mm, target_in_plane_mm, target_slice_mm)
    model = grid.model_shape
    model_voxels = model[0] * model[1] * max(model[2], int(shape[2]))
    return BASE_BYTES + BYTES_PER_INPUT_VOXEL * input_voxels + BYTES_PER_MODEL_VOXEL * model_voxels


def available_memory_bytes() -> int | None:
    """Memory this process may still use: Linux MemAvailable, else physical memory, else None."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(swi: Volume, preprocess: PreprocessConfig, available: int | None = None) -> None:
    """Refuse an input that would need more memory than is available (before any work), on
    the model grid of ``preprocess``.

    Raises:
        InputError: naming the SWI file, the estimate and what is available.
    """
    available = available_memory_bytes() if available is None else available
    needed = estimated_peak_bytes(
        swi.shape, swi.spacing_mm, preprocess.target_in_plane_mm, preprocess.target_slice_mm
    )
    if available is not None and needed > available:
        raise InputError(
            swi.path,
            f"a {'x'.join(map(str, swi.shape))} volume needs about {needed / 2**30:.1f} GiB of "
            f"memory to process and {available / 2**30:.1f} GiB is available: crop it to the "
            "head, or run on a machine with more memory",
        )


def _mm(values) -> str:
    return "x".join(f"{float(v):.4g}" for v in values)


# ----------------------------------------------------------------------------- image roles

NEGATIVE_FRACTION = 0.01
"""An SWI or magnitude with more voxels below zero than this is not one (a phase, or data
with the wrong sign)."""
MAGNITUDE_LIKE_CORRELATION = 0.8
"""A "phase" that follows the SWI's intensities this closely (Pearson r) is a magnitude."""
MIN_PHASE_SPREAD = 1e-4
"""A phase whose standard deviation is below this fraction of its largest |value| (or 0) is
constant: it carries no phase information."""


def check_image_roles(files: dict[str, object], images: dict[str, Volume]) -> None:
    """Refuse inputs given in the wrong role, before any work: one file in two roles, a
    negative SWI or magnitude (a phase image, or swapped files), a phase identical to the
    SWI, a constant phase, and a phase that is an intensity image. (An SWI identical to the
    magnitude is allowed, with a QC flag: a plain GRE magnitude is a valid, weaker input.)

    Args:
        files: role -> file path (``SWI``, ``phase``, ``magnitude``; None when absent).
        images: role -> loaded volume, for the roles given.

    Raises:
        InputError: naming the file and what it looks like.
    """
    _check_distinct_files(files)
    for role in ("SWI", "magnitude"):
        if role in images:
            _check_not_negative(images[role], role)
    phase, intensity = images.get("phase"), images.get("SWI") or images.get("magnitude")
    if phase is None:  # a phase-free model's subject
        return
    sample = (slice(None, None, 7),) * 3  # a differing sample settles it at once
    if np.array_equal(phase.data[sample], intensity.data[sample]) and np.array_equal(
        phase.data, intensity.data
    ):
        raise InputError(phase.path, f"phase is the same image as {intensity.path}")
    head = intensity.data[::2, ::2, ::2] > np.median(intensity.data[::2, ::2, ::2])
    _check_phase_varies(phase, head)
    _check_phase_not_intensity(phase, intensity, head)


def _check_distinct_files(files: dict[str, object]) -> None:
    seen: dict = {}
    for role, path in files.items():
        if path is None:
            continue
        key = os.path.realpath(path)
        if key in seen:
            raise InputError(path, f"is given both as {seen[key]} and as {role}")
        seen[key] = role


def _check_not_negative(volume: Volume, role: str) -> None:
    if volume.data.min() >= 0:
        return
    negative = float(np.mean(volume.data < 0))
    if negative > NEGATIVE_FRACTION:
        raise InputError(
            volume.path,
            f"{role} is negative in {100 * negative:.0f}% of voxels; an {role} never is "
            "(a phase image, or --swi/--magnitude and --phase swapped?)",
        )


def _check_phase_varies(phase: Volume, head: np.ndarray) -> None:
    """Constant over the head (the brighter half of the intensity image's voxels)."""
    values = phase.data[::2, ::2, ::2][head] if head.any() else phase.data
    spread, largest = float(values.std()), float(np.abs(values).max())
    if spread == 0 or spread < MIN_PHASE_SPREAD * largest:
        raise InputError(
            phase.path,
            f"phase is constant (standard deviation {spread:.3g}, values up to {largest:.3g}): "
            "it carries no phase information",
        )


def _check_phase_not_intensity(phase: Volume, intensity: Volume, head: np.ndarray) -> None:
    """A magnitude-like image given as phase follows the intensities over the head; a real
    phase, raw or filtered, in any units, does not (r ~ 0)."""
    if phase.data.min() < 0:
        return  # phase has negative values
    a = phase.data[::2, ::2, ::2][head].astype(np.float64)
    b = intensity.data[::2, ::2, ::2][head].astype(np.float64)
    if a.size < 2 or a.std() == 0 or b.std() == 0:
        return  # the correlation is undefined
    correlation = float(np.corrcoef(a, b)[0, 1])
    if correlation > MAGNITUDE_LIKE_CORRELATION:
        raise InputError(
            phase.path,
            f"phase looks like an intensity image (it follows {intensity.path.name}, "
            f"r = {correlation:.2f}, and is never negative): --phase takes a phase image",
        )
