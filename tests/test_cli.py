"""The command line: exit codes and one-line error messages (DESIGN.md)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from cmbdet import __version__
from cmbdet.cli import main
from cmbdet.errors import InputError
from cmbdet.synth.families import FamilyWeights


@pytest.fixture
def fake_synth(monkeypatch):
    """Replace ``cmbdet.synth.dataset`` by a stub recording its call (or raising)."""
    calls: list[dict] = []
    module = types.ModuleType("cmbdet.synth.dataset")
    module.error = None

    def generate_dataset(**kwargs):
        calls.append(kwargs)
        if module.error is not None:
            raise module.error

    module.generate_dataset = generate_dataset
    monkeypatch.setitem(sys.modules, "cmbdet.synth.dataset", module)
    return module, calls


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"cmbdet {__version__}"


def test_no_command_is_a_usage_error(capsys):
    assert main([]) == 2
    assert "a command is required" in capsys.readouterr().err


def test_unknown_preset_is_a_usage_error(capsys, tmp_path):
    assert main(["synth", "--out", str(tmp_path), "--preset", "huge", "--n", "1"]) == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'huge'" in err and "Traceback" not in err


def test_bad_orientation_is_a_usage_error(capsys, tmp_path):
    argv = ["synth", "--out", str(tmp_path), "--preset", "tiny", "--n", "1"]
    assert main([*argv, "--orientation", "RRS"]) == 2
    assert "not an orientation" in capsys.readouterr().err


def test_synth_passes_every_setting(fake_synth, capsys, tmp_path):
    _, calls = fake_synth
    argv = ["synth", "--out", str(tmp_path / "d"), "--preset", "tiny", "--n", "3", "--seed", "5"]
    argv += ["--workers", "2", "--orientation", "lps", "--phase-units", "integer", "--quiet"]
    argv += ["--start", "7", "--family", "veins=medullary", "--exclude-family", "iron=dark"]
    argv += ["--skull-stripped", "--voxel-mm", "0.6", "0.6", "1.5", "--layout", "bids"]
    argv += ["--echoes", "4"]
    assert main(argv) == 0
    families = calls[0].pop("families")
    expected = FamilyWeights().forced("veins", "medullary").forced("skull", "stripped")
    assert families == expected.without("iron", "dark")
    assert calls == [
        {
            "out_dir": tmp_path / "d",
            "preset": "tiny",
            "n": 3,
            "seed": 5,
            "workers": 2,
            "overwrite": False,
            "handedness": "right",
            "phase_units": "integer",
            "orientation": "LPS",
            "phase_kind": "filtered",
            "progress": False,
            "start": 7,
            "cmb_richness": 1.0,
            "voxel_mm": [0.6, 0.6, 1.5],
            "layout": "bids",
            "echoes": 4,
        }
    ]
    assert isinstance(calls[0]["out_dir"], Path)


def test_input_error_is_one_line_naming_the_file(fake_synth, capsys, tmp_path):
    module, _ = fake_synth
    out = tmp_path / "existing"
    module.error = InputError(out, "output folder is not empty (use --overwrite)")
    assert main(["synth", "--out", str(out), "--preset", "tiny", "--n", "1"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert lines == [f"cmbdet: error: {out}: output folder is not empty (use --overwrite)"]
    assert captured.out == ""


def test_bad_volume_through_main_reports_the_file(fake_synth, capsys, tmp_path):
    """A real loader error travels through main as exit code 2 and one line."""
    from cmbdet.io.nifti import load_volume

    module, _ = fake_synth
    missing = tmp_path / "swi.nii.gz"
    try:
        load_volume(missing, "SWI")
    except InputError as error:
        module.error = error
    assert main(["synth", "--out", str(tmp_path), "--preset", "tiny", "--n", "1"]) == 2
    err = capsys.readouterr().err
    assert err == f"cmbdet: error: {missing}: SWI file not found\n"


def test_unexpected_error_is_exit_1_with_debug_hint(fake_synth, capsys, tmp_path):
    module, _ = fake_synth
    module.error = RuntimeError("boom\nsecond line")
    argv = ["synth", "--out", str(tmp_path), "--preset", "tiny", "--n", "1"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("cmbdet: unexpected error: RuntimeError: boom second line")
    assert "--debug" in err
    with pytest.raises(RuntimeError, match="boom"):
        main(["--debug", *argv])
    with pytest.raises(RuntimeError, match="boom"):
        main([*argv, "--debug"])


def test_keyboard_interrupt_is_130(fake_synth, tmp_path):
    module, _ = fake_synth
    module.error = KeyboardInterrupt()
    assert main(["synth", "--out", str(tmp_path), "--preset", "tiny", "--n", "1"]) == 130


# ----------------------------------------------------------------------------- hardening


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "2", "-1", "1e400", "abc"])
def test_a_threshold_must_be_a_probability(value, capsys, tmp_path):
    argv = ["detect", "--swi", "s.nii.gz", "--phase", "p.nii.gz", "--out", str(tmp_path / "o")]
    assert main([*argv, f"--threshold={value}"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "--threshold" in error[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-1"])
def test_cmb_richness_must_be_a_positive_number(value, fake_synth, capsys, tmp_path):
    _, calls = fake_synth
    argv = ["synth", "--out", str(tmp_path / "d"), "--preset", "tiny", "--n", "1"]
    assert main([*argv, f"--cmb-richness={value}"]) == 2
    assert "--cmb-richness" in capsys.readouterr().err
    assert calls == []


def test_library_warnings_stay_off_stderr_unless_debugging(fake_synth, recwarn, tmp_path):
    import warnings

    import numpy as np

    module, _ = fake_synth

    def noisy(**kwargs):
        warnings.warn("complex values cast to real", UserWarning, stacklevel=1)
        np.float32(1e38) * np.float32(10)  # RuntimeWarning: overflow

    module.generate_dataset = noisy
    argv = ["synth", "--out", str(tmp_path), "--preset", "tiny", "--n", "1", "--quiet"]
    assert main(argv) == 0
    assert len(recwarn) == 0
    assert main([*argv, "--debug"]) == 0
    assert len(recwarn) == 2


def test_an_overflowing_scale_factor_is_one_line_on_stderr(tmp_path):
    """The process's whole stderr (no pytest capture): the file's problem and nothing else."""
    import subprocess

    import nibabel as nib
    import numpy as np

    image = nib.Nifti1Image(np.full((48, 48, 8), 30000, np.int16), np.diag([4.0, 4, 4, 1]))
    image.header.set_slope_inter(1e38, 0)
    nib.save(image, tmp_path / "swi.nii")
    argv = ["detect", "--swi", str(tmp_path / "swi.nii"), "--phase", str(tmp_path / "swi.nii")]
    argv += ["--out", str(tmp_path / "out")]
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from cmbdet.cli import main; sys.exit(main())", *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "infinite values" in lines[0], done.stderr


@pytest.mark.parametrize("value", ["2", "-0.1", "nan"])
def test_calibration_sensitivities_must_be_fractions(value, capsys, tmp_path):
    argv = ["calibrate", "--data", str(tmp_path), "--out", str(tmp_path / "o")]
    assert main([*argv, f"--min-sensitivity={value}"]) == 2
    assert "--min-sensitivity" in capsys.readouterr().err


def test_a_family_option_must_name_a_known_family(fake_synth, capsys, tmp_path):
    _, calls = fake_synth
    argv = ["synth", "--out", str(tmp_path / "d"), "--preset", "tiny", "--n", "1"]
    assert main([*argv, "--family", "veins=spaghetti"]) == 2
    assert "unknown veins family 'spaghetti'" in capsys.readouterr().err
    assert main([*argv, "--family", "veins=medullary", "--exclude-family", "veins=medullary"]) == 2
    assert "leaves no value" in capsys.readouterr().err
    assert main([*argv, "--family", "snr=normal", "--snr", "low"]) == 2
    assert "snr forced to both normal and low" in capsys.readouterr().err
    assert calls == []


def test_a_command_whose_optional_packages_are_missing_names_the_extra(
    tmp_path, monkeypatch, capsys
):
    """In the light install (no PyTorch), ``synth`` and ``train`` end with one line naming the
    package and the extra that brings it, exit code 2."""
    import builtins

    real_import = builtins.__import__

    def without_torch(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_torch)
    for name in [
        m for m in sys.modules if m == "torch" or m.startswith(("torch.", "cmbdet.synth"))
    ]:
        monkeypatch.delitem(sys.modules, name)
    argv = ["synth", "--out", str(tmp_path / "d"), "--preset", "tiny", "--n", "1", "--quiet"]
    assert main(argv) == 2
    line = capsys.readouterr().err.strip()
    assert line == (
        "cmbdet: error: synth needs torch, which this installation lacks "
        "(pip install 'cmbdet[train]')"
    )


def test_a_missing_required_package_is_the_one_line_unexpected_error(monkeypatch, capsys, tmp_path):
    """A module missing that no extra brings (a broken installation) is not blamed on an
    extra: the usual one line and exit code 1."""
    from cmbdet.cli import demo

    def broken():
        raise ModuleNotFoundError("No module named 'scipy.special'", name="scipy.special")

    monkeypatch.setattr(demo, "generator_missing", broken)
    assert main(["demo", "--out", str(tmp_path / "d")]) == 1
    line = capsys.readouterr().err.strip()
    assert line.startswith("cmbdet: unexpected error: ModuleNotFoundError") and "\n" not in line
