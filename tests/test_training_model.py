"""Splitting subjects and settings for ``cmbdet train``."""

from __future__ import annotations

import pytest

from cmbdet.errors import InputError
from cmbdet.training.config import TrainModelConfig
from cmbdet.training.model import split_subjects


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
    from cmbdet.training.model import _load_or_make_splits

    keys = [f"d/{n:04d}" for n in range(6)]
    path = tmp_path / "splits.json"
    splits = _load_or_make_splits(path, keys, TrainModelConfig())  # made and saved
    assert _load_or_make_splits(path, keys, TrainModelConfig()) == splits  # resumed
    for damage, problem in (('{"stage1": [', "not a split"), ("[1, 2]", "not a split")):
        path.write_text(damage)
        with pytest.raises(InputError, match=problem):
            _load_or_make_splits(path, keys, TrainModelConfig())
    path.write_text('{"stage1": ["x/0001"], "stage2": [], "validation": []}')
    with pytest.raises(InputError, match="lack"):
        _load_or_make_splits(path, keys, TrainModelConfig())
