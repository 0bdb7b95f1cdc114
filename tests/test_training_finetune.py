"""``cmbdet finetune``: it improves a weakened model on the data it adapts to, resumes exactly,
records where the model came from, learns from points as well as masks, and refuses bad runs."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from cmbdet.cli import main
from cmbdet.detect.detector import Detector
from cmbdet.detect.model_spec import read_model_spec
from cmbdet.detect.qc import UNKNOWN, TrainingRanges
from cmbdet.detect.shipped import default_model_dir
from cmbdet.errors import InputError
from cmbdet.evaluation.metrics import SubjectScores, count
from cmbdet.io.dataset import find_subjects, ground_truth_fingerprint, load_ground_truth
from cmbdet.io.lesions import Lesion, write_lesions_csv
from cmbdet.io.model_folder import save_weights, sha256_of, write_model_json
from cmbdet.io.nifti import load_labels, load_volume
from cmbdet.stage2.model import PatchClassifier
from cmbdet.synth.dataset import generate_dataset
from cmbdet.training import loop
from cmbdet.training.calibrate import ScoredSubject, choose_operating_point
from cmbdet.training.config import FinetuneConfig, OperatingRule
from cmbdet.training.finetune import finetune_model, split_for_finetuning
from cmbdet.training.ranges import widened
from cmbdet.training.truth import (
    POINT_DIAMETER_MM,
    cmb_label_map,
    labelled_subjects,
    painted_labels,
)


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


def _sensitivities(model: Path, dataset: Path) -> tuple[float, float]:
    """Stage 1 + 2 sensitivity on ``dataset``: at the best thresholds with <= 2 false positives
    per subject (chosen on the dataset itself, alike for every model compared), and at the
    model's own thresholds."""
    detector = Detector.load(model, "cpu", "float32")
    scored, own = [], []
    for files in find_subjects(dataset):
        result = detector.detect(files.swi, files.phase, None, None, stage1_threshold=0.0)
        subject = ScoredSubject.of_result(result, load_ground_truth(files))
        scored.append(subject)
        kept = subject.stage1_scores >= detector.spec.stage1_threshold
        final = np.where(kept, subject.scores, 0.0)
        own.append(SubjectScores.of("", subject.candidates_mm, final, subject.lesions))
    rule = OperatingRule(max_fp_per_subject=2.0)
    best = choose_operating_point(scored, rule).metrics["sensitivity"]
    return best, count(own, detector.spec.threshold).sensitivity


def test_finetuning_improves_a_weakened_model_on_other_subjects(site, others, tmp_path):
    weak = _weakened_shipped_model(tmp_path / "weak")
    before, _ = _sensitivities(weak, others)
    tuned = finetune_model(weak, [site], tmp_path / "tuned", _quick(10, 40, learning_rate=1e-3))
    after, at_its_thresholds = _sensitivities(tuned, others)
    assert before < 0.2 and after > before + 0.3, (before, after)
    assert at_its_thresholds > 0  # its thresholds, chosen on one held-out site subject, work
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


def test_both_stages_start_from_the_base_and_calibrate_on_other_folders(
    site, others, make_random_model, tmp_path
):
    base = make_random_model("finetune-calibrate-on", 0.0)
    out = finetune_model(base, [site], tmp_path / "tuned", _quick(3, 3), calibrate_on=[others])
    for stage in ("stage1", "stage2"):  # a few small steps from the base, not from scratch
        before = load_file(str(base / f"{stage}.safetensors"))
        after = load_file(str(out / f"{stage}.safetensors"))
        learnt = [k for k in before if not k.endswith(("running_mean", "running_var", "tracked"))]
        changes = [float((after[k] - before[k]).abs().max()) for k in learnt]
        assert 0 < max(changes) < 0.02, (stage, max(changes))
    record = json.loads((out / "model.json").read_text())["finetuning"]
    assert record["splits"]["train"] == sorted(f"site/{s.subject_id}" for s in find_subjects(site))
    assert record["splits"]["calibration"] == sorted(
        f"others/{s.subject_id}" for s in find_subjects(others)
    )
    assert record["calibrate_on"] == [str(others.resolve())]
    assert record["calibration_fingerprint"] == ground_truth_fingerprint(
        labelled_subjects([others])
    )
    assert record["base_model"]["name"] == "finetune-calibrate-on"


def test_the_label_map_is_used_where_the_table_names_its_values(site):
    files = labelled_subjects([site])[f"site/{find_subjects(site)[0].subject_id}"]
    swi = load_volume(files.swi)
    lesions = load_ground_truth(files)
    generated = cmb_label_map(files, swi, lesions)  # the generator's table and map
    assert np.array_equal(generated, load_labels(files.labels, swi))
    renumbered = [replace(lesion, lesion_id=lesion.lesion_id + 10_000) for lesion in lesions]
    painted = cmb_label_map(files, swi, renumbered)  # ids the map lacks: painted from points
    cmbs = [lesion for lesion in renumbered if lesion.is_cmb]
    assert set(np.unique(painted)) == {0} | {lesion.lesion_id for lesion in cmbs}
    with pytest.raises(InputError, match="from 1"):
        cmb_label_map(files, swi, [replace(cmbs[0], lesion_id=0)])


def test_a_run_goes_on_only_with_its_own_settings(site, make_random_model, tmp_path):
    base = make_random_model("finetune-settings", 0.0)
    out = tmp_path / "run"
    finetune_model(base, [site], out, _quick(2, 2))
    with pytest.raises(InputError, match="other settings"):
        finetune_model(base, [site], out, _quick(3, 2))


def test_the_split_holds_out_a_share_by_subject_seeded_and_balanced():
    counts = {f"d/{n:02d}": n % 7 for n in range(20)}  # 0-6 visible CMBs
    split = split_for_finetuning(counts, FinetuneConfig())
    assert split == split_for_finetuning(counts, FinetuneConfig())
    assert len(split["calibration"]) == 5 and len(split["train"]) == 15
    assert sorted(split["train"] + split["calibration"]) == sorted(counts)
    assert split != split_for_finetuning(counts, FinetuneConfig(seed=1))
    held = sorted(counts[k] for k in split["calibration"])
    assert held[0] <= 2 and held[-1] >= 4  # dealt along the CMB counts: rich and poor alike
    for seed in range(10):  # one from each fifth of the subjects ordered by CMBs, every seed
        held = sorted(
            counts[k]
            for k in split_for_finetuning(counts, FinetuneConfig(seed=seed))["calibration"]
        )
        assert held[0] <= 1 and held[-1] >= 5
    assert (
        len(split_for_finetuning(dict(list(counts.items())[:5]), FinetuneConfig())["calibration"])
        == 2
    )
    assert (
        len(split_for_finetuning(dict(list(counts.items())[:3]), FinetuneConfig())["calibration"])
        == 1
    )
    with pytest.raises(InputError, match="at least 3"):
        split_for_finetuning(dict(list(counts.items())[:2]), FinetuneConfig())


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
    two = tmp_path / "two"
    two.mkdir()
    for folder in sorted(site.glob("sub-*"))[:2]:
        shutil.copytree(folder, two / folder.name)
    no_swi = tmp_path / "no-swi"
    shutil.copytree(site, no_swi)
    next(no_swi.glob("sub-*/swi.nii.gz")).unlink()
    same_name = tmp_path / "elsewhere" / "site"
    shutil.copytree(site, same_name)
    linked_run = tmp_path / "linked-run"  # a run's folder with a link inside
    linked_run.mkdir()
    (linked_run / "finetune_config.json").write_text("{}")
    outside = tmp_path / "outside.safetensors"
    outside.write_text("not to be touched")
    (linked_run / "stage1.safetensors").symlink_to(outside)
    link_out = tmp_path / "link-out"
    link_out.symlink_to(taken)
    command = ["finetune", "--model", str(base), "--stage1-steps", "1", "--stage2-steps", "1"]
    cases = (
        (["--data", str(site), "--out", str(taken)], "not a fine-tuning run"),
        (["--data", str(site), "--out", str(linked_run)], "link"),
        (["--data", str(site), "--out", str(link_out)], "not a folder"),
        (["--data", str(site), "--out", str(base)], "holds the input"),
        (["--data", str(unlabelled), "--out", str(tmp_path / "a")], "no labelled subjects"),
        (
            ["--data", str(site), "--calibrate-on", str(site), "--out", str(tmp_path / "b")],
            "both a training and a calibration subject",
        ),
        (
            ["--data", str(site), "--calibrate-on", str(unlabelled), "--out", str(tmp_path / "c")],
            "no labelled subjects",
        ),
        (["--data", str(two), "--out", str(tmp_path / "d")], "at least 3 labelled subjects"),
        (["--data", str(no_swi), "--out", str(tmp_path / "e")], "has no swi.nii.gz"),
        (
            ["--data", str(site), str(same_name), "--out", str(tmp_path / "f")],
            "another dataset folder of this name",
        ),
        (
            ["--data", str(site), "--calibration-share", "0.9", "--out", str(tmp_path / "g")],
            "--calibration-share",
        ),
    )
    for options, problem in cases:
        assert main([*command, *options]) == 2
        error = capsys.readouterr().err.strip()
        assert len(error.splitlines()) == 1 and problem in error, error
    assert (taken / "notes.txt").read_text() == "mine"
    assert outside.read_text() == "not to be touched" and sorted(os.listdir(taken)) == ["notes.txt"]
    assert sorted(os.listdir(linked_run)) == ["finetune_config.json", "stage1.safetensors"]
    assert not any((tmp_path / name).exists() for name in "abcdefg")  # nothing written
    assert sorted(p.name for p in base.iterdir()) == [
        "model.json",
        *sorted(p.name for p in base.glob("*.safetensors")),
    ]
