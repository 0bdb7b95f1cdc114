"""Input modes (``cmbdet.detect.input_mode``) and the checks of image roles: which files run
how, the echo a multi-echo subject uses, and inputs given in the wrong role."""

from __future__ import annotations

import dataclasses
import json

import nibabel as nib
import numpy as np
import pytest

from cmbdet.detect.checks import check_image_roles
from cmbdet.detect.input_mode import (
    MAGNITUDE_ONLY,
    MAGNITUDE_PHASE,
    MULTI_ECHO,
    SWI_IS_MAGNITUDE,
    SWI_ONLY,
    SWI_PHASE,
    AcquisitionOptions,
    choose_echo,
    input_mode,
    load_subject,
)
from cmbdet.errors import InputError
from cmbdet.io.dataset import EchoFiles, SubjectFiles
from cmbdet.io.nifti import load_volume

AFFINE = np.diag([0.8, 0.8, 2.0, 1.0])
SHAPE = (60, 64, 12)


def _head(seed=0):
    """A bright ellipsoid "head" with texture, zero outside: an SWI- or magnitude-like image."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, n) for n in SHAPE], indexing="ij")
    inside = x**2 + y**2 + 0.5 * z**2 < 0.7
    return (inside * (800 + 100 * rng.standard_normal(SHAPE))).astype(np.float32)


def _phase(seed=1):
    return np.random.default_rng(seed).uniform(-0.5, 0.5, SHAPE).astype(np.float32)


def _save(path, data):
    nib.save(nib.Nifti1Image(np.asarray(data, np.float32), AFFINE), str(path))
    return path


def _sidecar(image, **fields):
    image.with_name(image.name.replace(".nii.gz", ".json")).write_text(json.dumps(fields))


def test_the_files_decide_the_mode(tmp_path):
    swi, phase = _save(tmp_path / "swi.nii.gz", _head()), _save(tmp_path / "ph.nii.gz", _phase())
    magnitude = _save(tmp_path / "mag.nii.gz", _head(2))
    stack = _save(tmp_path / "megre.nii.gz", np.stack([_head(n) for n in range(3)], axis=-1))
    phases = _save(tmp_path / "megre_ph.nii.gz", np.stack([_phase(n) for n in range(3)], -1))
    assert input_mode(SubjectFiles("a", swi, phase)) == SWI_PHASE
    assert input_mode(SubjectFiles("a", swi, phase, magnitude)) == SWI_PHASE
    assert input_mode(SubjectFiles("a", None, phase, magnitude)) == MAGNITUDE_PHASE
    assert input_mode(SubjectFiles("a", None, phases, stack)) == MULTI_ECHO
    echoes = (EchoFiles(magnitude, phase, 10.0), EchoFiles(stack, phases, 20.0))
    assert input_mode(SubjectFiles("a", None, None, echoes=echoes)) == MULTI_ECHO
    assert input_mode(SubjectFiles("a", swi, None)) == SWI_ONLY
    assert input_mode(SubjectFiles("a", None, None, magnitude)) == MAGNITUDE_ONLY
    with pytest.raises(InputError, match="a phase image alone"):
        input_mode(SubjectFiles("a", None, phase))


def test_a_model_that_reads_phase_refuses_a_phase_free_subject_naming_the_file(tmp_path):
    swi = _save(tmp_path / "swi.nii.gz", _head())
    with pytest.raises(InputError, match="SWI without phase: this model needs the phase") as err:
        load_subject(SubjectFiles("a", swi, None))
    assert err.value.path == swi


def test_the_echo_nearest_the_models_field_x_te_is_chosen():
    # 3 T: 5, 10, 20, 40 ms -> 15, 30, 60, 120 T ms; the middle of 37.5-105 is 62.7
    assert choose_echo([5, 10, 20, 40], 3.0, (37.5, 105.0)) == (2, False)
    # 7 T: 35, 70, 140 T ms -> 70 is nearest
    assert choose_echo([5, 10, 20], 7.0, (37.5, 105.0)) == (1, False)
    # 1.5 T, short echoes only: the longest, flagged outside the range
    assert choose_echo([2, 4, 8], 1.5, (37.5, 105.0)) == (2, True)


def test_a_multi_echo_stack_uses_the_chosen_echo_and_records_it(tmp_path):
    magnitudes = [_head(n) * (1 - 0.1 * n) for n in range(4)]
    phases = [_phase(10 + n) for n in range(4)]
    stack = _save(tmp_path / "mag.nii.gz", np.stack(magnitudes, axis=-1))
    phase = _save(tmp_path / "phase.nii.gz", np.stack(phases, axis=-1))
    files = SubjectFiles("a", None, phase, stack)
    with pytest.raises(InputError, match="4 echoes and no echo times: give --echo-times-ms"):
        load_subject(files)
    _sidecar(phase, EchoTime=[0.005, 0.01, 0.02, 0.04], MagneticFieldStrength=3)
    loaded = load_subject(files)
    assert loaded.mode == MULTI_ECHO and loaded.swi is None
    np.testing.assert_array_equal(loaded.magnitude.data, magnitudes[2])
    np.testing.assert_array_equal(loaded.phase.data, phases[2])
    assert loaded.record["echo_used"] == {
        "index": 3,
        "of": 4,
        "echo_time_ms": 20.0,
        "field_x_echo_time_t_ms": 60.0,
        "outside_model_range": False,
    }
    # the command line overrides the sidecar: at 1.5 T the 40 ms echo (60 T ms) is chosen
    options = AcquisitionOptions((5.0, 10.0, 20.0, 40.0), 1.5)
    np.testing.assert_array_equal(load_subject(files, options).phase.data, phases[3])


def test_echo_files_pair_by_echo_and_unknown_field_is_assumed_and_recorded(tmp_path):
    echoes = tuple(
        EchoFiles(
            _save(tmp_path / f"mag{n}.nii.gz", _head(n)),
            _save(tmp_path / f"ph{n}.nii.gz", _phase(n)),
            echo_time_ms=te,
        )
        for n, te in enumerate((8.0, 16.0, 24.0))
    )
    loaded = load_subject(SubjectFiles("a", None, None, echoes=echoes))
    assert loaded.phase.path.name == "ph2.nii.gz"  # 3 T assumed: 72 T ms nearest 62.7
    assert loaded.record["field_strength_assumed"] is True
    assert loaded.field_strength_t is None


def test_a_sidecar_states_the_phase_units(tmp_path):
    swi, phase = _save(tmp_path / "swi.nii.gz", _head()), _save(tmp_path / "ph.nii.gz", _phase())
    _sidecar(phase, Units="rad", MagneticFieldStrength=1.5)
    loaded = load_subject(SubjectFiles("a", swi, phase))
    assert (loaded.phase_units, loaded.field_strength_t) == ("radians", 1.5)
    assert "echo_used" not in loaded.record  # no echo time: nothing to check


def test_a_single_echo_is_checked_against_the_models_field_x_te(tmp_path):
    magnitude = _save(tmp_path / "mag.nii.gz", _head())
    phase = _save(tmp_path / "ph.nii.gz", _phase())
    _sidecar(phase, EchoTime=0.02, MagneticFieldStrength=7, Session=None)
    echo = load_subject(SubjectFiles("a", None, phase, magnitude)).record["echo_used"]
    assert (echo["field_x_echo_time_t_ms"], echo["outside_model_range"]) == (140.0, True)


def _roles(tmp_path, swi=None, phase=None, magnitude=None):
    files, images = {}, {}
    for role, data in (("SWI", swi), ("phase", phase), ("magnitude", magnitude)):
        if data is not None:
            files[role] = _save(tmp_path / f"{role}.nii.gz", data)
            images[role] = load_volume(files[role], role)
    return files, images


def test_good_inputs_pass_the_role_checks(tmp_path):
    check_image_roles(*_roles(tmp_path, _head(), _phase(), _head(5)))
    # unsigned integer phase (0..4095) is not an intensity image
    unsigned = np.round((_phase() + np.pi) / (2 * np.pi) * 4095)
    check_image_roles(*_roles(tmp_path, _head(), unsigned))


@pytest.mark.parametrize(
    ("case", "problem"),
    [
        ("negative swi", r"SWI is negative in 100% of voxels"),
        ("swapped", r"SWI is negative in \d+% of voxels.*swapped"),
        ("constant phase", r"phase is constant"),
        ("masked constant phase", r"phase is constant"),
        ("magnitude as phase", r"phase looks like an intensity image .* r = 1.00"),
    ],
)
def test_inputs_in_the_wrong_role_are_refused(tmp_path, case, problem):
    head, phase = _head(), _phase()
    arguments = {
        "negative swi": (-head - 1, phase),
        "swapped": (phase, head),
        "constant phase": (head, np.full(SHAPE, 0.5)),
        "masked constant phase": (head, 0.5 * (head > 0)),
        "magnitude as phase": (head, 2 * head + 1),
    }[case]
    with pytest.raises(InputError, match=problem):
        check_image_roles(*_roles(tmp_path, *arguments))


def test_an_swi_identical_to_the_magnitude_runs_with_a_flag(tmp_path):
    head = _head()
    files = [_save(tmp_path / n, d) for n, d in (("s.nii.gz", head), ("p.nii.gz", _phase()))]
    magnitude = _save(tmp_path / "m.nii.gz", head)
    check_image_roles(*_roles(tmp_path, head, _phase(), head))  # allowed: a plain GRE image
    loaded = load_subject(SubjectFiles("a", files[0], files[1], magnitude))
    assert loaded.record["qc_flags"] == [SWI_IS_MAGNITUDE]


def test_one_file_in_two_roles_is_refused(tmp_path):
    path = _save(tmp_path / "swi.nii.gz", _head())
    image = load_volume(path, "SWI")
    with pytest.raises(InputError, match="is given both as SWI and as phase"):
        check_image_roles({"SWI": path, "phase": path}, {"SWI": image, "phase": image})


# ----------------------------------------------------------------------------- command line


@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    from cmbdet.synth.dataset import generate_dataset

    root = tmp_path_factory.mktemp("modes") / "data"
    generate_dataset(root, "tiny", 1, seed=5, progress=False, phase_kind="raw")
    return root / "sub-0000"


def test_magnitude_and_raw_phase_run_with_a_computed_swi(subject, tmp_path, capsys):
    from cmbdet.cli import main

    out = tmp_path / "out"
    argv = ["detect", "--magnitude", str(subject / "magnitude.nii.gz")]
    assert main([*argv, "--phase", str(subject / "phase.nii.gz"), "--out", str(out)]) == 0
    record = json.loads((out / "run.json").read_text())
    assert record["input_mode"] == MAGNITUDE_PHASE
    assert record["preprocessing"]["swi"].startswith("computed: magnitude x negative-phase mask^4")
    assert record["preprocessing"]["phase"]["kind"] == "raw"
    assert record["inputs"]["swi"] is None
    assert record["inputs"]["magnitude"].endswith("magnitude.nii.gz")
    report = (out / "report.html").read_text()
    assert "Input mode" in report and "computed from the magnitude" in report
    assert "CMBs found" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (["--phase", "P"], "give --swi or --magnitude (with --phase, or alone)"),
        (["--swi", "S", "--phase", "S"], "is given both as SWI and as phase"),
        (["--swi", "P", "--phase", "S"], "SWI is negative in"),
    ],
)
def test_wrong_inputs_end_in_one_line_and_exit_2(subject, tmp_path, capsys, argv, problem):
    from cmbdet.cli import main

    files = {"S": str(subject / "swi.nii.gz"), "P": str(subject / "phase.nii.gz")}
    argv = [files.get(a, a) for a in argv]
    assert main(["detect", *argv, "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and problem in error[0], error
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("sign", [1, -1])
def test_a_computed_swi_decides_the_handedness_from_dipole_lobes(subject, sign):
    from cmbdet.preprocess.pipeline import preprocess

    magnitude = load_volume(subject / "magnitude.nii.gz", "magnitude")
    phase = load_volume(subject / "phase.nii.gz", "phase")  # raw, right-handed
    flipped = phase if sign == 1 else dataclasses.replace(phase, data=-phase.data)
    pre = preprocess(None, flipped, magnitude=magnitude, keep_native_phase=True)
    decided = pre.decisions
    assert decided.handedness_method == "dipole lobes" and decided.kind == "raw"
    assert decided.handedness == ("right" if sign == 1 else "left")
    assert decided.handedness_confidence > 0.1
    # the SWI computed from it darkens the canonical phase's negative voxels only
    darkened = pre.swi_native < magnitude.data * 0.99
    assert np.all(pre.phase_native[darkened] < 0)


def test_an_swi_made_with_the_other_phase_sign_is_refused(tmp_path):
    from cmbdet.preprocess.pipeline import preprocess
    from cmbdet.swi import swi_from
    from cmbdet.synth.dataset import generate_dataset

    folder = generate_dataset(tmp_path / "d", "tiny", 1, seed=5, progress=False) / "sub-0000"
    magnitude = load_volume(folder / "magnitude.nii.gz", "magnitude")
    phase = load_volume(folder / "phase.nii.gz", "phase")  # filtered, right-handed
    good = load_volume(folder / "swi.nii.gz", "SWI")
    assert preprocess(good, phase, magnitude=magnitude).decisions.handedness == "right"
    made_wrong = swi_from(magnitude.data, -phase.data, 4)  # the negative-phase mask of -phase
    wrong = dataclasses.replace(good, data=made_wrong, path=tmp_path / "wrong_swi.nii.gz")
    with pytest.raises(InputError, match="SWI looks made with the other phase sign") as caught:
        preprocess(wrong, phase, magnitude=magnitude)
    assert caught.value.path == wrong.path
