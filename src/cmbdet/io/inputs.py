"""Which subjects a batch runs on: a cmbdet dataset folder, a BIDS dataset, or a CSV manifest.

All three give the same list of :class:`~cmbdet.io.dataset.SubjectFiles`, sorted by subject id
(:func:`discover_inputs`). Discovery never guesses: a dataset's subject whose files cannot be
told apart (two SWI images for one session) or are incomplete (no phase) is listed as
unusable, naming its folder, and the batch logs it as failed and runs the others; a manifest
with a missing column or file, or a folder with no subject at all, is an ``InputError`` naming
the folder or file (and line) before any work starts. Files that exist but cannot be read are
found later, per subject, by the detector.

**BIDS.** A folder with ``dataset_description.json``, or with ``sub-<label>/anat/``,
``sub-<label>/swi/`` or ``sub-<label>/ses-<label>/`` folders. In each ``anat/`` or ``swi/``
folder of a subject (or of a session) the NIfTI files are read by their entities:

- SWI: suffix ``swi`` with no ``part`` entity or ``part-mag`` (``sub-01_swi.nii.gz``,
  ``sub-01_part-mag_swi.nii.gz``; the suffix is proposed, not yet in the specification);
- phase: ``part-phase`` with suffix ``swi``, ``MEGRE``, ``T2starw`` or ``GRE``;
- magnitude: ``part-mag`` (or no ``part``) with suffix ``MEGRE``, ``T2starw`` or ``GRE``;
  several magnitudes and phases are the echoes of a multi-echo acquisition, paired by their
  ``echo-<n>`` entity, with echo times from their sidecar JSON.

Which of these a subject has decides its input mode (:mod:`cmbdet.detect.input_mode`): an SWI
with a phase runs as given; magnitude and phase without an SWI have the SWI computed. Files
that differ in other entities (``acq-``, ``run-``, ``rec-``, ...) are separate acquisitions:
each becomes its own subject, ``<sub>[_ses-<ses>]_acq-<acq>_run-<run>``, when a folder holds
more than one. A subject whose files cannot be paired (two SWI images, an echo without its
phase) is listed as unusable with the reason; one with no phase is listed too, and fails with
its reason when it runs. A session with none of these files (a T1w-only visit) is not a subject
for cmbdet and is left out. A session becomes subject id ``<sub>_ses-<ses>`` (output folder
``sub-01_ses-1``).

**Manifest.** A CSV file with header ``subject,swi,phase`` and optionally ``magnitude`` and
``mask`` (a 0/1 brain mask); other columns are ignored. ``swi`` may be empty where
``magnitude`` is given (the SWI is then computed). Relative paths are resolved against the
CSV file's folder; ``subject`` may be given with or without ``sub-``.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from cmbdet.errors import InputError
from cmbdet.io.dataset import (
    EchoFiles,
    SubjectFiles,
    UnusableSubject,
    check_subject_id,
    printable,
    scan_subjects,
)
from cmbdet.io.sidecar import read_sidecar

MANIFEST_COLUMNS = ("subject", "swi", "phase")
OPTIONAL_MANIFEST_COLUMNS = ("magnitude", "mask")
_ALL_COLUMNS = MANIFEST_COLUMNS + OPTIONAL_MANIFEST_COLUMNS
BIDS_DATATYPES = ("anat", "swi")
_SWI_SUFFIXES = {"swi"}
_GRE_SUFFIXES = {"gre", "t2starw", "megre"}
_NIFTI_SUFFIXES = (".nii.gz", ".nii")


@dataclass(frozen=True)
class Discovery:
    """The subjects of a batch: those that can run, and those found but unusable (a subject
    folder without its phase, two SWI images, ...), each sorted by id."""

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


# ----------------------------------------------------------------------------- BIDS


def scan_bids_subjects(root: Path) -> tuple[list[SubjectFiles], list[UnusableSubject]]:
    """The usable subjects (or subjects and sessions) of a BIDS dataset that have SWI and phase
    images, and those with SWI-related images that cannot run (an SWI but no phase or the
    reverse, or more than one of either: the folder and files are named), each sorted by id.

    Raises:
        InputError: the folder is missing, or no subject has SWI-related images at all.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "dataset folder not found")
    found, unusable = [], []
    for subject in sorted(p for p in root.glob("sub-*") if p.is_dir()):
        sessions = sorted(p for p in subject.glob("ses-*") if p.is_dir())
        for folder in [subject, *sessions]:
            subject_id = subject.name.removeprefix("sub-")
            if folder is not subject:
                subject_id += f"_{folder.name}"
            for files in _bids_session(folder, subject_id):
                target = unusable if isinstance(files, UnusableSubject) else found
                target.append(files)
    if not found and not unusable:
        raise InputError(
            root,
            "BIDS dataset has no SWI images (sub-*/[ses-*/]anat/ or swi/ files with suffix "
            "swi, or part-mag/part-phase with suffix GRE or T2starw)",
        )
    return sorted(found, key=lambda s: s.subject_id), unusable


def _bids_session(folder: Path, subject_id: str) -> list[SubjectFiles | UnusableSubject]:
    """The subjects of one subject (or session) folder: one per acquisition (``acq-``,
    ``run-``, ``rec-`` ... entities; ids gain them when there are several); [] when it has no
    SWI-related image. An acquisition whose files cannot be paired is an unusable subject."""
    groups: dict[tuple, dict[str, list]] = {}
    for datatype in BIDS_DATATYPES:
        for path in sorted((folder / datatype).glob("sub-*")):
            entities = _bids_entities(path)
            role = _bids_role(entities) if entities is not None else None
            if role is None:
                continue
            key = tuple(
                (k, v)
                for k, v in entities.items()
                if k not in ("sub", "ses", "echo", "part", "suffix")
            )
            roles = groups.setdefault(key, {"swi": [], "phase": [], "magnitude": []})
            roles[role].append((entities.get("echo"), path))
    unpaired = [k for k, roles in groups.items() if not (roles["phase"] and _has_image(roles))]
    if len(groups) > 1 and unpaired:
        shown = ", ".join(
            "_".join(f"{k}-{v}" for k, v in key) or "(none)" for key in sorted(groups)
        )
        problem = InputError(
            folder,
            f"images of several acquisitions ({shown}) that do not pair: an SWI or magnitude "
            "and its phase must share their acq-/run- entities; list the intended files in a "
            "--manifest",
        )
        return [UnusableSubject(printable(subject_id), problem)]
    found = []
    for key, roles in sorted(groups.items()):
        name = subject_id + "".join(f"_{k}-{v}" for k, v in key) if len(groups) > 1 else subject_id
        try:
            found.append(_bids_subject(folder, check_subject_id(name), roles))
        except ValueError as error:
            found.append(UnusableSubject(printable(name), InputError(folder, str(error))))
        except InputError as problem:
            found.append(UnusableSubject(printable(name), problem))
    return found


def _has_image(roles: dict[str, list]) -> bool:
    return bool(roles["swi"] or roles["magnitude"])


def _bids_role(entities: dict[str, str]) -> str | None:
    """``swi``, ``phase`` or ``magnitude`` for a file of an SWI-related suffix; else None."""
    suffix, part = entities["suffix"].lower(), entities.get("part")
    if suffix in _SWI_SUFFIXES and part in (None, "mag"):
        return "swi"
    if suffix in _SWI_SUFFIXES | _GRE_SUFFIXES and part == "phase":
        return "phase"
    if suffix in _GRE_SUFFIXES and part in (None, "mag"):
        return "magnitude"
    return None


def _bids_subject(folder: Path, subject_id: str, roles: dict[str, list]) -> SubjectFiles:
    """One acquisition's files as a subject: SWI + phase, or magnitude + phase (echoes
    paired by their ``echo-`` entity); the phase-free cases are left to the input mode,
    which refuses them with their reason."""
    swi, phase, magnitude = roles["swi"], roles["phase"], roles["magnitude"]
    if not _has_image(roles):
        raise InputError(folder, "has a phase image but no SWI or magnitude image")
    if len(swi) > 1:
        names = ", ".join(p.name for _, p in swi)
        raise InputError(folder, f"more than one SWI image ({names}); list one in a --manifest")
    if swi:
        if len(phase) > 1 or len(magnitude) > 1:
            raise InputError(
                folder,
                "an SWI image with several phase or magnitude echoes: list the "
                "intended files in a --manifest",
            )
        return SubjectFiles(
            subject_id=subject_id,
            swi=swi[0][1],
            phase=phase[0][1] if phase else None,
            magnitude=magnitude[0][1] if magnitude else None,
        )
    if len(phase) <= 1 and len(magnitude) <= 1:
        return SubjectFiles(
            subject_id=subject_id,
            swi=None,
            phase=phase[0][1] if phase else None,
            magnitude=magnitude[0][1] if magnitude else None,
        )
    return SubjectFiles(subject_id, None, None, echoes=_paired_echoes(folder, magnitude, phase))


def _paired_echoes(folder: Path, magnitude: list, phase: list) -> tuple[EchoFiles, ...]:
    """Magnitude and phase files paired by echo number, in echo order, with their sidecars'
    echo times."""
    by_echo = {}
    for kind, files in (("magnitude", magnitude), ("phase", phase)):
        for echo, path in files:
            if echo is None or not echo.isdigit():
                raise InputError(path, f"one of several {kind} images without an echo-<n> entity")
            by_echo.setdefault(int(echo), {})[kind] = path
    incomplete = sorted(n for n, pair in by_echo.items() if len(pair) != 2)
    if incomplete:
        raise InputError(folder, f"echo {incomplete[0]} has a magnitude or a phase image, not both")
    echoes = []
    for number in sorted(by_echo):
        pair = by_echo[number]
        times = read_sidecar(pair["phase"], phase=True).echo_times_ms
        times = times or read_sidecar(pair["magnitude"]).echo_times_ms
        echoes.append(EchoFiles(pair["magnitude"], pair["phase"], times[0] if times else None))
    return tuple(echoes)


def _bids_entities(path: Path) -> dict[str, str] | None:
    """``{"sub": "01", "part": "mag", ..., "suffix": "swi"}`` of a NIfTI file; None otherwise."""
    name = path.name
    extension = next((s for s in _NIFTI_SUFFIXES if name.endswith(s)), None)
    if extension is None or not path.is_file():
        return None
    *pairs, suffix = name.removesuffix(extension).split("_")
    if not pairs or "-" in suffix:
        return None
    entities = dict(pair.split("-", 1) for pair in pairs if "-" in pair)
    return {**entities, "suffix": suffix}


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
    for name in ("subject", "phase"):
        if not cells[name]:
            raise InputError(path, f"line {line}: empty {name}")
    if not cells["swi"] and not cells["magnitude"]:
        raise InputError(path, f"line {line}: empty swi (give swi, or magnitude to compute it)")
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
