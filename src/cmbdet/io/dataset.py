"""The on-disk dataset layout of DESIGN.md: ``sub-<id>/`` folders, their ground truth
(lesion tables: :mod:`cmbdet.io.lesions`) and ``dataset.json``."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cmbdet.errors import InputError
from cmbdet.io.lesions import Lesion, lesions_from_mask, read_lesions_csv
from cmbdet.io.writing import write_atomic

# ----------------------------------------------------------------------------- subjects


@dataclass(frozen=True)
class EchoFiles:
    """One echo of a multi-echo acquisition stored as separate files (BIDS ``echo-<n>``):
    its magnitude and phase, and its echo time from the sidecar (ms; None when unknown)."""

    magnitude: Path
    phase: Path
    echo_time_ms: float | None = None


@dataclass(frozen=True)
class SubjectFiles:
    """The input files of one subject; optional ones are None when absent.

    Which of ``swi``, ``phase``, ``magnitude`` and ``echoes`` are given decides the input
    mode (:mod:`cmbdet.detect.input_mode`); a dataset in the cmbdet layout has ``swi`` or
    ``magnitude``, and ``phase`` unless it is for the phase-free model. ``magnitude`` and
    ``phase`` may each be a 4D stack of echoes.
    """

    subject_id: str
    swi: Path | None
    phase: Path | None
    magnitude: Path | None = None
    brainmask: Path | None = None
    labels: Path | None = None
    lesions_csv: Path | None = None
    echoes: tuple[EchoFiles, ...] = ()

    def image_files(self) -> list[Path]:
        """Every image file the subject reads (for the checks that outputs never replace
        an input)."""
        paths = [self.swi, self.phase, self.magnitude, self.brainmask, self.labels]
        paths += [p for echo in self.echoes for p in (echo.magnitude, echo.phase)]
        return [p for p in paths if p is not None]


@dataclass(frozen=True)
class UnusableSubject:
    """A subject that a dataset lists but that cannot run (a batch logs it as failed and runs
    the others): its id and the problem, naming the file or folder."""

    subject_id: str
    problem: InputError


MAX_SUBJECT_ID = 128  # bytes (UTF-8): sub-<id> and its staging names stay within 255 bytes


def check_subject_id(subject_id: str) -> str:
    """``subject_id`` without ``sub-``, if it can name a folder on every system.

    Raises:
        ValueError: empty, a path (``/``, ``\\``, ``.``, ``..``), control characters
            (newlines, NUL) or longer than :data:`MAX_SUBJECT_ID` bytes (UTF-8).
    """
    subject_id = subject_id.removeprefix("sub-")
    if not subject_id or "/" in subject_id or "\\" in subject_id or subject_id in (".", ".."):
        raise ValueError(f"invalid subject id {subject_id!r}")
    if any(ord(c) < 32 or ord(c) == 127 for c in subject_id):
        raise ValueError(f"invalid subject id {subject_id!r}: it holds control characters")
    size = len(subject_id.encode("utf-8"))
    if size > MAX_SUBJECT_ID:
        raise ValueError(
            f"invalid subject id {subject_id[:20]!r}...: {size} bytes in UTF-8, at most "
            f"{MAX_SUBJECT_ID}"
        )
    return subject_id


def printable(text: str) -> str:
    """``text`` with control characters shown as ``?`` (for logs of ids that are refused)."""
    return "".join("?" if ord(c) < 32 or ord(c) == 127 else c for c in text)


def find_subjects(dataset_dir: str | Path) -> list[SubjectFiles]:
    """List the subjects of a dataset folder, sorted by id.

    Raises:
        InputError: the folder is missing or has no ``sub-*`` folders, or a subject has
            neither ``swi.nii.gz`` nor ``magnitude.nii.gz`` (the missing SWI is named).
    """
    subjects, unusable = scan_subjects(dataset_dir)
    if unusable:
        raise unusable[0].problem
    return subjects


def scan_subjects(dataset_dir: str | Path) -> tuple[list[SubjectFiles], list[UnusableSubject]]:
    """The usable subjects of a dataset folder and those that cannot run, each sorted by id.

    Raises:
        InputError: the folder is missing or has no ``sub-*`` folders.
    """
    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():
        raise InputError(dataset_dir, "dataset folder not found")
    folders = sorted(p for p in dataset_dir.glob("sub-*") if p.is_dir())
    if not folders:
        raise InputError(dataset_dir, "dataset folder has no sub-* subject folders")
    subjects, unusable = [], []
    for folder in folders:
        try:
            subjects.append(_subject_files(folder))
        except InputError as problem:
            unusable.append(UnusableSubject(printable(folder.name.removeprefix("sub-")), problem))
    return sorted(subjects, key=lambda s: s.subject_id), unusable


def check_phase_given(subjects: Iterable[SubjectFiles]) -> None:
    """Refuse, before any work, subjects without phase where a model that reads phase is
    trained, calibrated or cross-validated (its thresholds and folds must not mix in another
    model's scores).

    Raises:
        InputError: naming the first such subject's image.
    """
    for subject in subjects:
        if subject.phase is None and not subject.echoes:
            raise InputError(
                subject.swi or subject.magnitude,
                "has no phase: a model that reads phase is trained and calibrated on images "
                "with their phase (train --phase-free makes a model that needs none)",
            )


def _subject_files(folder: Path) -> SubjectFiles:
    try:
        subject_id = check_subject_id(folder.name)
    except ValueError as error:
        raise InputError(folder, str(error)) from None
    swi, magnitude = _nifti_in(folder, "swi"), _nifti_in(folder, "magnitude")
    if swi is None and magnitude is None:
        raise InputError(
            folder / "swi.nii.gz",
            "required swi file is missing (a magnitude.nii.gz can stand in for it)",
        )
    lesions_csv = folder / "lesions.csv"
    return SubjectFiles(
        subject_id=subject_id,
        swi=swi,
        phase=_nifti_in(folder, "phase"),  # without it, the phase-free model runs
        magnitude=magnitude,
        brainmask=_nifti_in(folder, "brainmask"),
        labels=_nifti_in(folder, "labels"),
        lesions_csv=lesions_csv if lesions_csv.is_file() else None,
    )


def _nifti_in(folder: Path, stem: str) -> Path | None:
    """``<stem>.nii.gz`` or else ``<stem>.nii`` inside ``folder``, None when neither exists."""
    for suffix in (".nii.gz", ".nii"):
        candidate = folder / f"{stem}{suffix}"
        if candidate.exists():
            return candidate
    return None


def load_ground_truth(subject: SubjectFiles) -> list[Lesion] | None:
    """The subject's lesions: from ``lesions.csv``, else from ``labels`` components, else None."""
    if subject.lesions_csv is not None:
        return read_lesions_csv(subject.lesions_csv)
    if subject.labels is not None:
        return lesions_from_mask(subject.labels)
    return None


def subjects_with_ground_truth(dataset_dirs) -> dict[str, SubjectFiles]:
    """The subjects with ``lesions.csv`` or labels in these dataset folders, keyed
    ``<folder name>/<subject id>`` (the keys of saved splits and of the fingerprint)."""
    return {
        f"{Path(folder).name}/{subject.subject_id}": subject
        for folder in dataset_dirs
        for subject in find_subjects(folder)
        if subject.lesions_csv or subject.labels
    }


def ground_truth_fingerprint(subjects: dict[str, SubjectFiles]) -> str:
    """SHA-256 over the subjects' keys and ground-truth files: which data trained (or
    calibrated) a model."""
    digest = hashlib.sha256()
    for key, subject in sorted(subjects.items()):
        digest.update(key.encode())
        truth = subject.lesions_csv or subject.labels
        if truth:
            digest.update(Path(truth).read_bytes())
    return digest.hexdigest()


# ----------------------------------------------------------------------------- dataset.json


def read_dataset_json(dataset_dir: str | Path, *, missing_ok: bool = False) -> dict[str, Any]:
    """Read ``<dataset_dir>/dataset.json``; ``{}`` when absent and ``missing_ok``.

    Raises:
        InputError: the file is missing (unless ``missing_ok``), not JSON, or not an object.
    """
    path = Path(dataset_dir) / "dataset.json"
    if not path.is_file():
        if missing_ok:
            return {}
        raise InputError(path, "dataset.json not found")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(path, f"dataset.json cannot be read ({error})") from None
    if not isinstance(info, dict):
        raise InputError(path, "dataset.json must hold a JSON object")
    return info


def write_dataset_json(dataset_dir: str | Path, info: dict[str, Any]) -> Path:
    """Write ``<dataset_dir>/dataset.json`` with sorted keys, indent 2 and a final newline."""
    path = Path(dataset_dir) / "dataset.json"
    write_atomic(path, json.dumps(info, sort_keys=True, indent=2) + "\n")
    return path
