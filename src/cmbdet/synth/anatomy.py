"""Subject anatomy: the MNI ICBM152 2009 tissue maps, randomly warped per subject.

The atlas (grey/white-matter probability maps and brain mask that ship inside the nilearn
wheel, so no network is needed) is turned once into a stack of tissue channels in MNI space and
cached on disk. Each subject then gets its own random warp (rotation, anisotropic scale, shift,
smooth elastic displacement) of that stack onto the acquisition field of view, evaluated with
``torch.nn.functional.grid_sample`` on a 1 mm in-plane work grid, which takes well under a
second.

Coordinates: "subject mm" are millimetres in the canonical RAS frame of the acquisition, with
the origin at the centre of the field of view. "MNI mm" are template coordinates.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from cmbdet.atlas import REGION_NONE, region_of_mni

ATLAS_VERSION = 3
CHANNELS = ("gm", "wm", "csf", "csf_outer", "skull", "scalp", "iron_chi", "vein_density")
"""Atlas channels, in order. Tissue channels are fractions in [0, 1]; ``iron_chi`` is the extra
susceptibility of iron-rich deep nuclei in ppm; ``vein_density`` a relative vein density."""
_CHANNEL_SCALE = {"iron_chi": 1000.0}  # stored as uint8: value * scale (default 255)
_PAD_VOXELS = 18


@dataclass(frozen=True)
class DeepNucleus:
    """An iron-bearing deep grey-matter nucleus, approximated by one ellipsoid per hemisphere."""

    name: str
    centre_mni: tuple[float, float, float]  # right hemisphere; mirrored in x
    radii_mm: tuple[float, float, float]
    iron_chi_ppm: float  # susceptibility above cortical grey matter


DEEP_NUCLEI = (
    DeepNucleus("caudate", (13.0, 12.0, 9.0), (5.0, 10.0, 9.0), 0.03),
    DeepNucleus("putamen", (25.0, 2.0, 1.0), (5.0, 13.0, 8.0), 0.03),
    DeepNucleus("globus_pallidus", (19.0, -3.0, -1.0), (3.5, 7.0, 5.0), 0.12),
    DeepNucleus("thalamus", (11.0, -18.0, 7.0), (7.0, 11.0, 8.0), 0.01),
    DeepNucleus("substantia_nigra", (10.0, -17.0, -11.0), (3.0, 6.0, 3.0), 0.12),
    DeepNucleus("red_nucleus", (5.0, -20.0, -8.0), (3.0, 3.0, 3.0), 0.11),
    DeepNucleus("dentate", (15.0, -57.0, -35.0), (5.0, 6.0, 5.0), 0.10),
)


@dataclass(frozen=True, eq=False)
class Atlas:
    """Tissue channels in MNI space.

    Attributes:
        channels: (X, Y, Z, C) uint8 stack (channels last, which grid_sample reads fastest),
            order :data:`CHANNELS`; see :meth:`channel`.
        origin_mni: MNI mm of voxel (0, 0, 0); the grid is 1 mm isotropic, RAS.
    """

    channels: np.ndarray
    origin_mni: tuple[float, float, float]

    def scale(self, name: str) -> float:
        return _CHANNEL_SCALE.get(name, 255.0)

    def channel(self, name: str) -> np.ndarray:
        """One channel as float32 in its physical unit."""
        return self.channels[..., CHANNELS.index(name)].astype(np.float32) / self.scale(name)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.channels.shape[:3]


def cache_dir() -> Path:
    """Where derived data are cached: ``$CMBDET_CACHE`` or ``~/.cache/cmbdet``."""
    root = os.environ.get("CMBDET_CACHE") or Path.home() / ".cache" / "cmbdet"
    return Path(root)


@functools.lru_cache(maxsize=1)
def _atlas_tensor(atlas: Atlas) -> torch.Tensor:
    """(1, C, X, Y, Z) float32 in physical units, channels-last in memory, kept for the
    process."""
    scale = torch.tensor([1.0 / atlas.scale(name) for name in CHANNELS])
    return (torch.from_numpy(atlas.channels).float() * scale).permute(3, 0, 1, 2)[None]


@functools.lru_cache(maxsize=1)
def load_atlas() -> Atlas:
    """The MNI tissue stack, built from nilearn's templates on first use and cached on disk
    (and in memory for the life of the process)."""
    path = cache_dir() / f"mni-atlas-v{ATLAS_VERSION}.npz"
    if path.exists():
        with np.load(path) as cached:
            return Atlas(cached["channels"], tuple(cached["origin_mni"]))
    atlas = build_atlas()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(partial, channels=atlas.channels, origin_mni=np.asarray(atlas.origin_mni))
    os.replace(partial, path)  # atomic: parallel workers may build it at the same time
    return atlas


def build_atlas() -> Atlas:
    """Derive the tissue channels from nilearn's MNI152 2009 templates (offline, ~10 s)."""
    from nilearn import datasets

    gm_img = datasets.load_mni152_gm_template(resolution=1)
    wm = np.asarray(datasets.load_mni152_wm_template(resolution=1).dataobj, dtype=np.float32)
    gm = np.asarray(gm_img.dataobj, dtype=np.float32)
    brain = np.asarray(datasets.load_mni152_brain_mask(resolution=1).dataobj) > 0
    pad = _PAD_VOXELS
    gm, wm, brain = (np.pad(a, pad) for a in (gm, wm, brain))
    origin = tuple(float(v) for v in gm_img.affine[:3, 3] - pad)

    # Intracranial space: the brain mask closed over sulci and cisterns, holes filled, so that
    # the skull and scalp layers wrap the head instead of lining the basal cisterns.
    intracranial = _closed(brain, radius_mm=6.0)
    brain_soft = ndimage.gaussian_filter(intracranial.astype(np.float32), 0.7)
    csf = np.clip(brain_soft - gm - wm, 0.0, 1.0)
    outside_mm = ndimage.distance_transform_edt(~intracranial)
    csf_outer = _band(outside_mm, 0.0, 2.0) * (1.0 - brain_soft)
    skull = _band(outside_mm, 2.0, 8.0)
    scalp = _band(outside_mm, 8.0, 14.0)

    mni = _mni_grid(gm.shape, origin)
    iron = np.zeros_like(gm)
    for nucleus in DEEP_NUCLEI:
        iron = np.maximum(iron, nucleus.iron_chi_ppm * _ellipsoid_membership(mni, nucleus))
    iron *= brain_soft

    inside_mm = ndimage.distance_transform_edt(brain)
    ventricles = (csf > 0.5) & (inside_mm > 12.0)
    to_ventricle_mm = ndimage.distance_transform_edt(~ventricles)
    vein_density = brain_soft * (
        0.15 + np.exp(-inside_mm / 6.0) + 0.7 * np.exp(-to_ventricle_mm / 5.0)
    )
    vein_density /= vein_density.max()

    stack = {
        "gm": gm,
        "wm": wm,
        "csf": csf,
        "csf_outer": csf_outer,
        "skull": skull,
        "scalp": scalp,
        "iron_chi": iron,
        "vein_density": vein_density,
    }
    channels = np.stack(
        [
            np.clip(np.round(stack[name] * _CHANNEL_SCALE.get(name, 255.0)), 0, 255).astype(
                np.uint8
            )
            for name in CHANNELS
        ],
        axis=-1,
    )
    return Atlas(channels, origin)


def _closed(mask: np.ndarray, radius_mm: float) -> np.ndarray:
    """Morphological closing with a ball (via two distance transforms), holes filled."""
    dilated = ndimage.distance_transform_edt(~mask) <= radius_mm
    closed = ndimage.distance_transform_edt(dilated) > radius_mm
    return ndimage.binary_fill_holes(closed | mask)


def _band(distance_mm: np.ndarray, inner: float, outer: float) -> np.ndarray:
    """Soft indicator (1 mm ramps) of ``inner < distance <= outer``."""
    rise = np.clip(distance_mm - inner + 0.5, 0.0, 1.0)
    fall = np.clip(outer - distance_mm + 0.5, 0.0, 1.0)
    return (rise * fall).astype(np.float32)


def _mni_grid(shape: tuple[int, ...], origin: tuple[float, float, float]) -> list[np.ndarray]:
    """Broadcastable MNI mm coordinates of a 1 mm grid."""
    return [
        (np.arange(n, dtype=np.float32) + o).reshape([-1 if a == axis else 1 for a in range(3)])
        for axis, (n, o) in enumerate(zip(shape, origin, strict=True))
    ]


def _ellipsoid_membership(mni: list[np.ndarray], nucleus: DeepNucleus) -> np.ndarray:
    """Soft (about 1 mm edge) membership of both hemispheres' ellipsoids."""
    cx, cy, cz = nucleus.centre_mni
    rx, ry, rz = nucleus.radii_mm
    inside = np.zeros(np.broadcast_shapes(*(m.shape for m in mni)), dtype=np.float32)
    for side in (1.0, -1.0):
        rho = np.sqrt(
            ((mni[0] - side * cx) / rx) ** 2 + ((mni[1] - cy) / ry) ** 2 + ((mni[2] - cz) / rz) ** 2
        )
        inside = np.maximum(inside, np.clip((1.0 - rho) * min(rx, ry, rz) + 0.5, 0.0, 1.0))
    return inside


@dataclass(frozen=True)
class Warp:
    """A random similarity-plus-elastic map from subject mm to MNI mm.

    ``mni = A @ (subject - 0) + centre_mni + elastic(subject)`` with ``A = (R S)^-1``.
    """

    rotation_deg: tuple[float, float, float]  # about x (pitch), y (roll), z (yaw)
    scale: tuple[float, float, float]  # head size relative to MNI, per axis
    centre_mni: tuple[float, float, float]  # MNI point at the centre of the field of view
    elastic_mm: np.ndarray  # (3, 5, 5, 4) control-point displacements, MNI mm

    @property
    def subject_to_mni_matrix(self) -> np.ndarray:
        rx, ry, rz = np.deg2rad(self.rotation_deg)
        rot_x = np.array([[1, 0, 0], [0, np.cos(rx), -np.sin(rx)], [0, np.sin(rx), np.cos(rx)]])
        rot_y = np.array([[np.cos(ry), 0, np.sin(ry)], [0, 1, 0], [-np.sin(ry), 0, np.cos(ry)]])
        rot_z = np.array([[np.cos(rz), -np.sin(rz), 0], [np.sin(rz), np.cos(rz), 0], [0, 0, 1]])
        return np.linalg.inv(rot_z @ rot_y @ rot_x @ np.diag(self.scale))

    def subject_to_mni_affine(self, points_mm: np.ndarray) -> np.ndarray:
        """Affine part only (for sources outside the brain), (..., 3) -> (..., 3)."""
        return points_mm @ self.subject_to_mni_matrix.T + np.asarray(self.centre_mni)

    def mni_to_subject_affine(self, points_mni: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`subject_to_mni_affine`."""
        matrix = np.linalg.inv(self.subject_to_mni_matrix)
        return (np.asarray(points_mni) - np.asarray(self.centre_mni)) @ matrix.T


def random_warp(rng: np.random.Generator, slab_mm: float) -> Warp:
    """Draw a subject's head pose, size and shape.

    A clinical slab (>= 100 mm) is placed so that it reaches the vertex, with some jitter, and
    may miss the posterior fossa, as real axial SWI slabs often do; a thin test slab is centred
    on the basal ganglia.
    """
    size = rng.uniform(0.9, 1.1)
    scale = tuple(float(size * s) for s in rng.uniform(0.96, 1.04, 3))
    rotation = (rng.uniform(-8, 8), rng.uniform(-4, 4), rng.uniform(-6, 6))
    vertex_mni = 80.0
    if slab_mm >= 100.0:  # a clinical slab: from the vertex down
        centre_z = vertex_mni + 4.0 - slab_mm / 2 + rng.uniform(-6, 6)
    else:  # a thin test slab: through the basal ganglia, so every region and mimic appears
        centre_z = 6.0 + rng.uniform(-4, 4)
    centre = (rng.uniform(-3, 3), -17.0 + rng.uniform(-6, 6), centre_z)
    elastic = rng.normal(0.0, 2.0, size=(3, 5, 5, 4))
    return Warp(tuple(float(r) for r in rotation), scale, tuple(float(c) for c in centre), elastic)


@dataclass(frozen=True)
class WorkAnatomy:
    """A subject's warped anatomy on the 1 mm in-plane work grid.

    Attributes:
        channels: name -> (X, Y, Z) float32 map on the work grid, as :data:`CHANNELS`.
        region: (X, Y, Z) uint8 region codes (0 outside the brain).
        spacing_mm: work-grid voxel size.
        warp: the warp that made it.
    """

    channels: dict[str, np.ndarray]
    region: np.ndarray
    spacing_mm: tuple[float, float, float]
    warp: Warp

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.region.shape

    @property
    def brain(self) -> np.ndarray:
        """(X, Y, Z) brain fraction."""
        return self.channels["gm"] + self.channels["wm"] + self.channels["csf"]


def work_grid_coordinates(shape: tuple[int, int, int], spacing_mm) -> list[np.ndarray]:
    """Broadcastable subject-mm coordinates of voxel centres, origin at the grid centre."""
    return [
        ((np.arange(n, dtype=np.float32) - (n - 1) / 2) * s).reshape(
            [-1 if a == axis else 1 for a in range(3)]
        )
        for axis, (n, s) in enumerate(zip(shape, spacing_mm, strict=True))
    ]


def warp_atlas(
    atlas: Atlas, warp: Warp, shape: tuple[int, int, int], spacing_mm: tuple[float, float, float]
) -> WorkAnatomy:
    """Sample the atlas through ``warp`` onto a grid centred on the field of view.

    Args:
        atlas: MNI tissue stack.
        warp: the subject's warp.
        shape: work-grid shape (X, Y, Z), RAS.
        spacing_mm: work-grid voxel size.
    """
    axes = work_grid_coordinates(shape, spacing_mm)
    matrix = warp.subject_to_mni_matrix.astype(np.float32)
    mni = _elastic_displacement(warp.elastic_mm, shape)  # (X, Y, Z, 3) MNI mm
    for row in range(3):  # mni = matrix @ subject + centre, by broadcasting the three axes
        mni[..., row] += (
            axes[0] * matrix[row, 0]
            + axes[1] * matrix[row, 1]
            + axes[2] * matrix[row, 2]
            + np.float32(warp.centre_mni[row])
        )
    region = region_of_mni(mni)

    # grid_sample wants (x, y, z) = (W, H, D) order, i.e. our axes reversed, in [-1, 1]
    atlas_shape = np.array(atlas.shape, dtype=np.float32)
    normalised = 2.0 * (mni - np.asarray(atlas.origin_mni, np.float32)) / (atlas_shape - 1) - 1.0
    grid = torch.from_numpy(np.ascontiguousarray(normalised[..., ::-1]))[None]  # (1,X,Y,Z,3)
    sampled = F.grid_sample(
        _atlas_tensor(atlas), grid, mode="bilinear", padding_mode="zeros", align_corners=True
    )[0].numpy()  # (C, X, Y, Z)
    channels = {name: sampled[c] for c, name in enumerate(CHANNELS)}
    brain = channels["gm"] + channels["wm"] + channels["csf"]
    region[brain < 0.5] = REGION_NONE
    return WorkAnatomy(channels, region, tuple(spacing_mm), warp)


def _elastic_displacement(control_mm: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Smooth displacement field (X, Y, Z, 3) in mm, trilinear from a coarse control grid."""
    control = torch.from_numpy(control_mm.astype(np.float32))[None]  # (1, 3, cx, cy, cz)
    field = F.interpolate(control, size=shape, mode="trilinear", align_corners=True)
    return field[0].permute(1, 2, 3, 0).numpy()  # (X, Y, Z, 3)
