"""``batch.csv``, ``cmb_counts.csv`` and the summary a batch ends with: exit codes, sorted and
quoted rows, atomic rewrites."""

from __future__ import annotations

import csv

from cmbdet.batch.log import (
    BATCH_LOG,
    COUNT_COLUMNS,
    COUNTS_TABLE,
    LOG_COLUMNS,
    BatchSummary,
    read_batch_log,
    write_batch_tables,
)
from cmbdet.batch.subject import FAILED, BatchRow


def test_exit_code_rule():
    def summary(*rows):
        return BatchSummary(list(rows), out_dir=None).exit_code

    done, skipped = BatchRow("a", "done"), BatchRow("b", "skipped")
    bad_input = BatchRow("c", FAILED, error="swi.nii.gz: truncated", bad_input=True)
    unexpected = BatchRow("d", FAILED, error="unexpected ValueError: x")
    assert summary(done, skipped) == 0
    assert summary(done, bad_input) == 2
    assert summary(done, unexpected) == 1
    assert summary(bad_input, unexpected) == 1


def test_the_log_is_sorted_quoted_and_replaced_whole(tmp_path):
    log = tmp_path / BATCH_LOG
    rows = [
        BatchRow("02", "done", 3, 40, 2.5, outputs="sub-02"),
        BatchRow("01", FAILED, error='a.nii: bad, "quoted"', bad_input=True),
    ]
    write_batch_tables(tmp_path, rows)
    assert sorted(p.name for p in tmp_path.iterdir()) == [BATCH_LOG, COUNTS_TABLE]  # no temporary
    with open(log, newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == LOG_COLUMNS
        logged = list(reader)
    assert logged == [
        dict(
            zip(
                LOG_COLUMNS,
                ["01", "failed", "", "", "", 'a.nii: bad, "quoted"', "", "", ""],
                strict=True,
            )
        ),
        dict(
            zip(LOG_COLUMNS, ["02", "done", "3", "40", "2.50", "", "sub-02", "", ""], strict=True)
        ),
    ]
    again = read_batch_log(log)
    assert again["02"].seconds == 2.5 and again["01"].status == FAILED
    log.write_text("not,a\nlog")
    assert read_batch_log(log) == {}  # a damaged log only loses the carried-over seconds


def test_the_counts_table_has_a_row_per_subject_and_leaves_failed_counts_empty(tmp_path):
    counts = {"total": 3, "lobar": 2, "deep": 1, "infratentorial": 0}
    counts |= {"region_not_determined": 0, "under_5mm": 2, "5_to_10mm": 1, "over_10mm": 0}
    rows = [
        BatchRow("02", "done", 3, outputs="sub-02", model="m-v4", counts=counts),
        BatchRow("01", FAILED, error="a.nii: bad", bad_input=True),
        BatchRow("03", "skipped", 1, model="m-v3", qc_flags=("slice 5 mm", "1.5 T")),
    ]
    write_batch_tables(tmp_path, rows)
    with open(tmp_path / COUNTS_TABLE, newline="") as handle:
        reader = csv.reader(handle)
        assert tuple(next(reader)) == COUNT_COLUMNS
        table = list(reader)
    assert table == [
        ["01", "failed", "", *[""] * 8, ""],
        ["02", "done", "m-v4", "3", "2", "1", "0", "0", "2", "1", "0", ""],
        ["03", "skipped", "m-v3", *[""] * 8, "slice 5 mm; 1.5 T"],  # outputs of an older cmbdet
    ]
