"""Stage-1 training data: slice images with CMB boxes, random crops, replayable augmentation.

A :class:`TrainingVolume` holds one subject on the model grid: its two-channel slice images and
the boxes of its visible CMBs per slice. :class:`SliceSampler` draws training crops from many
volumes: half centred near a CMB, half anywhere in the brain (slices without CMBs are the
normal case). A positive crop is drawn per slice with a CMB, or per CMB (each CMB as often,
whatever the number of slices it spans). Each crop is augmented by parameters drawn from
``(seed, step)`` and then applied by a deterministic transform, so a resumed run replays the
same batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cmbdet.appearance import AppearanceRanges, apply_appearance, draw_appearance
from cmbdet.stage1.config import PositiveUnit, check_positive_unit
from cmbdet.stage1.layout import pass_input
from cmbdet.stage1.targets import HeatmapTargets, make_targets

MIN_BOX_MM = 2.0
"""Smallest box side: a CMB's box covers at least its 2 mm rating threshold."""


@dataclass(frozen=True)
class TrainingVolume:
    """One subject on the model grid.

    Attributes:
        images: (Z', C, X', Y') float16 slice images of the model grid.
        boxes: per model slice, (N, 4) xyxy model-grid pixel boxes of visible CMBs.
        brain_slices: (Z',) bool, model slices that contain brain.
        box_lesions: per slice, the (N,) lesion ids of its boxes (which boxes are one CMB);
            ``()`` when not known (then each box counts as a CMB of its own).
    """

    images: np.ndarray
    boxes: list[np.ndarray]
    brain_slices: np.ndarray
    box_lesions: tuple[np.ndarray, ...] = ()

    def __post_init__(self):
        if self.box_lesions and [len(i) for i in self.box_lesions] != [len(b) for b in self.boxes]:
            raise ValueError("box_lesions: one lesion id per box of every slice, or ()")

    def cmb_boxes(self) -> list[list[tuple[int, int]]]:
        """Per CMB, its (slice, box index) pairs, CMBs in the order of their first box."""
        if not self.box_lesions:
            return [[(z, i)] for z, boxes in enumerate(self.boxes) for i in range(len(boxes))]
        by_lesion: dict[int, list[tuple[int, int]]] = {}
        for z, lesions in enumerate(self.box_lesions):
            for index, lesion in enumerate(lesions):
                by_lesion.setdefault(int(lesion), []).append((z, index))
        return list(by_lesion.values())


def boxes_from_labels(
    labels: np.ndarray,
    cmb_ids: list[int],
    native_shape: tuple[int, int, int],
    model_shape: tuple[int, int, int],
    pixel_mm: float,
) -> tuple[list[np.ndarray], tuple[np.ndarray, ...]]:
    """Per-slice boxes of the given label ids, mapped from the native to the model grid.

    A CMB has a box on each model slice that its native slices cover by at least
    ``MIN_SLICE_OVERLAP`` of that slice's thickness together, and always on the one they cover
    most (so that thin native slices never lose a CMB); the box covers its voxels on those
    native slices. When the slices are kept, each native slice is its model slice.

    Args:
        labels: (X, Y, Z) instance map on the native canonical grid.
        cmb_ids: ids of the visible CMBs.
        native_shape, model_shape: grid shapes; the grids share the field of view (edges
            aligned).
        pixel_mm: model-grid pixel size, for the minimum box size.

    Returns:
        Z' arrays of shape (N_z, 4), xyxy model pixels (edges), possibly empty; and Z' arrays
        of shape (N_z,), the label id of each box.
    """
    scale = np.array([model_shape[0] / native_shape[0], model_shape[1] / native_shape[1]])
    slice_ratio = model_shape[2] / native_shape[2]
    minimum = MIN_BOX_MM / pixel_mm
    per_slice = [[] for _ in range(model_shape[2])]
    ids = [[] for _ in range(model_shape[2])]
    for lesion_id in cmb_ids:
        voxels = np.argwhere(labels == lesion_id)
        if len(voxels) == 0:
            continue
        covered: dict[int, float] = {}  # model slice -> share of it the CMB's slices cover
        parts: dict[int, list[np.ndarray]] = {}  # model slice -> the CMB's voxels (x, y)
        for z in np.unique(voxels[:, 2]):
            xy = voxels[voxels[:, 2] == z, :2]
            for k, share in slice_overlaps(int(z), slice_ratio, model_shape[2]).items():
                covered[k] = covered.get(k, 0.0) + share
                parts.setdefault(k, []).append(xy)
        most = max(covered, key=covered.get)
        for k in sorted(k for k in covered if covered[k] >= MIN_SLICE_OVERLAP or k == most):
            xy = np.concatenate(parts[k])
            low, high = xy.min(axis=0) * scale, (xy.max(axis=0) + 1) * scale
            centre, side = (low + high) / 2, np.maximum(high - low, minimum)
            per_slice[k].append(np.concatenate([centre - side / 2, centre + side / 2]))
            ids[k].append(lesion_id)
    boxes = [np.array(b, np.float32).reshape(-1, 4) for b in per_slice]
    return boxes, tuple(np.array(i, np.int64) for i in ids)


MIN_SLICE_OVERLAP = 0.25
"""Share of a model slice's thickness a CMB's native slices must cover to put a box on it."""


def slice_overlaps(z: int, slice_ratio: float, depth: int) -> dict[int, float]:
    """The model slices native slice ``z`` overlaps, each with the share of its thickness
    covered (edges aligned; ``slice_ratio`` model slices per native slice, ``depth`` model
    slices)."""
    low, high = z * slice_ratio, (z + 1) * slice_ratio  # its edges, in model slices
    first, last = int(np.floor(low)), min(int(np.ceil(high)), depth)
    shares = {k: min(high, k + 1) - max(low, k) for k in range(max(first, 0), last)}
    return {k: share for k, share in shares.items() if share > 1e-9}


@dataclass(frozen=True)
class AugmentParams:
    """One crop's augmentation, drawn at random, applied deterministically."""

    flip_x: bool
    flip_y: bool
    rotations: int  # quarter turns in the x-y plane
    contrast: tuple[float, ...]  # per channel multiplier around 1
    brightness: tuple[float, ...]  # per channel offset
    noise_sd: float
    scale: float


def draw_augment(rng: np.random.Generator, channels: int) -> AugmentParams:
    return AugmentParams(
        flip_x=bool(rng.random() < 0.5),
        flip_y=bool(rng.random() < 0.5),
        rotations=int(rng.integers(4)),
        contrast=tuple(float(v) for v in rng.uniform(0.85, 1.15, channels)),
        brightness=tuple(float(v) for v in rng.uniform(-0.08, 0.08, channels)),
        noise_sd=float(rng.uniform(0.0, 0.05)),
        scale=float(rng.uniform(0.9, 1.1)),
    )


def augment(
    image: np.ndarray, boxes: np.ndarray, params: AugmentParams, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Apply ``params`` to a (C, S, S) crop and its (N, 4) boxes (square crops only)."""
    size = image.shape[1]
    image = image.astype(np.float32)
    boxes = boxes.copy()
    if params.flip_x:
        image = image[:, ::-1]
        boxes[:, [0, 2]] = size - boxes[:, [2, 0]]
    if params.flip_y:
        image = image[:, :, ::-1]
        boxes[:, [1, 3]] = size - boxes[:, [3, 1]]
    for _ in range(params.rotations):  # (x, y) -> (size - y, x), a quarter turn
        image = np.rot90(image, k=1, axes=(1, 2))
        boxes = np.stack([size - boxes[:, 3], boxes[:, 0], size - boxes[:, 1], boxes[:, 2]], 1)
    contrast = np.asarray(params.contrast, np.float32)[:, None, None]
    brightness = np.asarray(params.brightness, np.float32)[:, None, None]
    image = (image - 1.0) * contrast + 1.0 + brightness
    image = image + params.noise_sd * rng.standard_normal(image.shape).astype(np.float32)
    if abs(params.scale - 1.0) > 1e-3:
        scaled = int(round(size * params.scale))
        tensor = torch.from_numpy(np.ascontiguousarray(image))[None]
        tensor = F.interpolate(tensor, size=(scaled, scaled), mode="bilinear")  # (1, C, s, s)
        image = _fit(tensor[0].numpy(), size)
        boxes = boxes * (scaled / size)
        if scaled > size:  # _fit cropped the centre
            boxes = boxes - (scaled - size) // 2
    return np.ascontiguousarray(image, dtype=np.float32), boxes.astype(np.float32)


def _fit(image: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop (zoom in) or pad at the high end (zoom out) a (C, s, s) image to size."""
    current = image.shape[1]
    if current >= size:
        start = (current - size) // 2
        return image[:, start : start + size, start : start + size]
    padded = np.ones((image.shape[0], size, size), np.float32)  # background ~ brain level
    padded[:, :current, :current] = image
    return padded


class SliceSampler:
    """Replayable training batches of square crops from many volumes, each of
    ``slices_per_pass`` adjacent slices (a positive slice at a random place among them);
    positive crops drawn per slice with a CMB or per CMB (``positives_per``, see
    :data:`POSITIVE_UNITS`); with ``appearance``, each crop's look varied within those ranges
    (:mod:`cmbdet.appearance`) after its geometric augmentation."""

    def __init__(
        self,
        volumes: list[TrainingVolume],
        crop: int = 160,
        batch_size: int = 16,
        positive_fraction: float = 0.5,
        seed: int = 0,
        stride: int = 4,
        slices_per_pass: int = 1,
        pass_channels: tuple[int, ...] = (),
        positives_per: PositiveUnit = "slice",
        appearance: AppearanceRanges | None = None,
    ):
        check_positive_unit(positives_per)
        self.volumes = volumes
        self.appearance = appearance
        self.crop, self.batch_size, self.stride = crop, batch_size, stride
        self.slices_per_pass, self.pass_channels = slices_per_pass, pass_channels
        self.positive_fraction, self.seed = positive_fraction, seed
        self.positives_per = positives_per
        self.positives = [
            (v, z)
            for v, volume in enumerate(volumes)
            for z, boxes in enumerate(volume.boxes)
            if len(boxes)
        ]
        self.cmbs = [(v, cmb) for v, volume in enumerate(volumes) for cmb in volume.cmb_boxes()]
        self.brain = [
            (v, z) for v, volume in enumerate(volumes) for z in np.flatnonzero(volume.brain_slices)
        ]

    def __call__(self, step: int) -> tuple[torch.Tensor, HeatmapTargets]:
        """Batch ``step``: (B, K C, S, S) crops of K adjacent slices each (or the
        ``pass_channels`` of them), and the targets of their B K slices (slice j of crop b is
        target b K + j)."""
        rng = np.random.default_rng([self.seed, step])
        images, boxes = [], []
        for _ in range(self.batch_size):
            image, slice_boxes = self._crop(rng)
            params = draw_augment(rng, image.shape[0])
            counts = np.cumsum([len(b) for b in slice_boxes])[:-1]
            image, moved = augment(image, np.concatenate(slice_boxes), params, rng)
            if self.appearance is not None:
                look = draw_appearance(rng, self.appearance)
                image = apply_appearance(image, self._phase_channels(len(image)), look, rng)
            images.append(image)
            boxes.extend(np.split(moved, counts))
        stacks = np.stack(images)  # (B, K C, S, S)
        batch = torch.from_numpy(pass_input(stacks, self.pass_channels))  # (B, P, S, S), P <= K C
        return batch, make_targets(boxes, batch.shape[-2:], self.stride)

    def _phase_channels(self, channels: int) -> np.ndarray:
        """(K C,) bool: the complemented-phase channel of each slice image (channel 1)."""
        return np.arange(channels) % self.volumes[0].images.shape[1] == 1

    def _crop(self, rng: np.random.Generator) -> tuple[np.ndarray, list[np.ndarray]]:
        """A (K C, S, S) crop of K adjacent slices, and the K slices' (N, 4) boxes in it."""
        positive = self.positives and rng.random() < self.positive_fraction
        box_index = None  # of the CMB the crop centres on, among its slice's boxes
        if positive and self.positives_per == "cmb":
            v, cmb = self.cmbs[rng.integers(len(self.cmbs))]
            z, box_index = cmb[rng.integers(len(cmb))]
        else:
            pool = self.positives if positive else self.brain
            v, z = pool[rng.integers(len(pool))]
        volume = self.volumes[v]
        depth, channels, nx, ny = volume.images.shape
        k = self.slices_per_pass
        # one slice: no draw of the run's start, so that one-slice training replays draw for draw
        first = z if k == 1 else int(np.clip(z - rng.integers(k), 0, max(0, depth - k)))
        boxes = volume.boxes[z]
        if positive:
            if box_index is None:  # per slice: drawn here, after the run's start
                box_index = rng.integers(len(boxes))
            target = boxes[box_index]
            centre = (target[:2] + target[2:]) / 2 + rng.uniform(-0.35, 0.35, 2) * self.crop
        else:
            centre = rng.uniform([0, 0], [nx, ny])
        x0 = int(np.clip(round(centre[0] - self.crop / 2), 0, max(0, nx - self.crop)))
        y0 = int(np.clip(round(centre[1] - self.crop / 2), 0, max(0, ny - self.crop)))
        image = np.ones((k, channels, self.crop, self.crop), np.float32)  # beyond: brain level
        window = volume.images[first : first + k, :, x0 : x0 + self.crop, y0 : y0 + self.crop]
        image[: len(window), :, : window.shape[2], : window.shape[3]] = window
        slice_boxes = []
        for slice_z in range(first, first + k):
            shifted = (
                volume.boxes[slice_z] - np.array([x0, y0, x0, y0], np.float32)
                if slice_z < depth
                else np.zeros((0, 4), np.float32)
            )
            centres = (shifted[:, :2] + shifted[:, 2:]) / 2
            slice_boxes.append(shifted[np.all((centres >= 0) & (centres < self.crop), axis=1)])
        return image.reshape(k * channels, self.crop, self.crop), slice_boxes
