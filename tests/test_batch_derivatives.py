"""``--bids-derivatives``: a batch's detections as BIDS derivatives, per subject and session."""

from __future__ import annotations

import csv
import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from cmbdet.batch.derivatives import bids_prefix
from cmbdet.cli import main
from cmbdet.synth.dataset import generate_dataset


@pytest.fixture(scope="module")
def bids_study(tmp_path_factory):
    """Two generated subjects as BIDS: sub-01 without sessions, sub-02 in session 1."""
    data = generate_dataset(tmp_path_factory.mktemp("gen"), "tiny", 2, seed=5, progress=False)
    root = tmp_path_factory.mktemp("bids") / "study"
    for source, (folder, prefix) in zip(
        ("sub-0000", "sub-0001"),
        (("sub-01/anat", "sub-01"), ("sub-02/ses-1/anat", "sub-02_ses-1")),
        strict=True,
    ):
        (root / folder).mkdir(parents=True)
        shutil.copy(data / source / "swi.nii.gz", root / folder / f"{prefix}_swi.nii.gz")
        shutil.copy(
            data / source / "phase.nii.gz", root / folder / f"{prefix}_part-phase_swi.nii.gz"
        )
    return root


def test_subject_ids_map_to_bids_folders_and_names():
    assert bids_prefix("01") == (bids_prefix("01")[0], "sub-01")
    assert str(bids_prefix("01")[0]) == "sub-01/anat"
    assert str(bids_prefix("02_ses-1")[0]) == "sub-02/ses-1/anat"
    assert bids_prefix("02_ses-1")[1] == "sub-02_ses-1"
    folder, prefix = bids_prefix("03_ses-b_acq-fast_run-2")  # one of several acquisitions
    assert (str(folder), prefix) == ("sub-03/ses-b/anat", "sub-03_ses-b_acq-fast_run-2")
    assert bids_prefix("04_run-1") == (bids_prefix("04")[0], "sub-04_run-1")


def test_a_batch_writes_its_detections_as_bids_derivatives(bids_study, make_random_model, tmp_path):
    model = make_random_model("derivatives-model", 0.0)  # proposes many candidates
    out = tmp_path / "out"
    argv = ["detect", "--dataset", str(bids_study), "--out", str(out), "--model", str(model)]
    argv += ["--threshold", "0.3"]
    assert main([*argv, "--bids-derivatives"]) == 0
    root = out / "derivatives" / "cmbdet"
    description = json.loads((root / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert description["GeneratedBy"][0]["Name"] == "cmbdet"
    assert "derivatives-model" in description["GeneratedBy"][0]["Description"]
    for subject, folder, prefix in (
        ("sub-01", "sub-01/anat", "sub-01"),
        ("sub-02_ses-1", "sub-02/ses-1/anat", "sub-02_ses-1"),
    ):
        anat = root / folder
        assert sorted(p.name for p in anat.iterdir()) == sorted(
            f"{prefix}_desc-cmb_{name}"
            for name in ("dseg.nii.gz", "dseg.tsv", "detections.tsv", "detections.json")
        )
        labels = nib.load(anat / f"{prefix}_desc-cmb_dseg.nii.gz")
        original = nib.load(out / subject / "cmb_labels.nii.gz")
        assert np.array_equal(labels.get_fdata(), original.get_fdata())
        assert np.allclose(labels.affine, original.affine)
        with open(out / subject / "detections.csv", newline="") as handle:
            detections = list(csv.reader(handle))
        with open(anat / f"{prefix}_desc-cmb_detections.tsv", newline="") as handle:
            assert list(csv.reader(handle, delimiter="\t")) == detections
        with open(anat / f"{prefix}_desc-cmb_dseg.tsv", newline="") as handle:
            lookup = list(csv.reader(handle, delimiter="\t"))
        assert lookup[0] == ["index", "name", "score"] and len(lookup) == len(detections)
        assert len(detections) > 1  # this model detects something in each subject
        assert int(labels.get_fdata().max()) == len(detections) - 1  # one ball per detection
        sidecar = json.loads((anat / f"{prefix}_desc-cmb_detections.json").read_text())
        assert set(sidecar) == set(detections[0])
    assert main([*argv, "--bids-derivatives"]) == 0  # a rerun (all skipped) keeps them


def test_bids_derivatives_are_for_a_batch(tmp_path, capsys):
    argv = ["detect", "--swi", "s.nii.gz", "--phase", "p.nii.gz", "--out", str(tmp_path / "o")]
    assert main([*argv, "--bids-derivatives"]) == 2
    assert "for a batch" in capsys.readouterr().err
