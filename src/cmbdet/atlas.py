"""Anatomical regions in MNI space, shared by the generator (where it places CMBs) and the
report (where it counts them): the MARS rating's lobar, deep and infratentorial territories as
approximate boxes in MNI ICBM152 2009 millimetres (not a parcellation)."""

from __future__ import annotations

import numpy as np

REGION_NONE, REGION_LOBAR, REGION_DEEP, REGION_INFRATENTORIAL = 0, 1, 2, 3
REGION_NAMES = {REGION_LOBAR: "lobar", REGION_DEEP: "deep", REGION_INFRATENTORIAL: "infratentorial"}


def region_of_mni(points_mni: np.ndarray) -> np.ndarray:
    """MARS-like anatomical region of MNI points (approximate boxes, not a parcellation).

    Args:
        points_mni: (..., 3) MNI mm.

    Returns:
        (...) uint8 codes: REGION_LOBAR, REGION_DEEP or REGION_INFRATENTORIAL.
    """
    x, y, z = points_mni[..., 0], points_mni[..., 1], points_mni[..., 2]
    brainstem = (np.abs(x) < 14) & (y > -42) & (y < -12) & (z < -14)
    cerebellum = (y <= -40) & (z < -14)
    infratentorial = brainstem | cerebellum
    basal_ganglia_thalamus = (np.abs(x) < 30) & (y > -35) & (y < 25) & (z > -10) & (z < 25)
    corpus_callosum = (np.abs(x) < 10) & (y > -40) & (y < 35) & (z > 5) & (z < 30)
    deep = (basal_ganglia_thalamus | corpus_callosum) & ~infratentorial
    region = np.full(x.shape, REGION_LOBAR, dtype=np.uint8)
    region[deep] = REGION_DEEP
    region[infratentorial] = REGION_INFRATENTORIAL
    return region
