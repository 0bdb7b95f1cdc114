"""Ground-truth lesions: the ``lesions.csv`` table of DESIGN.md, and CMB masks read as their
26-connected components.

Lesion voxel coordinates ``i, j, k`` are always in the file's own array order (0-based floats),
and ``x_mm, y_mm, z_mm`` are scanner RAS+ through the file's affine.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from cmbdet.errors import InputError
from cmbdet.geometry import voxel_to_world
from cmbdet.io.nifti import load_volume

LESION_COLUMNS = (
    "lesion_id",
    "kind",
    "x_mm",
    "y_mm",
    "z_mm",
    "i",
    "j",
    "k",
    "diameter_mm",
    "visible",
)
OPTIONAL_LESION_COLUMNS = ("true_diameter_mm", "delta_chi_ppm", "region", "shape")
CMB = "cmb"


@dataclass(frozen=True)
class Lesion:
    """One ground-truth lesion (a CMB or a mimic) of one subject.

    Attributes:
        lesion_id: unique within the subject; the value in ``labels.nii.gz`` when there is one.
        kind: ``"cmb"`` for microbleeds; mimics: ``"calcification"``, ``"iron"``, ``"vein"``, ...
        x_mm, y_mm, z_mm: centre, scanner RAS+ world coordinates, mm.
        i, j, k: centre, 0-based float voxel indices in the file's own array order.
        diameter_mm: apparent diameter on SWI, mm; NaN when not measured (an empty cell, e.g.
            a reader-added CMB without a measurable dark blob).
        visible: False for a CMB too faint to see (ignored by evaluation).
        true_diameter_mm: physical diameter before blooming, mm.
        delta_chi_ppm: susceptibility difference to the surrounding tissue, ppm.
        region: anatomical region, free text (e.g. ``"lobar"``, ``"deep"``).
        shape: free text (e.g. ``"sphere"``, ``"ellipsoid"``).
    """

    lesion_id: int
    kind: str
    x_mm: float
    y_mm: float
    z_mm: float
    i: float
    j: float
    k: float
    diameter_mm: float
    visible: bool
    true_diameter_mm: float | None = None
    delta_chi_ppm: float | None = None
    region: str | None = None
    shape: str | None = None

    @property
    def is_cmb(self) -> bool:
        """True for a microbleed (as opposed to a mimic)."""
        return self.kind == CMB

    @property
    def centre_mm(self) -> np.ndarray:
        """(3,) centre in world coordinates (x, y, z), mm."""
        return np.array([self.x_mm, self.y_mm, self.z_mm], dtype=np.float64)

    @property
    def centre_ijk(self) -> np.ndarray:
        """(3,) centre as float voxel indices in the file's own array order."""
        return np.array([self.i, self.j, self.k], dtype=np.float64)


_INT_FIELDS = {"lesion_id"}
_FLOAT_FIELDS = {"x_mm", "y_mm", "z_mm", "i", "j", "k", "diameter_mm"}
_OPTIONAL_FLOAT_FIELDS = {"true_diameter_mm", "delta_chi_ppm"}
_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"0", "false", "no", "n", "f"}


# ----------------------------------------------------------------------------- lesions.csv


def write_lesions_csv(path: str | Path, lesions: list[Lesion]) -> Path:
    """Write lesions as CSV: required columns, then the optional ones (empty cell for None).

    Floats get 3 decimals and ``visible`` is 0/1, so equal lesions give identical text.
    """
    columns = LESION_COLUMNS + OPTIONAL_LESION_COLUMNS
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for lesion in lesions:
        writer.writerow([_format_cell(getattr(lesion, name)) for name in columns])
    path = Path(path)
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path


def _format_cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool | np.bool_):
        return "1" if value else "0"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return ""  # not measured
        text = f"{float(value):.3f}"
        return "0.000" if text == "-0.000" else text
    return str(value)


def read_lesions_csv(path: str | Path) -> list[Lesion]:
    """Read a ``lesions.csv``; unknown extra columns are ignored.

    Raises:
        InputError: missing file, missing required columns (named), unparsable or non-finite
            values (with the line number), or duplicate ``lesion_id``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "lesions file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(path, f"lesions file cannot be read ({error})") from None
    reader = csv.DictReader(io.StringIO(text))
    header = [name.strip() for name in reader.fieldnames or []]
    missing = [name for name in LESION_COLUMNS if name not in header]
    if missing:
        raise InputError(path, f"lesions file lacks required columns: {', '.join(missing)}")
    reader.fieldnames = header
    lesions = [_parse_row(path, row, reader.line_num) for row in reader]
    ids = [lesion.lesion_id for lesion in lesions]
    duplicates = sorted({n for n in ids if ids.count(n) > 1})
    if duplicates:
        raise InputError(path, f"duplicate lesion_id values: {duplicates}")
    return lesions


def _parse_row(path: Path, row: dict[str, str | None], line: int) -> Lesion:
    values: dict[str, Any] = {}
    for spec in fields(Lesion):
        cell = (row.get(spec.name) or "").strip()
        try:
            values[spec.name] = _parse_cell(spec.name, cell)
        except ValueError as error:
            raise InputError(path, f"line {line}, column {spec.name}: {error}") from None
    return Lesion(**values)


def _parse_cell(name: str, cell: str) -> object:
    if name in _OPTIONAL_FLOAT_FIELDS or name in ("region", "shape"):
        if not cell:
            return None
        return _parse_float(cell) if name in _OPTIONAL_FLOAT_FIELDS else cell
    if not cell and name == "diameter_mm":
        return math.nan  # not measured
    if not cell:
        raise ValueError("empty value")
    if name in _INT_FIELDS:
        number = _parse_float(cell)
        if not number.is_integer():
            raise ValueError(f"{cell!r} is not an integer")
        return int(number)
    if name in _FLOAT_FIELDS:
        number = _parse_float(cell)
        if name == "diameter_mm" and number < 0:
            raise ValueError(f"{cell!r} is negative")
        return number
    if name == "visible":
        if cell.lower() in _TRUE:
            return True
        if cell.lower() in _FALSE:
            return False
        raise ValueError(f"{cell!r} is not 0/1")
    return cell  # kind


def _parse_float(cell: str) -> float:
    try:
        number = float(cell)
    except ValueError:
        raise ValueError(f"{cell!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{cell!r} is not a finite number")
    return number


# ----------------------------------------------------------------------------- masks


def lesions_from_mask(
    mask: str | Path | np.ndarray, affine: np.ndarray | None = None
) -> list[Lesion]:
    """Turn a lesion mask into lesions: one ``cmb`` per 26-connected component of ``mask > 0``.

    Works for binary masks and instance label maps alike (label values are not used).

    Args:
        mask: a NIfTI file, or an (X, Y, Z) array in the array order ``affine`` describes.
        affine: (4, 4) voxel-to-world affine, mm; required for an array, ignored for a file.

    Returns:
        Lesions numbered 1..n in scan order of the file's own array; centre = component
        centroid (file voxel order and world mm); diameter = diameter of the sphere of equal
        volume, mm; ``visible`` True.
    """
    if isinstance(mask, str | Path):
        volume = load_volume(mask, role="lesion mask", allow_all_zero=True)
        array = volume.reorientation.from_canonical(volume.data)
        affine = volume.reorientation.original_affine
    elif affine is None:
        raise ValueError("an affine is required when the mask is given as an array")
    else:
        array = np.asarray(mask)
    if array.ndim != 3:
        raise ValueError(f"mask must be 3D, got shape {array.shape}")
    return _components_to_lesions(array > 0, np.asarray(affine, dtype=np.float64))


def _components_to_lesions(mask: np.ndarray, affine: np.ndarray) -> list[Lesion]:
    labels, count = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    if count == 0:
        return []
    index = np.arange(1, count + 1)
    centres_ijk = np.array(ndimage.center_of_mass(mask, labels, index)).reshape(count, 3)
    n_voxels = ndimage.sum_labels(mask, labels, index)  # (count,)
    voxel_volume_mm3 = abs(np.linalg.det(affine[:3, :3]))
    diameters_mm = np.cbrt(6.0 * n_voxels * voxel_volume_mm3 / np.pi)
    centres_mm = voxel_to_world(centres_ijk, affine)
    return [
        Lesion(
            lesion_id=int(n),
            kind=CMB,
            x_mm=float(xyz[0]),
            y_mm=float(xyz[1]),
            z_mm=float(xyz[2]),
            i=float(ijk[0]),
            j=float(ijk[1]),
            k=float(ijk[2]),
            diameter_mm=float(diameter),
            visible=True,
        )
        for n, ijk, xyz, diameter in zip(index, centres_ijk, centres_mm, diameters_mm, strict=True)
    ]
