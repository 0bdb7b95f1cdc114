"""A batch's output folder: what it may hold, what an earlier run left complete (to skip) or
unfinished (to clean), and whether it was made with the same model."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

from cmbdet.batch.derivatives import DERIVATIVES
from cmbdet.batch.log import BATCH_LOG, BATCH_TABLES, read_batch_log
from cmbdet.batch.subject import (
    FAILED,
    SKIPPED,
    BatchRow,
    DetectSettings,
    Job,
    LoadedModel,
    recorded_outcome,
)
from cmbdet.detect.input_mode import PHASE_FREE, input_mode
from cmbdet.detect.model_spec import read_model_spec
from cmbdet.detect.outputs import OUTPUT_FILES, REVIEW_FILES, foreign_files
from cmbdet.detect.shipped import phase_free_model_dir
from cmbdet.errors import InputError
from cmbdet.io.writing import LOCK_NAME, check_not_inputs, is_staging_name, remove_folders

if TYPE_CHECKING:
    from cmbdet.io.dataset import SubjectFiles


COHORT_REPORT = "report.html"


def plan_batch(
    subjects: list[SubjectFiles], out_dir: Path, made_with: dict, overwrite: bool
) -> tuple[dict[str, BatchRow], list[Job]]:
    """Rows of the subjects to skip (complete outputs), and jobs for the others; ``made_with``
    lists what the run's models record (:func:`made_with`): a complete subject made by
    another model than its mode now calls for is refused."""
    earlier = read_batch_log(out_dir / BATCH_LOG)
    skipped: dict[str, BatchRow] = {}
    jobs: list[Job] = []
    for subject in subjects:
        folder = out_dir / f"sub-{subject.subject_id}"  # out_dir is real; no link inside it
        record = None if overwrite else complete_record(folder)
        if record is None:
            jobs.append((absolute_paths(subject), folder))
            continue
        if _made_with_record(record) != _expected(subject, made_with):
            raise InputError(
                folder,
                "was detected with another --model, --threshold, --precision, --echo-times-ms "
                "or --field-strength; rerun with the same options, or redo every subject with "
                "--overwrite",
            )
        skipped[subject.subject_id] = skipped_row(folder, record, earlier.get(subject.subject_id))
    return skipped, jobs


def check_batch_folder(
    out_dir: Path,
    subjects: list[SubjectFiles],
    inputs: Iterable[Path | None] = (),
    overwrite: bool = False,
) -> None:
    """Refuse an output folder that a batch must not write into, before any work.

    A batch folder holds ``batch.csv``, ``cmb_counts.csv``, ``report.html``, ``sub-*/``
    folders of outputs, ``derivatives/`` (``--bids-derivatives``) and the staging folders,
    temporaries and lock of unfinished runs. Refused: a folder that holds the subjects' input
    files or any of ``inputs`` (e.g. the model); anything else in it; a link in it (never
    followed: it could lead outside the folder); and a subject's folder that holds anything
    but its outputs (it is replaced as a whole when the subject is redone), except a reader's
    review (``cmbdet review``) beside complete outputs that this run keeps (not ``overwrite``).

    Raises:
        InputError: naming the folder and the first problems.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(out_dir, "output path exists and is not a folder")
    paths = [path for subject in subjects for path in subject.image_files()]
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
        other = foreign_files(folder)
        kept = not overwrite and complete_record(folder) is not None
        reviewed = [name for name in other if _of_a_review(name)]
        if reviewed and not kept:
            raise InputError(
                folder,
                f"holds a reader's review ({_some(reviewed)}) that redoing the subject would "
                "delete; move it, or choose another --out",
            )
        other = [name for name in other if not _of_a_review(name)]
        if other:
            raise InputError(
                folder,
                f"holds files that cmbdet did not write ({_some(other)}); move them, or "
                "choose another --out",
            )


def _of_a_review(name: str) -> bool:
    """A reader's review file, or the temporary a stopped review left of one."""
    temporary = name.startswith(".") and name.endswith(".tmp")
    return name in REVIEW_FILES or (temporary and name[1:].startswith(REVIEW_FILES))


def _some(names: list[str]) -> str:
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


def _written_by_batch(path: Path) -> bool:
    if path.is_symlink():
        return False
    if path.is_dir():
        return (
            path.name.startswith("sub-") or path.name == DERIVATIVES or is_staging_name(path.name)
        )
    return path.name in (*BATCH_TABLES, COHORT_REPORT, LOCK_NAME) or _is_temporary(path.name)


def _is_temporary(name: str) -> bool:
    """A temporary of an atomic write of the batch's tables or cohort page."""
    return name.startswith(tuple(f".{table}." for table in (*BATCH_TABLES, COHORT_REPORT)))


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
        elif path.is_file() and _is_temporary(path.name):
            path.unlink(missing_ok=True)


def pending_subjects(subjects: list[SubjectFiles], out_dir: Path, overwrite: bool) -> int:
    """How many of ``subjects`` a batch into ``out_dir`` will run (all with ``overwrite``, else
    those without complete outputs): what its workers are counted for, before the model is
    loaded (:func:`plan_batch` then checks the complete ones were made with it)."""
    if overwrite:
        return len(subjects)
    return sum(complete_record(out_dir / f"sub-{s.subject_id}") is None for s in subjects)


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
        **recorded_outcome(record),
    )


def made_with(model: LoadedModel, settings: DetectSettings) -> dict:
    """What this batch's outputs record in run.json, one entry per model it may run, by input
    mode (None: the model; ``swi-only``, ``magnitude-only``: the phase-free models for subjects
    without phase): (weights checksums,
    threshold, precision, echo times and field strength given on the command line). A cohort
    is detected in one precision (bfloat16 and float32 scores differ slightly; other echo
    times choose another echo)."""
    specs = {None: model.spec}
    for mode in PHASE_FREE:
        folder = phase_free_model_dir(mode)
        if model.spec.preprocess.reads_phase and folder is not None:
            specs[mode] = read_model_spec(folder)
    given = (list(settings.echo_times_ms) or None, settings.field_strength_t)
    # --threshold is the given model's; a phase-free model keeps its own
    given_threshold = model.spec.threshold if settings.threshold is None else settings.threshold
    return {
        mode: (spec.checksums, float(given_threshold) if mode is None else spec.threshold,
               model.precision, given)
        for mode, spec in specs.items()
    }  # fmt: skip


def _expected(subject: SubjectFiles, made_with: dict) -> tuple:
    """What ``subject``'s outputs must record: the entry of :func:`made_with` for its input
    mode when it has no phase and a phase-free model serves it, else the model's."""
    try:
        mode = input_mode(subject)
    except InputError:  # it fails when it runs, with its reason
        mode = None
    return made_with.get(mode, made_with[None])


def _made_with_record(record: dict) -> tuple:
    model = record.get("model")
    checksums = model.get("sha256") if isinstance(model, dict) else None
    acquisition = record.get("acquisition")
    given = acquisition.get("given") if isinstance(acquisition, dict) else None
    given = given if isinstance(given, dict) else {}  # before input modes: nothing was given
    options = (given.get("echo_times_ms"), given.get("field_strength_t"))
    # outputs of cmbdet before --precision were float32
    return checksums, record.get("threshold"), record.get("precision", "float32"), options


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def absolute_paths(subject: SubjectFiles) -> SubjectFiles:
    """The subject with absolute paths, valid on a worker whose working folder differs."""
    paths = {
        spec.name: getattr(subject, spec.name).resolve()
        for spec in fields(subject)
        if isinstance(getattr(subject, spec.name), Path)
    }
    echoes = tuple(
        replace(echo, magnitude=echo.magnitude.resolve(), phase=echo.phase.resolve())
        for echo in subject.echoes
    )
    return replace(subject, **paths, echoes=echoes)
