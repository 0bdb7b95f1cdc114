"""Dataset layout: subject folders, their ground truth, dataset.json."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from cmbdet.errors import InputError
from cmbdet.io.dataset import (
    check_subject_id,
    find_subjects,
    load_ground_truth,
    read_dataset_json,
    write_dataset_json,
)
from cmbdet.io.lesions import (
    Lesion,
    read_lesions_csv,
    write_lesions_csv,
)


def _nifti(path, data, affine=None):
    affine = np.diag([0.5, 0.5, 2.0, 1.0]) if affine is None else affine
    nib.save(nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine), str(path))
    return path


# ----------------------------------------------------------------------------- subjects


def _subject(dataset, subject_id, *extra):
    folder = dataset / f"sub-{check_subject_id(subject_id)}"
    folder.mkdir(parents=True)
    for name in ("swi", "phase", *extra):
        _nifti(folder / f"{name}.nii.gz", np.ones((4, 4, 4)))
    return folder


def test_find_subjects_sorted_with_optional_files(tmp_path):
    _subject(tmp_path, "b02", "brainmask")
    folder = _subject(tmp_path, "a01")
    write_lesions_csv(folder / "lesions.csv", [Lesion(1, "cmb", 0, 0, 0, 0, 0, 0, 3.0, True)])
    (tmp_path / "sub-notes.txt").write_text("not a folder")
    subjects = find_subjects(tmp_path)
    assert [s.subject_id for s in subjects] == ["a01", "b02"]
    a01, b02 = subjects
    assert a01.swi == tmp_path / "sub-a01" / "swi.nii.gz"
    assert a01.lesions_csv is not None and a01.brainmask is None and a01.labels is None
    assert b02.brainmask == tmp_path / "sub-b02" / "brainmask.nii.gz"
    assert load_ground_truth(a01) == read_lesions_csv(a01.lesions_csv)
    assert load_ground_truth(b02) is None


def test_ground_truth_from_labels(tmp_path):
    folder = _subject(tmp_path, "01")
    labels = np.zeros((4, 4, 4))
    labels[0, 0, 0], labels[3, 3, 3] = 1, 2
    _nifti(folder / "labels.nii.gz", labels)
    (subject,) = find_subjects(tmp_path)
    assert len(load_ground_truth(subject)) == 2


def test_find_subjects_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        find_subjects(tmp_path / "missing")
    with pytest.raises(InputError, match="no sub-"):
        find_subjects(tmp_path)
    folder = _subject(tmp_path, "01")
    (folder / "phase.nii.gz").unlink()  # an SWI alone: the phase-free model's subject
    assert find_subjects(tmp_path)[0].phase is None
    (folder / "swi.nii.gz").unlink()
    with pytest.raises(InputError, match="required swi file is missing") as caught:
        find_subjects(tmp_path)
    assert str(folder / "swi.nii.gz") in str(caught.value)


def test_subject_ids_accept_the_prefix_and_reject_paths():
    assert check_subject_id("sub-07") == check_subject_id("07") == "07"
    with pytest.raises(ValueError):
        check_subject_id("../x")
    assert check_subject_id("磁" * 42) == "磁" * 42  # 126 bytes
    with pytest.raises(ValueError, match="129 bytes"):  # too long for its folder's names
        check_subject_id("磁" * 43)


# ----------------------------------------------------------------------------- dataset.json


def test_dataset_json_round_trip(tmp_path):
    info = {"preset": "tiny", "n": 2, "a": [1]}
    path = write_dataset_json(tmp_path, info)
    assert path.read_text() == '{\n  "a": [\n    1\n  ],\n  "n": 2,\n  "preset": "tiny"\n}\n'
    assert read_dataset_json(tmp_path) == info
    assert read_dataset_json(tmp_path / "none", missing_ok=True) == {}
    path.write_text("[1, 2]")
    with pytest.raises(InputError, match="JSON object"):
        read_dataset_json(tmp_path)
