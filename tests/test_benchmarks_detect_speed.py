"""The speed benchmark's guard (``benchmarks/detect_speed.py``): a run counts only when it
detected every subject, so a refused or failed command cannot pass for a fast one."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from detect_speed import require_done  # noqa: E402

from cmbdet.batch.log import BATCH_LOG, LOG_COLUMNS
from cmbdet.batch.subject import DONE, FAILED, SKIPPED


def _batch_log(out: Path, statuses: list[str]) -> None:
    """A ``batch.csv`` as ``cmbdet detect --manifest`` writes it, one subject per status."""
    out.mkdir()
    rows = [
        ",".join([f"{i:04d}", status, *[""] * (len(LOG_COLUMNS) - 2)])
        for i, status in enumerate(statuses)
    ]
    (out / BATCH_LOG).write_text("\n".join([",".join(LOG_COLUMNS), *rows]) + "\n")


def test_a_batch_counts_when_every_subject_is_done(tmp_path):
    _batch_log(tmp_path / "out", [DONE, DONE])
    require_done(tmp_path / "out", 2)


@pytest.mark.parametrize(
    ("statuses", "done"), [([DONE, FAILED], 1), ([DONE, SKIPPED], 1), ([DONE], 1), ([], 0)]
)
def test_a_batch_with_a_failed_or_missing_subject_stops_the_benchmark(tmp_path, statuses, done):
    _batch_log(tmp_path / "out", statuses)
    with pytest.raises(SystemExit, match=f"{done} of 2 subjects detected"):
        require_done(tmp_path / "out", 2)


def test_a_one_subject_run_counts_only_with_its_detections(tmp_path):
    out = tmp_path / "one"
    with pytest.raises(SystemExit, match="0 of 1"):
        require_done(out, 1)  # the command was refused: no output folder at all
    out.mkdir()
    with pytest.raises(SystemExit, match="0 of 1"):
        require_done(out, 1)  # a folder without the detections: the run did not finish
    (out / "detections.csv").write_text("detection_id\n")
    require_done(out, 1)
