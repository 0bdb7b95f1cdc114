"""Where ``cmbdet evaluate`` finds ground truth: a dataset folder, one subject's folder, or a CSV
manifest, with lesion tables or CMB masks.

- **Folder.** Each ``sub-<id>/`` folder (or the folder itself, for one subject) holds one of,
  in this order of preference: ``reviewed_lesions.csv`` (a reader's review), ``lesions.csv``
  (DESIGN.md columns), ``labels.nii[.gz]`` (an instance map) or ``cmb_mask.nii[.gz]`` (a 0/1
  CMB mask). The images need not be there: truth may live apart from the scans.
- **Manifest.** A CSV file with header ``subject,truth``: ``truth`` is a lesion table
  (``.csv``) or a CMB mask or label map (NIfTI), relative to the CSV file's folder.

A mask or label map is read as its 26-connected components, one CMB each (DESIGN.md).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from cmbdet.errors import InputError
from cmbdet.io.dataset import SubjectFiles, check_subject_id

TABLES = ("reviewed_lesions.csv", "lesions.csv")
MASKS = ("labels.nii.gz", "labels.nii", "cmb_mask.nii.gz", "cmb_mask.nii")
_NIFTI_SUFFIXES = (".nii.gz", ".nii")


def find_truth(path: Path) -> dict[str, SubjectFiles]:
    """Subject id -> the subject's ground truth (``lesions_csv`` or ``labels`` set).

    Raises:
        InputError: a missing path, a folder without any subject's truth, a subject folder
            without truth, or a problem in a manifest (naming the line).
    """
    path = Path(path)
    if path.is_file():
        return _from_manifest(path)
    if not path.is_dir():
        raise InputError(path, "ground truth not found")
    own = truth_in_folder(path, path.name)
    if own is not None:
        return {own.subject_id: own}
    folders = sorted(p for p in path.glob("sub-*") if p.is_dir())
    if not folders:
        raise InputError(
            path,
            "no ground truth: no sub-*/ folders, and no lesions.csv, labels or cmb_mask here",
        )
    truth = {}
    for folder in folders:
        subject = truth_in_folder(folder, folder.name)
        if subject is None:
            raise InputError(folder, "no ground truth (lesions.csv, labels or cmb_mask)")
        truth[subject.subject_id] = subject
    return truth


def truth_in_folder(folder: Path, name: str) -> SubjectFiles | None:
    """The truth file of one subject folder, or None when it has none."""
    table = next((folder / n for n in TABLES if (folder / n).is_file()), None)
    mask = next((folder / n for n in MASKS if (folder / n).is_file()), None)
    if table is None and mask is None:
        return None
    try:
        subject_id = check_subject_id(name)
    except ValueError as error:
        raise InputError(folder, str(error)) from None
    return _subject(subject_id, table if table is not None else mask)


def _subject(subject_id: str, truth: Path) -> SubjectFiles:
    if truth.name.endswith(".csv"):
        return SubjectFiles(subject_id, None, None, lesions_csv=truth)
    return SubjectFiles(subject_id, None, None, labels=truth)


def _from_manifest(path: Path) -> dict[str, SubjectFiles]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(path, f"truth manifest cannot be read ({error})") from None
    reader = csv.DictReader(io.StringIO(text))
    header = [name.strip().lower() for name in reader.fieldnames or []]
    if "subject" not in header or "truth" not in header:
        raise InputError(path, "a truth manifest needs the header subject,truth")
    reader.fieldnames = header
    truth: dict[str, SubjectFiles] = {}
    try:
        rows = [(row, reader.line_num) for row in reader]
    except csv.Error as error:
        raise InputError(path, f"line {reader.line_num}: not a CSV row ({error})") from None
    for row, line in rows:
        try:
            subject_id = check_subject_id((row.get("subject") or "").strip())
        except ValueError as error:
            raise InputError(path, f"line {line}: {error}") from None
        cell = (row.get("truth") or "").strip()
        if not cell:
            raise InputError(path, f"line {line}: empty truth")
        file = Path(cell).expanduser()
        file = file if file.is_absolute() else path.parent / file
        if not file.is_file():
            raise InputError(path, f"line {line}: truth file not found: {file}")
        if not file.name.endswith((".csv", *_NIFTI_SUFFIXES)):
            raise InputError(path, f"line {line}: truth must be a .csv table or a NIfTI mask")
        if subject_id in truth:
            raise InputError(path, f"line {line}: subject {subject_id!r} is listed twice")
        truth[subject_id] = _subject(subject_id, file)
    if not truth:
        raise InputError(path, "truth manifest lists no subjects")
    return truth
