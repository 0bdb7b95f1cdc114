"""``cmbdet detect --dataset``: every subject of a dataset, resumable, in parallel if asked.

One subject is one task. :func:`detect_subject` loads the model once per process, detects,
writes the subject's outputs atomically (:func:`cmbdet.pipeline.outputs.write_outputs`) and
returns a :class:`BatchRow`; a bad subject never raises. :func:`run_batch` skips subjects whose
outputs are complete, runs the others in this process, in local worker processes, or on a Dask
cluster (:mod:`cmbdet.pipeline.distributed`), and rewrites ``batch.csv`` atomically after each
subject, so a killed run leaves a valid log and a rerun continues where it stopped.

This module imports neither numpy nor torch when it is imported: a spawned worker process
imports it first and must cap its thread pools before those libraries start them.
"""

from __future__ import annotations

import concurrent.futures
import csv
import io
import json
import multiprocessing
import os
import sys
import threading
import time
import traceback
import warnings
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from cmbdet.errors import InputError
from cmbdet.io.writing import (
    LOCK_NAME,
    check_not_inputs,
    check_writable,
    folder_lock,
    is_staging_name,
    real_output_path,
    remove_folders,
    write_atomic,
)
from cmbdet.processes import exit_with_parent

if TYPE_CHECKING:
    from cmbdet.io.dataset import SubjectFiles, UnusableSubject
    from cmbdet.pipeline.detector import Detector

BATCH_LOG = "batch.csv"
COHORT_REPORT = "report.html"
LOG_COLUMNS = ("subject", "status", "cmb_count", "candidates", "seconds", "error", "outputs")
OUTPUT_FILES = (  # a subject's outputs (DESIGN.md): all there means complete
    "detections.csv",
    "candidates.csv",
    "cmb_labels.nii.gz",
    "report.html",
    "run.json",
)
DONE, SKIPPED, FAILED = "done", "skipped", "failed"
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "CMBDET_THREADS")
WORKER_DEATHS_ALLOWED = 2  # a subject whose worker process died this often is failed

Job = tuple["SubjectFiles", Path]  # a subject's input files and its output folder


@dataclass(frozen=True)
class DetectSettings:
    """What every subject of a batch is detected with: the ``detect`` options."""

    model_dir: Path | None = None  # None: the model shipped with the cmbdet that runs the task
    threshold: float | None = None  # None: the model's operating threshold
    phase_units: str = "auto"
    handedness: str = "auto"
    phase_kind: str = "auto"
    device: str = "auto"  # where the networks run in each worker: auto, cpu, cuda, cuda:N
    precision: str = "auto"  # their number format: auto, float32, bfloat16

    def detect_options(self) -> dict[str, Any]:
        """Keyword arguments of :meth:`Detector.detect`."""
        return {
            "threshold": self.threshold,
            "phase_units": self.phase_units,
            "handedness": self.handedness,
            "phase_kind": self.phase_kind,
        }


@dataclass(frozen=True)
class BatchRow:
    """The outcome of one subject: a row of ``batch.csv`` and of the cohort report.

    Attributes:
        subject: subject id, without ``sub-``.
        status: ``done`` (detected in this run), ``skipped`` (complete outputs from an earlier
            run), or ``failed``.
        cmb_count: detections at the operating threshold; None when failed.
        candidates: stage-1 candidates; None when failed.
        seconds: wall time of the subject's detection and writing, s (for a skipped subject
            as logged when it was done; None when unknown).
        error: one line for a failed subject: ``<file>: <problem>`` for bad input,
            ``unexpected <ExceptionType>: <message>`` otherwise; "" when not failed.
        outputs: the subject's output folder relative to the batch folder; "" when failed.
        bad_input: failed because of its input (exit code 2) rather than unexpectedly (1).
        details: traceback of an unexpected failure (shown with ``--debug``, not logged).
    """

    subject: str
    status: str
    cmb_count: int | None = None
    candidates: int | None = None
    seconds: float | None = None
    error: str = ""
    outputs: str = ""
    bad_input: bool = False
    details: str = ""

    def cells(self) -> list[str]:
        """The row as ``batch.csv`` cells, in :data:`LOG_COLUMNS` order."""
        return [
            self.subject,
            self.status,
            "" if self.cmb_count is None else str(self.cmb_count),
            "" if self.candidates is None else str(self.candidates),
            "" if self.seconds is None else f"{self.seconds:.2f}",
            self.error,
            self.outputs,
        ]


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

    def line(self) -> str:
        """The one-line summary printed at the end of a batch."""
        return (
            f"{self.count(DONE)} of {len(self.rows)} subjects done, {self.count(FAILED)} failed, "
            f"{self.count(SKIPPED)} skipped (already complete); outputs in {self.out_dir}; "
            f"log in {self.out_dir / BATCH_LOG}"
        )


# ----------------------------------------------------------------------------- one subject


def detect_subject(subject: SubjectFiles, out_dir: Path, settings: DetectSettings) -> BatchRow:
    """Detect one subject and write its outputs into ``out_dir``; never raises for a bad subject.

    Bad input and unexpected exceptions become a ``failed`` row (an interrupt still
    propagates). Idempotent: run again, it replaces what an earlier attempt wrote, so a task
    that a cluster retries after a worker died cannot leave two results.
    """
    from cmbdet.pipeline.outputs import write_outputs  # imports torch: after the thread caps

    started = time.perf_counter()
    try:
        detector = _process_detector(settings)
        result = detector.detect(
            subject.swi,
            subject.phase,
            subject.magnitude,
            subject.brainmask,
            **settings.detect_options(),
        )
        write_outputs(out_dir, result, result.reference, overwrite=True)
    except InputError as error:
        return failed_row(subject.subject_id, str(error), started, bad_input=True)
    except Exception as error:
        message = f"unexpected {type(error).__name__}: {error}"
        return failed_row(subject.subject_id, message, started, details=traceback.format_exc())
    return BatchRow(
        subject=subject.subject_id,
        status=DONE,
        cmb_count=len(result.detections),
        candidates=len(result.candidates),
        seconds=time.perf_counter() - started,
        outputs=Path(out_dir).name,
    )


def failed_row(
    subject_id: str,
    message: str,
    started: float | None = None,
    *,
    bad_input: bool = False,
    details: str = "",
) -> BatchRow:
    """A ``failed`` row; ``started`` is the ``time.perf_counter()`` when the subject began."""
    return BatchRow(
        subject=subject_id,
        status=FAILED,
        seconds=None if started is None else time.perf_counter() - started,
        error=" ".join(message.split()),  # one line in the log
        bad_input=bad_input,
        details=details,
    )


_detectors: dict[tuple[Path | None, str, str], Detector] = {}
_detectors_lock = threading.Lock()  # a Dask worker may run several tasks on threads


def _process_detector(settings: DetectSettings) -> Detector:
    """The model, loaded once per process."""
    key = settings.model_dir, settings.device, settings.precision
    with _detectors_lock:
        if key not in _detectors:
            from cmbdet.pipeline.detector import Detector

            _detectors[key] = Detector.load(*key)
        return _detectors[key]


# ----------------------------------------------------------------------------- the batch


def run_batch(
    subjects: list[SubjectFiles],
    out_dir: Path,
    settings: DetectSettings = DetectSettings(),
    *,
    workers: int = 1,
    dask_client: Any = None,
    overwrite: bool = False,
    progress: bool | None = None,
    debug: bool = False,
    unusable: Sequence[UnusableSubject] = (),
) -> BatchSummary:
    """Detect every subject into ``out_dir/sub-<id>/``; log each outcome in ``batch.csv``.

    Args:
        subjects: from :func:`cmbdet.io.inputs.discover_inputs`.
        out_dir: empty, missing, or an earlier batch's folder (resumed: subjects with
            complete outputs are skipped, others redone).
        workers: local worker processes (each gets ``cores // workers`` math threads);
            ignored with ``dask_client``.
        dask_client: a ``distributed.Client``: run the subjects on its cluster instead.
        overwrite: redo subjects whose outputs are complete too.
        progress: a progress bar on stderr; None: a bar when stderr is a terminal, else a
            line per subject.
        debug: print the traceback of unexpected failures.
        unusable: subjects that discovery found but cannot run: logged as failed (bad
            input), the others still run.

    Raises:
        InputError: ``out_dir`` holds files a batch did not write or holds the inputs, or the
            model cannot be loaded (before any subject runs).
    """
    out_dir = real_output_path(out_dir)
    check_batch_folder(out_dir, subjects, [settings.model_dir])
    # loaded here first, so that a bad --model or --device is one error, not one per subject
    detector = _process_detector(settings)
    check_writable(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with folder_lock(out_dir):  # one batch at a time: a second one is refused, exit 2
        return _run_locked(
            subjects,
            unusable,
            out_dir,
            settings,
            detector,
            workers=workers,
            dask_client=dask_client,
            overwrite=overwrite,
            progress=progress,
            debug=debug,
        )


def _run_locked(
    subjects: list[SubjectFiles],
    unusable: Sequence[UnusableSubject],
    out_dir: Path,
    settings: DetectSettings,
    detector: Detector,
    *,
    workers: int,
    dask_client: Any,
    overwrite: bool,
    progress: bool | None,
    debug: bool,
) -> BatchSummary:
    """:func:`run_batch` once it holds the folder's lock."""
    rows, jobs = _plan(subjects, out_dir, _made_with(detector, settings), overwrite)
    for bad in unusable:
        rows[bad.subject_id] = failed_row(bad.subject_id, str(bad.problem), bad_input=True)
        print(f"sub-{bad.subject_id}: failed: {rows[bad.subject_id].error}", file=sys.stderr)
    remove_leftovers(out_dir)
    log = out_dir / BATCH_LOG
    write_batch_log(log, rows.values())

    if dask_client is not None:
        from cmbdet.pipeline.distributed import run_on_dask

        results = run_on_dask(dask_client, jobs, settings)
    elif min(workers, len(jobs)) > 1:
        results = run_in_pool(jobs, settings, min(workers, len(jobs)), debug)
    else:
        results = (detect_subject(subject, folder, settings) for subject, folder in jobs)
    monitor = Progress(len(jobs), progress, debug)
    try:
        for row in results:
            rows[row.subject] = row
            write_batch_log(log, rows.values())
            monitor.report(row)
    finally:
        monitor.close()
    remove_leftovers(out_dir)  # staging folders of workers that died

    lost = [s.subject_id for s in subjects if s.subject_id not in rows]
    for subject_id in lost:  # never silently: a runner that lost a subject shows here
        rows[subject_id] = failed_row(subject_id, "unexpected: no result came back for it")
    if lost:
        write_batch_log(log, rows.values())
    ordered = [rows[subject_id] for subject_id in sorted(rows)]
    _write_cohort_report(out_dir, ordered)
    return BatchSummary(ordered, out_dir)


def _plan(
    subjects: list[SubjectFiles], out_dir: Path, made_with: tuple, overwrite: bool
) -> tuple[dict[str, BatchRow], list[Job]]:
    """Rows of the subjects to skip (complete outputs), and jobs for the others."""
    earlier = read_batch_log(out_dir / BATCH_LOG)
    skipped: dict[str, BatchRow] = {}
    jobs: list[Job] = []
    for subject in subjects:
        folder = out_dir / f"sub-{subject.subject_id}"  # out_dir is real; no link inside it
        record = None if overwrite else complete_record(folder)
        if record is None:
            jobs.append((_absolute(subject), folder))
            continue
        if _made_with_record(record) != made_with:
            raise InputError(
                folder,
                "was detected with another model, threshold or precision; rerun with the "
                "same --model, --threshold and --precision, or redo every subject with "
                "--overwrite",
            )
        skipped[subject.subject_id] = skipped_row(folder, record, earlier.get(subject.subject_id))
    return skipped, jobs


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


def _write_cohort_report(out_dir: Path, rows: list[BatchRow]) -> None:
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
        )
        for r in rows
    ]
    write_atomic(out_dir / COHORT_REPORT, cohort_page(cohort, out_dir.name))


def _absolute(subject: SubjectFiles) -> SubjectFiles:
    """The subject with absolute paths, valid on a worker whose working folder differs."""
    paths = {
        spec.name: getattr(subject, spec.name).resolve()
        for spec in fields(subject)
        if isinstance(getattr(subject, spec.name), Path)
    }
    return replace(subject, **paths)


# ----------------------------------------------------------------------------- local workers


def run_in_pool(
    jobs: list[Job], settings: DetectSettings, workers: int, debug: bool = False
) -> Iterator[BatchRow]:
    """Rows of ``jobs`` run in ``workers`` spawned processes, as they finish.

    Only ``workers`` subjects are handed out at a time, so a worker process that dies (killed,
    out of memory) loses only the subjects then running: they are retried in a fresh pool, and
    failed once their worker has died :data:`WORKER_DEATHS_ALLOWED` times.
    """
    waiting = deque(jobs)
    deaths: Counter[str] = Counter()
    while waiting:
        lost: list[Job] = []
        with _worker_pool(workers, debug) as pool:
            running: dict[concurrent.futures.Future, Job] = {}
            while (waiting and not lost) or running:
                while waiting and not lost and len(running) < workers:
                    job = waiting.popleft()
                    try:
                        running[pool.submit(detect_subject, *job, settings)] = job
                    except BrokenProcessPool:  # a worker died since the last result
                        waiting.appendleft(job)
                        break
                if not running:
                    break
                finished, _ = concurrent.futures.wait(
                    running, return_when=concurrent.futures.FIRST_COMPLETED
                )
                for future in finished:
                    job = running.pop(future)
                    try:
                        yield future.result()
                    except BrokenProcessPool:
                        lost.append(job)
        for subject, folder in lost:
            deaths[subject.subject_id] += 1
            if deaths[subject.subject_id] < WORKER_DEATHS_ALLOWED:
                waiting.appendleft((subject, folder))
            else:
                yield failed_row(
                    subject.subject_id,
                    f"unexpected: the worker process died {WORKER_DEATHS_ALLOWED} times while "
                    "detecting this subject (out of memory?)",
                )


def _worker_pool(workers: int, debug: bool = False) -> concurrent.futures.ProcessPoolExecutor:
    # spawn, not fork: a forked copy of a process that has started torch's threads can hang
    return concurrent.futures.ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=start_worker,
        initargs=(threads_per_worker(workers), os.getpid(), debug),
    )


def start_worker(threads: int, parent: int, debug: bool = False) -> None:
    """Set up a worker process: cap its math threads, exit when ``parent`` does (a batch
    killed by the OOM killer or ``kill -9`` leaves no worker behind), and keep Python's
    warnings off stderr unless ``debug``."""
    limit_threads(threads)
    exit_with_parent(parent)
    if not debug:
        warnings.simplefilter("ignore")


def threads_per_worker(workers: int) -> int:
    """Math threads each of ``workers`` processes may use, so that together they fit the cores."""
    return max(1, available_cores() // workers)


def available_cores() -> int:
    """Cores this process may run on (a SLURM or container CPU set, else every core)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def limit_threads(threads: int) -> None:
    """Cap this process's math thread pools at ``threads``.

    The variables only bind libraries loaded afterwards (a fresh worker process);
    ``torch.set_num_threads`` also covers a torch that is already loaded.
    """
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    import torch

    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- the folder


def check_batch_folder(
    out_dir: Path, subjects: list[SubjectFiles], inputs: Iterable[Path | None] = ()
) -> None:
    """Refuse an output folder that a batch must not write into, before any work.

    A batch folder holds ``batch.csv``, ``report.html``, ``sub-*/`` folders of outputs and the
    staging folders, temporaries and lock of unfinished runs. Refused: a folder that holds the
    subjects' input files or any of ``inputs`` (e.g. the model); anything else in it; a link
    in it (never followed: it could lead outside the folder); and a subject's folder that
    holds anything but its outputs (it is replaced as a whole when the subject is redone).

    Raises:
        InputError: naming the folder and the first problems.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(out_dir, "output path exists and is not a folder")
    paths = [s.swi for s in subjects] + [s.phase for s in subjects]
    paths += [s.magnitude for s in subjects] + [s.brainmask for s in subjects]
    check_not_inputs(out_dir, [*paths, *inputs], replaced=False)
    if not out_dir.is_dir():
        return
    links = sorted(p.name for p in out_dir.iterdir() if p.is_symlink())
    if links:
        raise InputError(
            out_dir / links[0], "is a symbolic link; cmbdet never writes through links in --out"
        )
    foreign = sorted(p.name for p in out_dir.iterdir() if not _written_by_batch(p))
    if foreign:
        raise InputError(
            out_dir,
            f"output folder holds files that are not from a cmbdet batch ({_some(foreign)}); "
            "choose another --out",
        )
    for subject in subjects:
        folder = out_dir / f"sub-{subject.subject_id}"
        if not folder.is_dir():
            continue
        other = sorted(p.name for p in folder.iterdir() if not _is_output_file(p))
        if other:
            raise InputError(
                folder,
                f"holds files that cmbdet did not write ({_some(other)}); move them, or "
                "choose another --out",
            )


def _some(names: list[str]) -> str:
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


def _is_output_file(path: Path) -> bool:
    return path.name in OUTPUT_FILES and path.is_file() and not path.is_symlink()


def _written_by_batch(path: Path) -> bool:
    if path.is_symlink():
        return False
    if path.is_dir():
        return path.name.startswith("sub-") or is_staging_name(path.name)
    return path.name in (BATCH_LOG, COHORT_REPORT, LOCK_NAME) or path.name.startswith(
        (f".{BATCH_LOG}.", f".{COHORT_REPORT}.")
    )


def remove_leftovers(out_dir: Path) -> None:
    """Delete the staging folders and temporaries of writes that never finished (never
    through a link).

    Only one batch may write into a folder at a time (:func:`run_batch` holds its lock):
    this would delete a running one's.
    """
    for path in Path(out_dir).iterdir():
        if path.is_symlink():
            continue
        if path.is_dir() and is_staging_name(path.name):
            remove_folders([path])
        elif path.is_file() and path.name.startswith((f".{BATCH_LOG}.", f".{COHORT_REPORT}.")):
            path.unlink(missing_ok=True)


def complete_record(folder: Path) -> dict | None:
    """``run.json`` of a subject folder with complete outputs; None when incomplete.

    Complete means every output file is there and run.json reads: ``write_outputs`` writes
    run.json last into a staging folder and renames the whole folder into place, so a killed
    run never leaves a folder that passes this test.
    """
    if not all((folder / name).is_file() for name in OUTPUT_FILES):
        return None
    try:
        record = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) else None


def skipped_row(folder: Path, record: dict, earlier: BatchRow | None = None) -> BatchRow:
    """The row of a subject whose complete outputs are kept.

    Args:
        folder: ``out_dir/sub-<id>``.
        record: its ``run.json``.
        earlier: its row in the previous ``batch.csv``, for ``seconds``.
    """
    return BatchRow(
        subject=folder.name.removeprefix("sub-"),
        status=SKIPPED,
        cmb_count=_count(record.get("detections")),
        candidates=_count(record.get("candidates")),
        seconds=earlier.seconds if earlier is not None and earlier.status != FAILED else None,
        outputs=folder.name,
    )


def _made_with(detector: Detector, settings: DetectSettings) -> tuple:
    """(weights checksums, threshold, precision) that this batch's outputs record in run.json
    (a cohort is detected in one precision: bfloat16 and float32 scores differ slightly)."""
    checksums = {
        stage: detector.info[stage]["weights"]["sha256"]
        for stage in ("stage1", "stage2")
        if stage in detector.info
    }
    threshold = detector.threshold if settings.threshold is None else float(settings.threshold)
    return checksums, threshold, detector.precision


def _made_with_record(record: dict) -> tuple:
    model = record.get("model")
    checksums = model.get("sha256") if isinstance(model, dict) else None
    # outputs of cmbdet before --precision were float32
    return checksums, record.get("threshold"), record.get("precision", "float32")


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# ----------------------------------------------------------------------------- batch.csv


def write_batch_log(path: Path, rows: Iterable[BatchRow]) -> None:
    """``batch.csv``, one row per subject sorted by id; replaced atomically (temp + rename)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(LOG_COLUMNS)
    for row in sorted(rows, key=lambda row: row.subject):
        writer.writerow(row.cells())
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
            )
        return rows
    except (OSError, UnicodeDecodeError, KeyError, ValueError, csv.Error):
        return {}
