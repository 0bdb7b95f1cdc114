"""Shipped models by name: a cohort started with an earlier default finishes with it."""

from __future__ import annotations

import json
import shutil

import pytest

from cmbdet.cli import main
from cmbdet.detect import shipped
from cmbdet.detect.detector import Detector
from cmbdet.synth.dataset import generate_dataset


@pytest.fixture
def two_shipped(make_random_model, tmp_path, monkeypatch):
    """An installation whose ``models/`` holds an earlier default (v3) and a newer one (v4),
    stand-ins with different weights."""
    models = tmp_path / "installed-models"
    for name, bias in (("cmbdet-default-v3", -4.0), ("cmbdet-default-v4", -3.0)):
        shutil.copytree(make_random_model(f"stand-in-{name}", bias), models / name)
        info_path = models / name / "model.json"
        info = json.loads(info_path.read_text())
        info_path.write_text(json.dumps({**info, "name": name}))
    monkeypatch.setattr(shipped, "MODELS_DIR", models)
    monkeypatch.setattr(shipped, "DEFAULT_MODEL_NAME", "cmbdet-default-v4")
    monkeypatch.setattr(shipped, "DEFAULT_MODEL", models / "cmbdet-default-v4")
    return models


def _checksums(folder) -> dict:
    info = json.loads((folder / "model.json").read_text())
    return {stage: info[stage]["weights"]["sha256"] for stage in ("stage1", "stage2")}


def test_the_real_installation_ships_its_default_by_name():
    assert shipped.DEFAULT_MODEL_NAME in shipped.installed_models()
    assert shipped.model_folder(shipped.DEFAULT_MODEL_NAME) == shipped.DEFAULT_MODEL
    assert shipped.model_folder(None) == shipped.DEFAULT_MODEL


def test_an_earlier_default_loads_by_name_after_a_newer_one_ships(two_shipped):
    assert shipped.installed_models() == ["cmbdet-default-v3", "cmbdet-default-v4"]
    default = Detector.load(None, "cpu", "float32")
    assert default.info["name"] == "cmbdet-default-v4"
    earlier = Detector.load("cmbdet-default-v3", "cpu", "float32")
    assert earlier.folder == two_shipped / "cmbdet-default-v3"
    assert _checksums(earlier.folder) != _checksums(default.folder)


def test_a_folder_of_the_same_name_in_the_working_folder_wins(two_shipped, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cmbdet-default-v3").mkdir()
    assert shipped.model_folder("cmbdet-default-v3") == shipped.Path("cmbdet-default-v3")


def test_detect_by_name_records_the_model_and_help_lists_the_installed(
    two_shipped, tmp_path, capsys
):
    data = generate_dataset(tmp_path / "data", "tiny", 1, seed=11, progress=False)
    subject = data / "sub-0000"
    out = tmp_path / "out"
    argv = [
        "detect",
        "--swi",
        str(subject / "swi.nii.gz"),
        "--phase",
        str(subject / "phase.nii.gz"),
    ]
    assert main([*argv, "--out", str(out), "--model", "cmbdet-default-v3"]) == 0
    record = json.loads((out / "run.json").read_text())["model"]
    assert record["name"] == "cmbdet-default-v3"
    assert record["sha256"] == _checksums(two_shipped / "cmbdet-default-v3")
    capsys.readouterr()
    assert main(["detect", "--help"]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert "cmbdet-default-v3, cmbdet-default-v4; default: cmbdet-default-v4" in shown


def test_an_unknown_name_ends_with_one_line(two_shipped, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["detect", "--swi", "s.nii.gz", "--phase", "p.nii.gz", "--out", str(out)]
    assert main([*argv, "--model", "cmbdet-default-v9"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "cmbdet-default-v9" in error[0]
    assert not out.exists()


def test_the_real_installation_ships_phase_free_models_beside_the_default():
    """One phase-free model for an SWI alone, one for a T2*-weighted magnitude alone, each
    under 20 MB and reading no phase; the default reads phase and hands each mode to its own."""
    default = Detector.load(None, "cpu", "float32")
    assert default.reads_phase
    for mode, name in shipped.PHASE_FREE_MODEL_NAMES.items():
        folder = shipped.phase_free_model_dir(mode)
        assert folder is not None and folder.name == name
        detector = Detector.load(folder, "cpu", "float32")
        assert not detector.reads_phase and detector.info["name"] == name
        assert sum(p.stat().st_size for p in folder.iterdir()) < 20 * 2**20
        assert default.phase_free(mode).info["name"] == name
    assert shipped.PHASE_FREE_MODEL_NAMES["swi-only"] != shipped.PHASE_FREE_MODEL_NAME


def test_an_swi_alone_runs_the_shipped_phase_free_model(tmp_path, capsys):
    data = generate_dataset(tmp_path / "data", "tiny", 1, seed=9, progress=False)
    out = tmp_path / "out"
    swi = str(data / "sub-0000" / "swi.nii.gz")
    assert main(["detect", "--swi", swi, "--out", str(out), "--precision", "float32"]) == 0
    record = json.loads((out / "run.json").read_text())
    assert record["model"]["name"] == shipped.PHASE_FREE_MODEL_NAMES["swi-only"]
    assert record["input_mode"] == "swi-only" and record["acquisition"]["phase"] == "none given"
    assert "CMBs found" in capsys.readouterr().out
