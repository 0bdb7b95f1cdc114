"""Ground truth for ``cmbdet evaluate`` (``cmbdet.io.truth``): folders, masks, manifests."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from cmbdet.errors import InputError
from cmbdet.io.dataset import load_ground_truth
from cmbdet.io.lesions import Lesion, write_lesions_csv
from cmbdet.io.truth import find_truth

AFFINE = np.diag([0.5, 0.5, 2.0, 1.0])


def _mask(path, centres):
    data = np.zeros((40, 40, 10), np.uint8)
    for i, j, k in centres:
        data[i - 1 : i + 2, j - 1 : j + 2, k] = 1
    nib.save(nib.Nifti1Image(data, AFFINE), str(path))
    return path


def _table(path, ijk):
    lesion = Lesion(1, "cmb", ijk[0] * 0.5, ijk[1] * 0.5, ijk[2] * 2.0, *ijk, 3.0, True)
    write_lesions_csv(path, [lesion])
    return path


def test_a_folder_of_tables_masks_and_label_maps(tmp_path):
    for name in ("sub-a", "sub-b", "sub-c"):
        (tmp_path / name).mkdir()
    _table(tmp_path / "sub-a" / "lesions.csv", (10.0, 10.0, 5.0))
    _mask(tmp_path / "sub-b" / "cmb_mask.nii.gz", [(10, 10, 3), (30, 30, 6)])
    _mask(tmp_path / "sub-c" / "labels.nii.gz", [(20, 20, 4)])
    truth = find_truth(tmp_path)
    assert sorted(truth) == ["a", "b", "c"]
    assert [len(load_ground_truth(truth[s])) for s in "abc"] == [1, 2, 1]
    two = load_ground_truth(truth["b"])  # 26-connected components, centred on each blob
    assert [(c.i, c.j, c.k) for c in two] == [(10.0, 10.0, 3.0), (30.0, 30.0, 6.0)]


def test_a_readers_review_is_preferred_and_one_subject_folder_works(tmp_path):
    folder = tmp_path / "sub-7"
    folder.mkdir()
    _table(folder / "lesions.csv", (10.0, 10.0, 5.0))
    _table(folder / "reviewed_lesions.csv", (12.0, 12.0, 5.0))
    truth = find_truth(folder)
    assert list(truth) == ["7"] and truth["7"].lesions_csv.name == "reviewed_lesions.csv"


def test_a_manifest_names_each_subjects_truth(tmp_path):
    _mask(tmp_path / "m1.nii.gz", [(10, 10, 3)])
    _table(tmp_path / "t2.csv", (5.0, 5.0, 5.0))
    manifest = tmp_path / "truth.csv"
    manifest.write_text("subject,truth\nsub-1,m1.nii.gz\n2,t2.csv\n")
    truth = find_truth(manifest)
    assert sorted(truth) == ["1", "2"] and truth["1"].labels == tmp_path / "m1.nii.gz"
    manifest.write_text("subject,truth\n1,missing.nii.gz\n")
    with pytest.raises(InputError, match="line 2: truth file not found"):
        find_truth(manifest)


def test_a_subject_without_truth_is_named(tmp_path):
    (tmp_path / "sub-1").mkdir()
    with pytest.raises(InputError, match="no ground truth") as caught:
        find_truth(tmp_path)
    assert caught.value.path == tmp_path / "sub-1"
