"""NIfTI reading and writing: every bad input gives one clear InputError naming the file."""

from __future__ import annotations

import gzip
import re

import nibabel as nib
import numpy as np
import pytest

from cmbdet.errors import InputError
from cmbdet.io.nifti import (
    check_same_grid,
    load_echoes,
    load_labels,
    load_mask,
    load_volume,
    save_like,
    save_volume,
)

SHAPE = (6, 7, 5)
AFFINE = np.diag([0.5, 0.5, 2.0, 1.0])


def _write(path, data, affine=AFFINE, dtype=np.float32):
    image = nib.Nifti1Image(np.asarray(data, dtype=dtype), affine)
    nib.save(image, str(path))
    return path


def _image(seed=0, shape=SHAPE):
    return np.random.default_rng(seed).uniform(1.0, 2.0, size=shape).astype(np.float32)


def _fails(path, match, **kwargs):
    with pytest.raises(InputError) as caught:
        load_volume(path, "SWI", **kwargs)
    assert re.search(match, caught.value.problem), caught.value.problem
    message = str(caught.value)
    assert message.startswith(str(path)) and "\n" not in message
    return message


# ----------------------------------------------------------------------------- good input


def test_loads_ras_file_as_float32(tmp_path):
    data = _image()
    volume = load_volume(_write(tmp_path / "swi.nii.gz", data))
    assert volume.data.dtype == np.float32
    assert volume.shape == SHAPE == volume.data.shape
    assert volume.spacing_mm == (0.5, 0.5, 2.0)
    np.testing.assert_array_equal(volume.data, data)
    np.testing.assert_array_equal(volume.affine, AFFINE)


def test_applies_scaling(tmp_path):
    image = nib.Nifti1Image(np.full(SHAPE, 10, dtype=np.int16), AFFINE)
    image.header.set_slope_inter(0.5, 3.0)
    nib.save(image, str(tmp_path / "scaled.nii"))
    volume = load_volume(tmp_path / "scaled.nii")
    np.testing.assert_allclose(volume.data, 8.0)


def test_4d_with_one_volume_is_squeezed(tmp_path):
    path = _write(tmp_path / "one.nii.gz", _image()[..., None])
    assert load_volume(path).shape == SHAPE


def test_lps_file_is_reoriented_and_written_back_in_its_own_order(tmp_path):
    lps = np.diag([-0.5, -0.5, 2.0, 1.0])
    lps[:3, 3] = [30.0, 40.0, -10.0]
    data = _image()
    path = _write(tmp_path / "lps.nii.gz", data, lps)
    volume = load_volume(path)
    # canonical x runs left to right: the file's first axis flipped
    np.testing.assert_array_equal(volume.data, data[::-1, ::-1, :])
    assert nib.aff2axcodes(volume.affine) == ("R", "A", "S")

    labels = np.zeros(volume.shape)
    labels[0, 1, 2] = 3
    out = save_like(tmp_path / "labels.nii.gz", labels, volume, np.int16)
    written = nib.load(str(out))
    np.testing.assert_allclose(written.affine, lps)
    assert written.get_data_dtype() == np.int16
    assert int(written.header["sform_code"]) == 1 and int(written.header["qform_code"]) == 1
    file_ijk = np.argwhere(np.asarray(written.dataobj))
    np.testing.assert_array_equal(file_ijk, [[SHAPE[0] - 1, SHAPE[1] - 2, 2]])
    np.testing.assert_array_equal(load_volume(out).data, labels)


def test_save_is_deterministic_and_rounds_integers(tmp_path):
    data = _image() * 100
    first = save_volume(tmp_path / "a.nii.gz", data, AFFINE, dtype=np.int16)
    second = save_volume(tmp_path / "b.nii.gz", data, AFFINE, dtype=np.int16)
    assert first.read_bytes() == second.read_bytes()
    np.testing.assert_array_equal(np.asarray(nib.load(str(first)).dataobj), np.rint(data))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nii.gz", "b.nii.gz"]  # no temp files


def test_save_refuses_to_overwrite(tmp_path):
    path = save_volume(tmp_path / "a.nii.gz", _image(), AFFINE, dtype=np.float32)
    with pytest.raises(InputError, match="already exists"):
        save_volume(path, _image(1), AFFINE, dtype=np.float32)
    save_volume(path, _image(1), AFFINE, dtype=np.float32, overwrite=True)
    np.testing.assert_array_equal(load_volume(path).data, _image(1))


@pytest.mark.parametrize("name", ["a.nii.gz", "a.nii"])
def test_save_never_writes_through_a_link(tmp_path, name):
    """A link at the output path, even a dangling one, is an existing file: refused without
    ``overwrite``; with it the link itself is replaced and its target is left as it was."""
    target = tmp_path / "elsewhere" / "target.bin"
    target.parent.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    dangling = out / ("dangling-" + name)
    dangling.symlink_to(tmp_path / "missing.bin")
    with pytest.raises(InputError, match="already exists"):
        save_volume(dangling, _image(), AFFINE, dtype=np.float32)
    assert dangling.is_symlink() and not (tmp_path / "missing.bin").exists()
    target.write_bytes(b"keep")
    link = out / name
    link.symlink_to(target)
    with pytest.raises(InputError, match="already exists"):
        save_volume(link, _image(), AFFINE, dtype=np.float32)
    save_volume(link, _image(1), AFFINE, dtype=np.float32, overwrite=True)
    assert not link.is_symlink() and target.read_bytes() == b"keep"
    np.testing.assert_array_equal(load_volume(link).data, _image(1))


# ----------------------------------------------------------------------------- bad input


def test_missing_file(tmp_path):
    _fails(tmp_path / "nope.nii.gz", "SWI file not found")


def test_directory(tmp_path):
    (tmp_path / "dir.nii.gz").mkdir()
    _fails(tmp_path / "dir.nii.gz", "is a directory")


def test_empty_file(tmp_path):
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    _fails(tmp_path / "empty.nii.gz", "empty")


def test_text_file_named_nifti(tmp_path):
    (tmp_path / "text.nii.gz").write_text("subject,age\n1,70\n")
    (tmp_path / "text.nii").write_text("subject,age\n1,70\n" * 40)
    _fails(tmp_path / "text.nii.gz", "not a NIfTI file")
    _fails(tmp_path / "text.nii", "not a NIfTI file")


def test_gzip_of_something_else(tmp_path):
    (tmp_path / "other.nii.gz").write_bytes(gzip.compress(b"not an image " * 100))
    _fails(tmp_path / "other.nii.gz", "not a NIfTI file")


def test_corrupt_gzip(tmp_path):
    path = _write(tmp_path / "swi.nii.gz", _image())
    damaged = bytearray(path.read_bytes())
    for n in range(20, len(damaged) - 20):
        damaged[n] ^= 0x5A
    path.write_bytes(bytes(damaged))
    _fails(path, "corrupt gzip")


@pytest.mark.parametrize("keep", [100, 0.5])
def test_truncated_gzip(tmp_path, keep):
    path = _write(tmp_path / "swi.nii.gz", _image(shape=(40, 40, 20)))
    raw = path.read_bytes()
    path.write_bytes(raw[: keep if isinstance(keep, int) else int(len(raw) * keep)])
    _fails(path, "truncated")


def test_truncated_uncompressed(tmp_path):
    path = _write(tmp_path / "swi.nii", _image())
    path.write_bytes(path.read_bytes()[:600])
    _fails(path, "truncated")


def test_2d_rejected(tmp_path):
    path = _write(tmp_path / "slice.nii.gz", _image()[:, :, 0])
    _fails(path, r"shape \(6, 7\)")


def test_4d_with_three_volumes_rejected(tmp_path):
    path = _write(tmp_path / "series.nii.gz", np.stack([_image(n) for n in range(3)], axis=-1))
    _fails(path, r"shape \(6, 7, 5, 3\): a stack of 3 volumes where one 3D volume")


def test_echo_stack_reads_one_echo_on_the_canonical_grid(tmp_path):
    echoes = np.stack([_image(n) for n in range(3)], axis=-1)
    flipped = AFFINE @ np.diag([-1.0, 1.0, 1.0, 1.0])  # stored LAS: read back as RAS
    path = _write(tmp_path / "megre.nii.gz", echoes, affine=flipped)
    for index in range(3):
        volume = load_echoes(path, "magnitude", index)
        np.testing.assert_array_equal(volume.data, _image(index)[::-1])
        assert volume.spacing_mm == pytest.approx((0.5, 0.5, 2.0))
    with pytest.raises(InputError, match="magnitude has 3 volumes, not a volume 4"):
        load_echoes(path, "magnitude", 3)
    one = _write(tmp_path / "one.nii.gz", _image())
    np.testing.assert_array_equal(load_echoes(one, "phase").data, _image())


def test_echo_stack_names_the_bad_echo(tmp_path):
    echoes = np.stack([_image(n) for n in range(3)], axis=-1)
    echoes[0, 0, 0, 1] = np.nan
    path = _write(tmp_path / "megre.nii.gz", echoes)
    load_echoes(path, "magnitude", 0)  # echo 1 is fine
    with pytest.raises(InputError, match=r"magnitude \(volume 2 of 3\) contains 1 NaN"):
        load_echoes(path, "magnitude", 1)


def test_complex_data_refused_not_cast(tmp_path):
    data = _image() * np.exp(1j * _image(1))
    path = _write(tmp_path / "complex.nii.gz", data, dtype=np.complex64)
    _fails(path, r"holds complex values \(complex64\); give the magnitude and the phase")


def test_rgb_data_refused(tmp_path):
    rgb = np.zeros(SHAPE, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    rgb["G"] = 7
    path = tmp_path / "rgb.nii"
    nib.save(nib.Nifti1Image(rgb, AFFINE), str(path))
    _fails(path, r"holds RGB colour values .* not a scalar MRI image")


def test_nan_values(tmp_path):
    data = _image()
    data[0, 0, :3] = np.nan
    _fails(_write(tmp_path / "nan.nii.gz", data), "3 NaN values")


def test_inf_values(tmp_path):
    data = _image()
    data[1, 1, 1] = np.inf
    data[1, 1, 2] = -np.inf
    _fails(_write(tmp_path / "inf.nii.gz", data), "2 infinite values")


def test_all_zero(tmp_path):
    path = _write(tmp_path / "zero.nii.gz", np.zeros(SHAPE))
    _fails(path, "all zero")
    assert load_volume(path, allow_all_zero=True).data.max() == 0


def test_zero_affine(tmp_path):
    image = nib.Nifti1Image(_image(), np.eye(4))
    image.set_sform(np.zeros((4, 4)), code=1)
    nib.save(image, str(tmp_path / "zero_affine.nii.gz"))
    _fails(tmp_path / "zero_affine.nii.gz", "non-invertible")


def test_mismatched_shapes(tmp_path):
    a = load_volume(_write(tmp_path / "swi.nii.gz", _image()))
    b = load_volume(_write(tmp_path / "phase.nii.gz", _image(shape=(6, 7, 4))))
    with pytest.raises(InputError, match="shape") as caught:
        check_same_grid(a, b)
    assert str(a.path) in str(caught.value) and str(b.path) in str(caught.value)


def test_mismatched_affines(tmp_path):
    shifted = AFFINE.copy()
    shifted[0, 3] = 0.5
    a = load_volume(_write(tmp_path / "swi.nii.gz", _image()))
    b = load_volume(_write(tmp_path / "phase.nii.gz", _image(), shifted))
    with pytest.raises(InputError, match="0.5 mm apart") as caught:
        check_same_grid(a, b)
    assert str(b.path) in str(caught.value)
    nearly = AFFINE.copy()
    nearly[0, 3] = 1e-4
    check_same_grid(a, load_volume(_write(tmp_path / "near.nii.gz", _image(), nearly)))


def test_same_grid_in_another_array_order_is_accepted(tmp_path):
    lps = np.diag([-0.5, -0.5, 2.0, 1.0])
    lps[:3, 3] = [(SHAPE[0] - 1) * 0.5, (SHAPE[1] - 1) * 0.5, 0.0]
    a = load_volume(_write(tmp_path / "ras.nii.gz", _image()))
    b = load_volume(_write(tmp_path / "lps.nii.gz", _image(), lps))
    check_same_grid(a, b)


# ----------------------------------------------------------------------------- masks, labels


def test_mask_and_labels(tmp_path):
    reference = load_volume(_write(tmp_path / "swi.nii.gz", _image()))
    mask = np.zeros(SHAPE)
    mask[1:3, 1:3, 1:3] = 255
    loaded = load_mask(_write(tmp_path / "mask.nii.gz", mask, dtype=np.uint8), reference)
    assert loaded.dtype == bool and loaded.sum() == 8

    labels = np.zeros(SHAPE)
    labels[0, 0, 0], labels[5, 6, 4] = 1, 2
    loaded = load_labels(_write(tmp_path / "labels.nii.gz", labels, dtype=np.int16), reference)
    assert loaded.dtype == np.int32 and sorted(np.unique(loaded)) == [0, 1, 2]


def test_bad_masks_and_labels(tmp_path):
    reference = load_volume(_write(tmp_path / "swi.nii.gz", _image()))
    with pytest.raises(InputError, match="mask is empty"):
        load_mask(_write(tmp_path / "empty.nii.gz", np.zeros(SHAPE)), reference)
    with pytest.raises(InputError, match="only 0 and 1"):
        load_mask(_write(tmp_path / "prob.nii.gz", _image()), reference)
    with pytest.raises(InputError, match="non-integer"):
        load_labels(_write(tmp_path / "frac.nii.gz", _image()), reference)
    with pytest.raises(InputError, match="negative"):
        load_labels(_write(tmp_path / "neg.nii.gz", -np.ones(SHAPE)), reference)
    other = _write(tmp_path / "other.nii.gz", np.ones((6, 7, 6)))
    with pytest.raises(InputError, match="shape"):
        load_mask(other, reference)


def _with_voxel_size_zero(path, *, sform: bool):
    """A file whose stored voxel size along x is 0 (nibabel would repair it to 1 mm)."""
    image = nib.Nifti1Image(_image(), None)
    image.set_qform(AFFINE, code=1)
    image.set_sform(AFFINE, code=1 if sform else 0)
    nib.save(image, str(path))
    raw = bytearray(path.read_bytes())
    raw[80:84] = np.float32(0).tobytes()  # pixdim[1]
    path.write_bytes(bytes(raw))
    return path


def test_a_voxel_size_of_zero_is_not_read_as_one_mm(tmp_path):
    _fails(_with_voxel_size_zero(tmp_path / "q.nii", sform=False), r"voxel sizes of 0x0.5x2 mm")
    # an sform does not use the stored voxel sizes: the grid is known
    volume = load_volume(_with_voxel_size_zero(tmp_path / "s.nii", sform=True), "SWI")
    assert volume.spacing_mm == pytest.approx((0.5, 0.5, 2.0))


def test_gz_volume_reads_the_same_with_zlib_as_with_isal(tmp_path, monkeypatch):
    # a .nii.gz is decompressed whole, by ISA-L where installed; zlib (the fallback) must give
    # the same voxels, scaling applied as nibabel's streamed reading applies it
    from cmbdet.io import compression

    rng = np.random.default_rng(3)
    stored = rng.integers(-2000, 2000, size=(9, 7, 5)).astype(np.int16)
    image = nib.Nifti1Image(stored, np.diag([0.5, 0.5, 2.0, 1.0]))
    image.header.set_slope_inter(0.25, -3.0)
    path = tmp_path / "scaled.nii.gz"
    nib.save(image, path)
    expected = nib.load(path).get_fdata(dtype=np.float32)  # nibabel's own streamed reading
    fast = load_volume(path, "SWI")
    monkeypatch.setattr(compression, "_gzip", gzip)
    slow = load_volume(path, "SWI")
    np.testing.assert_array_equal(fast.data, slow.data)
    np.testing.assert_array_equal(fast.reorientation.from_canonical(fast.data), expected)


def test_volumes_read_together_fail_on_the_first_bad_file_given(tmp_path):
    from cmbdet.io.nifti import load_volumes

    good = tmp_path / "good.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 4, 3), np.float32), np.eye(4)), good)
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(good.read_bytes()[:-40])
    missing = tmp_path / "missing.nii.gz"
    swi, phase = load_volumes((good, "SWI"), (good, "phase"))
    np.testing.assert_array_equal(swi.data, phase.data)
    with pytest.raises(InputError, match="truncated.nii.gz: phase file is truncated"):
        load_volumes((good, "SWI"), (truncated, "phase"), (missing, "magnitude"))
    with pytest.raises(InputError, match="missing.nii.gz: SWI file not found"):
        load_volumes((missing, "SWI"), (truncated, "phase"))


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
@pytest.mark.parametrize("stored", [np.int16, np.uint8, np.float64, np.float32])
def test_unscaled_voxels_cast_while_reordered_equal_nibabels_float32(tmp_path, stored, suffix):
    # where the scaling is unity the stored values are cast to float32 in the reordering copy:
    # the same voxels as nibabel's get_fdata(float32), in canonical order, for any stored type
    rng = np.random.default_rng(4)
    values = rng.normal(100, 40, size=(11, 8, 6)).clip(0, 250).astype(stored)
    affine = np.diag([-0.5, 0.5, 2.0, 1.0])  # stored left-right flipped (LAS)
    path = tmp_path / f"unscaled{suffix}"
    nib.save(nib.Nifti1Image(values, affine), path)
    volume = load_volume(path, "SWI")
    expected = nib.load(path).get_fdata(dtype=np.float32)
    assert volume.data.dtype == np.float32 and volume.data.flags.c_contiguous
    np.testing.assert_array_equal(volume.reorientation.from_canonical(volume.data), expected)
    np.testing.assert_array_equal(volume.data, expected[::-1])


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
@pytest.mark.parametrize("scaled", [False, True])
def test_image_data_shorter_than_the_header_says_is_refused(tmp_path, suffix, scaled):
    # a whole gzip stream (or a plain file) whose voxels stop early: one line naming the file
    image = nib.Nifti1Image(np.ones((8, 8, 6), np.int16), np.eye(4))
    if scaled:
        image.header.set_slope_inter(2.0, 0.0)
    whole = image.to_bytes()
    path = tmp_path / f"short{suffix}"
    cut = whole[: len(whole) - 100]
    path.write_bytes(gzip.compress(cut, mtime=0) if suffix == ".nii.gz" else cut)
    with pytest.raises(InputError, match=r"short.nii(.gz)?: SWI file is truncated"):
        load_volume(path, "SWI")
