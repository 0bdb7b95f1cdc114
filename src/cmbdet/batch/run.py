"""``cmbdet detect --dataset``: every subject of a dataset, resumable, on any runner.

One subject is one task (:func:`cmbdet.batch.subject.detect_subject`): it loads the model
once per process, detects, writes the subject's outputs atomically and returns a row; a bad
subject never raises. :func:`run_batch` takes the folder's lock, skips subjects whose outputs
are complete, hands the others to a runner (this process or local workers:
:mod:`cmbdet.batch.local`; a Dask cluster: :mod:`cmbdet.batch.dask`) and rewrites
``batch.csv`` atomically after each subject, so a killed run leaves a valid log and a rerun
continues where it stopped.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from cmbdet.batch.derivatives import write_bids_derivatives
from cmbdet.batch.folder import (
    COHORT_REPORT,
    check_batch_folder,
    made_with,
    pending_subjects,
    plan_batch,
    remove_leftovers,
)
from cmbdet.batch.local import in_this_process
from cmbdet.batch.log import BatchSummary, write_batch_tables
from cmbdet.batch.subject import (
    FAILED,
    BatchRow,
    DetectSettings,
    Job,
    LoadedModel,
    failed_row,
    loaded_model,
)
from cmbdet.detect.shipped import MODELS_DIR
from cmbdet.io.writing import check_writable, folder_lock, real_output_path, write_atomic

if TYPE_CHECKING:
    from cmbdet.io.dataset import SubjectFiles, UnusableSubject

Runner = Callable[[list[Job], DetectSettings], Iterator[BatchRow]]
"""Runs jobs and yields one row per job as it finishes (in any order). One that has a
``started(settings, subjects)`` method (a context manager that yields the
:class:`~cmbdet.batch.subject.LoadedModel`) loads the model itself, before the batch is
planned."""


def run_batch(
    subjects: list[SubjectFiles],
    out_dir: Path,
    settings: DetectSettings = DetectSettings(),
    *,
    runner: Runner = in_this_process,
    overwrite: bool = False,
    progress: bool | None = None,
    debug: bool = False,
    unusable: Sequence[UnusableSubject] = (),
    title: str | None = None,
    bids_derivatives: bool = False,
) -> BatchSummary:
    """Detect every subject into ``out_dir/sub-<id>/``; log each outcome in ``batch.csv``.

    Args:
        subjects: from :func:`cmbdet.io.inputs.discover_inputs`.
        out_dir: empty, missing, or an earlier batch's folder (resumed: subjects with
            complete outputs are skipped, others redone).
        settings: what every subject is detected with.
        runner: where the subjects run: :func:`cmbdet.batch.local.in_this_process` (the
            default), :class:`cmbdet.batch.local.WorkerProcesses` or
            :func:`cmbdet.batch.dask.on_dask`.
        overwrite: redo subjects whose outputs are complete too.
        progress: a progress bar on stderr; None: a bar when stderr is a terminal, else a
            line per subject.
        debug: print the traceback of unexpected failures.
        unusable: subjects that discovery found but cannot run: logged as failed (bad
            input), the others still run.
        title: the cohort's name on its page (the dataset's); None: the output folder's.
        bids_derivatives: also write ``derivatives/cmbdet/`` (:mod:`cmbdet.batch.derivatives`).

    Raises:
        InputError: ``out_dir`` holds files a batch did not write or holds the inputs, another
            batch holds its lock, or the model cannot be loaded (before any subject runs).
    """
    out_dir = real_output_path(out_dir)
    check_batch_folder(out_dir, subjects, [settings.model_dir, MODELS_DIR], overwrite)
    check_writable(out_dir)
    # loaded first, so that a bad --model or --device is one error, not one per subject (by
    # the local workers, when there are some: then this process never imports PyTorch)
    pending = pending_subjects(subjects, out_dir, overwrite)
    with _model_loaded(runner, settings, pending) as model:
        out_dir.mkdir(parents=True, exist_ok=True)
        with folder_lock(out_dir):  # one batch at a time: a second one is refused, exit 2
            rows, jobs = plan_batch(subjects, out_dir, made_with(model, settings), overwrite)
            for bad in unusable:
                rows[bad.subject_id] = failed_row(bad.subject_id, str(bad.problem), bad_input=True)
                print(
                    f"sub-{bad.subject_id}: failed: {rows[bad.subject_id].error}", file=sys.stderr
                )
            remove_leftovers(out_dir)
            monitor = Progress(len(jobs), progress, debug)
            _run_jobs(jobs, rows, out_dir, runner(jobs, settings), monitor)
            ordered = _finish(out_dir, subjects, rows, title or out_dir.name)
            if bids_derivatives:
                write_bids_derivatives(out_dir, ordered, str(model.spec.info.get("name") or ""))
    return BatchSummary(ordered, out_dir)


def _finish(
    out_dir: Path, subjects: list[SubjectFiles], rows: dict[str, BatchRow], title: str
) -> list[BatchRow]:
    """Write the batch's tables and cohort page once every subject has run; the rows in
    subject order."""
    remove_leftovers(out_dir)  # staging folders of workers that died
    lost = [s.subject_id for s in subjects if s.subject_id not in rows]
    for subject_id in lost:  # never silently: a runner that lost a subject shows here
        rows[subject_id] = failed_row(subject_id, "unexpected: no result came back for it")
    ordered = [rows[subject_id] for subject_id in sorted(rows)]
    write_batch_tables(out_dir, ordered)
    _write_cohort_report(out_dir, ordered, title)
    return ordered


def _model_loaded(
    runner: Runner, settings: DetectSettings, subjects: int
) -> contextlib.AbstractContextManager[LoadedModel]:
    """The batch's model, loaded where its runner loads it: a runner with a ``started`` method
    (:class:`cmbdet.batch.local.WorkerProcesses`) starts its workers and has them load it, for
    the block; any other in this process."""
    started = getattr(runner, "started", None)
    if started is not None:
        return started(settings, subjects)
    return contextlib.nullcontext(loaded_model(settings))


def _run_jobs(
    jobs: list[Job],
    rows: dict[str, BatchRow],
    out_dir: Path,
    results: Iterator[BatchRow],
    monitor: Progress,
) -> None:
    """Collect the runner's rows into ``rows``, logging each as it comes."""
    write_batch_tables(out_dir, rows.values())
    try:
        for row in results:
            rows[row.subject] = row
            write_batch_tables(out_dir, rows.values())
            monitor.report(row)
    finally:
        monitor.close()


class Progress:
    """What a batch says on stderr as subjects finish: a progress bar on a terminal; else
    (under nohup, SLURM, a pipe) one line per subject with the count and the time left. A
    failed subject always gets a line of its own."""

    def __init__(self, total: int, progress: bool | None, debug: bool):
        terminal = sys.stderr.isatty()
        self.total, self.done, self.debug = total, 0, debug
        self.lines = progress is None and not terminal
        self.started = time.perf_counter()
        self.bar = tqdm(
            total=total,
            desc="detect",
            unit="subject",
            file=sys.stderr,
            disable=not (terminal if progress is None else progress),
        )

    def report(self, row: BatchRow) -> None:
        self.done += 1
        seconds = "" if row.seconds is None else f" in {row.seconds:.1f} s"
        self.bar.set_postfix_str(f"sub-{row.subject} {row.status}{seconds}", refresh=False)
        self.bar.update()
        if row.status == FAILED:
            tqdm.write(f"sub-{row.subject}: failed: {row.error}", file=sys.stderr)
            if self.debug and row.details:
                tqdm.write(row.details.rstrip(), file=sys.stderr)
        elif self.lines:
            print(
                f"cmbdet: {self.done}/{self.total} sub-{row.subject} {row.status}{seconds}; "
                f"{self._time_left()}",
                file=sys.stderr,
                flush=True,
            )

    def _time_left(self) -> str:
        left = self.total - self.done
        if not left:
            return "all done"
        seconds = (time.perf_counter() - self.started) / self.done * left
        return f"about {_duration(seconds)} left"

    def close(self) -> None:
        self.bar.close()


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{max(seconds, 1):.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _write_cohort_report(out_dir: Path, rows: list[BatchRow], title: str) -> None:
    """The cohort page ``out_dir/report.html``: every subject's row, linking its own report
    (written at once, like every other output)."""
    from cmbdet.report.cohort import CohortRow, cohort_page  # imports numpy: not at load

    cohort = [
        CohortRow(
            f"sub-{r.subject}",
            r.status,
            r.cmb_count,
            r.candidates,
            r.seconds,
            r.error or None,
            f"{r.outputs}/report.html" if r.outputs else None,
            r.counts,
            r.model,
            r.threshold,
            r.qc_flags,
            r.input_mode,
        )
        for r in rows
    ]
    write_atomic(out_dir / COHORT_REPORT, cohort_page(cohort, title))
