"""A batch's record of every subject: the ``batch.csv`` rows, the cohort's ``cmb_counts.csv``,
and the summary a run ends with."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cmbdet.batch.subject import DONE, FAILED, SKIPPED, BatchRow
from cmbdet.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from cmbdet.io.writing import write_atomic

BATCH_LOG = "batch.csv"
COUNTS_TABLE = "cmb_counts.csv"
BATCH_TABLES = (BATCH_LOG, COUNTS_TABLE)  # rewritten together as subjects finish


LOG_COLUMNS = (
    "subject",
    "status",
    "cmb_count",
    "candidates",
    "seconds",
    "error",
    "outputs",
    "input_mode",
    "qc_flags",
)
COUNT_KEYS = (  # run.json's cmb_counts (cmbdet.detect.outputs.cmb_counts), in column order
    "total",
    "lobar",
    "deep",
    "infratentorial",
    "region_not_determined",
    "under_5mm",
    "5_to_10mm",
    "over_10mm",
)
COUNT_COLUMNS = ("subject", "status", "model", *COUNT_KEYS, "qc_flags")


@dataclass(frozen=True)
class BatchSummary:
    """Every subject's row (in subject order) and where the outputs went."""

    rows: list[BatchRow]
    out_dir: Path

    def count(self, status: str) -> int:
        return sum(row.status == status for row in self.rows)

    @property
    def exit_code(self) -> int:
        """1 if a subject failed unexpectedly, else 2 if one had bad input, else 0."""
        failed = [row for row in self.rows if row.status == FAILED]
        if any(not row.bad_input for row in failed):
            return EXIT_FAILED
        return EXIT_BAD_INPUT if failed else EXIT_OK

    def input_modes(self) -> dict[str, int]:
        """Subjects per input mode among those with outputs (``swi+phase``: 12, ...)."""
        modes = [row.input_mode for row in self.rows if row.status != FAILED and row.input_mode]
        return {mode: modes.count(mode) for mode in sorted(set(modes))}

    def mixed_modes(self) -> str:
        """A warning when the cohort's subjects ran in more than one input mode (their
        counts may not be comparable); "" otherwise."""
        modes = self.input_modes()
        if len(modes) < 2:
            return ""
        shown = ", ".join(f"{mode} {n}" for mode, n in modes.items())
        return f"the cohort mixes input modes ({shown}): compare their counts with care"

    def line(self) -> str:
        """The summary printed at the end of a batch (a second line warns of mixed modes)."""
        line = (
            f"{self.count(DONE)} of {len(self.rows)} subjects done, {self.count(FAILED)} failed, "
            f"{self.count(SKIPPED)} skipped (already complete); outputs in {self.out_dir}; "
            f"log in {self.out_dir / BATCH_LOG}"
        )
        mixed = self.mixed_modes()
        return f"{line}\nwarning: {mixed}" if mixed else line


def write_batch_tables(out_dir: Path, rows: Iterable[BatchRow]) -> None:
    """``batch.csv`` and ``cmb_counts.csv`` in ``out_dir``, one row per subject sorted by id;
    each replaced atomically (temp + rename)."""
    ordered = sorted(rows, key=lambda row: row.subject)
    _write_table(Path(out_dir) / BATCH_LOG, LOG_COLUMNS, [row.cells() for row in ordered])
    _write_table(Path(out_dir) / COUNTS_TABLE, COUNT_COLUMNS, [_count_cells(r) for r in ordered])


def _count_cells(row: BatchRow) -> list[str]:
    """A ``cmb_counts.csv`` row: counts are empty for a failed subject (and for outputs of a
    cmbdet that did not count them); QC flags are joined by ``; ``."""
    counts = row.counts or {}
    cells = [counts.get(key) for key in COUNT_KEYS]
    numbers = [str(c) if isinstance(c, int) and not isinstance(c, bool) else "" for c in cells]
    return [row.subject, row.status, row.model, *numbers, "; ".join(row.qc_flags)]


def _write_table(path: Path, columns: tuple[str, ...], rows: list[list[str]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    write_atomic(path, buffer.getvalue())


def read_batch_log(path: Path) -> dict[str, BatchRow]:
    """The rows of an earlier ``batch.csv`` by subject id; {} when missing or unreadable.

    Only used to carry ``seconds`` over to skipped subjects, so a damaged log is no error.
    """
    try:
        reader = csv.DictReader(io.StringIO(Path(path).read_text(encoding="utf-8")))
        rows = {}
        for cells in reader:
            seconds = cells.get("seconds") or ""
            rows[cells["subject"]] = BatchRow(
                subject=cells["subject"],
                status=cells.get("status") or "",
                seconds=float(seconds) if seconds else None,
                input_mode=cells.get("input_mode") or "",
            )
        return rows
    except (OSError, UnicodeDecodeError, KeyError, ValueError, csv.Error):
        return {}
