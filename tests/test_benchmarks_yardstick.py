"""The yardstick's error tracing (``benchmarks/yardstick.py errors``): false positives by the
labelled structure they sit on, CMBs found by place, on a hand-made subject stored LPS with
anisotropic voxels (so that voxel indices, file order and world mm cannot be confused); and
the held-out gap (``gap``) against the issue's limits."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import yardstick  # noqa: E402
from yardstick import ErrorTally, _labels_near, _subject_errors  # noqa: E402

HEADER = "lesion_id,kind,x_mm,y_mm,z_mm,i,j,k,diameter_mm,visible,region\n"
# file order: i runs right to left, j anterior to posterior, k up; 0.5 x 0.5 x 2 mm voxels
AFFINE = np.array(
    [[-0.5, 0, 0, 40.0], [0, -0.5, 0, 10.0], [0, 0, 2.0, -20.0], [0, 0, 0, 1]], dtype=float
)


def _world(i: float, j: float, k: float) -> tuple[float, float, float]:
    return tuple(float(v) for v in (AFFINE @ [i, j, k, 1.0])[:3])


def _lesion_row(lesion_id: int, kind: str, voxel, diameter_mm: float, region: str) -> str:
    x, y, z = _world(*voxel)
    i, j, k = voxel
    return f"{lesion_id},{kind},{x},{y},{z},{i},{j},{k},{diameter_mm},1,{region}\n"


def _subject(tmp_path: Path) -> tuple[Path, Path]:
    """An 80 x 80 x 10 subject: a lobar CMB touching a vein that runs along j at i = 40, a
    deep CMB alone, a calcification; detections on the first CMB, on the vein, on the
    calcification and on nothing."""
    labels = np.zeros((80, 80, 10), np.int16)
    labels[39:41, :, 4:6] = 4  # the vein, 1 mm wide
    labels[42:46, 18:22, 5] = 1  # CMB 1, 2 mm across, 1 mm past the vein
    labels[8:12, 58:62, 5] = 2  # CMB 2
    labels[58:62, 58:62, 5] = 3  # the calcification
    subject = tmp_path / "sub-0000"
    subject.mkdir()
    nib.save(nib.Nifti1Image(labels, AFFINE), subject / "labels.nii.gz")
    (subject / "lesions.csv").write_text(
        HEADER
        + _lesion_row(1, "cmb", (44, 20, 5), 2.0, "lobar")
        + _lesion_row(2, "cmb", (10, 60, 5), 2.0, "deep")
        + _lesion_row(3, "calcification", (60, 60, 5), 2.0, "")
        + _lesion_row(4, "vein", (40, 40, 5), 1.0, "")
    )
    run = tmp_path / "run" / "sub-0000"
    run.mkdir(parents=True)
    voxels = [(44, 20, 5), (40, 70, 5), (60, 61, 5), (20, 20, 1)]  # hit, vein, calc., nothing
    rows = "".join(",".join(str(v) for v in (*_world(*voxel), *voxel)) + "\n" for voxel in voxels)
    (run / "detections.csv").write_text("x_mm,y_mm,z_mm,i,j,k\n" + rows)
    return subject, run


def test_errors_are_traced_to_what_they_sit_on(tmp_path):
    subject, run = _subject(tmp_path)
    tally = _subject_errors(subject, run)
    assert tally.false_positives == {
        "cmb": 0,
        "calcification": 1,
        "iron": 0,
        "cavernoma": 0,
        "vein": 1,
        "nothing": 1,
    }
    assert tally.cmbs["lobar"] == [1, 1] and tally.cmbs["touching a vein"] == [1, 1]
    assert tally.cmbs["deep"] == [0, 1]  # missed, and far from the vein
    pooled = ErrorTally()
    pooled.add(tally)
    pooled.add(tally)
    assert pooled.subjects == 2 and pooled.cmbs["deep"] == [0, 2]


def test_labels_near_respects_the_voxel_size():
    data = np.zeros((10, 10, 10), np.int16)
    data[5, 5, 8] = 7  # 3 voxels above the centre along k
    assert list(_labels_near((data, np.array([1.0, 1.0, 1.0])), (5, 5, 5), 2.0)) == []
    assert list(_labels_near((data, np.array([1.0, 1.0, 0.5])), (5, 5, 5), 2.0)) == [7]


def test_gap_compares_each_held_out_set_with_its_in_family_set(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(yardstick, "RUNS", tmp_path)
    results = {  # set: (sensitivity, FP/subject)
        "lr": (0.90, 1.0),
        "held-out-1.5t": (0.86, 1.9),  # 4 points, 1.9x: within
        "held-out-medullary": (0.84, 0.5),  # 6 points: not
        "held-out-bright-csf": (0.91, 2.5),  # 2.5x: not
    }
    for name, (sensitivity, fp) in results.items():
        folder = tmp_path / "model" / name / "eval"
        folder.mkdir(parents=True)
        metrics = {"stage1+2": {"sensitivity": sensitivity, "fp_per_subject": fp}}
        (folder / "metrics.json").write_text(json.dumps(metrics))
    yardstick.gap("model")
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| held-out-")]
    assert [row.rsplit("|", 2)[1].strip() for row in rows] == ["yes", "NO", "NO"]
    assert "| +4.0 |" in rows[0] and "| 1.90 |" in rows[0] and "| +6.0 |" in rows[1]


def test_froc_reads_each_model_at_the_same_false_positive_rates(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(yardstick, "RUNS", tmp_path)
    for label, base in (("old", 0.5), ("new", 0.7)):
        for test_set in yardstick.SETS:
            at = {rate: base + 0.05 * n for n, rate in enumerate(yardstick.FROC_RATES)}
            folder = tmp_path / label / test_set.name / "eval"
            folder.mkdir(parents=True)
            metrics = {"stage1+2": {"froc": {"sensitivity_at": at}}}
            (folder / "metrics.json").write_text(json.dumps(metrics))
    yardstick.froc(["old", "new"])
    rows = capsys.readouterr().out.splitlines()[2:]
    assert len(rows) == 2 * len(yardstick.SETS)
    assert rows[0] == "| hr | old | 50.0% | 55.0% | 60.0% | 65.0% |"
    assert rows[1] == "| hr | new | 70.0% | 75.0% | 80.0% | 85.0% |"
    assert rows[-1].startswith("| **held-out-bright-csf** | new |")
