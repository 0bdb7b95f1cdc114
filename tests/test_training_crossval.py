"""``cmbdet crossval``: fold assignment, pooling across folds, and a resumable end-to-end run."""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import numpy as np
import pytest

from cmbdet.cli import main
from cmbdet.errors import InputError
from cmbdet.evaluation.evaluate import score_subjects
from cmbdet.io.dataset import SubjectFiles
from cmbdet.io.lesions import Lesion, write_lesions_csv
from cmbdet.io.results import COLUMNS
from cmbdet.synth.dataset import generate_dataset
from cmbdet.training.config import TrainModelConfig
from cmbdet.training.crossval import crossval, make_folds


def test_folds_are_disjoint_complete_seeded_and_balanced():
    rng = np.random.default_rng(7)
    counts = {f"{n:04d}": int(c) for n, c in enumerate(rng.poisson(3, size=23))}
    folds = make_folds(counts, 5, seed=1)
    assert folds == make_folds(counts, 5, seed=1)
    assert folds != make_folds(counts, 5, seed=2)
    assert sorted(i for fold in folds for i in fold) == sorted(counts)
    assert sorted(len(fold) for fold in folds) == [4, 4, 5, 5, 5]
    cmbs = [sum(counts[i] for i in fold) for fold in folds]
    assert max(cmbs) - min(cmbs) <= max(counts.values())


def test_snake_order_deals_the_richest_subjects_to_different_folds():
    counts = {"a": 9, "b": 8, "c": 1, "d": 1, "e": 0, "f": 0}
    folds = make_folds(counts, 2, seed=0)
    assert "a" in folds[0] and "b" in folds[1]  # the two richest never share a fold
    assert [sum(counts[i] for i in fold) for fold in folds] == [10, 9]
    assert [len(fold) for fold in folds] == [3, 3]


def test_too_few_subjects_for_the_folds_is_bad_input():
    with pytest.raises(InputError, match="at least 15 subjects"):
        make_folds({f"{n}": 1 for n in range(14)}, 5, seed=0)
    with pytest.raises(InputError, match="at least 2"):
        make_folds({f"{n}": 1 for n in range(14)}, 1, seed=0)


def _subject(tmp_path, subject_id: str, cmb_x: list[float]) -> SubjectFiles:
    folder = tmp_path / "truth" / f"sub-{subject_id}"
    folder.mkdir(parents=True)
    lesions = [
        Lesion(n, "cmb", x, 0.0, 0.0, 0, 0, 0, 3.0, True) for n, x in enumerate(cmb_x, start=1)
    ]
    write_lesions_csv(folder / "lesions.csv", lesions)
    return SubjectFiles(
        subject_id,
        folder / "swi.nii.gz",
        folder / "phase.nii.gz",
        lesions_csv=folder / "lesions.csv",
    )


def _prediction(tmp_path, subject_id: str, rows: list[tuple[float, float]], threshold: float):
    folder = tmp_path / "pred" / f"sub-{subject_id}"
    folder.mkdir(parents=True)
    with open(folder / "candidates.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for n, (x, score) in enumerate(rows, start=1):
            writer.writerow([n, x, 0, 0, 0, 0, 0, score, score, 3, 2])
    (folder / "run.json").write_text(json.dumps({"threshold": threshold}))
    return folder


def test_pooled_scores_use_each_subjects_own_threshold(tmp_path):
    # fold A's model works at 0.9, fold B's at 0.3: a 0.5 score is a detection only in B
    truth = {"a": _subject(tmp_path, "a", [0.0]), "b": _subject(tmp_path, "b", [0.0])}
    predictions = {
        "a": _prediction(tmp_path, "a", [(0.0, 0.5), (40.0, 0.95)], threshold=0.9),
        "b": _prediction(tmp_path, "b", [(0.0, 0.5), (40.0, 0.2)], threshold=0.3),
    }
    metrics = score_subjects(predictions, truth).metrics
    final = metrics["stage1+2"]
    assert (final["tp"], final["fp"], final["fn"]) == (1, 1, 1)
    assert final["sensitivity"] == pytest.approx(1 / 2)
    assert final["fp_per_subject"] == pytest.approx(1 / 2)
    assert metrics["threshold"] == [0.3, 0.9]
    assert metrics["stage1"]["tp"] == 2 and metrics["stage1"]["fp"] == 2


@pytest.fixture(scope="module")
def tiny_cohort(tmp_path_factory):
    return generate_dataset(
        tmp_path_factory.mktemp("cv") / "data",
        "tiny",
        n=6,
        seed=11,
        progress=False,
        cmb_richness=3.0,
    )


def _quick_training() -> TrainModelConfig:
    """Small batches and few steps: enough for stage 1 to propose candidates on tiny data."""
    base = TrainModelConfig().with_steps(80, 10, seed=0)
    return replace(
        base,
        stage1=replace(base.stage1, batch_size=4),
        stage2=replace(base.stage2, batch_size=8),
    )


def test_crossval_trains_each_fold_detects_held_out_subjects_and_resumes(tiny_cohort, tmp_path):
    out = tmp_path / "cv"
    crossval(tiny_cohort, out, folds=2, config=_quick_training(), progress=False)
    folds = json.loads((out / "folds.json").read_text())["folds"]
    assert len(folds) == 2 and sorted(folds[0] + folds[1]) == [f"{n:04d}" for n in range(6)]
    for number, held_out in enumerate(folds, start=1):
        model = json.loads((out / f"fold-{number}" / "model" / "model.json").read_text())
        trained_on = {
            i.split("/")[1] for part in model["training_data"]["splits"].values() for i in part
        }
        assert trained_on.isdisjoint(held_out)  # never trained on its test fold
        assert trained_on | set(held_out) == {f"{n:04d}" for n in range(6)}
        ranges = model["training_ranges"]  # the tiny preset: 1 x 1 x 2 mm at 3 T
        assert ranges["in_plane_mm"] == [1.0, 1.0] and ranges["slice_mm"] == [2.0, 2.0]
        assert ranges["field_strength_t"] == [3.0, 3.0]
        assert 0 <= ranges["candidates_per_subject"][0] <= ranges["candidates_per_subject"][1]
    for subject_id in folds[0] + folds[1]:
        assert (out / "predictions" / f"sub-{subject_id}" / "run.json").is_file()
    result = json.loads((out / "crossval.json").read_text())
    assert result["subjects"] == 6 and len(result["per_fold"]) == 2
    pooled, per_fold = result["pooled"]["stage1"], result["per_fold"]
    assert pooled["tp"] == sum(f["stage1"]["tp"] for f in per_fold)
    assert pooled["fp"] == sum(f["stage1"]["fp"] for f in per_fold)
    assert pooled["tp"] + pooled["fn"] == result["cmbs"]
    assert (out / "pooled" / "froc.png").stat().st_size > 1000
    with open(out / "per_fold.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["fold"] for r in rows] == ["1", "1", "2", "2", "pooled", "pooled"]

    # the command resumes it: nothing is retrained or detected again, the tables are the same
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.safetensors")}
    stamps |= {p: p.stat().st_mtime_ns for p in (out / "predictions").rglob("run.json")}
    command = ["crossval", "--data", str(tiny_cohort), "--out", str(out), "--folds", "2"]
    assert main([*command, "--quiet"]) == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert json.loads((out / "crossval.json").read_text())["pooled"] == result["pooled"]


def test_crossval_refuses_a_folder_with_another_split(tiny_cohort, tmp_path):
    out = tmp_path / "cv"
    out.mkdir()
    (out / "folds.json").write_text(json.dumps({"folds": [["0000"], ["0001"]]}))
    code = main(["crossval", "--data", str(tiny_cohort), "--out", str(out), "--folds", "2"])
    assert code == 2
