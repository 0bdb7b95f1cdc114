"""Operating points: threshold rules, and ``cmbdet calibrate`` on a model folder."""

from __future__ import annotations

import inspect
import json
import shutil

import numpy as np
import pytest

from cmbdet.cli import build_parser, main
from cmbdet.detect.detector import Detector
from cmbdet.errors import InputError
from cmbdet.evaluation.metrics import SubjectScores
from cmbdet.io.dataset import find_subjects
from cmbdet.io.lesions import Lesion
from cmbdet.io.model_folder import read_model_json, sha256_of
from cmbdet.synth.dataset import generate_dataset
from cmbdet.training.calibrate import (
    ScoredSubject,
    calibrate_model,
    choose_operating_point,
    choose_threshold,
    choose_threshold_for_fp_budget,
)
from cmbdet.training.config import OperatingRule


def _cmb(lesion_id: int, x: float) -> Lesion:
    return Lesion(lesion_id, "cmb", x, 0.0, 0.0, 0.0, 0.0, 0.0, 3.0, True)


def test_threshold_is_the_highest_that_keeps_the_sensitivity():
    lesions = [_cmb(1, 0.0), _cmb(2, 50.0)]
    candidates = np.array([[0.0, 0, 0], [50.0, 0, 0], [100.0, 0, 0]])
    scores = np.array([0.9, 0.4, 0.6])  # the false positive outranks the second CMB
    threshold, metrics = choose_threshold([SubjectScores.of("", candidates, scores, lesions)], 0.95)
    assert threshold == pytest.approx(0.4)
    assert metrics["sensitivity"] == 1.0 and metrics["fp_per_subject"] == 1.0
    threshold, metrics = choose_threshold([SubjectScores.of("", candidates, scores, lesions)], 0.5)
    assert threshold == pytest.approx(0.9) and metrics["fp_per_subject"] == 0.0


def test_unreachable_sensitivity_settles_for_what_is_reachable_at_the_highest_threshold():
    lesions = [_cmb(1, 0.0), _cmb(2, 50.0)]  # the second CMB is never proposed
    candidates = np.array([[0.0, 0, 0], [100.0, 0, 0]])
    scores = np.array([0.8, 0.3])
    threshold, metrics = choose_threshold([SubjectScores.of("", candidates, scores, lesions)], 0.98)
    assert threshold == pytest.approx(0.8) and metrics["sensitivity"] == 0.5


def test_fp_budget_picks_the_best_sensitivity_within_the_budget():
    lesions = [_cmb(1, 0.0), _cmb(2, 50.0), _cmb(3, 150.0)]
    candidates = np.array([[0.0, 0, 0], [100.0, 0, 0], [50.0, 0, 0], [200, 0, 0], [150, 0, 0]])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.3])  # hit, FP, hit, FP, hit
    validation = [SubjectScores.of("", candidates, scores, lesions)]
    threshold, metrics = choose_threshold_for_fp_budget(validation, 1.0)
    assert threshold == pytest.approx(0.7)  # 2 of 3 CMBs at 1 FP; 0.3 would need 2 FP
    assert metrics["sensitivity"] == pytest.approx(2 / 3) and metrics["fp_per_subject"] == 1.0
    threshold, metrics = choose_threshold_for_fp_budget(validation, 2.0)
    assert threshold == pytest.approx(0.3) and metrics["sensitivity"] == 1.0
    threshold, metrics = choose_threshold_for_fp_budget(validation, 0.5)
    assert threshold == pytest.approx(0.9) and metrics["fp_per_subject"] == 0.0


def test_fp_budget_no_threshold_can_meet_keeps_the_highest_threshold():
    lesions = [_cmb(1, 0.0)]
    candidates = np.array([[100.0, 0, 0], [200.0, 0, 0], [0.0, 0, 0]])
    scores = np.array([0.9999, 0.9999, 0.5])  # two false positives above every threshold
    threshold, metrics = choose_threshold_for_fp_budget(
        [SubjectScores.of("", candidates, scores, lesions)], 1.0
    )
    assert threshold == pytest.approx(0.999) and metrics["fp_per_subject"] == 2.0


def test_stage1_threshold_comes_first_and_stage2_chooses_among_what_passes():
    lesions = [_cmb(1, 0.0), _cmb(2, 50.0)]
    candidates = np.array([[0.0, 0, 0], [50.0, 0, 0], [100.0, 0, 0], [150.0, 0, 0]])
    stage1 = np.array([0.9, 0.2, 0.8, 0.1])  # CMB 2 is weak in stage 1
    stage2 = np.array([0.99, 0.99, 0.3, 0.95])  # stage 2 would rank the 0.1 FP highly
    scored = [ScoredSubject(candidates, stage1, stage2, lesions)]
    point = choose_operating_point(scored, OperatingRule(min_stage1_sensitivity=1.0))
    assert point.stage1_threshold == pytest.approx(0.2)  # keeps CMB 2, drops the 0.1 FP
    assert point.threshold == pytest.approx(0.99) and point.metrics["fp_per_subject"] == 0.0
    point = choose_operating_point(scored, OperatingRule(min_stage1_sensitivity=0.5))
    assert point.stage1_threshold == pytest.approx(0.9)
    assert point.metrics["sensitivity"] == 0.5  # stage 2 cannot recover what stage 1 dropped
    budget = OperatingRule(min_stage1_sensitivity=1.0, max_fp_per_subject=0.0)
    assert choose_operating_point(scored, budget).threshold == pytest.approx(0.99)
    entries = choose_operating_point(scored, budget).to_json()
    assert set(entries) == {
        "threshold",
        "stage1_threshold",
        "validation_metrics",
        "validation_metrics_stage1",
    }


@pytest.fixture(scope="module")
def calibration_data(tmp_path_factory):
    return generate_dataset(tmp_path_factory.mktemp("data"), "tiny", 2, seed=31, progress=False)


def test_calibrate_writes_a_model_with_the_same_weights_and_new_thresholds(
    make_random_model, calibration_data, tmp_path
):
    model = make_random_model("to-calibrate", 0.0)  # many candidates
    out = tmp_path / "calibrated"
    rule = OperatingRule(min_stage1_sensitivity=0.5, max_fp_per_subject=1.0)
    written, point = calibrate_model(model, [calibration_data], out, rule, device="cpu")
    assert written == out and sorted(p.name for p in out.iterdir()) == [
        "model.json",
        "stage1.onnx",
        "stage1.safetensors",
        "stage2.onnx",
        "stage2.safetensors",
    ]
    info, original = read_model_json(out), read_model_json(model)
    assert info["stage1"]["weights"] == original["stage1"]["weights"]  # same checksums
    for stage in ("stage1", "stage2"):  # the ONNX exports of the same weights, checksummed
        assert sha256_of(out / f"{stage}.onnx") == info[stage]["onnx"]["sha256"]
    assert (
        info["threshold"] == point.threshold and info["stage1_threshold"] == point.stage1_threshold
    )
    assert info["validation_metrics"]["fp_per_subject"] <= 1.0
    assert info["calibration"]["subjects"] == 2 and info["calibration"]["rule"] == rule.to_json()
    assert info["calibration"]["precision"] == "float32"
    assert info["name"] == "calibrated" and original["name"] == "to-calibrate"
    detector = Detector.load(out, device="cpu")
    assert detector.threshold == point.threshold
    counts = [  # stage-1 candidates per calibration subject at the chosen stage-1 threshold
        len(detector.detect(s.swi, s.phase, mask_path=s.brainmask).candidates)
        for s in find_subjects(calibration_data)
    ]
    assert info["training_ranges"]["candidates_per_subject"] == [min(counts), max(counts)]

    with pytest.raises(InputError, match="exists"):
        calibrate_model(model, [calibration_data], out, rule, device="cpu")
    calibrate_model(model, [calibration_data], out, OperatingRule(), overwrite=True, device="cpu")
    assert read_model_json(out)["calibration"]["rule"] == OperatingRule().to_json()
    assert not list(tmp_path.glob(".*partial"))


def test_calibrate_refuses_its_own_model_folder_and_data_without_truth(
    make_random_model, calibration_data, tmp_path
):
    model = make_random_model("self", -4.0)
    before = (model / "model.json").read_text()
    with pytest.raises(InputError, match="being calibrated"):
        calibrate_model(model, [calibration_data], model, overwrite=True, device="cpu")
    assert (model / "model.json").read_text() == before
    no_truth = tmp_path / "no-truth" / "sub-0000"
    no_truth.mkdir(parents=True)
    for image in (calibration_data / "sub-0000").glob("*.nii.gz"):
        if "label" not in image.name and "mask" not in image.name:
            shutil.copy(image, no_truth)
    with pytest.raises(InputError, match="no subjects with ground truth"):
        calibrate_model(model, [no_truth.parent], tmp_path / "out", device="cpu")
    assert not (tmp_path / "out").exists()
    with pytest.raises(InputError, match="holds"):  # --overwrite would delete the data
        calibrate_model(model, [no_truth.parent], tmp_path, overwrite=True, device="cpu")
    assert (no_truth / "swi.nii.gz").is_file()


def test_calibrate_command(make_random_model, calibration_data, tmp_path, capsys):
    model = make_random_model("cli", -4.0)
    out = tmp_path / "cli-out"
    command = ["calibrate", "--model", str(model), "--data", str(calibration_data)]
    command += ["--out", str(out), "--max-fp", "0.5", "--device", "cpu"]
    assert main(command) == 0
    assert "stage-2 threshold" in capsys.readouterr().out
    rule = json.loads((out / "model.json").read_text())["calibration"]["rule"]
    assert rule["max_fp_per_subject"] == 0.5
    assert main(command) == 2
    err = capsys.readouterr().err
    assert "exists" in err and str(out) in err and err.count("\n") == 1


def test_calibrate_command_defaults_are_the_rule_defaults():
    args = build_parser().parse_args(["calibrate", "--data", "d", "--out", "o"])
    rule = OperatingRule(args.min_stage1_sensitivity, args.min_sensitivity, args.max_fp)
    assert rule == OperatingRule()
    # thresholds are chosen in float32 unless asked otherwise, from the CLI and the library
    default_precision = inspect.signature(calibrate_model).parameters["precision"].default
    assert args.precision == default_precision == "float32"


def test_calibrate_overwrites_only_a_model_folder_its_onnx_exports_included(tmp_path):
    """``--out`` may be replaced (with --overwrite) when it holds a model's files only:
    model.json, weights and the two ONNX exports; another .onnx (someone's own network) or a
    link makes it someone else's folder, refused even with --overwrite."""
    from cmbdet.training.calibrate import _check_model_folder

    out = tmp_path / "model"
    out.mkdir()
    for name in ("model.json", "stage1.safetensors", "stage1.onnx", "stage2.onnx"):
        (out / name).write_text("x")
    _check_model_folder(out, overwrite=True)
    with pytest.raises(InputError, match="exists and is not empty"):
        _check_model_folder(out, overwrite=False)
    (out / "mine.onnx").write_text("someone's network")
    with pytest.raises(InputError, match=r"not a model's \(mine.onnx\)"):
        _check_model_folder(out, overwrite=True)
    (out / "mine.onnx").unlink()
    (out / "stage2.onnx").unlink()
    (out / "stage2.onnx").symlink_to(tmp_path / "elsewhere.onnx")
    with pytest.raises(InputError, match=r"not a model's \(stage2.onnx\)"):
        _check_model_folder(out, overwrite=True)


def test_onnx_export_replaces_a_planted_link_and_never_writes_through_it(
    make_random_model, tmp_path
):
    """A link standing where stage1.onnx goes (a training --out someone prepared) is replaced
    by the file; what it pointed to is untouched."""
    from cmbdet.training.export import export_onnx

    model = tmp_path / "model"
    shutil.copytree(make_random_model("export-link-model", 0.0), model)
    outside = tmp_path / "precious.onnx"
    outside.write_text("keep me")
    (model / "stage1.onnx").symlink_to(outside)
    info = export_onnx(model, read_model_json(model))
    assert outside.read_text() == "keep me"
    assert not (model / "stage1.onnx").is_symlink()
    assert sha256_of(model / "stage1.onnx") == info["stage1"]["onnx"]["sha256"]
