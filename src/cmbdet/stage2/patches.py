"""3D patches around candidates on the model grid.

The model grid has a fixed in-plane pixel (``PreprocessConfig.target_in_plane_mm``), so a patch
of fixed voxel size covers the same millimetres at every in-plane resolution; through-plane too
where the model sets a slice thickness (``target_slice_mm``: 2 mm for models trained from
generator 2.2 on), otherwise the slices keep their thickness (2 mm in the paper's protocols).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cmbdet.config import JsonConfig, check_each, check_range


@dataclass(frozen=True)
class PatchConfig(JsonConfig):
    """Patch size in model-grid voxels (x, y, slices)."""

    size: tuple[int, int, int] = (24, 24, 7)  # 12 x 12 x 14 mm at 0.5 x 0.5 x 2 mm

    def __post_init__(self):
        object.__setattr__(self, "size", tuple(int(n) for n in self.size))
        if len(self.size) != 3:
            raise ValueError(f"size {self.size}: expected 3 values (x, y, slices)")
        # stage 2 pools in-plane twice by 2: at least 4 voxels in-plane
        check_each("size", self.size[:2], 4, 128)
        check_range("size[2]", self.size[2], 1, 64)


def extract_patches(
    swi: np.ndarray, phase_norm: np.ndarray, centres: np.ndarray, config: PatchConfig
) -> np.ndarray:
    """Patches centred on candidates, padded with tissue level outside the volume.

    Args:
        swi: (X, Y, Z) normalised SWI on the model grid (tissue ~ 1).
        phase_norm: (X, Y, Z) normalised phase on the model grid (tissue ~ 0).
        centres: (N, 3) model-grid voxel coordinates (float).
        config: patch size.

    Returns:
        (N, 2, sx, sy, sz) float32: channel 0 SWI, channel 1 ``1 + phase_norm``.
    """
    size = np.asarray(config.size)
    half = size // 2
    shape = np.asarray(swi.shape)
    # the window of each patch, in volume voxels: centred on the rounded centre, and kept
    # within one voxel plus half a patch of the volume (the rest is tissue level)
    centres = np.round(np.asarray(centres, dtype=np.float64).reshape(-1, 3)).astype(int)
    starts = np.clip(centres + 1, 0, shape + 2 * half + 2 - size) - half - 1
    patches = np.ones((len(starts), 2, *size), dtype=np.float32)
    for n, start in enumerate(starts):
        low, high = np.maximum(start, 0), np.minimum(start + size, shape)
        if np.any(high <= low):
            continue  # wholly outside: tissue level
        inside = tuple(slice(a, b) for a, b in zip(low, high, strict=True))
        target = tuple(slice(a - s0, b - s0) for a, b, s0 in zip(low, high, start, strict=True))
        patches[(n, 0, *target)] = swi[inside]
        patches[(n, 1, *target)] = 1.0 + phase_norm[inside]
    return patches
