"""Veins: random tubes of several orientations and calibres, rasterised with partial volume.

Vein cross-sections on axial slices are *the* CMB mimic: a through-plane vein of 0.5-1.5 mm
looks like a small dark dot on one slice. What tells them apart is continuity across slices
and the dipole pattern of the phase (a vein parallel to B0 has no field outside itself). So
the generator makes many of them, denser near the cortex and the ventricles, in every
orientation, plus the large dural sinuses and deep veins.

Veins are polylines in subject mm (canonical RAS, origin at the centre of the field of view).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cmbdet.config import JsonConfig
from cmbdet.synth.anatomy import WorkAnatomy


@dataclass(frozen=True)
class Vein:
    """A vein as a polyline of constant radius.

    Attributes:
        points_mm: (P, 3) subject-mm vertices, P >= 2.
        radius_mm: lumen radius.
        orientation: "through-plane", "in-plane", "oblique" (long tubes), "short",
            "medullary", "cortical" (a vein family's), "deep" or "sinus".
    """

    points_mm: np.ndarray
    radius_mm: float
    orientation: str

    @property
    def midpoint_mm(self) -> np.ndarray:
        return self.points_mm[len(self.points_mm) // 2]


@dataclass(frozen=True)
class VeinCounts(JsonConfig):
    """How many small veins of each orientation a subject gets (drawn uniformly in range)."""

    through_plane: tuple[int, int] = (45, 110)
    in_plane: tuple[int, int] = (35, 95)
    oblique: tuple[int, int] = (15, 50)


# Large veins in MNI mm; mirrored ones are listed for the right side only.
_SINUSES_MNI = {
    "superior_sagittal": [
        (0, 68, 12),
        (0, 55, 50),
        (0, 25, 74),
        (0, -15, 79),
        (0, -55, 68),
        (0, -85, 42),
        (0, -102, 10),
    ],
    "straight": [(0, -42, 12), (0, -62, 8), (0, -88, 4)],
}
_MIRRORED_VEINS_MNI = {
    "transverse": ([(3, -100, 2), (30, -98, -6), (52, -80, -18), (58, -58, -28)], (2.5, 3.5)),
    "internal_cerebral": ([(2, 2, 16), (3, -12, 16), (3, -28, 12), (1, -40, 8)], (0.9, 1.3)),
    "basal": ([(20, 0, -8), (24, -14, -6), (18, -30, 0), (6, -40, 6)], (0.7, 1.1)),
}


# (orientation, counts field, length mm, radius mm, turn per 2 mm step in degrees)
_SMALL_VEINS = (
    ("through-plane", "through_plane", (2.0, 16.0), (0.35, 1.2), 6.0),
    ("in-plane", "in_plane", (8.0, 40.0), (0.2, 0.7), 10.0),
    ("oblique", "oblique", (5.0, 25.0), (0.2, 0.6), 10.0),
)
LONG_TUBES_SHARE = 0.4
"""Of a family other than long tubes, the share of the long-tube veins a subject still gets."""

# Lumen radii of the vein families' own veins (real small veins: 0.1-3 mm across). Short
# segments reach CMB calibre (up to 2 mm across, blooming to 2-3 mm): the dots and dashes
# that end within 1-3 slices. Medullary veins are thin, but their field outside the lumen
# (phase, blooming) makes them lines on a minimum intensity projection, as on real SWI.
SHORT_SEGMENT_RADIUS_MM = (0.35, 1.0)
MEDULLARY_RADIUS_MM = (0.3, 0.6)
CORTICAL_RADIUS_MM = (0.25, 0.6)


def random_veins(
    anatomy: WorkAnatomy,
    rng: np.random.Generator,
    counts: VeinCounts = VeinCounts(),
    family: str = "long_tubes",
) -> list[Vein]:
    """Draw a subject's veins: small ones where the atlas' vein density says, of the subject's
    vein family (:mod:`cmbdet.synth.families`), over a sparser set of long tubes, plus the
    sinuses and deep veins at their anatomical places (through the subject's affine warp)."""
    share = 1.0 if family == "long_tubes" else LONG_TUBES_SHARE
    veins = _long_tubes(anatomy, rng, counts, share)
    channels, brain = anatomy.channels, anatomy.brain
    if family == "short_segments":
        density = channels["vein_density"] * (brain > 0.5)
        veins += _short_veins(SHORT_SEGMENTS, density, anatomy, rng)
    elif family == "medullary":
        veins += _medullary_veins(anatomy, rng)
    elif family == "cortical_dense":
        surface = channels["gm"] * (channels["csf"] + channels["csf_outer"] > 0.1)
        veins += _short_veins(CORTICAL_VEINS, surface * (brain > 0.3), anatomy, rng)
    elif family != "long_tubes":
        raise ValueError(f"unknown vein family {family!r}")
    veins.extend(_anatomical_veins(anatomy, rng))
    return veins


def _long_tubes(
    anatomy: WorkAnatomy, rng: np.random.Generator, counts: VeinCounts, share: float
) -> list[Vein]:
    """Long, smoothly turning tubes in three orientation classes (generator 1.0's veins)."""
    density = anatomy.channels["vein_density"] * (anatomy.brain > 0.5)
    numbers = [
        int(round(share * rng.integers(low, high + 1)))
        for low, high in (getattr(counts, spec[1]) for spec in _SMALL_VEINS)
    ]
    start_points = _sample_points(density, anatomy.spacing_mm, rng, max(1, sum(numbers)))
    veins, used = [], 0
    for (orientation, _, length_range, radius_range, turn_deg), number in zip(
        _SMALL_VEINS, numbers, strict=True
    ):
        for _ in range(number):
            direction = _initial_direction(orientation, rng)
            length = float(np.exp(rng.uniform(*np.log(length_range))))
            radius = float(rng.uniform(*radius_range))
            points = _random_walk(start_points[used], direction, length, turn_deg, rng, anatomy)
            used += 1
            if len(points) >= 2:
                veins.append(Vein(points, radius, orientation))
    return veins


@dataclass(frozen=True)
class ShortVeins:
    """A family of short turning veins started where a density map says.

    Attributes:
        orientation: the :class:`Vein` orientation they get.
        number: range of how many a subject gets.
        length_mm: range of their lengths.
        radius_mm: range of their lumen radii.
        turn_deg: the most they turn per step.
        step_mm: their polyline step.
    """

    orientation: str
    number: tuple[int, int]
    length_mm: tuple[float, float]
    radius_mm: tuple[float, float]
    turn_deg: float
    step_mm: float


SHORT_SEGMENTS = ShortVeins("short", (80, 200), (2.0, 8.0), SHORT_SEGMENT_RADIUS_MM, 35.0, 1.0)
"""Short turning dashes in every direction: on axial slices, dots and dashes that end within
one to three slices, with a vein's paramagnetic phase: the CMB mimic long tubes never show."""
CORTICAL_VEINS = ShortVeins("cortical", (150, 300), (4.0, 15.0), CORTICAL_RADIUS_MM, 15.0, 1.5)
"""Many short small veins close to the brain's surface."""


def _short_veins(
    spec: ShortVeins, density: np.ndarray, anatomy: WorkAnatomy, rng: np.random.Generator
) -> list[Vein]:
    """A subject's short veins of ``spec``, started at random points of the (X, Y, Z) work-grid
    ``density`` map, in random directions."""
    number = int(rng.integers(spec.number[0], spec.number[1] + 1))
    veins = []
    for start in _sample_points(density, anatomy.spacing_mm, rng, number):
        direction = _initial_direction("oblique", rng)
        length = float(rng.uniform(*spec.length_mm))
        points = _random_walk(
            start, direction, length, spec.turn_deg, rng, anatomy, step_mm=spec.step_mm
        )
        if len(points) >= 2:
            veins.append(Vein(points, float(rng.uniform(*spec.radius_mm)), spec.orientation))
    return veins


def _medullary_veins(anatomy: WorkAnatomy, rng: np.random.Generator) -> list[Vein]:
    """Thin tortuous veins running from the cortex toward the ventricles, some branching."""
    channels = anatomy.channels
    cortex = channels["gm"] * (channels["wm"] > 0.1) * (anatomy.brain > 0.5)
    number = int(rng.integers(100, 251))
    starts = _sample_points(cortex, anatomy.spacing_mm, rng, number)
    veins = []
    for start in starts:
        inward = -start / max(float(np.linalg.norm(start)), 1e-6)  # toward the brain's centre
        inward = inward + rng.normal(0.0, 0.25, 3)
        length = float(rng.uniform(15.0, 40.0))
        radius = float(rng.uniform(*MEDULLARY_RADIUS_MM))
        points = _directed_walk(start, inward, length, 20.0, rng, anatomy)
        if len(points) < 2:
            continue
        veins.append(Vein(points, radius, "medullary"))
        if len(points) > 4 and rng.random() < 0.5:  # a side branch joining it
            joint = points[int(rng.integers(1, len(points) - 1))]
            branch = _directed_walk(
                joint, rng.normal(size=3), rng.uniform(4.0, 12.0), 25.0, rng, anatomy
            )
            if len(branch) >= 2:
                veins.append(Vein(branch, radius * 0.8, "medullary"))
    return veins


def _directed_walk(
    start_mm: np.ndarray,
    direction: np.ndarray,
    length_mm: float,
    turn_deg: float,
    rng: np.random.Generator,
    anatomy: WorkAnatomy,
    step_mm: float = 1.5,
) -> np.ndarray:
    """A tortuous polyline from ``start_mm`` along ``direction``, cut where it leaves the
    brain."""
    heading = np.asarray(direction, dtype=np.float64)
    heading /= max(float(np.linalg.norm(heading)), 1e-9)
    start = np.asarray(start_mm, dtype=np.float64)
    steps = max(1, int(round(length_mm / step_mm)))
    return np.array(_walk(start, heading, steps, turn_deg, step_mm, rng, anatomy))


def _walk(
    start_mm: np.ndarray,
    heading: np.ndarray,
    steps: int,
    turn_deg: float,
    step_mm: float,
    rng: np.random.Generator,
    anatomy: WorkAnatomy,
) -> list[np.ndarray]:
    """``start_mm`` and up to ``steps`` points, each ``step_mm`` on from the last along a
    heading that turns by about ``turn_deg`` a step; it stops before the first point outside
    the brain."""
    points, point = [start_mm], start_mm
    for _ in range(steps):
        heading = heading + rng.normal(0.0, np.deg2rad(turn_deg), 3)
        heading /= np.linalg.norm(heading)
        point = point + step_mm * heading
        if _brain_fraction_at(anatomy, point) < 0.3:
            break
        points.append(point)
    return points


def _sample_points(weights: np.ndarray, spacing_mm, rng: np.random.Generator, n: int) -> np.ndarray:
    """n subject-mm points drawn with probability proportional to ``weights`` (work grid)."""
    flat = weights.ravel().astype(np.float64)
    flat_index = rng.choice(flat.size, size=n, p=flat / flat.sum())
    voxels = np.stack(np.unravel_index(flat_index, weights.shape), axis=-1).astype(np.float64)
    voxels += rng.uniform(-0.5, 0.5, voxels.shape)
    centre = (np.asarray(weights.shape) - 1) / 2
    return (voxels - centre) * np.asarray(spacing_mm)


def _initial_direction(orientation: str, rng: np.random.Generator) -> np.ndarray:
    azimuth = rng.uniform(0, 2 * np.pi)
    if orientation == "through-plane":
        polar = abs(rng.normal(0.0, np.deg2rad(12)))
    elif orientation == "in-plane":
        polar = np.pi / 2 + rng.normal(0.0, np.deg2rad(8))
    else:
        polar = np.arccos(rng.uniform(-1, 1))
    return np.array(
        [np.sin(polar) * np.cos(azimuth), np.sin(polar) * np.sin(azimuth), np.cos(polar)]
    )


def _random_walk(
    middle_mm: np.ndarray,
    direction: np.ndarray,
    length_mm: float,
    turn_deg: float,
    rng: np.random.Generator,
    anatomy: WorkAnatomy,
    step_mm: float = 2.0,
) -> np.ndarray:
    """A smoothly turning polyline through ``middle_mm``, cut where it leaves the brain."""
    steps = max(1, int(round(length_mm / 2 / step_mm)))
    forward, backward = (
        _walk(middle_mm.copy(), sign * direction, steps, turn_deg, step_mm, rng, anatomy)
        for sign in (1.0, -1.0)
    )
    return np.array(backward[::-1] + forward[1:])


def _brain_fraction_at(anatomy: WorkAnatomy, point_mm: np.ndarray) -> float:
    centre = (np.asarray(anatomy.shape) - 1) / 2
    index = np.round(point_mm / np.asarray(anatomy.spacing_mm) + centre).astype(int)
    if np.any(index < 0) or np.any(index >= anatomy.shape):
        return 0.0
    channels = anatomy.channels
    return float(sum(channels[c][tuple(index)] for c in ("gm", "wm", "csf")))


def _anatomical_veins(anatomy: WorkAnatomy, rng: np.random.Generator) -> list[Vein]:
    veins = []
    warp = anatomy.warp
    for points in _SINUSES_MNI.values():
        subject = warp.mni_to_subject_affine(np.asarray(points, dtype=float))
        veins.append(Vein(_densify(subject), float(rng.uniform(2.5, 4.0)), "sinus"))
    for name, (points, radius_range) in _MIRRORED_VEINS_MNI.items():
        for side in (1.0, -1.0):
            mni = np.asarray(points, dtype=float) * np.array([side, 1.0, 1.0])
            mni += rng.normal(0.0, 1.0, mni.shape)
            orientation = "sinus" if name == "transverse" else "deep"
            veins.append(
                Vein(
                    _densify(warp.mni_to_subject_affine(mni)),
                    float(rng.uniform(*radius_range)),
                    orientation,
                )
            )
    return veins


def _densify(points_mm: np.ndarray, step_mm: float = 3.0) -> np.ndarray:
    """Insert vertices so that no segment is longer than ``step_mm``."""
    dense = [points_mm[0]]
    for start, end in zip(points_mm[:-1], points_mm[1:], strict=True):
        n = max(1, int(np.ceil(np.linalg.norm(end - start) / step_mm)))
        dense.extend(start + (end - start) * t for t in np.linspace(0, 1, n + 1)[1:])
    return np.array(dense)


def subvoxel_offsets(spacing_mm, samples: tuple[int, int, int]) -> np.ndarray:
    """(S, 3) mm offsets of a regular sub-voxel sampling pattern centred on the voxel centre."""
    axes = [((np.arange(n) + 0.5) / n - 0.5) * s for n, s in zip(samples, spacing_mm, strict=True)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)


def rasterise_veins(
    veins: list[Vein],
    shape: tuple[int, int, int],
    spacing_mm: tuple[float, float, float],
    samples: tuple[int, int, int] | None = None,
    b0_dir: tuple[float, float, float] = (0.0, 0.0, 1.0),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Partial-volume vein fraction on the acquisition grid.

    Each segment is rasterised in its own bounding box; sub-voxel samples give the fraction of
    each voxel inside the tube.

    Args:
        veins: the veins, subject mm.
        shape: acquisition grid (X, Y, Z), canonical RAS, centred on the field of view.
        spacing_mm: its voxel size.
        samples: sub-voxel samples per axis; default: about 0.3 mm apart in-plane and
            0.5 mm through-plane.

        b0_dir: (3,) B0 direction, for the orientation of each segment.

    Returns:
        ``fraction`` (X, Y, Z) float32 in [0, 1]; ``owner`` (X, Y, Z) int32: 1 + the index of
        the vein with the largest fraction in each voxel (0 where none); ``orientation``
        (X, Y, Z) float32: ``3 cos^2(theta) - 1`` of that vein segment against B0, which sets
        the field inside the vessel (``delta_chi / 6 * orientation``).
    """
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    centre = (np.asarray(shape) - 1) / 2
    if samples is None:
        samples = tuple(
            int(np.ceil(s / step)) for s, step in zip(spacing_mm, (0.3, 0.3, 0.5), strict=True)
        )
    offsets = subvoxel_offsets(spacing_mm, samples).astype(np.float32)  # (S, 3)
    fraction = np.zeros(shape, dtype=np.float32)
    owner = np.zeros(shape, dtype=np.int32)
    orientation = np.zeros(shape, dtype=np.float32)
    for vein_index, vein in enumerate(veins):
        for start, end in zip(vein.points_mm[:-1], vein.points_mm[1:], strict=True):
            reach = vein.radius_mm + spacing
            low = np.floor((np.minimum(start, end) - reach) / spacing + centre).astype(int)
            high = np.ceil((np.maximum(start, end) + reach) / spacing + centre).astype(int) + 1
            low, high = np.maximum(low, 0), np.minimum(high, shape)
            if np.any(high <= low):
                continue
            box = tuple(slice(lo, hi) for lo, hi in zip(low, high, strict=True))
            ranges = [
                ((np.arange(lo, hi) - c) * d).astype(np.float32)
                for lo, hi, c, d in zip(low, high, centre, spacing, strict=True)
            ]
            voxel_mm = np.stack(np.meshgrid(*ranges, indexing="ij"), axis=-1)  # (bx, by, bz, 3)
            points = voxel_mm[..., None, :] + offsets  # (bx, by, bz, S, 3)
            squared = _squared_distance_to_segment(points, start, end)
            segment_fraction = (squared <= vein.radius_mm**2).mean(axis=-1, dtype=np.float32)
            better = segment_fraction > fraction[box]
            fraction[box] = np.where(better, segment_fraction, fraction[box])
            owner[box] = np.where(better, vein_index + 1, owner[box])
            cos_theta = float((end - start) @ np.asarray(b0_dir)) / max(
                np.linalg.norm(end - start), 1e-9
            )
            orientation[box] = np.where(better, 3 * cos_theta**2 - 1, orientation[box])
    return fraction, owner, orientation


def _squared_distance_to_segment(
    points: np.ndarray, start: np.ndarray, end: np.ndarray
) -> np.ndarray:
    """Squared Euclidean distance (mm^2) of (..., 3) points to the segment start-end."""
    direction = (end - start).astype(np.float32)
    relative = points - start.astype(np.float32)
    length_squared = max(float(direction @ direction), 1e-12)
    t = np.clip((relative @ direction) / np.float32(length_squared), 0.0, 1.0)
    relative -= t[..., None] * direction
    return np.einsum("...i,...i->...", relative, relative)
