"""``batch.csv`` and the summary a batch ends with: exit codes, sorted and quoted rows, atomic
rewrites."""

from __future__ import annotations

import csv

from cmbdet.batch.log import BATCH_LOG, LOG_COLUMNS, BatchSummary, read_batch_log, write_batch_log
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
    write_batch_log(log, rows)
    assert [p.name for p in tmp_path.iterdir()] == [BATCH_LOG]  # no temporary file left
    with open(log, newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == LOG_COLUMNS
        logged = list(reader)
    assert logged == [
        dict(
            zip(LOG_COLUMNS, ["01", "failed", "", "", "", 'a.nii: bad, "quoted"', ""], strict=True)
        ),
        dict(zip(LOG_COLUMNS, ["02", "done", "3", "40", "2.50", "", "sub-02"], strict=True)),
    ]
    again = read_batch_log(log)
    assert again["02"].seconds == 2.5 and again["01"].status == FAILED
    log.write_text("not,a\nlog")
    assert read_batch_log(log) == {}  # a damaged log only loses the carried-over seconds
