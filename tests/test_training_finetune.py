"""``cmbdet finetune``: it improves a weakened model on the data it adapts to, resumes exactly,
records where the model came from, learns from points as well as masks, and refuses bad runs."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from cmbdet.cli import main
from cmbdet.detect.detector import Detector
from cmbdet.detect.model_spec import read_model_spec
from cmbdet.detect.qc import UNKNOWN, TrainingRanges
from cmbdet.detect.shipped import default_model_dir
from cmbdet.errors import InputError
from cmbdet.io.dataset import find_subjects, ground_truth_fingerprint, load_ground_truth
from cmbdet.io.lesions import Lesion, write_lesions_csv
from cmbdet.io.model_folder import save_weights, sha256_of, write_model_json
from cmbdet.io.nifti import load_volume
from cmbdet.stage2.model import PatchClassifier
from cmbdet.synth.dataset import generate_dataset
from cmbdet.training import loop
from cmbdet.training.calibrate import ScoredSubject, choose_operating_point
from cmbdet.training.config import FinetuneConfig, OperatingRule
from cmbdet.training.finetune import finetune_model, split_for_finetuning
from cmbdet.training.ranges import widened
from cmbdet.training.truth import POINT_DIAMETER_MM, labelled_subjects, painted_labels


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """Four labelled subjects of a 'site' (the tiny protocol, CMB-rich)."""
    folder = tmp_path_factory.mktemp("site") / "site"
    return generate_dataset(folder, "tiny", 4, seed=21, progress=False, cmb_richness=3.0)


@pytest.fixture(scope="module")
def others(tmp_path_factory) -> Path:
    """Two other subjects of the same protocol, never fine-tuned on."""
    folder = tmp_path_factory.mktemp("others") / "others"
    return generate_dataset(folder, "tiny", 2, seed=22, progress=False, cmb_richness=3.0)


def _quick(stage1_steps: int, stage2_steps: int, **changes) -> FinetuneConfig:
    """Few steps on small batches (tests)."""
    config = FinetuneConfig()
    return replace(
        config,
        stage1=replace(config.stage1, steps=stage1_steps, batch_size=8, warmup_steps=5),
        stage2=replace(config.stage2, steps=stage2_steps, warmup_steps=5, **changes),
    )


def _weakened_shipped_model(folder: Path) -> Path:
    """The shipped model with an untrained stage 2: it cannot tell CMBs from the rest."""
    shutil.copytree(default_model_dir(), folder)
    spec = read_model_spec(folder)
    info = json.loads((folder / "model.json").read_text())
    torch.manual_seed(0)
    info["stage2"]["weights"] = save_weights(folder, "stage2", PatchClassifier(spec.stage2))
    for stage in ("stage1", "stage2"):
        del info[stage]["onnx"]
        (folder / f"{stage}.onnx").unlink()
    write_model_json(folder, info)
    return folder


def _sensitivity_at_2_fp(model: Path, dataset: Path) -> float:
    """Stage 1 + 2 sensitivity on ``dataset`` at the best thresholds with <= 2 false positives
    per subject (chosen on the dataset itself, alike for every model compared)."""
    detector = Detector.load(model, "cpu", "float32")
    scored = []
    for files in find_subjects(dataset):
        result = detector.detect(files.swi, files.phase, None, None, stage1_threshold=0.0)
        scored.append(ScoredSubject.of_result(result, load_ground_truth(files)))
    rule = OperatingRule(max_fp_per_subject=2.0)
    return choose_operating_point(scored, rule).metrics["sensitivity"]


def test_finetuning_improves_a_weakened_model_on_other_subjects(site, others, tmp_path):
    weak = _weakened_shipped_model(tmp_path / "weak")
    before = _sensitivity_at_2_fp(weak, others)
    tuned = finetune_model(weak, [site], tmp_path / "tuned", _quick(10, 40, learning_rate=1e-3))
    after = _sensitivity_at_2_fp(tuned, others)
    assert before < 0.2 and after > before + 0.3, (before, after)
    spec = read_model_spec(tuned)  # a model folder like any other, with its ONNX exports
    assert spec.has_onnx and spec.stage1 == read_model_spec(weak).stage1


def test_a_resumed_finetune_equals_an_uninterrupted_one_and_records_its_provenance(
    site, make_random_model, tmp_path, monkeypatch
):
    base = make_random_model("finetune-base", 0.0)
    config = replace(_quick(6, 6), stage1=replace(_quick(6, 6).stage1, checkpoint_every=2))
    config = replace(config, stage2=replace(config.stage2, checkpoint_every=2))
    straight = finetune_model(base, [site], tmp_path / "straight", config)

    save = loop._save_checkpoint
    for stop_in, stop_at in (("checkpoint-stage1", 4), ("checkpoint-stage2", 2)):

        def crash(folder, model, optimiser, step, stop_in=stop_in, stop_at=stop_at):
            save(folder, model, optimiser, step)
            if folder.name == stop_in and step == stop_at:
                raise KeyboardInterrupt

        monkeypatch.setattr(loop, "_save_checkpoint", crash)
        with pytest.raises(KeyboardInterrupt):
            finetune_model(base, [site], tmp_path / "resumed", config)
    monkeypatch.setattr(loop, "_save_checkpoint", save)
    resumed = finetune_model(base, [site], tmp_path / "resumed", config)

    for name in ("stage1.safetensors", "stage2.safetensors"):
        assert sha256_of(resumed / name) == sha256_of(straight / name)
    info = json.loads((resumed / "model.json").read_text())
    same = json.loads((straight / "model.json").read_text())
    assert (info["threshold"], info["stage1_threshold"]) == (
        same["threshold"],
        same["stage1_threshold"],
    )
    record = info["finetuning"]
    assert record["base_model"]["checksums"] == read_model_spec(base).checksums
    assert record["steps"] == {"stage1": 6, "stage2": 6}
    split = record["splits"]
    assert split == json.loads((resumed / "splits.json").read_text())
    keys = {f"site/{s.subject_id}" for s in find_subjects(site)}
    assert set(split["train"]).isdisjoint(split["calibration"])
    assert set(split["train"]) | set(split["calibration"]) == keys
    assert len(split["calibration"]) == 1 and record["subjects"] == 3
    subjects = labelled_subjects([site])
    trained = {key: subjects[key] for key in split["train"]}
    assert record["fingerprint"] == ground_truth_fingerprint(trained)
    assert info["stage2"]["training"]["steps"] == 6
    assert read_model_spec(resumed).checksums != read_model_spec(base).checksums


def test_a_run_goes_on_only_with_its_own_settings(site, make_random_model, tmp_path):
    base = make_random_model("finetune-settings", 0.0)
    out = tmp_path / "run"
    finetune_model(base, [site], out, _quick(2, 2))
    with pytest.raises(InputError, match="other settings"):
        finetune_model(base, [site], out, _quick(3, 2))


def test_the_split_holds_out_a_share_by_subject_seeded():
    keys = [f"d/{n:02d}" for n in range(20)]
    split = split_for_finetuning(keys, FinetuneConfig())
    assert split == split_for_finetuning(keys, FinetuneConfig())
    assert len(split["calibration"]) == 5 and len(split["train"]) == 15
    assert sorted(split["train"] + split["calibration"]) == keys
    assert split != split_for_finetuning(keys, FinetuneConfig(seed=1))
    assert len(split_for_finetuning(keys[:5], FinetuneConfig())["calibration"]) == 2
    assert len(split_for_finetuning(keys[:3], FinetuneConfig())["calibration"]) == 1
    with pytest.raises(InputError, match="at least 3"):
        split_for_finetuning(keys[:2], FinetuneConfig())


def _lesion(lesion_id, kind, centre_mm, diameter_mm):
    return Lesion(lesion_id, kind, *centre_mm, 0, 0, 0, diameter_mm, True)


def test_points_are_painted_as_balls_of_their_diameter(site):
    swi = load_volume(find_subjects(site)[0].swi)  # 1 x 1 x 2 mm voxels
    centre = swi.affine @ np.array([80, 100, 12, 1.0])
    lesions = [
        _lesion(3, "cmb", centre[:3], 6.0),
        _lesion(4, "cmb", centre[:3] + [30, 0, 0], float("nan")),
        _lesion(5, "calcification", centre[:3] - [30, 0, 0], 6.0),
        _lesion(6, "cmb", [1e4, 0, 0], 4.0),  # outside the field of view
    ]
    labels = painted_labels(lesions, swi)
    assert set(np.unique(labels)) == {0, 3, 4}  # mimics and CMBs outside are not painted
    assert labels[80, 100, 12] == 3 and labels[83, 100, 12] == 3 and labels[84, 100, 12] == 0
    assert labels[80, 100, 13] == 3 and labels[80, 100, 14] == 0  # 3 mm: one 2 mm slice
    width = np.ptp(np.argwhere(labels == 4)[:, 0]) + 1
    assert width == POINT_DIAMETER_MM + 1  # a 4 mm ball at a voxel centre spans 5 voxels


def test_a_readers_review_is_the_truth_where_there_is_one(site, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(site, data)
    folders = sorted(data.glob("sub-*"))
    write_lesions_csv(folders[0] / "reviewed_lesions.csv", [_lesion(1, "cmb", (0, 0, 0), 3.0)])
    (folders[1] / "lesions.csv").unlink()
    (folders[1] / "labels.nii.gz").rename(folders[1] / "cmb_mask.nii.gz")
    (folders[2] / "lesions.csv").unlink()
    (folders[2] / "labels.nii.gz").unlink()
    subjects = labelled_subjects([data])
    reviewed, masked, plain = (
        subjects[f"data/{f.name[4:]}"] for f in (folders[0], folders[1], folders[3])
    )
    assert reviewed.lesions_csv.name == "reviewed_lesions.csv" and reviewed.labels is None
    assert masked.lesions_csv is None and masked.labels.name == "cmb_mask.nii.gz"
    assert plain.lesions_csv.name == "lesions.csv" and plain.labels.name == "labels.nii.gz"
    assert f"data/{folders[2].name[4:]}" not in subjects  # no truth: not a training subject


def test_ranges_widen_to_cover_both_models_data():
    base = TrainingRanges(in_plane_mm=(0.5, 0.8), slice_mm=(2, 2), field_strength_t=(3, 3))
    site = TrainingRanges(in_plane_mm=(0.9, 0.9), slice_mm=(2, 3), field_strength_t=UNKNOWN)
    joined = widened(base, site)
    assert joined.in_plane_mm == (0.5, 0.9) and joined.slice_mm == (2, 3)
    assert joined.field_strength_t == UNKNOWN  # not known for the site's data: not checked


def test_bad_runs_end_with_one_line_and_exit_2(site, make_random_model, tmp_path, capsys):
    base = make_random_model("finetune-refusals", 0.0)
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    unlabelled = tmp_path / "unlabelled"
    shutil.copytree(site, unlabelled)
    for table in unlabelled.glob("sub-*/lesions.csv"):
        table.unlink()
    for mask in unlabelled.glob("sub-*/labels.nii.gz"):
        mask.unlink()
    command = ["finetune", "--model", str(base), "--stage1-steps", "1", "--stage2-steps", "1"]
    cases = (
        (["--data", str(site), "--out", str(taken)], "not a fine-tuning run"),
        (["--data", str(site), "--out", str(base)], "holds the input"),
        (["--data", str(unlabelled), "--out", str(tmp_path / "a")], "no labelled subjects"),
        (
            ["--data", str(site), "--calibrate-on", str(site), "--out", str(tmp_path / "b")],
            "both a training and a calibration subject",
        ),
    )
    for options, problem in cases:
        assert main([*command, *options]) == 2
        error = capsys.readouterr().err.strip()
        assert len(error.splitlines()) == 1 and problem in error, error
    assert (taken / "notes.txt").read_text() == "mine"
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert sorted(p.name for p in base.iterdir()) == [
        "model.json",
        *sorted(p.name for p in base.glob("*.safetensors")),
    ]
