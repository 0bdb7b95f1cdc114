"""detections.csv / candidates.csv: written with 6-decimal scores, read back exactly."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from cmbdet.errors import InputError
from cmbdet.io.results import COLUMNS, read_result_table, write_result_table
from cmbdet.records import Candidate


def test_a_table_round_trips(tmp_path):
    rows = [
        Candidate(1.5, -2.25, 30.0, 10.0, 20.0, 5.0, 0.9876543, 0.5, 3.0, 2),
        Candidate(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.1, 0.2, 1.0, 1),
    ]
    path = tmp_path / "candidates.csv"
    write_result_table(path, rows)
    with open(path, newline="") as handle:
        lines = list(csv.reader(handle))
    assert tuple(lines[0]) == COLUMNS and [line[0] for line in lines[1:]] == ["1", "2"]
    table = read_result_table(path)
    np.testing.assert_allclose(table.centres_mm, [[1.5, -2.25, 30.0], [0, 0, 0]])
    np.testing.assert_allclose(table.scores, [0.987654, 0.1])  # 6 decimals
    np.testing.assert_allclose(table.stage1_scores, [0.5, 0.2])


def test_an_empty_table_reads_as_no_candidates_and_a_missing_one_is_bad_input(tmp_path):
    write_result_table(tmp_path / "detections.csv", [])
    assert read_result_table(tmp_path / "detections.csv").centres_mm.shape == (0, 3)
    with pytest.raises(InputError, match="not a readable"):
        read_result_table(tmp_path / "missing.csv")
