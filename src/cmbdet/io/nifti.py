"""Reading and writing NIfTI volumes, with every bad input turned into one clear InputError.

Volumes are held in closest canonical RAS+ order (see :mod:`cmbdet.geometry`); each keeps the
:class:`~cmbdet.geometry.Reorientation` needed to write results back on the input's own grid.
"""

from __future__ import annotations

import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from cmbdet.errors import InputError
from cmbdet.geometry import Reorientation, spacing_mm, voxel_to_world
from cmbdet.io.compression import gzipped
from cmbdet.io.nifti_checks import (
    check_affine,
    check_data_type,
    check_file,
    check_nifti_header,
    check_values,
    check_voxel_sizes,
    open_image,
    read_data,
    three_d_shape,
)
from cmbdet.io.writing import current_umask

GRID_TOLERANCE_MM = 1e-3
_NIFTI_SUFFIXES = (".nii", ".nii.gz")


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3D image in canonical RAS+ order.

    Attributes:
        data: (X, Y, Z) float32 array, canonical RAS+ order, scaling (scl_slope/inter) applied.
        reorientation: mapping back to the file's own array order and affine.
        path: the file it was read from.
        spacing_mm: voxel size along the canonical axes (x, y, z), mm.
        header: a copy of the file's NIfTI header, reused when writing results beside it.
    """

    data: np.ndarray
    reorientation: Reorientation
    path: Path
    spacing_mm: tuple[float, float, float]
    header: nib.Nifti1Header | None = field(default=None, repr=False)

    @property
    def affine(self) -> np.ndarray:
        """(4, 4) voxel-to-world affine of ``data`` (canonical voxels to scanner RAS+ mm)."""
        return self.reorientation.canonical_affine

    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape of ``data`` (canonical order)."""
        return self.reorientation.canonical_shape


# ----------------------------------------------------------------------------- reading


def load_volume(path: str | Path, role: str = "image", *, allow_all_zero: bool = False) -> Volume:
    """Read a 3D NIfTI file, check it and reorient it to canonical RAS+.

    Args:
        path: a ``.nii`` or ``.nii.gz`` file.
        role: what the file is for ("SWI", "phase", "mask", ...), used in error messages.
        allow_all_zero: accept a volume whose voxels are all zero (e.g. an empty label map).

    Returns:
        The volume, float32, canonical order.

    Raises:
        InputError: the file is missing, not NIfTI, damaged, complex or colour data, not 3D,
            has NaN/Inf values, is all zero (unless allowed) or has a non-invertible affine.
    """
    return _load(Path(path), role, allow_all_zero, stack=False)


def load_volumes(*files: tuple[Path, str]) -> list[Volume]:
    """:func:`load_volume` of each ``(path, role)``, read at the same time on threads (their
    decompression runs outside Python's global lock: two files take about as long as the
    larger one on two cores).

    Raises:
        InputError: of the first file (in the order given) that fails.
    """
    if len(files) < 2:
        return [load_volume(path, role) for path, role in files]
    with ThreadPoolExecutor(len(files), thread_name_prefix="cmbdet-read") as pool:
        loading = [pool.submit(load_volume, path, role) for path, role in files]
        return [future.result() for future in loading]


def load_echoes(path: str | Path, role: str = "image", index: int = 0) -> Volume:
    """Read echo ``index`` (0-based) of a 4D stack of volumes along the last axis (the echoes
    of a multi-echo acquisition; a 3D file is one echo), checked and reoriented as
    :func:`load_volume` does; the other echoes are not read.

    Raises:
        InputError: as :func:`load_volume`; a 5D or larger file, or no such echo.
    """
    return _load(Path(path), role, allow_all_zero=False, stack=True, index=index)


def _load(path: Path, role: str, allow_all_zero: bool, stack: bool, index: int = 0) -> Volume:
    check_file(path, role)
    check_voxel_sizes(path, role, check_nifti_header(path, role))
    image = open_image(path, role)
    check_data_type(path, role, image)
    if stack and len(image.shape) == 4:
        shape, volumes = three_d_shape(path, role, image.shape[:3]), int(image.shape[3])
        if not 0 <= index < volumes:
            raise InputError(path, f"{role} has {volumes} volumes, not a volume {index + 1}")
        named = role if volumes == 1 else f"{role} (volume {index + 1} of {volumes})"
        selected = index
    else:
        shape, named, selected = three_d_shape(path, role, image.shape), role, None
    affine = np.asarray(image.affine, dtype=np.float64)
    check_affine(path, role, affine)
    reorientation = Reorientation(affine, shape)
    data = reorientation.to_canonical(
        read_data(path, role, image, selected).reshape(shape), np.float32
    )
    check_values(path, named, data, allow_all_zero)
    return Volume(
        data=data,
        reorientation=reorientation,
        path=path,
        spacing_mm=spacing_mm(reorientation.canonical_affine),
        header=image.header.copy(),
    )


# ----------------------------------------------------------------------------- grids


def check_same_grid(a: Volume, b: Volume) -> None:
    """Require two volumes to share one voxel grid (canonical shape and affine).

    Affines count as equal when the eight grid corners land within ``GRID_TOLERANCE_MM``
    (1e-3 mm) of each other in world space.

    Raises:
        InputError: naming both files and what differs.
    """
    if a.shape != b.shape:
        problem = f"shape {a.shape} differs from shape {b.shape} of {b.path}"
        raise InputError(a.path, problem)
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in a.shape], indexing="ij"))
    corners = corners.reshape(3, -1).T  # (8, 3) canonical voxel indices
    offset_mm = np.linalg.norm(
        voxel_to_world(corners, a.affine) - voxel_to_world(corners, b.affine), axis=1
    )
    if offset_mm.max() > GRID_TOLERANCE_MM:
        problem = (
            f"voxel grid differs from {b.path}: corners up to {offset_mm.max():.3g} mm apart "
            f"(spacing {_fmt(a.spacing_mm)} vs {_fmt(b.spacing_mm)} mm, "
            f"origin {_fmt(a.affine[:3, 3])} vs {_fmt(b.affine[:3, 3])} mm)"
        )
        raise InputError(a.path, problem)


def _fmt(values: np.ndarray | tuple[float, ...]) -> str:
    return "x".join(f"{float(v):.4g}" for v in values)


def load_mask(path: str | Path, reference: Volume) -> np.ndarray:
    """Read a 0/1 mask on the grid of ``reference``.

    A mask may hold 0 and one positive value (0/1, 0/255, ...); anything else is refused.

    Returns:
        (X, Y, Z) bool array, canonical order.

    Raises:
        InputError: a bad file, another grid, values that are not a mask, or an empty mask.
    """
    volume = load_volume(path, role="mask", allow_all_zero=True)
    check_same_grid(volume, reference)
    values = np.unique(volume.data)
    if values.min() < 0 or len(values[values != 0]) > 1:
        shown = ", ".join(f"{v:g}" for v in values[:5])
        more = ", ..." if len(values) > 5 else ""
        problem = f"mask must hold only 0 and 1, found {len(values)} values ({shown}{more})"
        raise InputError(volume.path, problem)
    mask = volume.data != 0
    if not mask.any():
        raise InputError(volume.path, "mask is empty (all zero)")
    return mask


def load_labels(path: str | Path, reference: Volume) -> np.ndarray:
    """Read an instance label map (0 = background, n = lesion n) on the grid of ``reference``.

    Returns:
        (X, Y, Z) int32 array, canonical order. All zero is allowed (no lesions).

    Raises:
        InputError: a bad file, another grid, or values that are not non-negative integers.
    """
    volume = load_volume(path, role="label map", allow_all_zero=True)
    check_same_grid(volume, reference)
    rounded = np.rint(volume.data)
    if np.abs(volume.data - rounded).max() > 1e-3:
        raise InputError(volume.path, "label map holds non-integer values")
    if rounded.min() < 0:
        raise InputError(volume.path, f"label map holds negative values (min {rounded.min():g})")
    if rounded.max() > np.iinfo(np.int32).max:
        raise InputError(volume.path, "label map values are too large for int32")
    return rounded.astype(np.int32)


# ----------------------------------------------------------------------------- writing


def save_volume(
    path: str | Path,
    data: np.ndarray,
    affine: np.ndarray,
    *,
    dtype: np.dtype | type | str,
    header_from: nib.Nifti1Header | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a 3D array as NIfTI, byte-for-byte deterministic and atomically.

    The array is written in the order given (no reorientation); ``affine`` becomes both the
    qform and the sform, with code 1 (scanner). Float data written as an integer dtype is
    rounded. ``.nii.gz`` output is deterministic within an install (a zero gzip time stamp;
    see :mod:`cmbdet.io.compression`).

    Args:
        path: output ``.nii`` or ``.nii.gz`` file.
        data: (X, Y, Z) array in the order ``affine`` describes.
        affine: (4, 4) voxel-to-world affine, mm.
        dtype: on-disk data type, e.g. ``np.float32`` or ``np.int16``; stored unscaled.
        header_from: header whose extra fields (units, description, ...) are kept.
        overwrite: replace an existing file; otherwise an existing file is an error. A link at
            ``path`` is itself replaced (its target is never written).

    Returns:
        ``path``.

    Raises:
        InputError: ``path`` exists and ``overwrite`` is false, is not a NIfTI name, or its
            folder does not exist.
        ValueError: ``data`` is not 3D or does not fit in ``dtype``.
    """
    path = Path(path)
    if not path.name.endswith(_NIFTI_SUFFIXES):
        raise InputError(path, "output file name must end in .nii or .nii.gz")
    if not path.parent.is_dir():
        raise InputError(path.parent, "output folder does not exist")
    if (path.exists() or path.is_symlink()) and not overwrite:  # a dangling link is there too
        raise InputError(path, "output file already exists (refusing to overwrite)")
    image = _make_image(_cast(data, np.dtype(dtype)), np.asarray(affine, float), header_from)
    suffix = ".nii.gz" if path.name.endswith(".gz") else ".nii"
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(handle)
    try:
        if suffix == ".nii.gz":  # compressed whole, outside Python's lock
            Path(temporary).write_bytes(gzipped(image.to_bytes()))
        else:
            nib.save(image, temporary)
        os.chmod(temporary, 0o666 & ~current_umask())  # mkstemp makes it owner-only
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _cast(data: np.ndarray, dtype: np.dtype) -> np.ndarray:
    data = np.asarray(data)
    if data.ndim != 3:
        raise ValueError(f"expected a 3D array, got shape {data.shape}")
    if dtype.kind in "iub":
        if data.dtype.kind == "f":
            data = np.rint(data)
        if dtype.kind != "b":
            info = np.iinfo(dtype)
            if data.size and (data.min() < info.min or data.max() > info.max):
                raise ValueError(f"values {data.min()}..{data.max()} do not fit in {dtype}")
    return data.astype(dtype)


def _make_image(
    data: np.ndarray, affine: np.ndarray, header_from: nib.Nifti1Header | None
) -> nib.Nifti1Image:
    image_class = nib.Nifti2Image if isinstance(header_from, nib.Nifti2Header) else nib.Nifti1Image
    header = None if header_from is None else header_from.copy()
    image = image_class(data, affine, header=header)
    image.set_data_dtype(data.dtype)
    image.header.set_slope_inter(1.0, 0.0)
    image.header["cal_min"] = 0
    image.header["cal_max"] = 0
    if header_from is None:
        image.header.set_xyzt_units(xyz="mm", t="sec")
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    return image


def save_like(
    path: str | Path,
    canonical_data: np.ndarray,
    reference: Volume,
    dtype: np.dtype | type | str,
    *,
    overwrite: bool = False,
) -> Path:
    """Write canonical-order data on the grid and in the array order of ``reference``'s file.

    The output overlays the reference file in any viewer: same array order, same affine.

    Args:
        path: output ``.nii`` or ``.nii.gz`` file.
        canonical_data: array of shape ``reference.shape`` (canonical RAS+ order).
        reference: the volume whose file grid to use.
        dtype: on-disk data type.
        overwrite: replace an existing file.
    """
    data = reference.reorientation.from_canonical(np.asarray(canonical_data))
    return save_volume(
        path,
        data,
        reference.reorientation.original_affine,
        dtype=dtype,
        header_from=reference.header,
        overwrite=overwrite,
    )
