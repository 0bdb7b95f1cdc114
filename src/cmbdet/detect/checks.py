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
