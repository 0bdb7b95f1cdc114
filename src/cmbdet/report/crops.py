"""Small axial, coronal and sagittal crops around a point, as embeddable PNG data URIs.

A crop is sampled (trilinear) on a square grid of ``CROP_PIXELS`` pixels of ``PIXEL_MM`` mm,
centred on the point, from a canonical RAS+ volume: pixels are square in mm whatever the voxel
size, and the point lies exactly at the centre of the image. Views follow the radiological
convention: the patient's right on the image's left; anterior at the top of axial views and
on the left of sagittal views; superior at the top of coronal and sagittal views. Pixels
outside the volume are drawn as grey stripes, so a point at the edge of the scan still gets a
full-size crop.

PNGs are 8-bit greyscale, encoded here with zlib (no figure machinery: a page holds a hundred
crops and must be written in a fraction of a second).
"""

from __future__ import annotations

import base64
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

CROP_PIXELS = 64
PIXEL_MM = 0.4
CROP_FOV_MM = CROP_PIXELS * PIXEL_MM  # 25.6 mm
VIEWS = ("axial", "coronal", "sagittal")
SMOOTHING_PAD = np.array([1, 1, 0])  # voxels around a search box for 3 x 3 in-plane smoothing

# Each view: (row axis, column axis, fixed axis) of the canonical (x, y, z) array. Row and
# column coordinates decrease along the image (top to bottom, left to right): superior or
# anterior at the top, the patient's right (+x) or anterior (+y) on the left.
_VIEW_AXES = {"axial": (1, 0, 2), "coronal": (2, 0, 1), "sagittal": (2, 1, 0)}
ORIENTATION_LETTERS = {  # (left, right, top, bottom) edge of each view
    "axial": ("R", "L", "A", "P"),
    "coronal": ("R", "L", "S", "I"),
    "sagittal": ("A", "P", "S", "I"),
}


@dataclass(frozen=True)
class Window:
    """Display window: ``low`` is drawn black, ``high`` white."""

    low: float
    high: float

    @classmethod
    def of(cls, values: np.ndarray, percentiles: tuple[float, float]) -> Window:
        """Window between two percentiles of ``values`` (any shape; NaNs ignored)."""
        values = values[np.isfinite(values)]
        if values.size == 0:
            return cls(0.0, 1.0)
        low, high = np.percentile(values, percentiles)
        return cls(float(low), float(high) if high > low else float(low) + 1.0)

    @classmethod
    def symmetric(cls, values: np.ndarray, centre: float, percentile: float) -> Window:
        """Window ``centre +- w``, with w the ``percentile`` of ``|values - centre|``."""
        values = values[np.isfinite(values)]
        if values.size == 0:
            return cls(centre - 1.0, centre + 1.0)
        half = float(np.percentile(np.abs(values - centre), percentile))
        half = half if half > 0 else 1.0
        return cls(centre - half, centre + half)


def sample_view(
    data: np.ndarray,
    spacing_mm: tuple[float, float, float],
    centre_voxel: np.ndarray,
    view: str,
) -> np.ndarray:
    """One view of ``data`` around ``centre_voxel``.

    Args:
        data: (X, Y, Z) volume, canonical RAS+.
        spacing_mm: its voxel size (x, y, z), mm.
        centre_voxel: (3,) float canonical voxel indices of the crop centre.
        view: one of :data:`VIEWS`.

    Returns:
        (CROP_PIXELS, CROP_PIXELS) float32 image, rows top to bottom; NaN outside the volume.
    """
    row_axis, column_axis, fixed_axis = _VIEW_AXES[view]
    offsets_mm = (np.arange(CROP_PIXELS) - (CROP_PIXELS - 1) / 2) * PIXEL_MM
    rows, columns = np.meshgrid(-offsets_mm, -offsets_mm, indexing="ij")  # (P, P) each, mm
    coordinates = np.empty((3, CROP_PIXELS, CROP_PIXELS))  # canonical voxel index per pixel
    coordinates[row_axis] = centre_voxel[row_axis] + rows / spacing_mm[row_axis]
    coordinates[column_axis] = centre_voxel[column_axis] + columns / spacing_mm[column_axis]
    coordinates[fixed_axis] = centre_voxel[fixed_axis]
    image = ndimage.map_coordinates(data, coordinates, order=1, mode="nearest", prefilter=False)
    outside = np.zeros(image.shape, dtype=bool)  # beyond the outer faces of the edge voxels
    for axis in range(3):
        outside |= (coordinates[axis] < -0.5) | (coordinates[axis] > data.shape[axis] - 0.5)
    image[outside] = np.nan
    return image.astype(np.float32)


def to_grey(image: np.ndarray, window: Window) -> np.ndarray:
    """(H, W) float image -> (H, W) uint8 through ``window``; NaN pixels become stripes."""
    scaled = (image - window.low) / (window.high - window.low)
    grey = np.round(np.clip(np.nan_to_num(scaled, nan=0.0), 0.0, 1.0) * 255).astype(np.uint8)
    outside = np.isnan(image)
    if outside.any():
        rows, columns = np.indices(image.shape)
        stripes = np.where((rows + columns) // 4 % 2 == 0, 70, 110).astype(np.uint8)
        grey[outside] = stripes[outside]
    return grey


def png_bytes(grey: np.ndarray) -> bytes:
    """Encode an (H, W) uint8 array as an 8-bit greyscale PNG (deterministic bytes)."""
    height, width = grey.shape
    # PNG "Sub" filter: each byte minus its left neighbour (mod 256), row by row
    sub = np.diff(grey, axis=1, prepend=np.zeros((height, 1), np.uint8)).astype(np.uint8)
    rows = np.hstack([np.ones((height, 1), np.uint8), sub])  # (H, 1 + W): filter byte + row

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload)
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit, greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows.tobytes(), 9))
        + chunk(b"IEND", b"")
    )


def png_data_uri(grey: np.ndarray) -> str:
    """``data:image/png;base64,...`` of an (H, W) uint8 image."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(grey)).decode("ascii")


def crop_uris(
    data: np.ndarray,
    spacing_mm: tuple[float, float, float],
    centre_voxel: np.ndarray,
    window: Window,
    views: tuple[str, ...] = VIEWS,
) -> dict[str, str]:
    """PNG data URI of each view around ``centre_voxel`` (see :func:`sample_view`)."""
    return {
        view: png_data_uri(to_grey(sample_view(data, spacing_mm, centre_voxel, view), window))
        for view in views
    }


def darkest_point(
    swi: np.ndarray,
    spacing_mm: tuple[float, float, float],
    centre: np.ndarray,
    reach_mm: tuple[float, float],
) -> np.ndarray:
    """The darkest voxel of ``swi`` near ``centre``, where a crop shows a dark lesion best.

    A candidate's centre is the middle of its track across slices; a CMB that spans several
    slices is darkest (and a vein beside it least confusing) on one of them. The search
    smooths in-plane over 3 x 3 voxels (noise alone never wins) and stays inside the
    candidate's own extent.

    Args:
        swi: (X, Y, Z) canonical SWI.
        spacing_mm: its voxel size (x, y, z), mm.
        centre: (3,) canonical voxel coordinates of the candidate.
        reach_mm: (in-plane, through-plane) half-extent searched, mm.

    Returns:
        (3,) canonical voxel coordinates: the darkest voxel, or ``centre`` when it lies
        outside the volume.
    """
    reach = np.array([reach_mm[0], reach_mm[0], reach_mm[1]]) / np.asarray(spacing_mm)
    reach = np.floor(reach).astype(int)
    middle = np.round(centre).astype(int)
    low = np.maximum(middle - reach, 0)
    high = np.minimum(middle + reach + 1, swi.shape)
    if np.any(high <= low):
        return np.asarray(centre, dtype=float)
    outer_low = np.maximum(low - SMOOTHING_PAD, 0)  # room for the in-plane smoothing
    outer_high = np.minimum(high + SMOOTHING_PAD, swi.shape)
    outer = swi[tuple(slice(a, b) for a, b in zip(outer_low, outer_high, strict=True))]
    smooth = ndimage.uniform_filter(outer.astype(np.float32), size=(3, 3, 1))
    inner = smooth[tuple(slice(a - o, b - o) for a, b, o in zip(low, high, outer_low, strict=True))]
    darkest = np.unravel_index(np.argmin(inner), inner.shape)
    return (low + np.array(darkest)).astype(float)
