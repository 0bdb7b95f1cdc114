"""One subject of a batch: the task a worker runs (:func:`detect_subject`), what every subject
is detected with (:class:`DetectSettings`), and its outcome (:class:`BatchRow`).

This module imports neither numpy nor torch when it is imported: a spawned worker process
imports it first and must cap its thread pools before those libraries start them.
"""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cmbdet.errors import InputError

if TYPE_CHECKING:
    from cmbdet.detect.detector import Detector
    from cmbdet.detect.model_spec import ModelSpec
    from cmbdet.io.dataset import SubjectFiles

DONE, SKIPPED, FAILED = "done", "skipped", "failed"
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
    backend: str = "auto"  # what runs them: auto, torch, onnx
    echo_times_ms: tuple[float, ...] = ()  # multi-echo input; () reads the sidecars
    field_strength_t: float | None = None  # None reads the sidecars

    def detect_options(self) -> dict[str, Any]:
        """Keyword arguments of :meth:`Detector.detect` and :meth:`Detector.detect_subject`."""
        from cmbdet.detect.input_mode import AcquisitionOptions

        return {
            "threshold": self.threshold,
            "phase_units": self.phase_units,
            "handedness": self.handedness,
            "phase_kind": self.phase_kind,
            "acquisition": AcquisitionOptions(self.echo_times_ms, self.field_strength_t),
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
        model: name of the model that made the outputs (run.json); "" when failed.
        counts: the detections by region and size (run.json ``cmb_counts``); None when
            failed or made by a cmbdet that did not count them.
        qc_flags: what to check by eye (run.json ``qc_flags``).
        threshold: the stage-2 operating threshold the outputs were made at; None when failed.
        input_mode: which files the subject had and what ran (run.json ``input_mode``:
            ``swi+phase``, ``magnitude+phase``, ``multi-echo``); "" when failed.
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
    model: str = ""
    counts: dict[str, int] | None = None
    qc_flags: tuple[str, ...] = ()
    threshold: float | None = None
    input_mode: str = ""

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
            self.input_mode,
            "; ".join(self.qc_flags),
        ]


def detect_subject(subject: SubjectFiles, out_dir: Path, settings: DetectSettings) -> BatchRow:
    """Detect one subject and write its outputs into ``out_dir``; never raises for a bad subject.

    Bad input and unexpected exceptions become a ``failed`` row (an interrupt still
    propagates). Idempotent: run again, it replaces what an earlier attempt wrote, so a task
    that a cluster retries after a worker died cannot leave two results.
    """
    from cmbdet.detect.outputs import write_outputs

    started = time.perf_counter()
    try:
        detector = loaded_detector(settings)
        result = detector.detect_subject(subject, **settings.detect_options())
        record = write_outputs(out_dir, result, result.reference, overwrite=True)
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
        **recorded_outcome(record),
    )


def recorded_outcome(record: dict) -> dict[str, Any]:
    """The :class:`BatchRow` fields that a subject's ``run.json`` record holds: ``model``,
    ``counts``, ``qc_flags``, ``threshold`` and ``input_mode`` (what an older or damaged
    record lacks is left empty; records from before input modes were ``swi+phase``)."""
    model = record.get("model")
    mode = record.get("input_mode", "swi+phase")
    counts = record.get("cmb_counts")
    flags = record.get("qc_flags")
    threshold = record.get("threshold")
    return {
        "model": str(model.get("name") or "") if isinstance(model, dict) else "",
        "counts": counts if isinstance(counts, dict) else None,
        "qc_flags": tuple(str(f) for f in flags) if isinstance(flags, list) else (),
        "threshold": float(threshold) if isinstance(threshold, int | float) else None,
        "input_mode": mode if isinstance(mode, str) else "",
    }


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


@dataclass(frozen=True)
class LoadedModel:
    """What a batch needs to know of its model where it is loaded (in this process, or in a
    worker process that sends it back): its record and the number format it runs in."""

    spec: ModelSpec
    precision: str  # "float32" or "bfloat16", as run.json records it


def loaded_model(settings: DetectSettings) -> LoadedModel:
    """Load the model of ``settings`` in this process (:func:`loaded_detector`) and say what
    it is (a worker process's first task, whose answer the batch plans with).

    Raises:
        InputError: a bad model folder, device or precision.
    """
    detector = loaded_detector(settings)
    return LoadedModel(detector.spec, detector.precision)


def loaded_detector(settings: DetectSettings) -> Detector:
    """The model of ``settings``, loaded once per process (and kept)."""
    key = settings.model_dir, settings.device, settings.precision, settings.backend
    with _detectors_lock:
        if key not in _detectors:
            from cmbdet.detect.detector import Detector

            model, device, precision, backend = key
            _detectors[key] = Detector.load(model, device, precision, backend=backend)
        return _detectors[key]
