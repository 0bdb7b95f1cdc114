"""Property tests: malformed NIfTI files give a volume or one clear InputError, never a crash.

Headers are damaged field by field (dimensions, data type, voxel sizes, data offset, scaling,
affines) and byte by byte; data are truncated; gzip streams are corrupted. The loader must
return a checked volume or raise ``InputError``; ``cmbdet detect`` must exit 0 or 2 with one
line on stderr and leave no partial output.
"""

from __future__ import annotations

import gzip
import io
import math
import struct
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cmbdet.cli import main
from cmbdet.errors import InputError
from cmbdet.io.nifti import Volume, load_volume

SHAPE = (24, 20, 6)

# NIfTI-1 header fields: byte offset and struct format (little-endian)
FIELDS = {
    "dim": (40, "8h"),
    "datatype": (70, "h"),
    "bitpix": (72, "h"),
    "pixdim": (76, "8f"),
    "vox_offset": (108, "f"),
    "scl_slope": (112, "f"),
    "scl_inter": (116, "f"),
    "xyzt_units": (123, "B"),
    "qform_code": (252, "h"),
    "sform_code": (254, "h"),
    "quatern": (256, "6f"),
    "srow": (280, "12f"),
}
ODD_INTS = [0, 1, -1, 2, 3, 4, 5, 7, 8, 16, 64, 255, 512, 768, 1024, 32767, -32768]
ODD_FLOATS = [0.0, -0.0, 1.0, -1.0, 0.5, 1e-6, 1e6, 1e30, -1e30, math.nan, math.inf, -math.inf]


def _valid_nifti() -> bytes:
    rng = np.random.default_rng(0)
    data = (100 + 10 * rng.standard_normal(SHAPE)).astype(np.float32)
    image = nib.Nifti1Image(data, np.diag([0.8, 0.8, 2.0, 1.0]))
    image.header.set_xyzt_units("mm")
    buffer = io.BytesIO()
    file_map = nib.Nifti1Image.make_file_map({"image": buffer, "header": buffer})
    image.to_file_map(file_map)
    return buffer.getvalue()


VALID = _valid_nifti()


def _with_field(raw: bytes, name: str, values: tuple) -> bytes:
    offset, fmt = FIELDS[name]
    edited = bytearray(raw)
    struct.pack_into("<" + fmt, edited, offset, *values)
    return bytes(edited)


def _field_values(name: str) -> st.SearchStrategy:
    _, fmt = FIELDS[name]
    count = int(fmt[:-1]) if len(fmt) > 1 else 1
    if fmt.endswith("f"):
        element = st.one_of(st.sampled_from(ODD_FLOATS), st.floats(width=32))
    elif fmt.endswith("B"):
        element = st.integers(0, 255)
    else:
        element = st.one_of(st.sampled_from(ODD_INTS), st.integers(-32768, 32767))
    return st.lists(element, min_size=count, max_size=count).map(tuple)


field_edits = st.sampled_from(sorted(FIELDS)).flatmap(
    lambda name: _field_values(name).map(lambda values: (name, values))
)
byte_edits = st.lists(st.tuples(st.integers(0, 351), st.integers(0, 255)), min_size=1, max_size=6)


@st.composite
def damaged_files(draw) -> tuple[bytes, bool]:
    """A damaged NIfTI file's bytes and whether it is gzip-compressed."""
    raw = VALID
    for name, values in draw(st.lists(field_edits, min_size=0, max_size=3)):
        raw = _with_field(raw, name, values)
    if draw(st.booleans()):
        edited = bytearray(raw)
        for offset, value in draw(byte_edits):
            edited[offset] = value
        raw = bytes(edited)
    if draw(st.booleans()):
        raw = raw[: draw(st.integers(0, len(raw)))]
    compressed = draw(st.booleans())
    if compressed:
        raw = gzip.compress(raw, mtime=0)
        if draw(st.booleans()):  # damage the gzip stream itself
            edited = bytearray(raw)
            position = draw(st.integers(0, len(edited) - 1))
            edited[position] ^= draw(st.integers(1, 255))
            raw = bytes(edited)
    return raw, compressed


def _write(folder: Path, name: str, raw: bytes, compressed: bool) -> Path:
    path = folder / (name + (".nii.gz" if compressed else ".nii"))
    path.write_bytes(raw)
    return path


@settings(max_examples=300, deadline=5000, suppress_health_check=[HealthCheck.too_slow])
@given(damaged_files())
def test_loader_returns_a_checked_volume_or_one_clear_error(damaged):
    raw, compressed = damaged
    with tempfile.TemporaryDirectory() as scratch:
        path = _write(Path(scratch), "swi", raw, compressed)
        try:
            volume = load_volume(path, "SWI")
        except InputError as error:
            message = str(error)
            assert str(path) in message and "\n" not in message
            return
    assert isinstance(volume, Volume)
    assert volume.data.ndim == 3 and volume.data.dtype == np.float32
    assert np.all(np.isfinite(volume.data)) and np.any(volume.data)
    assert np.all(np.isfinite(volume.affine)) and abs(np.linalg.det(volume.affine)) > 0


def test_the_unedited_file_loads():
    """The fuzzing starts from a file that is valid, so edits are what is being tested."""
    with tempfile.TemporaryDirectory() as scratch:
        volume = load_volume(_write(Path(scratch), "swi", VALID, False), "SWI")
    assert volume.shape == SHAPE


@pytest.fixture(scope="module")
def good_pair(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny synthetic subject (the detector's real input)."""
    from cmbdet.synth.dataset import generate_dataset

    data = generate_dataset(tmp_path_factory.mktemp("fuzz") / "data", "tiny", 1, 3, progress=False)
    subject = data / "sub-0000"
    return subject / "swi.nii.gz", subject / "phase.nii.gz"


def _detect_on_a_damaged_phase(good_pair, capfd, edit) -> None:
    """``cmbdet detect`` with one header field of the phase file damaged."""
    swi, phase = good_pair
    image = nib.load(phase)
    raw = gzip.decompress(phase.read_bytes())
    damaged = _with_field(raw, *edit)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        bad_phase = _write(folder, "phase", damaged, compressed=False)
        out = folder / "out"
        capfd.readouterr()
        code = main(["detect", "--swi", str(swi), "--phase", str(bad_phase), "--out", str(out)])
        err = capfd.readouterr().err
        assert code in (0, 2), err
        if code == 2:
            assert err.count("\n") == 1 and "Traceback" not in err
            assert not out.exists() or not any(out.iterdir())  # no partial outputs
        else:
            assert (out / "run.json").is_file()
    assert image.shape == nib.load(phase).shape  # the original is untouched


DETECT_SETTINGS = dict(
    deadline=60_000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@settings(max_examples=8, **DETECT_SETTINGS)
@given(field_edits)
def test_detect_on_a_damaged_phase_header_exits_0_or_2_with_one_line(good_pair, capfd, edit):
    _detect_on_a_damaged_phase(good_pair, capfd, edit)


@pytest.mark.slow
@settings(max_examples=100, **DETECT_SETTINGS)
@given(field_edits)
def test_detect_on_many_damaged_phase_headers(good_pair, capfd, edit):
    _detect_on_a_damaged_phase(good_pair, capfd, edit)
