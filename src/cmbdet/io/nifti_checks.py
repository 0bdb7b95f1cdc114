"""What a NIfTI file must pass before its voxels are used: a readable file, a NIfTI header
with sane voxel sizes and affine, scalar (not complex or colour) data of the expected
dimensions, and finite values. Each failure is one InputError naming the file and its role."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from cmbdet.errors import InputError
from cmbdet.io.compression import gunzip

MIN_VOXEL_MM, MAX_VOXEL_MM = 1e-3, 1e3  # any medical image; SWI limits are the detector's
MAX_AFFINE_CONDITION = 1e4  # voxel axes nearly parallel: a damaged header
_NIFTI_SUFFIXES = (".nii", ".nii.gz")
_HEADER_BYTES = 544  # enough for a NIfTI-2 header (540) and a NIfTI-1 one (348 + 4)


def check_file(path: Path, role: str) -> None:
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


def check_nifti_header(path: Path, role: str) -> nib.Nifti1Header:
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


def check_voxel_sizes(path: Path, role: str, header: nib.Nifti1Header) -> None:
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


def open_image(path: Path, role: str) -> nib.Nifti1Image:
    try:
        image = nib.load(str(path))
    except Exception as error:  # nibabel raises many types for damaged headers
        problem = _gzip_problem(path) or f"file cannot be read as NIfTI ({_one_line(error)})"
        raise InputError(path, f"{role} {problem}") from None
    if not isinstance(image, nib.Nifti1Image):  # Nifti2Image subclasses Nifti1Image
        raise InputError(path, f"{role} file is not a NIfTI file")
    return image


def check_data_type(path: Path, role: str, image: nib.Nifti1Image) -> None:
    """Refuse complex and colour data, which a float cast would silently damage."""
    dtype = np.dtype(image.get_data_dtype())
    if dtype.fields is not None or dtype.kind == "V":
        raise InputError(path, f"{role} holds RGB colour values ({dtype}), not a scalar MRI image")
    if dtype.kind == "c":
        raise InputError(
            path,
            f"{role} holds complex values ({dtype}); give the magnitude and the phase as two "
            "files (--magnitude and --phase)",
        )


def three_d_shape(path: Path, role: str, shape: tuple[int, ...]) -> tuple[int, int, int]:
    extra = shape[3:]
    if len(shape) == 4 and shape[3] > 1:
        raise InputError(
            path,
            f"{role} has shape {tuple(shape)}: a stack of {shape[3]} volumes where one 3D "
            "volume is expected (multi-echo magnitude and phase stacks are read as --magnitude "
            "and --phase without --swi: the SWI is then computed from the chosen echo)",
        )
    if len(shape) < 3 or any(n != 1 for n in extra):
        raise InputError(path, f"{role} has shape {tuple(shape)}, expected a single 3D volume")
    if min(shape[:3]) < 1:
        raise InputError(path, f"{role} has shape {tuple(shape)} with an empty axis")
    return (int(shape[0]), int(shape[1]), int(shape[2]))


def check_affine(path: Path, role: str, affine: np.ndarray) -> None:
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


def read_data(
    path: Path, role: str, image: nib.Nifti1Image, volume: int | None = None
) -> np.ndarray:
    """The image's voxels: float32 with the scaling applied, or, where the scaling is unity,
    as stored (their float32 values are the same; the caller casts them while reordering them,
    one pass fewer); with ``volume``, only that volume of a 4D image, float32 (the others are
    not read). A ``.nii.gz`` is decompressed whole first (:func:`_decompressed`)."""
    unscaled = volume is None and _unit_scaling(image.dataobj)
    if volume is None and path.name.endswith(".gz"):
        data = _decompressed(path, role)
        if unscaled:
            return _stored_voxels(path, role, image.dataobj, data)
        image = type(image).from_bytes(data)
    try:
        if unscaled:
            return np.asanyarray(image.dataobj.get_unscaled())
        if volume is None:
            return image.get_fdata(dtype=np.float32, caching="unchanged")
        return np.asarray(image.dataobj[..., volume], dtype=np.float32)
    except (OSError, EOFError, zlib.error) as error:
        problem = _gzip_problem(path)
        if problem is None and "Expected" in str(error):  # "Expected N bytes, got M bytes"
            problem = TRUNCATED_DATA
        problem = problem or f"file cannot be read ({_one_line(error)})"
        raise InputError(path, f"{role} {problem}") from None
    except Exception as error:  # e.g. complex or RGB data types
        raise InputError(path, f"{role} data cannot be read ({_one_line(error)})") from None


TRUNCATED_DATA = "file is truncated: image data is shorter than its header says"


def _unit_scaling(proxy) -> bool:
    """Whether nibabel's proxy applies no scaling (slope 1, intercept 0, as it reads them)."""
    slope, intercept = getattr(proxy, "slope", None), getattr(proxy, "inter", None)
    return slope is not None and float(slope) == 1.0 and float(intercept) == 0.0


def _stored_voxels(path: Path, role: str, proxy, data: bytes) -> np.ndarray:
    """The voxels of a decompressed single-file NIfTI, as stored (Fortran order), viewed in
    ``data`` where the header puts them: no copy."""
    count = int(np.prod(proxy.shape))
    dtype = np.dtype(proxy.dtype)
    if len(data) < proxy.offset + count * dtype.itemsize:
        raise InputError(path, f"{role} {TRUNCATED_DATA}")
    voxels = np.frombuffer(data, dtype=dtype, count=count, offset=proxy.offset)
    return voxels.reshape(proxy.shape, order="F")


def _decompressed(path: Path, role: str) -> bytes:
    """A ``.nii.gz`` file decompressed whole in one call, outside Python's global lock
    (:mod:`cmbdet.io.compression`); nibabel's streamed reading takes the lock for every 32 kB
    it inflates."""
    try:
        return gunzip(path.read_bytes())
    except PermissionError:
        raise InputError(path, f"{role} file is not readable (permission denied)") from None
    except Exception as error:  # zlib's, ISA-L's and gzip's errors for damaged data
        problem = _gzip_problem(path) or f"file cannot be read ({_one_line(error)})"
        raise InputError(path, f"{role} {problem}") from None


def check_values(path: Path, role: str, data: np.ndarray, allow_all_zero: bool) -> None:
    low, high = data.min(), data.max()  # NaN or Inf anywhere shows in one of them
    if np.isfinite(low) and np.isfinite(high):
        if not allow_all_zero and low == 0 and high == 0:
            raise InputError(path, f"{role} is all zero")
        return
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


def _fmt(values) -> str:
    return "x".join(f"{float(v):.4g}" for v in values)
