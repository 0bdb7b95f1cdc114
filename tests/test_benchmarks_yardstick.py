"""The yardstick's error tracing (``benchmarks/yardstick.py errors``): false positives by the
labelled structure they sit on, CMBs found by place, on a hand-made subject."""

from __future__ import annotations

import sys
from pathlib import Path

import nibabel as nib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from yardstick import ErrorTally, _labels_near, _subject_errors  # noqa: E402

HEADER = "lesion_id,kind,x_mm,y_mm,z_mm,i,j,k,diameter_mm,visible,region\n"


def _subject(tmp_path: Path) -> tuple[Path, Path]:
    """A 40 x 40 x 20 subject, 1 mm voxels, world mm = voxel index: a lobar CMB touching a
    vein running along y at (20, *, 10), a deep CMB alone, a calcification at (30, 30, 10)."""
    labels = np.zeros((40, 40, 20), np.int16)
    labels[19:21, :, 9:11] = 4  # the vein
    labels[21:24, 9:12, 9:12] = 1  # CMB 1, beside it
    labels[4:7, 29:32, 9:12] = 2  # CMB 2
    labels[29:32, 29:32, 9:12] = 3  # the calcification
    subject = tmp_path / "sub-0000"
    subject.mkdir()
    nib.save(nib.Nifti1Image(labels, np.eye(4)), subject / "labels.nii.gz")
    (subject / "lesions.csv").write_text(
        HEADER
        + "1,cmb,22,10,10,22,10,10,3,1,lobar\n"
        + "2,cmb,5,30,10,5,30,10,3,1,deep\n"
        + "3,calcification,30,30,10,30,30,10,3,1,\n"
        + "4,vein,20,20,10,0,0,0,2,1,\n"
    )
    run = tmp_path / "run" / "sub-0000"
    run.mkdir(parents=True)
    rows = [(22, 10, 10), (20, 35, 10), (30, 31, 10), (10, 10, 3)]  # hit, vein, calc., nothing
    (run / "detections.csv").write_text(
        "x_mm,y_mm,z_mm,i,j,k\n" + "".join(f"{x},{y},{z},{x},{y},{z}\n" for x, y, z in rows)
    )
    return subject, run


def test_errors_are_traced_to_what_they_sit_on(tmp_path):
    subject, run = _subject(tmp_path)
    tally = _subject_errors(subject, run)
    assert tally.false_positives == {
        "vein": 1,
        "calcification": 1,
        "iron": 0,
        "cavernoma": 0,
        "nothing": 1,
    }
    assert tally.cmbs["lobar"] == [1, 1] and tally.cmbs["touching a vein"] == [1, 1]
    assert tally.cmbs["deep"] == [0, 1]  # missed
    pooled = ErrorTally()
    pooled.add(tally)
    pooled.add(tally)
    assert pooled.subjects == 2 and pooled.cmbs["deep"] == [0, 2]


def test_labels_near_respects_the_voxel_size():
    data = np.zeros((10, 10, 10), np.int16)
    data[5, 5, 8] = 7  # 3 voxels above the centre along z
    assert list(_labels_near((data, np.array([1.0, 1.0, 1.0])), (5, 5, 5), 2.0)) == []
    assert list(_labels_near((data, np.array([1.0, 1.0, 0.5])), (5, 5, 5), 2.0)) == [7]
