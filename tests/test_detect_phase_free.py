"""Subjects without phase (an SWI alone, or a T2*-weighted GRE magnitude alone) run the
phase-free model: preprocessing, the mode, the hand-over from a model that reads phase, the
records, batches (manifest, dataset folder, BIDS) and training's choice of image."""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

import cmbdet.batch.folder
import cmbdet.batch.subject
import cmbdet.detect.detector
from cmbdet.cli import main
from cmbdet.detect.detector import Detector
from cmbdet.detect.input_mode import MAGNITUDE_ONLY, NO_PHASE, SWI_ONLY, SWI_PHASE, load_subject
from cmbdet.errors import InputError
from cmbdet.io.dataset import SubjectFiles, find_subjects
from cmbdet.io.nifti import load_mask, load_volume
from cmbdet.preprocess.config import PreprocessConfig
from cmbdet.preprocess.intensity import normalise_swi
from cmbdet.preprocess.pipeline import preprocess, slice_images
from cmbdet.synth.dataset import generate_dataset
from cmbdet.training.config import TrainModelConfig
from cmbdet.training.model import _load

GRID = PreprocessConfig(target_in_plane_mm=1.0)
PHASE_FREE_GRID = replace(GRID, reads_phase=False)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("phase-free") / "data"
    generate_dataset(root, "tiny", 2, seed=11, progress=False)
    return root


@pytest.fixture(scope="module")
def phase_free_model(make_random_model):
    return make_random_model("phase-free-test-model", 0.0, reads_phase=False)


@pytest.fixture
def installed(monkeypatch, phase_free_model):
    """The random phase-free model stands in for the shipped one (and batches load their
    models afresh: a model a batch kept from an earlier test holds the shipped one)."""
    for module in (cmbdet.detect.detector, cmbdet.batch.folder):
        monkeypatch.setattr(module, "phase_free_model_dir", lambda mode=None: phase_free_model)
    monkeypatch.setattr(cmbdet.batch.subject, "_detectors", {})
    return phase_free_model


def _volumes(subject):
    swi = load_volume(subject / "swi.nii.gz", "SWI")
    phase = load_volume(subject / "phase.nii.gz", "phase")
    return swi, phase, load_mask(subject / "brainmask.nii.gz", swi)


def test_a_phase_free_model_reads_the_image_as_an_swi_and_zero_phase(data):
    swi, phase, mask = _volumes(data / "sub-0000")
    with_phase = preprocess(swi, phase, mask=mask, config=GRID)
    free = preprocess(swi, None, mask=mask, config=PHASE_FREE_GRID)
    np.testing.assert_array_equal(free.swi, with_phase.swi)
    np.testing.assert_array_equal(free.brain, with_phase.brain)
    assert free.decisions is None and free.record()["phase"] is None
    assert not free.phase_norm.any() and not free.phase_rad.any()
    assert (slice_images(free)[:, 1] == 1.0).all()  # complemented zero phase: no information
    ignored = preprocess(swi, phase, mask=mask, config=PHASE_FREE_GRID)  # never read
    assert not ignored.phase_norm.any()
    with pytest.raises(InputError, match="this model needs the phase image too"):
        preprocess(swi, None, mask=mask, config=GRID)


def test_load_subject_for_a_phase_free_model_reads_one_image_and_flags_the_missing_phase(data):
    subject = data / "sub-0000"
    swi_only = load_subject(SubjectFiles("a", subject / "swi.nii.gz", None), reads_phase=False)
    assert swi_only.mode == SWI_ONLY and swi_only.phase is None
    assert swi_only.record["qc_flags"] == [NO_PHASE]
    assert swi_only.record["phase"] == "none given"
    gre = SubjectFiles("a", None, None, subject / "magnitude.nii.gz")
    magnitude_only = load_subject(gre, reads_phase=False)
    assert magnitude_only.mode == MAGNITUDE_ONLY and magnitude_only.swi is None
    assert magnitude_only.reference is magnitude_only.magnitude
    both = SubjectFiles("a", subject / "swi.nii.gz", subject / "phase.nii.gz")
    assert load_subject(both, reads_phase=False).record["phase"].startswith("not read")


def test_a_subject_without_phase_goes_to_the_phase_free_model(data, quick_model, installed):
    subject = data / "sub-0000"
    detector = Detector.load(quick_model, precision="float32")
    result = detector.detect(subject / "swi.nii.gz", None)
    assert result.record["model"]["name"] == "phase-free-test-model"
    assert result.record["input_mode"] == SWI_ONLY
    assert NO_PHASE in result.record["qc_flags"]
    assert result.phase is None and result.record["preprocessing"]["phase"] is None
    gre = detector.detect(None, None, subject / "magnitude.nii.gz")
    assert gre.record["input_mode"] == MAGNITUDE_ONLY
    assert gre.record["inputs"]["magnitude"].endswith("magnitude.nii.gz")
    assert gre.record["model"]["name"] == "phase-free-test-model"
    both = detector.detect(subject / "swi.nii.gz", subject / "phase.nii.gz")
    assert both.record["model"]["name"] == "quick-test-model"
    assert both.record["input_mode"] == SWI_PHASE


def test_without_a_phase_free_model_a_subject_without_phase_is_refused(
    data, quick_model, monkeypatch
):
    monkeypatch.setattr(cmbdet.detect.detector, "phase_free_model_dir", lambda mode=None: None)
    swi = data / "sub-0000" / "swi.nii.gz"
    with pytest.raises(InputError, match="no phase given: give the phase too") as caught:
        Detector.load(quick_model).detect(swi, None)
    assert caught.value.path == swi


def test_a_phase_free_model_given_the_phase_detects_the_same_and_says_so(data, phase_free_model):
    subject = data / "sub-0001"
    detector = Detector.load(phase_free_model, precision="float32")
    alone = detector.detect(subject / "swi.nii.gz", None)
    given = detector.detect(subject / "swi.nii.gz", subject / "phase.nii.gz")
    assert len(alone.candidates) > 0
    assert [c.score for c in given.candidates] == [c.score for c in alone.candidates]
    assert [c.x_mm for c in given.candidates] == [c.x_mm for c in alone.candidates]
    assert given.record["acquisition"]["phase"] == "not read: the model reads no phase"


def test_detect_on_an_swi_alone_records_and_reports_the_mode(
    data, quick_model, installed, tmp_path
):
    out = tmp_path / "out"
    swi = str(data / "sub-0000" / "swi.nii.gz")
    assert main(["detect", "--swi", swi, "--out", str(out), "--model", str(quick_model)]) == 0
    record = json.loads((out / "run.json").read_text())
    assert record["input_mode"] == SWI_ONLY and NO_PHASE in record["qc_flags"]
    assert record["inputs"]["phase"] is None
    report = (out / "report.html").read_text()
    assert "swi-only" in report
    assert "none given: calcifications cannot be told from CMBs by phase" in report


def test_a_batch_runs_each_subject_in_its_mode_and_resumes(
    data, quick_model, installed, tmp_path, capsys
):
    rows = [
        ["subject", "swi", "phase", "magnitude"],
        ["a", str(data / "sub-0000" / "swi.nii.gz"), str(data / "sub-0000" / "phase.nii.gz"), ""],
        ["b", str(data / "sub-0000" / "swi.nii.gz"), "", ""],
        ["c", "", "", str(data / "sub-0001" / "magnitude.nii.gz")],
    ]
    manifest = tmp_path / "list.csv"
    with open(manifest, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    out = tmp_path / "out"
    argv = ["detect", "--manifest", str(manifest), "--out", str(out), "--model", str(quick_model)]
    assert main(argv) == 0
    with open(out / "batch.csv", newline="") as handle:
        logged = {row["subject"]: row for row in csv.DictReader(handle)}
    modes = [logged[s]["input_mode"] for s in "abc"]
    assert modes == [SWI_PHASE, SWI_ONLY, MAGNITUDE_ONLY]
    assert NO_PHASE in logged["b"]["qc_flags"] and NO_PHASE not in logged["a"]["qc_flags"]
    with open(out / "cmb_counts.csv", newline="") as handle:
        counted = {row["subject"]: row for row in csv.DictReader(handle)}
    assert counted["c"]["model"] == "phase-free-test-model"
    assert counted["a"]["model"] == "quick-test-model"
    capsys.readouterr()
    assert main(argv) == 0  # resumed: every subject complete, whichever model made it
    assert "0 failed, 3 skipped (already complete)" in capsys.readouterr().out
    rows[2][2] = str(data / "sub-0000" / "phase.nii.gz")  # b has its phase now
    with open(manifest, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    assert main(argv) == 2  # its outputs are the phase-free model's: not silently kept
    assert "sub-b: was detected with another --model" in capsys.readouterr().err


def test_dataset_folders_and_bids_subjects_without_phase_run(
    data, quick_model, installed, tmp_path
):
    folder = tmp_path / "folder"
    shutil.copytree(data, folder)
    (folder / "sub-0000" / "phase.nii.gz").unlink()
    for name in ("phase.nii.gz", "swi.nii.gz"):
        (folder / "sub-0001" / name).unlink()
    subjects = find_subjects(folder)
    assert [(s.swi is None, s.phase is None) for s in subjects] == [(False, True), (True, True)]
    bids = generate_dataset(tmp_path / "bids", "tiny", 1, seed=12, progress=False, layout="bids")
    for phase in bids.glob("sub-*/anat/*part-phase*"):
        phase.unlink()
    for dataset, expected in ((folder, [SWI_ONLY, MAGNITUDE_ONLY]), (bids, [MAGNITUDE_ONLY])):
        out = tmp_path / f"out-{dataset.name}"
        argv = ["detect", "--dataset", str(dataset), "--out", str(out)]
        assert main([*argv, "--model", str(quick_model)]) == 0
        with open(out / "batch.csv", newline="") as handle:
            assert [row["input_mode"] for row in csv.DictReader(handle)] == expected


def test_training_a_phase_free_model_reads_the_chosen_share_as_magnitude(data):
    files = find_subjects(data)[0]
    config = TrainModelConfig.from_options(10, 10, 0, None, phase_free=True)
    assert config.preprocess.reads_phase is False
    config = replace(config, preprocess=replace(config.preprocess, target_slice_mm=0.0))
    mask = load_mask(files.brainmask, load_volume(files.swi, "SWI"))
    for share, image in ((1.0, files.magnitude), (0.0, files.swi)):
        subject = _load(files, replace(config, magnitude_share=share))
        volume = load_volume(image, "image")
        expected = subject.pre.grid.to_model(normalise_swi(volume.data, mask), order=1)
        np.testing.assert_array_equal(subject.pre.swi, expected)
        assert not subject.pre.phase_norm.any()


def test_thresholds_given_for_one_model_do_not_carry_over_to_the_phase_free_model(
    data, quick_model, installed
):
    detector = Detector.load(quick_model, precision="float32")
    result = detector.detect(data / "sub-0000" / "swi.nii.gz", None, threshold=0.01)
    assert result.record["threshold"] == 0.5  # the phase-free model's own


def test_a_model_that_reads_phase_is_refused_as_the_phase_free_model(
    data, quick_model, monkeypatch
):
    monkeypatch.setattr(
        cmbdet.detect.detector, "phase_free_model_dir", lambda mode=None: quick_model
    )
    with pytest.raises(InputError, match="installed as the phase-free model but reads phase"):
        Detector.load(quick_model).detect(data / "sub-0000" / "swi.nii.gz", None)


def test_training_and_calibrating_a_model_that_reads_phase_refuse_subjects_without_it(
    data, quick_model, tmp_path, capsys
):
    folder = tmp_path / "no-phase"
    shutil.copytree(data, folder)
    (folder / "sub-0001" / "phase.nii.gz").unlink()
    swi = folder / "sub-0001" / "swi.nii.gz"
    calibrate = ["calibrate", "--model", str(quick_model), "--data", str(folder)]
    assert main([*calibrate, "--out", str(tmp_path / "cal")]) == 2
    train = ["train", "--data", str(folder), "--out", str(tmp_path / "run"), "--stage1-steps", "1"]
    assert main(train) == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 2 and all(f"{swi}: has no phase" in line for line in errors)
    assert not (tmp_path / "cal").exists() and not (tmp_path / "run").exists()


def test_the_magnitude_share_is_a_phase_free_option(tmp_path, capsys):
    config = TrainModelConfig.from_options(10, 10, 0, None, phase_free=True, magnitude_share=0.0)
    assert config.magnitude_share == 0.0 and not config.preprocess.reads_phase
    argv = ["train", "--data", str(tmp_path), "--out", str(tmp_path / "run")]
    assert main([*argv, "--magnitude-share", "0"]) == 2
    assert "--magnitude-share is for --phase-free models" in capsys.readouterr().err
    assert main([*argv, "--phase-free", "--magnitude-share", "1.5"]) == 2
    assert not (tmp_path / "run").exists()
