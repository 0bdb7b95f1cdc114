"""The synthetic dataset writer (``cmbdet synth``): layout, determinism, ground truth, storage
conventions (orientation, handedness, phase units and kind), errors and parallel workers.

Every dataset here uses the ``tiny`` preset (144 x 176 x 24 voxels of 1 x 1 x 2 mm, about a
second per subject); the datasets shared by several tests are generated once per module.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from cmbdet.cli import main
from cmbdet.errors import InputError
from cmbdet.io.dataset import find_subjects, read_dataset_json
from cmbdet.io.lesions import read_lesions_csv
from cmbdet.io.nifti import load_volume
from cmbdet.synth.config import PRESETS, SynthConfig
from cmbdet.synth.dataset import INTEGER_PHASE_MAX, generate_dataset, subject_seed
from cmbdet.synth.subject import generate_subject

MIN_VISIBLE_CMBS = 2  # in subject 0 of the shared datasets, so ground-truth tests bite
VOLUMES = ("swi", "phase", "magnitude", "brainmask", "labels")
SUBJECT_FILES = tuple(f"{name}.nii.gz" for name in VOLUMES) + ("lesions.csv", "acquisition.json")
TINY_SHAPE = PRESETS["tiny"].shape


def _generate(root: Path, name: str, seed: int, **settings) -> Path:
    """Generate a tiny dataset ``root/name`` (one subject unless told otherwise)."""
    options = {"preset": "tiny", "n": 1, "seed": seed, "progress": False} | settings
    return generate_dataset(root / name, **options)


@pytest.fixture(scope="module")
def seed() -> int:
    """The first dataset seed whose subject 0 has at least MIN_VISIBLE_CMBS visible CMBs.

    Searched rather than hard-coded, so that the tests keep their teeth when the generator's
    random draws change (each try is one in-memory tiny subject, about a second).
    """
    config = SynthConfig(preset="tiny")
    for candidate in range(40):
        lesions = generate_subject(config, subject_seed(candidate, 0)).lesions
        if sum(lesion.is_cmb and lesion.visible for lesion in lesions) >= MIN_VISIBLE_CMBS:
            return candidate
    raise AssertionError(f"no seed below 40 gives {MIN_VISIBLE_CMBS} visible CMBs in subject 0")


@pytest.fixture(scope="module")
def datasets(tmp_path_factory, seed) -> dict[str, Path]:
    """Tiny datasets shared by the tests of this module, keyed by what they vary."""
    root = tmp_path_factory.mktemp("synth")
    return {
        "base": _generate(root, "base", seed, n=2),  # subjects 0 and 1, RAS, the reference
        "again": _generate(root, "again", seed),
        "again2": _generate(root, "again2", seed),
        "other_seed": _generate(root, "other_seed", seed + 1),
        "extension": _generate(root, "extension", seed, start=1),
        "lps": _generate(root, "lps", seed, orientation="LPS"),
        "left": _generate(root, "left", seed, handedness="left"),
        "integer": _generate(root, "integer", seed, phase_units="integer"),
        "raw": _generate(root, "raw", seed, phase_kind="raw"),
    }


def _file_data(path: Path) -> np.ndarray:
    """The array of a NIfTI file in its own stored order and dtype (no reorientation)."""
    return np.asarray(nib.load(path).dataobj)


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes)."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def _visible_cmbs(subject_dir: Path):
    return [
        lesion
        for lesion in read_lesions_csv(subject_dir / "lesions.csv")
        if lesion.is_cmb and lesion.visible
    ]


# ----------------------------------------------------------------------------- layout


def test_every_subject_has_the_layout_files(datasets):
    base = datasets["base"]
    subjects = find_subjects(base)
    assert [s.subject_id for s in subjects] == ["0000", "0001"]
    for subject in subjects:
        folder = base / f"sub-{subject.subject_id}"
        assert sorted(p.name for p in folder.iterdir()) == sorted(SUBJECT_FILES)
        assert subject.magnitude and subject.brainmask and subject.labels and subject.lesions_csv
    assert not list(base.glob(".*")), "a staging folder was left behind"


def test_dataset_json_states_what_made_it(datasets, seed):
    info = read_dataset_json(datasets["base"])
    assert info["seed"] == seed
    assert isinstance(info["generator_version"], str) and info["generator_version"]
    settings = info["settings"]
    assert settings["preset"] == "tiny"
    assert settings["orientation"] == "RAS"
    assert settings["handedness"] == "right"
    assert settings["phase_units"] == "radians"
    assert settings["phase_kind"] == "filtered"
    assert info["grid"]["shape"] == list(TINY_SHAPE)


def test_acquisition_json_holds_a_protocol(datasets):
    acquisition = json.loads((datasets["base"] / "sub-0000" / "acquisition.json").read_text())
    protocol = acquisition["protocol"]
    assert acquisition["stored_orientation"] == "RAS"
    assert 0.010 <= protocol["te_s"] <= 0.030
    assert protocol["tr_s"] > protocol["te_s"]
    assert protocol["snr_white_matter"] > 0


def test_volumes_load_on_one_grid_with_sane_values(datasets):
    for subject in find_subjects(datasets["base"]):
        volumes = {
            name: load_volume(getattr(subject, name), role=name, allow_all_zero=name == "labels")
            for name in VOLUMES
        }
        reference = volumes["swi"]
        assert reference.shape == TINY_SHAPE
        np.testing.assert_allclose(reference.spacing_mm, PRESETS["tiny"].spacing_mm)
        for name, volume in volumes.items():
            assert volume.shape == reference.shape, name
            np.testing.assert_array_equal(volume.affine, reference.affine, err_msg=name)
        assert volumes["swi"].data.min() >= 0
        assert volumes["magnitude"].data.min() >= 0
        assert set(np.unique(volumes["brainmask"].data)) == {0.0, 1.0}
        assert 0.1 < volumes["brainmask"].data.mean() < 0.8
        phase = volumes["phase"].data
        assert np.all(np.abs(phase) <= np.pi + 1e-5)
        labels = volumes["labels"].data
        lesion_ids = {lesion.lesion_id for lesion in read_lesions_csv(subject.lesions_csv)}
        assert set(np.unique(labels).astype(int)) - {0} <= lesion_ids


# ----------------------------------------------------------------------------- determinism


def test_same_seed_gives_byte_identical_datasets(datasets):
    first, second = _files(datasets["again"]), _files(datasets["again2"])
    assert sorted(first) == sorted(["dataset.json"] + [f"sub-0000/{f}" for f in SUBJECT_FILES])
    for name in first:
        assert first[name] == second[name], f"{name} differs between two identical runs"


def test_subject_does_not_depend_on_dataset_size(datasets):
    assert _files(datasets["again"] / "sub-0000") == _files(datasets["base"] / "sub-0000")


def test_a_different_seed_gives_a_different_subject(datasets):
    swi = _file_data(datasets["base"] / "sub-0000" / "swi.nii.gz")
    other = _file_data(datasets["other_seed"] / "sub-0000" / "swi.nii.gz")
    assert not np.array_equal(swi, other)


def test_extending_with_start_reproduces_the_later_subject(datasets):
    extension = datasets["extension"]
    assert [p.name for p in extension.glob("sub-*")] == ["sub-0001"]
    assert _files(extension / "sub-0001") == _files(datasets["base"] / "sub-0001")


def test_extending_a_dataset_in_place(tmp_path):
    dataset = _generate(tmp_path, "grow", 0)
    generate_dataset(dataset, "tiny", n=1, seed=0, start=1, progress=False)
    assert [s.subject_id for s in find_subjects(dataset)] == ["0000", "0001"]
    with pytest.raises(InputError, match="sub-0001 already exists"):
        generate_dataset(dataset, "tiny", n=1, seed=0, start=1, progress=False)
    with pytest.raises(InputError, match="not a dataset made with the same settings"):
        generate_dataset(dataset, "tiny", n=1, seed=1, start=2, progress=False)


def test_subject_seeds_differ_by_index_and_dataset_seed():
    def first_draw(seed, index):
        return np.random.default_rng(subject_seed(seed, index)).random()

    draws = {first_draw(seed, index) for seed in range(3) for index in range(3)}
    assert len(draws) == 9
    assert first_draw(4, 2) == first_draw(4, 2)


# ----------------------------------------------------------------------------- ground truth


def test_visible_cmbs_are_labelled_at_their_centre(datasets):
    checked = 0
    for folder in sorted(datasets["base"].glob("sub-*")):
        labels = _file_data(folder / "labels.nii.gz")
        for lesion in _visible_cmbs(folder):
            centre = np.round(lesion.centre_ijk).astype(int)
            assert np.all(centre >= 0) and np.all(centre < labels.shape), lesion
            low = np.maximum(centre - 1, 0)
            around = labels[tuple(slice(lo, c + 2) for lo, c in zip(low, centre, strict=True))]
            assert lesion.lesion_id in around, f"{folder.name}: CMB {lesion.lesion_id} unlabelled"
            assert (labels == lesion.lesion_id).sum() >= 1
            checked += 1
    assert checked >= MIN_VISIBLE_CMBS


def test_visible_cmbs_are_dark_on_swi(datasets):
    for folder in sorted(datasets["base"].glob("sub-*")):
        swi = _file_data(folder / "swi.nii.gz").astype(np.float64)
        brain = _file_data(folder / "brainmask.nii.gz") > 0
        brain_median = np.median(swi[brain])
        for lesion in _visible_cmbs(folder):
            i, j, k = np.round(lesion.centre_ijk).astype(int)
            around = swi[max(i - 1, 0) : i + 2, max(j - 1, 0) : j + 2, max(k - 1, 0) : k + 2]
            assert around.min() < 0.7 * brain_median, (
                f"{folder.name}: CMB {lesion.lesion_id} not dark "
                f"({around.min():.0f} vs brain median {brain_median:.0f})"
            )


def test_lesion_world_coordinates_follow_the_affine(datasets):
    for dataset in (datasets["base"], datasets["lps"]):
        for folder in sorted(dataset.glob("sub-*")):
            affine = nib.load(folder / "swi.nii.gz").affine
            lesions = read_lesions_csv(folder / "lesions.csv")
            assert lesions
            ijk = np.array([lesion.centre_ijk for lesion in lesions])  # (N, 3)
            xyz = np.array([lesion.centre_mm for lesion in lesions])  # (N, 3)
            np.testing.assert_allclose(ijk @ affine[:3, :3].T + affine[:3, 3], xyz, atol=0.01)


def test_lesions_csv_kinds_and_columns(datasets):
    lesions = read_lesions_csv(datasets["base"] / "sub-0001" / "lesions.csv")
    assert [lesion.lesion_id for lesion in lesions] == list(range(1, len(lesions) + 1))
    kinds = {"cmb", "calcification", "iron", "cavernoma", "vein"}
    assert {lesion.kind for lesion in lesions} <= kinds
    for lesion in lesions:
        assert lesion.diameter_mm >= 0
        if lesion.kind != "vein":
            assert lesion.region in ("lobar", "deep", "infratentorial")
            assert lesion.true_diameter_mm > 0 and lesion.delta_chi_ppm is not None
            assert (lesion.kind == "calcification") == (lesion.delta_chi_ppm < 0)


# ----------------------------------------------------------------------------- storage


def test_lps_storage_is_an_exact_reordering(datasets):
    ras, lps = datasets["base"] / "sub-0000", datasets["lps"] / "sub-0000"
    assert nib.aff2axcodes(nib.load(lps / "swi.nii.gz").affine) == ("L", "P", "S")
    for name in VOLUMES:
        want = load_volume(ras / f"{name}.nii.gz", allow_all_zero=True)
        got = load_volume(lps / f"{name}.nii.gz", allow_all_zero=True)
        np.testing.assert_array_equal(got.data, want.data, err_msg=name)
        np.testing.assert_allclose(got.affine, want.affine, atol=1e-9, err_msg=name)
    nx, ny, _ = TINY_SHAPE
    ras_lesions = read_lesions_csv(ras / "lesions.csv")
    lps_lesions = read_lesions_csv(lps / "lesions.csv")
    assert len(lps_lesions) == len(ras_lesions) > 0
    for a, b in zip(ras_lesions, lps_lesions, strict=True):
        assert (a.lesion_id, a.kind) == (b.lesion_id, b.kind)
        assert (a.x_mm, a.y_mm, a.z_mm) == (b.x_mm, b.y_mm, b.z_mm)
        np.testing.assert_allclose([b.i, b.j, b.k], [nx - 1 - a.i, ny - 1 - a.j, a.k], atol=2e-3)


def test_left_handed_phase_is_negated(datasets):
    right = _file_data(datasets["base"] / "sub-0000" / "phase.nii.gz")
    left = _file_data(datasets["left"] / "sub-0000" / "phase.nii.gz")
    assert np.abs(right).max() > 0.1
    np.testing.assert_array_equal(left, -right)


def test_integer_phase_units(datasets):
    radians = _file_data(datasets["base"] / "sub-0000" / "phase.nii.gz").astype(np.float64)
    path = datasets["integer"] / "sub-0000" / "phase.nii.gz"
    assert nib.load(path).get_data_dtype() == np.int16
    integer = _file_data(path)
    assert integer.dtype == np.int16
    assert integer.min() >= -INTEGER_PHASE_MAX and integer.max() <= INTEGER_PHASE_MAX - 1
    expected = np.clip(radians * INTEGER_PHASE_MAX / np.pi, -INTEGER_PHASE_MAX, INTEGER_PHASE_MAX)
    assert np.abs(integer - expected).max() <= 1.0
    assert np.abs(integer).max() > 1000  # uses the range, not just a few codes


def test_raw_phase_kind(datasets):
    filtered = _file_data(datasets["base"] / "sub-0000" / "phase.nii.gz")
    raw = _file_data(datasets["raw"] / "sub-0000" / "phase.nii.gz")
    assert raw.shape == filtered.shape
    assert np.abs(raw).max() <= np.pi + 1e-6
    assert np.mean(raw != filtered) > 0.5
    # raw phase carries the background field: far larger spatial variation than the high-pass
    brain = _file_data(datasets["base"] / "sub-0000" / "brainmask.nii.gz") > 0
    assert np.std(raw[brain]) > 2 * np.std(filtered[brain])
    # SWI, magnitude and labels do not depend on how the phase is stored
    for name in ("swi", "magnitude", "labels"):
        assert (datasets["raw"] / "sub-0000" / f"{name}.nii.gz").read_bytes() == (
            datasets["base"] / "sub-0000" / f"{name}.nii.gz"
        ).read_bytes(), name


# ----------------------------------------------------------------------------- errors


def _synth_argv(out: Path, *extra: str) -> list[str]:
    return ["synth", "--out", str(out), "--preset", "tiny", "--n", "1", "--quiet", *extra]


def test_unrelated_non_empty_folder_is_refused(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me\n")
    assert main(_synth_argv(out)) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert str(out) in err and "--overwrite" in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_overwrite_replaces_a_non_empty_folder(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("old\n")
    assert main(_synth_argv(out, "--overwrite")) == 0
    assert (out / "sub-0000" / "swi.nii.gz").is_file()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--n", "0"], "must be at least 1"),
        (["--orientation", "XYZ"], "not an orientation"),
        (["--voxel-mm", "0.2", "1", "1"], "voxel_mm[0] is 0.2, outside 0.3..5"),
        (["--voxel-mm", "0.3", "0.3", "0.3"], "M voxels over the tiny field of view"),
    ],
)
def test_bad_arguments_exit_2(tmp_path, capsys, extra, message):
    assert main(_synth_argv(tmp_path / "out", *extra)) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_bad_arguments_through_the_api(tmp_path):
    with pytest.raises(InputError):
        generate_dataset(tmp_path / "a", "tiny", n=0, seed=0, progress=False)
    with pytest.raises(InputError):
        generate_dataset(tmp_path / "b", "tiny", n=1, seed=0, orientation="XYZ", progress=False)
    with pytest.raises(InputError):
        generate_dataset(tmp_path / "c", "huge", n=1, seed=0, progress=False)
    assert not any(tmp_path.iterdir())


def test_another_voxel_size_keeps_the_field_of_view(tmp_path):
    out = generate_dataset(
        tmp_path / "v", "tiny", n=1, seed=0, progress=False, voxel_mm=(0.7, 0.7, 1.5)
    )
    info = json.loads((out / "dataset.json").read_text())
    assert info["grid"] == {"shape": [240, 286, 32], "spacing_mm": [0.7, 0.7, 1.5]}
    assert info["settings"]["voxel_mm"] == [0.7, 0.7, 1.5]
    image = nib.load(out / "sub-0000" / "swi.nii.gz")
    assert image.shape == (240, 286, 32)
    np.testing.assert_allclose(image.header.get_zooms(), (0.7, 0.7, 1.5))


# ----------------------------------------------------------------------------- workers


@pytest.mark.slow
def test_parallel_workers_give_identical_subjects(tmp_path):
    serial = generate_dataset(tmp_path / "serial", "tiny", n=3, seed=0, progress=False)
    parallel = generate_dataset(
        tmp_path / "parallel", "tiny", n=3, seed=0, workers=2, progress=False
    )
    assert _files(parallel) == _files(serial)


# ----------------------------------------------------------------------------- statistics


def _cmbs_of(preset: str, n: int, dataset_seed: int = 0):
    config = SynthConfig(preset=preset)
    subjects = [generate_subject(config, subject_seed(dataset_seed, index)) for index in range(n)]
    return subjects, [[lesion for lesion in s.lesions if lesion.is_cmb] for s in subjects]


def test_cmb_statistics_over_a_dozen_tiny_subjects():
    subjects, cmbs = _cmbs_of("tiny", 12)
    counts = [len(found) for found in cmbs]
    assert sum(c == 0 for c in counts) >= 2, counts
    assert sum(c >= 3 for c in counts) >= 2, counts
    visible = [lesion for found in cmbs for lesion in found if lesion.visible]
    assert len(visible) >= 10, counts
    diameters = np.array([lesion.diameter_mm for lesion in visible])
    assert np.mean((diameters >= 1.0) & (diameters <= 10.0)) >= 0.9, diameters
    assert diameters.max() <= 15.0
    # blooming: the apparent size is at least the true one for most visible CMBs
    blooming = [lesion.diameter_mm >= 0.9 * lesion.true_diameter_mm for lesion in visible]
    assert np.mean(blooming) >= 0.8
    for subject, found in zip(subjects, cmbs, strict=True):
        for lesion in found:
            assert lesion.region in ("lobar", "deep", "infratentorial")
            assert 0.3 <= lesion.delta_chi_ppm <= 2.5
            centre = np.round(lesion.centre_ijk).astype(int)
            i, j, k = np.clip(centre, 0, np.subtract(TINY_SHAPE, 1))
            assert subject.brain_mask[i, j, k] or not lesion.visible


@pytest.mark.slow
def test_cmb_regions_and_mimics_over_a_dozen_lr_subjects():
    """The tiny slab only reaches 48 mm down from the vertex, so deep CMBs and the mimics of
    the basal ganglia, pineal and choroid plexus need the whole-brain ``lr`` slab."""
    subjects, cmbs = _cmbs_of("lr", 12)
    regions = {lesion.region for found in cmbs for lesion in found}
    assert {"lobar", "deep"} <= regions, regions
    lobar = sum(lesion.region == "lobar" for found in cmbs for lesion in found)
    assert lobar > 0.5 * sum(len(found) for found in cmbs)  # CAA-like: mostly lobar
    kinds = {lesion.kind for subject in subjects for lesion in subject.lesions}
    assert {"cmb", "calcification", "iron", "vein"} <= kinds, kinds
    visible = np.array([c.diameter_mm for found in cmbs for c in found if c.visible])
    assert np.mean((visible >= 1.0) & (visible <= 10.0)) >= 0.9, visible


# ----------------------------------------------------------------------------- hardening


def test_synth_refuses_unwritable_folders_links_and_absurd_counts(tmp_path):
    with pytest.raises(InputError, match="cannot be written"):
        generate_dataset("/proc/cmbdet-test-out", "tiny", 1, seed=0, progress=False)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("x")
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub-0000").symlink_to(victim, target_is_directory=True)
    with pytest.raises(InputError, match="symbolic link"):
        generate_dataset(out, "tiny", 1, seed=0, progress=False, overwrite=True)
    assert sorted(p.name for p in victim.iterdir()) == ["keep.txt"]
    with pytest.raises(InputError, match="--n must be 1 to 100000"):
        generate_dataset(tmp_path / "huge", "tiny", 10**12, seed=0, progress=False)
    for richness in (float("nan"), float("inf"), 0.0):
        with pytest.raises(InputError, match="--cmb-richness"):
            generate_dataset(
                tmp_path / "r", "tiny", 1, seed=0, progress=False, cmb_richness=richness
            )
    assert not (tmp_path / "huge").exists() and not (tmp_path / "r").exists()


def test_terminating_synth_with_workers_does_not_wait_for_the_queue(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "out"
    code = "import sys; from cmbdet.cli import main; sys.exit(main())"
    argv = ["synth", "--out", str(out), "--preset", "tiny", "--n", "40", "--workers", "2"]
    run = subprocess.Popen(
        [sys.executable, "-c", code, *argv, "--quiet"], stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(out.glob("sub-*"))) < 2:
        time.sleep(0.1)  # the workers are up and writing subjects
    run.send_signal(signal.SIGTERM)
    stopped = time.monotonic()
    run.wait(timeout=120)
    assert run.returncode == 130 and "interrupted" in run.stderr.read()
    assert time.monotonic() - stopped < 15  # 40 subjects would take a minute or more
    assert len(list(out.glob("sub-*"))) < 40
