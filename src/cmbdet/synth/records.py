"""Ground-truth records of a generated subject's lesions and veins (lesions.csv rows)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from cmbdet.geometry import voxel_to_world
from cmbdet.io.lesions import Lesion
from cmbdet.synth.config import Grid
from cmbdet.synth.lesions import FocalLesion
from cmbdet.synth.vessels import Vein


def focal_record(lesion_id: int, lesion: FocalLesion, apparent_mm: float, visible: bool):
    return Lesion(
        lesion_id=lesion_id,
        kind=lesion.kind,
        x_mm=float(lesion.centre_mm[0]),
        y_mm=float(lesion.centre_mm[1]),
        z_mm=float(lesion.centre_mm[2]),
        i=0.0,
        j=0.0,
        k=0.0,
        diameter_mm=apparent_mm,
        visible=visible,
        true_diameter_mm=lesion.true_diameter_mm,
        delta_chi_ppm=lesion.delta_chi_ppm,
        region=lesion.region,
        shape=lesion.shape,
    )


def vein_record(lesion_id: int, vein: Vein) -> Lesion:
    centre = vein.midpoint_mm
    return Lesion(
        lesion_id=lesion_id,
        kind="vein",
        x_mm=float(centre[0]),
        y_mm=float(centre[1]),
        z_mm=float(centre[2]),
        i=0.0,
        j=0.0,
        k=0.0,
        diameter_mm=2 * vein.radius_mm,
        visible=True,
        true_diameter_mm=2 * vein.radius_mm,
        delta_chi_ppm=None,
        region=None,
        shape=vein.orientation,
    )


def to_world(lesion: Lesion, grid: Grid, affine: np.ndarray) -> Lesion:
    """Subject mm (held in x/y/z_mm) -> canonical voxel indices and world mm."""
    subject = np.array([lesion.x_mm, lesion.y_mm, lesion.z_mm])
    voxel = subject / np.asarray(grid.spacing_mm) + (np.asarray(grid.shape) - 1) / 2
    world = voxel_to_world(voxel, affine)
    return replace(
        lesion,
        i=float(voxel[0]),
        j=float(voxel[1]),
        k=float(voxel[2]),
        x_mm=float(world[0]),
        y_mm=float(world[1]),
        z_mm=float(world[2]),
    )
