"""Splitting subjects and settings for ``cmbdet train``."""

from __future__ import annotations

import numpy as np
import pytest

from cmbdet.errors import InputError
from cmbdet.io.lesions import Lesion
from cmbdet.training.config import TrainModelConfig
from cmbdet.training.model import hard_negatives, split_subjects


def test_split_is_seeded_disjoint_and_complete():
    ids = [f"d/{n:04d}" for n in range(20)]
    splits = split_subjects(ids, TrainModelConfig())
    assert splits == split_subjects(ids, TrainModelConfig())
    parts = [set(v) for v in splits.values()]
    assert set.union(*parts) == set(ids) and sum(len(p) for p in parts) == len(ids)
    assert len(splits["stage1"]) == 10 and len(splits["validation"]) == 3
    with pytest.raises(InputError):
        split_subjects(ids[:2], TrainModelConfig())


def test_stage1_positive_unit_is_checked_when_set():
    assert TrainModelConfig(stage1_positives_per="cmb").stage1_positives_per == "cmb"
    with pytest.raises(ValueError, match="stage1_positives_per"):
        TrainModelConfig(stage1_positives_per="lesion")


def test_a_damaged_saved_split_is_bad_input(tmp_path):
    from cmbdet.training.model import load_or_make_splits

    keys = [f"d/{n:04d}" for n in range(6)]
    path = tmp_path / "splits.json"
    splits = load_or_make_splits(path, keys, TrainModelConfig())  # made and saved
    assert load_or_make_splits(path, keys, TrainModelConfig()) == splits  # resumed
    for damage, problem in (('{"stage1": [', "not a split"), ("[1, 2]", "not a split")):
        path.write_text(damage)
        with pytest.raises(InputError, match=problem):
            load_or_make_splits(path, keys, TrainModelConfig())
    path.write_text('{"stage1": ["x/0001"], "stage2": [], "validation": []}')
    with pytest.raises(InputError, match="lack"):
        load_or_make_splits(path, keys, TrainModelConfig())


def test_hard_negatives_lie_on_mimics_or_score_highest_at_stage1():
    def lesion(kind, x, diameter, visible=True):
        return Lesion(1, kind, x, 0.0, 0.0, 0, 0, 0, diameter, visible)

    truth = [
        lesion("cmb", 0.0, 4.0),
        lesion("calcification", 50.0, 4.0),
        lesion("iron", 90, 6),
        lesion("cmb", 130.0, 1.0, visible=False),  # too faint to count
    ]
    xs = (0.0, 53.5, 94.0, 30.0, 31.0, 32.0, 33.0, 20, 2.0, 131.0)
    centres = np.array([[x, 0.0, 0.0] for x in xs])
    scores = np.array([0.9, 0.1, 0.1, 0.2, 0.3, 0.4, 0.8, 0.5, 0.95, 0.9])
    hits = np.array([True] + [False] * 9)
    hard = hard_negatives(centres, scores, hits, truth)
    # on the calcification (2 mm radius + 2) and the iron (3 + 2); the top quarter of the
    # scores of the seven candidates away from every CMB: 0.8 and 0.5; never the hit, nor a
    # second candidate on the CMB (2 mm from it), nor one on the faint CMB, whatever their score
    assert hard.tolist() == [False, True, True, False, False, False, True, True, False, False]
    assert not hard_negatives(centres, scores, np.ones(10, bool), truth).any()


def test_a_run_resumes_only_with_the_settings_it_started_with(tmp_path):
    from dataclasses import replace

    from cmbdet.training.model import record_or_check_settings

    path = tmp_path / "train_config.json"
    config = TrainModelConfig()
    record_or_check_settings(path, config.to_json())  # written
    record_or_check_settings(path, config.to_json())  # the same: resumes
    with pytest.raises(InputError, match="hard_negative_weight"):
        record_or_check_settings(path, replace(config, hard_negative_weight=1.0).to_json())
    path.write_text("{")
    with pytest.raises(InputError, match="not settings"):
        record_or_check_settings(path, config.to_json())
