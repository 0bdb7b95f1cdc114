"""Focal lesions: microbleeds and their mimics, built from analytic magnetised spheres.

A lesion is one to four overlapping spheres with one susceptibility difference (paramagnetic
haemosiderin for a CMB or an iron deposit, diamagnetic for a calcification). Its effect is a
complex factor multiplied into the voxel signal *before* noise and SWI processing:

    factor(voxel) = mean over sub-voxel samples of  core(p) * exp(i * phase_per_ppm * dB(p))

with ``dB`` the analytic dipole field of the spheres and ``core`` the residual signal inside
them. Averaging ``exp(i phase)`` over a voxel is the intra-voxel dephasing that makes a CMB
"bloom" larger than it is, growing with echo time and ``delta_chi * volume``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from cmbdet.atlas import REGION_DEEP, REGION_INFRATENTORIAL, REGION_LOBAR, REGION_NAMES
from cmbdet.config import JsonConfig
from cmbdet.synth.anatomy import WorkAnatomy
from cmbdet.synth.field import sphere_field
from cmbdet.synth.vessels import Vein, subvoxel_offsets

APPARENT_SIGNAL_LEVEL = 0.7
"""A voxel belongs to a lesion's apparent extent where the lesion leaves < 70% of the signal."""
VISIBLE_SIGNAL_LEVEL = 0.5
"""A lesion is visible when some voxel keeps at most 50% of its signal (noise-free)."""
IRON_R2STAR_PER_PPM = 270.0
"""Extra R2* (1/s) per ppm of iron at 3 T, from the pallidum (0.13 ppm, R2* ~45/s) vs cortex;
proportional to the field."""


@dataclass(frozen=True)
class FocalLesion:
    """A lesion made of spheres, in subject mm (canonical RAS, origin at the FOV centre).

    Attributes:
        kind: "cmb", or a mimic: "calcification", "iron" or "cavernoma".
        centre_mm: (3,) centre of the main sphere.
        offsets_mm: (K, 3) sphere centres relative to ``centre_mm``.
        radii_mm: (K,) sphere radii.
        delta_chi_ppm: susceptibility difference to the surrounding tissue.
        core_signal: fraction of the background signal left inside the spheres.
        region: "lobar", "deep" or "infratentorial".
        shape: "spherical", "ellipsoidal" or "lobulated".
    """

    kind: str
    centre_mm: np.ndarray
    offsets_mm: np.ndarray
    radii_mm: np.ndarray
    delta_chi_ppm: float
    core_signal: float
    region: str
    shape: str

    @property
    def true_diameter_mm(self) -> float:
        """Diameter of the sphere with the lesion's volume (overlaps counted twice)."""
        return float(2.0 * np.cbrt(np.sum(self.radii_mm**3)))

    @property
    def extent_mm(self) -> float:
        """Radius of a sphere around the centre that contains every sphere."""
        return float(np.max(np.linalg.norm(self.offsets_mm, axis=1) + self.radii_mm))


@dataclass(frozen=True)
class LesionCounts(JsonConfig):
    """How many lesions a subject gets.

    CMB counts follow the clinical picture: many subjects have none, the rest a heavy tail.
    """

    cmb_none_probability: float = 0.3
    cmb_log_mean: float = 0.8  # log of the typical count of a subject with CMBs
    cmb_log_sd: float = 1.0
    cmb_max: int = 40
    calcification_none_probability: float = 0.45
    iron_none_probability: float = 0.5
    cmb_next_to_vein: float = 0.15  # of CMBs: touching a small vein
    deep_cmb_in_iron: float = 0.4  # of deep CMBs: inside an iron-rich (dark) nucleus
    cavernoma_probability: float = 0.05  # of subjects: one cavernous malformation (a mimic)

    def draw_cmb_count(self, rng: np.random.Generator) -> int:
        if rng.random() < self.cmb_none_probability:
            return 0
        return int(
            min(self.cmb_max, 1 + np.floor(rng.lognormal(self.cmb_log_mean, self.cmb_log_sd) - 0.5))
        )


# Where calcifications sit (MNI mm, right side where mirrored) and how far they scatter.
_CALCIFICATION_SITES_MNI = {
    "pineal": ((0.0, -28.0, 2.0), 1.5, False),
    "choroid_plexus": ((27.0, -40.0, 16.0), 3.0, True),
    "basal_ganglia": ((19.0, -3.0, -1.0), 4.0, True),
    "falx": ((0.0, 0.0, 45.0), 25.0, False),
    "dentate": ((15.0, -57.0, -35.0), 3.0, True),
}
_IRON_SITES_MNI = {
    "globus_pallidus": ((19.0, -3.0, -1.0), 3.0),
    "putamen": ((25.0, 2.0, 1.0), 6.0),
    "caudate": ((13.0, 12.0, 9.0), 4.0),
    "thalamus": ((11.0, -18.0, 7.0), 5.0),
    "dentate": ((15.0, -57.0, -35.0), 3.0),
}


def random_lesions(
    anatomy: WorkAnatomy,
    rng: np.random.Generator,
    te_s: float,
    counts: LesionCounts = LesionCounts(),
    min_separation_mm: float = 8.0,
    veins: list[Vein] = (),
    field_t: float = 3.0,
) -> list[FocalLesion]:
    """Draw a subject's CMBs (some touching one of ``veins``, some inside dark nuclei),
    calcifications, iron deposits and perhaps a cavernoma, kept apart from each other."""
    lesions: list[FocalLesion] = []
    small = [v for v in veins if v.orientation not in ("sinus", "deep")]
    for _ in range(counts.draw_cmb_count(rng)):
        if small and rng.random() < counts.cmb_next_to_vein:
            cmb = _cmb_next_to_vein(anatomy, rng, small[int(rng.integers(len(small)))])
        else:
            cmb = _random_cmb(anatomy, rng, counts.deep_cmb_in_iron)
        _append_if_apart(lesions, cmb, min_separation_mm)
    if rng.random() >= counts.calcification_none_probability:
        for _ in range(int(rng.geometric(0.55))):
            _append_if_apart(lesions, _random_calcification(anatomy, rng), min_separation_mm)
    if rng.random() >= counts.iron_none_probability:
        for _ in range(int(rng.integers(1, 4))):
            _append_if_apart(lesions, _random_iron(anatomy, rng, te_s, field_t), min_separation_mm)
    if rng.random() < counts.cavernoma_probability:
        _append_if_apart(lesions, _random_cavernoma(anatomy, rng), min_separation_mm)
    return lesions


def _append_if_apart(lesions: list[FocalLesion], lesion: FocalLesion | None, min_mm: float):
    if lesion is None:
        return
    if all(np.linalg.norm(lesion.centre_mm - other.centre_mm) >= min_mm for other in lesions):
        lesions.append(lesion)


def _random_cmb(
    anatomy: WorkAnatomy, rng: np.random.Generator, in_iron: float = 0.0
) -> FocalLesion | None:
    region = rng.choice([REGION_LOBAR, REGION_DEEP, REGION_INFRATENTORIAL], p=[0.7, 0.25, 0.05])
    channels = anatomy.channels
    tissue = channels["gm"] + channels["wm"]
    if region == REGION_LOBAR:  # cortico-subcortical junction
        eligible = (
            (anatomy.region == REGION_LOBAR)
            & (channels["gm"] > 0.2)
            & (channels["gm"] < 0.8)
            & (channels["wm"] > 0.15)
        )
    else:
        eligible = (anatomy.region == region) & (tissue > 0.85)
        if region == REGION_DEEP and rng.random() < in_iron:  # inside a dark nucleus
            eligible &= channels["iron_chi"] > 0.05
    if not eligible.any():  # e.g. the slab misses the posterior fossa
        return None
    return _cmb_at(_random_voxel_mm(eligible, anatomy, rng), REGION_NAMES[int(region)], rng)


def _cmb_at(centre_mm: np.ndarray, region: str, rng: np.random.Generator) -> FocalLesion:
    """A CMB of random size, shape and susceptibility at ``centre_mm``."""
    radius = float(np.exp(rng.uniform(np.log(0.6), np.log(2.0))))
    offsets, radii, shape = _random_shape(radius, rng, lobulated_probability=0.2)
    delta_chi = float(np.exp(rng.uniform(np.log(0.4), np.log(2.5))))
    return FocalLesion(
        "cmb", centre_mm, offsets, radii, delta_chi, float(rng.uniform(0.0, 0.3)), region, shape
    )


def _cmb_next_to_vein(
    anatomy: WorkAnatomy, rng: np.random.Generator, vein: Vein
) -> FocalLesion | None:
    """A CMB touching ``vein`` (subject mm): centred beside a vertex of it, across the vein's
    local direction, 0.8 CMB radius past its wall (so the two overlap a little)."""
    index = int(rng.integers(len(vein.points_mm) - 1))
    point = vein.points_mm[index]
    tangent = vein.points_mm[index + 1] - point
    tangent /= max(float(np.linalg.norm(tangent)), 1e-9)
    side = rng.normal(size=3)
    side -= (side @ tangent) * tangent  # across the vein, never along it
    side /= max(float(np.linalg.norm(side)), 1e-9)
    cmb = _cmb_at(point, "lobar", rng)
    centre = point + side * (vein.radius_mm + 0.8 * float(cmb.radii_mm[0]))
    code = _region_code_at(anatomy, centre)
    if code == 0:
        return None
    return replace(cmb, centre_mm=centre, region=REGION_NAMES[code])


def _random_calcification(anatomy: WorkAnatomy, rng: np.random.Generator) -> FocalLesion | None:
    names = list(_CALCIFICATION_SITES_MNI)
    site, scatter_mm, mirrored = _CALCIFICATION_SITES_MNI[names[rng.integers(len(names))]]
    centre = _site_in_subject(anatomy, site, scatter_mm, mirrored, rng)
    if centre is None:
        return None
    radius = float(np.exp(rng.uniform(np.log(0.6), np.log(2.5))))
    offsets, radii, shape = _random_shape(radius, rng, lobulated_probability=0.6)
    delta_chi = -float(np.exp(rng.uniform(np.log(0.1), np.log(1.0))))
    return FocalLesion(
        "calcification",
        centre,
        offsets,
        radii,
        delta_chi,
        float(rng.uniform(0.0, 0.35)),  # calcium holds few mobile protons: a dark core
        _region_at(anatomy, centre),
        shape,
    )


def _random_cavernoma(anatomy: WorkAnatomy, rng: np.random.Generator) -> FocalLesion | None:
    """A cavernous malformation: a large (4-10 mm) lobulated, strongly paramagnetic lesion
    with a mixed core ("popcorn"); a CMB mimic, not a CMB."""
    tissue = anatomy.channels["gm"] + anatomy.channels["wm"]
    eligible = (anatomy.region != 0) & (tissue > 0.85)
    if not eligible.any():
        return None
    centre = _random_voxel_mm(eligible, anatomy, rng)
    radius = float(rng.uniform(2.0, 5.0))
    offsets, radii, _ = _random_shape(radius, rng, lobulated_probability=1.0)
    delta_chi = float(rng.uniform(0.8, 2.0))
    core = float(rng.uniform(0.2, 0.7))
    return FocalLesion(
        "cavernoma",
        centre,
        offsets,
        radii,
        delta_chi,
        core,
        _region_at(anatomy, centre),
        "lobulated",
    )


def _random_iron(
    anatomy: WorkAnatomy, rng: np.random.Generator, te_s: float, field_t: float = 3.0
) -> FocalLesion | None:
    names = list(_IRON_SITES_MNI)
    site, scatter_mm = _IRON_SITES_MNI[names[rng.integers(len(names))]]
    centre = _site_in_subject(anatomy, site, scatter_mm, True, rng)
    if centre is None:
        return None
    radius = float(rng.uniform(1.5, 4.0))
    offsets, radii, shape = _random_shape(radius, rng, lobulated_probability=0.3)
    delta_chi = float(rng.uniform(0.05, 0.2))
    # R2* darkening, no void; relaxation by susceptibility grows with the field
    core = float(np.exp(-te_s * IRON_R2STAR_PER_PPM * field_t / 3.0 * delta_chi))
    return FocalLesion(
        "iron", centre, offsets, radii, delta_chi, core, _region_at(anatomy, centre), shape
    )


def _random_shape(
    radius_mm: float, rng: np.random.Generator, lobulated_probability: float
) -> tuple[np.ndarray, np.ndarray, str]:
    """Sphere offsets (K, 3) and radii (K,) of a spherical, ellipsoidal or lobulated lesion."""
    draw = rng.random()
    if draw < lobulated_probability:
        n_lobes = int(rng.integers(2, 4))
        directions = rng.normal(size=(n_lobes, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        distances = radius_mm * rng.uniform(0.6, 1.0, (n_lobes, 1))
        offsets = np.vstack([np.zeros((1, 3)), directions * distances])
        radii = np.concatenate([[radius_mm], radius_mm * rng.uniform(0.5, 0.8, n_lobes)])
        return offsets, radii, "lobulated"
    if draw < lobulated_probability + 0.45:
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        step = radius_mm * rng.uniform(0.2, 0.8)
        offsets = np.outer([-1.0, 0.0, 1.0], axis) * step
        radii = radius_mm * np.array([0.8, 1.0, 0.8])
        return offsets, radii, "ellipsoidal"
    return np.zeros((1, 3)), np.array([radius_mm]), "spherical"


def _random_voxel_mm(mask: np.ndarray, anatomy: WorkAnatomy, rng: np.random.Generator):
    """Subject-mm centre of a random voxel of ``mask`` (work grid), jittered within it."""
    candidates = np.flatnonzero(mask)
    voxel = np.array(np.unravel_index(candidates[rng.integers(candidates.size)], mask.shape))
    # sub-voxel position, kept at least half a voxel inside the field of view
    voxel = np.clip(voxel + rng.uniform(-0.5, 0.5, 3), 0.5, np.asarray(mask.shape) - 1.5)
    return (voxel - (np.asarray(mask.shape) - 1) / 2) * np.asarray(anatomy.spacing_mm)


def _site_in_subject(anatomy, site_mni, scatter_mm, mirrored, rng) -> np.ndarray | None:
    point = np.asarray(site_mni, dtype=float) + rng.normal(0.0, scatter_mm / 2, 3)
    if mirrored and rng.random() < 0.5:
        point[0] = -point[0]
    centre = anatomy.warp.mni_to_subject_affine(point)
    return centre if _region_code_at(anatomy, centre) != 0 else None


def _region_code_at(anatomy: WorkAnatomy, centre_mm: np.ndarray) -> int:
    index = np.round(
        centre_mm / np.asarray(anatomy.spacing_mm) + (np.asarray(anatomy.shape) - 1) / 2
    ).astype(int)
    if np.any(index < 0) or np.any(index >= anatomy.shape):
        return 0
    return int(anatomy.region[tuple(index)])


def _region_at(anatomy: WorkAnatomy, centre_mm: np.ndarray) -> str:
    return REGION_NAMES.get(_region_code_at(anatomy, centre_mm), "lobar")


@dataclass(frozen=True)
class LesionPatch:
    """A lesion's complex signal factor on a box of the acquisition grid.

    Attributes:
        box: the box as a tuple of slices into the (X, Y, Z) grid.
        factor: complex64 factor on the box (1 far from the lesion).
        apparent: bool mask of voxels that keep < APPARENT_SIGNAL_LEVEL of their signal.
    """

    box: tuple[slice, slice, slice]
    factor: np.ndarray
    apparent: np.ndarray


def lesion_patch(
    lesion: FocalLesion,
    shape: tuple[int, int, int],
    spacing_mm: tuple[float, float, float],
    b0_dir: np.ndarray,
    radians_per_ppm: float,
    samples: tuple[int, int, int] = (3, 3, 5),
    phase_tolerance_rad: float = 0.02,
) -> LesionPatch:
    """Complex factor of one lesion around it on the acquisition grid.

    The outer box reaches where the lesion's phase falls below ``phase_tolerance_rad``; only an
    inner box, where the phase changes within a voxel, is sub-sampled (``samples`` per axis).
    """
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    size = lesion.extent_mm
    strength = abs(lesion.delta_chi_ppm * radians_per_ppm) * 2.0 / 3.0  # rad at r = a, on axis
    outer_mm = min(
        size * max(1.0, (strength / phase_tolerance_rad) ** (1 / 3)) + spacing.max(), 30.0
    )
    inner_mm = max(size + 1.5 * spacing.max(), (10.0 * strength * size**3 * spacing.max()) ** 0.25)
    outer_box, outer_mm_grid = _box_around(lesion.centre_mm, outer_mm, shape, spacing)
    field = _lesion_field(lesion, outer_mm_grid, b0_dir)
    factor = np.exp(1j * radians_per_ppm * field).astype(np.complex64)

    inner_box, inner_mm_grid = _box_around(
        lesion.centre_mm, min(inner_mm, outer_mm), shape, spacing
    )
    points = inner_mm_grid[..., None, :] + subvoxel_offsets(spacing_mm, samples)  # (..., S, 3)
    inside = _inside(lesion, points)
    sub_factor = np.exp(1j * radians_per_ppm * _lesion_field(lesion, points, b0_dir))
    sub_factor = np.where(inside, lesion.core_signal * sub_factor, sub_factor)
    inner_in_outer = tuple(
        slice(i.start - o.start, i.stop - o.start)
        for i, o in zip(inner_box, outer_box, strict=True)
    )
    factor[inner_in_outer] = sub_factor.mean(axis=-1)
    return LesionPatch(outer_box, factor, np.abs(factor) < APPARENT_SIGNAL_LEVEL)


def _box_around(centre_mm, half_mm, shape, spacing):
    """Slices of the voxels within ``half_mm`` (per axis) of a subject-mm point, and their
    centres relative to that point, (bx, by, bz, 3) mm."""
    centre_voxel = centre_mm / spacing + (np.asarray(shape) - 1) / 2
    low = np.maximum(np.floor(centre_voxel - half_mm / spacing).astype(int), 0)
    high = np.minimum(np.ceil(centre_voxel + half_mm / spacing).astype(int) + 1, shape)
    box = tuple(slice(int(lo), int(hi)) for lo, hi in zip(low, high, strict=True))
    ranges = [
        (np.arange(lo, hi) - c) * s
        for lo, hi, c, s in zip(low, high, centre_voxel, spacing, strict=True)
    ]
    return box, np.stack(np.meshgrid(*ranges, indexing="ij"), axis=-1)


def _lesion_field(lesion: FocalLesion, points_mm: np.ndarray, b0_dir: np.ndarray) -> np.ndarray:
    """Field (ppm) of all spheres at points given relative to the lesion centre."""
    field = np.zeros(points_mm.shape[:-1], dtype=np.float32)
    for offset, radius in zip(lesion.offsets_mm, lesion.radii_mm, strict=True):
        field += sphere_field(points_mm - offset, float(radius), lesion.delta_chi_ppm, b0_dir)
    return field


def _inside(lesion: FocalLesion, points_mm: np.ndarray) -> np.ndarray:
    inside = np.zeros(points_mm.shape[:-1], dtype=bool)
    for offset, radius in zip(lesion.offsets_mm, lesion.radii_mm, strict=True):
        delta = points_mm - offset
        inside |= np.einsum("...i,...i->...", delta, delta) <= radius**2
    return inside


def apparent_diameter_mm(patch: LesionPatch, spacing_mm) -> float:
    """Equivalent-circle diameter of the largest axial cross-section of the apparent extent."""
    if not patch.apparent.any():
        return 0.0
    largest_area_voxels = patch.apparent.sum(axis=(0, 1)).max()
    area_mm2 = largest_area_voxels * spacing_mm[0] * spacing_mm[1]
    return float(2.0 * np.sqrt(area_mm2 / np.pi))


def is_visible(patch: LesionPatch) -> bool:
    return bool(np.abs(patch.factor).min() <= VISIBLE_SIGNAL_LEVEL)
