"""Which subjects a batch runs on: a cmbdet dataset folder, a BIDS dataset, or a CSV manifest.

All three give the same list of :class:`~cmbdet.io.dataset.SubjectFiles`, sorted by subject id
(:func:`discover_inputs`). Discovery never guesses: a dataset's subject whose files cannot be
told apart (two SWI images for one session) or are incomplete (no SWI or magnitude) is listed
as unusable, naming its folder, and the batch logs it as failed and runs the others; a manifest
with a missing column or file, or a folder with no subject at all, is an ``InputError`` naming
the folder or file (and line) before any work starts. Files that exist but cannot be read are
found later, per subject, by the detector.

**BIDS.** A folder with ``dataset_description.json``, or with ``sub-<label>/anat/``,
``sub-<label>/swi/`` or ``sub-<label>/ses-<label>/`` folders: read by :mod:`cmbdet.io.bids`.

**Manifest.** A CSV file with header ``subject,swi,phase`` and optionally ``magnitude`` and
``mask`` (a 0/1 brain mask); other columns are ignored. ``swi`` may be empty where
``magnitude`` is given (the SWI is then computed, or with ``phase`` empty too the magnitude is
read by the phase-free model); ``phase`` may be empty (the phase-free model runs). Relative
paths are resolved against the CSV file's folder; ``subject`` may be given with or without ``sub-``.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from cmbdet.errors import InputError
from cmbdet.io.bids import BIDS_DATATYPES, scan_bids_subjects
from cmbdet.io.dataset import (
    SubjectFiles,
    UnusableSubject,
    check_subject_id,
    scan_subjects,
)

MANIFEST_COLUMNS = ("subject", "swi", "phase")
OPTIONAL_MANIFEST_COLUMNS = ("magnitude", "mask")
_ALL_COLUMNS = MANIFEST_COLUMNS + OPTIONAL_MANIFEST_COLUMNS
_NIFTI_SUFFIXES = (".nii.gz", ".nii")


@dataclass(frozen=True)
class Discovery:
    """The subjects of a batch: those that can run, and those found but unusable (a subject
    folder without an SWI or magnitude, two SWI images, ...), each sorted by id."""

    subjects: list[SubjectFiles]
    unusable: list[UnusableSubject]


def discover_inputs(dataset: Path | None = None, manifest: Path | None = None) -> Discovery:
    """The subjects of a dataset folder (cmbdet layout or BIDS) or of a CSV manifest. A
    dataset's unusable subjects (the problems listed in the module docstring) are returned,
    not raised, so that a batch can log them and run the others; a manifest is the user's own
    list, so any problem in it is raised.

    Raises:
        InputError: neither or both given; a missing, unreadable or empty dataset or
            manifest; a problem in a manifest.
    """
    if (dataset is None) == (manifest is None):
        raise InputError(None, "give either --dataset or --manifest")
    if manifest is not None:
        return Discovery(read_manifest(manifest), [])
    dataset = Path(dataset)
    if dataset.is_file():
        raise InputError(dataset, "is a file, not a dataset folder (a CSV goes to --manifest)")
    if dataset_kind(dataset) == "bids":
        return Discovery(*scan_bids_subjects(dataset))
    return Discovery(*scan_subjects(dataset))


def dataset_kind(folder: Path) -> str:
    """``"bids"`` for a BIDS dataset, else ``"cmbdet"`` (the ``sub-*/swi.nii.gz`` layout).

    A folder that is neither is treated as a cmbdet dataset, whose reader then names the
    problem (missing folder, no ``sub-*`` folders, a subject without ``swi.nii.gz``).
    """
    subjects = [p for p in Path(folder).glob("sub-*") if p.is_dir()]
    if any((p / f"swi{suffix}").is_file() for p in subjects for suffix in _NIFTI_SUFFIXES):
        return "cmbdet"
    bids_folders = (*BIDS_DATATYPES, "ses-*")
    if (Path(folder) / "dataset_description.json").is_file() or any(
        any(p.glob(name)) for p in subjects for name in bids_folders
    ):
        return "bids"
    return "cmbdet"


# ----------------------------------------------------------------------------- manifest


def read_manifest(path: Path) -> list[SubjectFiles]:
    """The subjects listed in a CSV manifest (see the module docstring), sorted by id.

    Raises:
        InputError: the file is missing or unreadable, lacks a required column, has no rows,
            or has a row with an empty required cell, a bad or repeated subject id, or a file
            that does not exist (the line number is given).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "manifest file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(path, f"manifest cannot be read ({error})") from None
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise InputError(path, f"line {line}: manifest holds a NUL byte (not a text CSV file)")
    reader = csv.DictReader(io.StringIO(text))
    header = [name.strip().lower() for name in reader.fieldnames or []]
    missing = [name for name in MANIFEST_COLUMNS if name not in header]
    if missing:
        raise InputError(
            path,
            f"manifest lacks required columns: {', '.join(missing)} "
            f"(header must be subject,swi,phase[,magnitude,mask])",
        )
    reader.fieldnames = header
    try:
        rows = [(row, reader.line_num) for row in reader]
    except csv.Error as error:
        raise InputError(path, f"line {reader.line_num}: not a CSV row ({error})") from None
    subjects, lines = [], {}
    for row, line in rows:
        subject = _manifest_row(path, row, line)
        if subject.subject_id in lines:
            raise InputError(
                path,
                f"line {line}: subject {subject.subject_id!r} is already listed "
                f"on line {lines[subject.subject_id]}",
            )
        lines[subject.subject_id] = line
        subjects.append(subject)
    if not subjects:
        raise InputError(path, "manifest lists no subjects")
    return sorted(subjects, key=lambda s: s.subject_id)


def _manifest_row(path: Path, row: dict[str, str | None], line: int) -> SubjectFiles:
    cells = {name: (row.get(name) or "").strip() for name in _ALL_COLUMNS}
    if not cells["subject"]:
        raise InputError(path, f"line {line}: empty subject")
    if not cells["swi"] and not cells["magnitude"]:
        raise InputError(path, f"line {line}: empty swi (give swi, or magnitude)")
    try:
        subject_id = check_subject_id(cells["subject"])
    except ValueError as error:
        raise InputError(path, f"line {line}: {error}") from None
    files = {}
    for name in (*MANIFEST_COLUMNS[1:], *OPTIONAL_MANIFEST_COLUMNS):
        if not cells[name]:
            files[name] = None
            continue
        file = Path(cells[name]).expanduser()
        file = file if file.is_absolute() else path.parent / file
        if not file.is_file():
            raise InputError(path, f"line {line}: {name} file not found: {file}")
        files[name] = file
    return SubjectFiles(
        subject_id=subject_id,
        swi=files["swi"],
        phase=files["phase"],
        magnitude=files["magnitude"],
        brainmask=files["mask"],
    )
