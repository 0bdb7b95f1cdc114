"""QC flags: a subject outside what the model was trained on, or with guessed phase
conventions, is flagged (and only then)."""

from __future__ import annotations

import json

import pytest

from cmbdet.detect.detector import Detector
from cmbdet.detect.qc import TrainingRanges, qc_flags
from cmbdet.synth.dataset import generate_dataset

RANGES = TrainingRanges(
    in_plane_mm=(0.5, 0.9),
    slice_mm=(1.0, 3.0),
    field_strength_t=(3.0, 7.0),
    candidates_per_subject=(20.0, 120.0),
)


def _preprocessing(spacing=(0.8, 0.8, 2.0), confidence=0.9, detected=True) -> dict:
    phase = {"handedness_detected": detected, "handedness_confidence": confidence}
    return {"native_spacing_mm": list(spacing), "phase": phase}


def test_a_subject_inside_every_range_has_no_flag():
    assert qc_flags(_preprocessing(), 60, RANGES, field_strength_t=3.0) == []
    assert qc_flags(_preprocessing((0.95, 0.95, 3.2)), 12, RANGES) == []  # within tolerance


@pytest.mark.parametrize(
    ("preprocessing", "candidates", "field", "expected"),
    [
        (_preprocessing((1.2, 1.2, 2.0)), 60, None, "in-plane voxel 1.2 mm outside"),
        (_preprocessing((0.8, 0.8, 5.0)), 60, None, "slice thickness 5 mm outside"),
        (_preprocessing(), 60, 1.5, "field strength 1.5 T outside"),
        (_preprocessing(), 400, None, "400 stage-1 candidates, far from"),
        (_preprocessing(), 3, None, "3 stage-1 candidates, far from"),
        (_preprocessing(confidence=0.05), 60, None, "phase handedness guessed with low conf"),
    ],
)
def test_each_way_out_of_range_is_one_flag(preprocessing, candidates, field, expected):
    flags = qc_flags(preprocessing, candidates, RANGES, field_strength_t=field)
    assert len(flags) == 1 and flags[0].startswith(expected), flags


def test_unrecorded_ranges_and_given_conventions_are_never_flagged():
    odd = _preprocessing((3.0, 3.0, 6.0), confidence=0.0, detected=False)  # handedness given
    assert qc_flags(odd, 10_000, TrainingRanges(), field_strength_t=0.5) == []


def test_ranges_are_checked_when_read():
    with pytest.raises(ValueError, match="slice_mm"):
        TrainingRanges.from_json({"slice_mm": [3.0, 1.0]})


def test_run_json_records_the_flags_of_the_models_ranges(make_random_model, tmp_path):
    folder = make_random_model("with-ranges", -4.0)
    info = json.loads((folder / "model.json").read_text())
    narrow = TrainingRanges(in_plane_mm=(0.4, 0.5), candidates_per_subject=(5.0, 10.0))
    (folder / "model.json").write_text(json.dumps({**info, "training_ranges": narrow.to_json()}))
    data = generate_dataset(tmp_path / "data", "tiny", 1, seed=11, progress=False)  # 1 mm
    subject = data / "sub-0000"
    detector = Detector.load(folder, "cpu", "float32")
    record = detector.detect(subject / "swi.nii.gz", subject / "phase.nii.gz").record
    assert record["candidates"] == 0  # this model proposes none: far below 5-10
    assert [flag.split(" ")[0] for flag in record["qc_flags"]] == ["in-plane", "0"]


def test_the_dipole_lobe_rule_has_its_own_low_confidence_mark():
    lobes = _preprocessing(confidence=0.2)
    lobes["phase"]["handedness_method"] = "dipole lobes"
    assert qc_flags(lobes, 60, RANGES) == []  # 0.2 is low for the SWI rule, not for this one
    lobes["phase"]["handedness_confidence"] = 0.05
    assert qc_flags(lobes, 60, RANGES)[0].startswith("phase handedness guessed")


def test_an_echo_outside_the_models_field_x_te_range_is_flagged():
    echo = {"index": 4, "of": 4, "field_x_echo_time_t_ms": 196.0, "outside_model_range": True}
    (flag,) = qc_flags(_preprocessing(), 60, RANGES, echo=echo)
    assert flag.startswith("echo 4 of 4 used (field x TE 196 T ms), outside the model's range")
    single = {"index": 1, "of": 1, "field_x_echo_time_t_ms": 140.0, "outside_model_range": True}
    (flag,) = qc_flags(_preprocessing(), 60, RANGES, echo=single)
    assert flag.startswith("field x TE 140 T ms outside the model's range")


def test_training_ranges_come_from_headers_and_the_generators_record(tmp_path):
    from cmbdet.io.dataset import find_subjects
    from cmbdet.training.ranges import training_ranges

    data = generate_dataset(tmp_path / "d", "tiny", 2, seed=4, progress=False)
    subjects = find_subjects(data)
    protocols = [
        json.loads((s.swi.parent / "acquisition.json").read_text())["protocol"] for s in subjects
    ]
    products = sorted(p["field_t"] * p["te_s"] * 1000 for p in protocols)
    ranges = training_ranges(subjects)
    assert ranges.field_te_t_ms == pytest.approx((products[0], products[-1]), abs=1e-3)
    assert ranges.field_strength_t == (3.0, 3.0)
