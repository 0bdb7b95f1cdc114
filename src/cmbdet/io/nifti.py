"""Reading and writing NIfTI volumes, with every bad input turned into one clear InputError.

Volumes are held in closest canonical RAS+ order (see :mod:`cmbdet.geometry`); each keeps the
:class:`~cmbdet.geometry.Reorientation` needed to write results back on the input's own grid.
"""

from __future__ import annotations

import gzip
import os
import struct
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from cmbdet.errors import InputError
from cmbdet.geometry import Reorientation, spacing_mm, voxel_to_world
from cmbdet.io.writing import current_umask

GRID_TOLERANCE_MM = 1e-3
MIN_VOXEL_MM, MAX_VOXEL_MM = 1e-3, 1e3  # any medical image; SWI limits are the detector's
MAX_AFFINE_CONDITION = 1e4  # voxel axes nearly parallel: a damaged header
_NIFTI_SUFFIXES = (".nii", ".nii.gz")
_HEADER_BYTES = 544  # enough for a NIfTI-2 header (540) and a NIfTI-1 one (348 + 4)


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
        InputError: the file is missing, not NIfTI, damaged, not 3D, has NaN/Inf values,
            is all zero (unless allowed) or has a non-invertible affine.
    """
    path = Path(path)
    _check_file(path, role)
    _check_voxel_sizes(path, role, _check_nifti_header(path, role))
    image = _open_image(path, role)
    shape = _three_d_shape(path, role, image.shape)
    affine = np.asarray(image.affine, dtype=np.float64)
    _check_affine(path, role, affine)
    data = _read_data(path, role, image).reshape(shape)  # drops a trailing 4th axis of size 1
    _check_values(path, role, data, allow_all_zero)
    reorientation = Reorientation(affine, shape)
    return Volume(
        data=reorientation.to_canonical(data),
        reorientation=reorientation,
        path=path,
        spacing_mm=spacing_mm(reorientation.canonical_affine),
        header=image.header.copy(),
    )


def _check_file(path: Path, role: str) -> None:
    if not path.exists():
        raise InputError(path, f"{role} file not found")
    if path.is_dir():
        raise InputError(path, f"{role} path is a directory, expected a NIfTI file")
    if not path.name.endswith(_NIFTI_SUFFIXES):
        raise InputError(path, f"{role} file must be NIfTI (.nii or .nii.gz)")
    if path.stat().st_size == 0:
        raise InputError(path, f"{role} file is empty (0 bytes)")


def _read_header_bytes(path: Path, role: str) -> bytes:
    try:
        with open(path, "rb") as raw:
            start = raw.read(2)
        if path.name.endswith(".gz"):
            if start != b"\x1f\x8b":
                raise InputError(path, f"{role} file is not a NIfTI file (not gzip-compressed)")
            with gzip.open(path, "rb") as stream:
                return stream.read(_HEADER_BYTES)
        with open(path, "rb") as stream:
            return stream.read(_HEADER_BYTES)
    except PermissionError:
        raise InputError(path, f"{role} file is not readable (permission denied)") from None
    except EOFError:
        raise InputError(path, f"{role} file is truncated (gzip data ends early)") from None
    except (gzip.BadGzipFile, zlib.error) as error:
        raise InputError(path, f"{role} file has corrupt gzip data ({_one_line(error)})") from None
    except OSError as error:
        raise InputError(path, f"{role} file cannot be read ({_one_line(error)})") from None


def _check_nifti_header(path: Path, role: str) -> nib.Nifti1Header:
    """Recognise a NIfTI-1 or NIfTI-2 single-file header by its size field and magic.

    Returns:
        The header as stored (nothing repaired, unlike the one nibabel's loader keeps).
    """
    header = _read_header_bytes(path, role)
    for endian in "<>":
        if len(header) >= 348 + 4:
            (size,) = struct.unpack(f"{endian}i", header[:4])
            if size == 348 and header[344:348] == b"n+1\x00":
                return nib.Nifti1Header(header[:348], check=False)
        if len(header) >= 540:
            (size,) = struct.unpack(f"{endian}i", header[:4])
            if size == 540 and header[4:8] == b"n+2\x00":
                return nib.Nifti2Header(header[:540], check=False)
    raise InputError(path, f"{role} file is not a NIfTI file (no NIfTI-1/2 header found)")


def _check_voxel_sizes(path: Path, role: str, header: nib.Nifti1Header) -> None:
    """Refuse a zero or non-finite voxel size where the affine is built from it (a qform, or
    no orientation at all): nibabel would quietly read it as 1 mm. An sform does not use
    the stored voxel sizes."""
    if int(header["sform_code"]) > 0:
        return
    dims = max(1, min(3, int(header["dim"][0])))
    sizes = np.asarray(header["pixdim"][1 : 1 + dims], dtype=np.float64)
    if not np.all(np.isfinite(sizes)) or np.any(sizes == 0):
        shown = "x".join(f"{v:g}" for v in sizes)
        raise InputError(
            path,
            f"{role} header gives voxel sizes of {shown} mm: a voxel size of 0 or NaN "
            "(a damaged header; cmbdet will not guess the size)",
        )


def _gzip_problem(path: Path) -> str | None:
    """Why a ``.gz`` file cannot be fully decompressed, or None when it can (or is not gzip)."""
    if not path.name.endswith(".gz"):
        return None
    try:
        with gzip.open(path, "rb") as stream:
            while stream.read(1 << 24):
                pass
    except EOFError:
        return "file is truncated (gzip data ends early)"
    except (OSError, zlib.error) as error:
        return f"file has corrupt gzip data ({_one_line(error)})"
    return None


def _open_image(path: Path, role: str) -> nib.Nifti1Image:
    try:
        image = nib.load(str(path))
    except Exception as error:  # nibabel raises many types for damaged headers
        problem = _gzip_problem(path) or f"file cannot be read as NIfTI ({_one_line(error)})"
        raise InputError(path, f"{role} {problem}") from None
    if not isinstance(image, nib.Nifti1Image):  # Nifti2Image subclasses Nifti1Image
        raise InputError(path, f"{role} file is not a NIfTI file")
    return image


def _three_d_shape(path: Path, role: str, shape: tuple[int, ...]) -> tuple[int, int, int]:
    extra = shape[3:]
    if len(shape) < 3 or any(n != 1 for n in extra):
        raise InputError(path, f"{role} has shape {tuple(shape)}, expected a single 3D volume")
    if min(shape[:3]) < 1:
        raise InputError(path, f"{role} has shape {tuple(shape)} with an empty axis")
    return (int(shape[0]), int(shape[1]), int(shape[2]))


def _check_affine(path: Path, role: str, affine: np.ndarray) -> None:
    if not np.all(np.isfinite(affine)):
        raise InputError(path, f"{role} has a non-finite voxel-to-world affine")
    singular = np.linalg.svd(affine[:3, :3], compute_uv=False)
    if singular.min() < 1e-6:
        raise InputError(path, f"{role} has a zero or non-invertible voxel-to-world affine")
    voxel_mm = np.linalg.norm(affine[:3, :3], axis=0)
    if voxel_mm.min() < MIN_VOXEL_MM or voxel_mm.max() > MAX_VOXEL_MM:
        raise InputError(
            path,
            f"{role} header gives voxel sizes of {_fmt(voxel_mm)} mm, outside "
            f"{MIN_VOXEL_MM:g}-{MAX_VOXEL_MM:g} mm: a damaged header or wrong units",
        )
    if singular.max() / singular.min() > MAX_AFFINE_CONDITION:
        raise InputError(path, f"{role} has a degenerate (nearly flat) voxel-to-world affine")


def _read_data(path: Path, role: str, image: nib.Nifti1Image) -> np.ndarray:
    try:
        return image.get_fdata(dtype=np.float32, caching="unchanged")
    except (OSError, EOFError, zlib.error) as error:
        problem = _gzip_problem(path)
        if problem is None and "Expected" in str(error):  # "Expected N bytes, got M bytes"
            problem = "file is truncated: image data is shorter than its header says"
        problem = problem or f"file cannot be read ({_one_line(error)})"
        raise InputError(path, f"{role} {problem}") from None
    except Exception as error:  # e.g. complex or RGB data types
        raise InputError(path, f"{role} data cannot be read ({_one_line(error)})") from None


def _check_values(path: Path, role: str, data: np.ndarray, allow_all_zero: bool) -> None:
    n_nan = int(np.count_nonzero(np.isnan(data)))
    n_inf = int(np.count_nonzero(np.isinf(data)))
    if n_nan or n_inf:
        found = [f"{n} {what}" for n, what in ((n_nan, "NaN"), (n_inf, "infinite")) if n]
        problem = f"{role} contains {' and '.join(found)} values (of {data.size} voxels)"
        raise InputError(path, problem)
    if not allow_all_zero and not np.any(data):
        raise InputError(path, f"{role} is all zero")


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


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
    rounded. ``.nii.gz`` output is deterministic (nibabel's gzip writer stores mtime 0).

    Args:
        path: output ``.nii`` or ``.nii.gz`` file.
        data: (X, Y, Z) array in the order ``affine`` describes.
        affine: (4, 4) voxel-to-world affine, mm.
        dtype: on-disk data type, e.g. ``np.float32`` or ``np.int16``; stored unscaled.
        header_from: header whose extra fields (units, description, ...) are kept.
        overwrite: replace an existing file; otherwise an existing file is an error.

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
    if path.exists() and not overwrite:
        raise InputError(path, "output file already exists (refusing to overwrite)")
    image = _make_image(_cast(data, np.dtype(dtype)), np.asarray(affine, float), header_from)
    suffix = ".nii.gz" if path.name.endswith(".gz") else ".nii"
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(handle)
    try:
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
