"""The subjects of a BIDS dataset: SWI, magnitude and phase images found by their entities.

In each ``anat/`` or ``swi/`` folder of a subject (or of a session) the NIfTI files are read by
their entities:

- SWI: suffix ``swi`` with no ``part`` entity or ``part-mag`` (``sub-01_swi.nii.gz``,
  ``sub-01_part-mag_swi.nii.gz``; the suffix is proposed, not yet in the specification);
- phase: ``part-phase`` with suffix ``swi``, ``MEGRE``, ``T2starw`` or ``GRE``;
- magnitude: ``part-mag`` (or no ``part``) with suffix ``MEGRE``, ``T2starw`` or ``GRE``;
  several magnitudes and phases are the echoes of a multi-echo acquisition, paired by their
  ``echo-<n>`` entity, with echo times from their sidecar JSON.

**Acquisitions.** Files that differ in other entities (``acq-``, ``run-``, ``rec-``, ...) are
separate acquisitions. In each, the scanner's SWI with its phase is used when it has both
(a lone GRE magnitude joins it, for raw phase); otherwise the ``MEGRE`` echoes, else the
``T2starw``, else the ``GRE`` magnitude and phase. Every acquisition that pairs becomes a
subject: ``<sub>[_ses-<ses>]``, with ``_acq-<acq>_run-<run>...`` added when a folder holds
more than one. Acquisitions that do not pair (a minimum-intensity projection exported beside
the SWI) are left out when another one pairs; when none does, the folder is listed as unusable
with the reason, or, when it has an SWI or a magnitude without phase, runs and fails with the
input mode's reason. Either way it appears in ``batch.csv``. A folder holding only real and
imaginary parts is listed as unusable; a session with none of these files (a T1w-only visit)
is not a subject for cmbdet and is left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cmbdet.errors import InputError
from cmbdet.io.dataset import EchoFiles, SubjectFiles, UnusableSubject, check_subject_id, printable
from cmbdet.io.sidecar import read_sidecar

BIDS_DATATYPES = ("anat", "swi")
SWI_SUFFIX = "swi"
GRE_SUFFIXES = ("megre", "t2starw", "gre")  # in order of preference
_NIFTI_SUFFIXES = (".nii.gz", ".nii")
_ACQUISITION_FREE = ("sub", "ses", "echo", "part", "suffix")  # entities that do not split


@dataclass(frozen=True)
class _File:
    suffix: str  # lower case
    role: str  # swi, phase or magnitude
    echo: str | None
    path: Path


def scan_bids_subjects(root: Path) -> tuple[list[SubjectFiles], list[UnusableSubject]]:
    """The usable subjects (or subjects and sessions, or acquisitions) of a BIDS dataset and
    those with SWI-related images that cannot run (the folder and files are named), each
    sorted by id.

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
            for files in _session(folder, subject_id):
                target = unusable if isinstance(files, UnusableSubject) else found
                target.append(files)
    if not found and not unusable:
        raise InputError(
            root,
            "BIDS dataset has no SWI images (sub-*/[ses-*/]anat/ or swi/ files with suffix "
            "swi, or part-mag/part-phase with suffix MEGRE, T2starw or GRE)",
        )
    return sorted(found, key=lambda s: s.subject_id), unusable


def _session(folder: Path, subject_id: str) -> list[SubjectFiles | UnusableSubject]:
    """The subjects of one subject (or session) folder (see the module docstring)."""
    groups: dict[tuple, list[_File]] = {}
    complex_parts = []
    for datatype in BIDS_DATATYPES:
        for path in sorted((folder / datatype).glob("sub-*")):
            entities = _entities(path)
            if entities is None:
                continue
            role = _role(entities)
            if role is None:
                if entities.get("part") in ("real", "imag"):
                    complex_parts.append(path)
                continue
            key = tuple((k, v) for k, v in entities.items() if k not in _ACQUISITION_FREE)
            file = _File(entities["suffix"].lower(), role, entities.get("echo"), path)
            groups.setdefault(key, []).append(file)
    if not groups:
        if complex_parts:
            problem = InputError(
                folder,
                f"holds real and imaginary parts ({complex_parts[0].name}, ...): convert them "
                "to magnitude and phase (part-mag, part-phase)",
            )
            return [UnusableSubject(printable(subject_id), problem)]
        return []
    chosen = {key: _acquisition(folder, files) for key, files in sorted(groups.items())}
    paired = {k: c for k, c in chosen.items() if isinstance(c, SubjectFiles) and _complete(c)}
    if paired:
        return [_named(c, subject_id, key, len(paired) > 1) for key, c in paired.items()]
    if len(chosen) == 1:
        (only,) = chosen.values()
        return [_named(only, subject_id, (), False)]
    shown = ", ".join("_".join(f"{k}-{v}" for k, v in key) or "(none)" for key in chosen)
    problem = InputError(
        folder,
        f"images of several acquisitions ({shown}), none with both an SWI or magnitude and "
        "its phase (they must share their acq-/run- entities); list the intended files in a "
        "--manifest",
    )
    return [UnusableSubject(printable(subject_id), problem)]


def _complete(files: SubjectFiles) -> bool:
    return bool(files.echoes) or files.phase is not None


def _named(chosen, subject_id: str, key: tuple, several: bool):
    """The acquisition's subject (or problem) under its id."""
    name = subject_id + "".join(f"_{k}-{v}" for k, v in key) if several else subject_id
    try:
        name = check_subject_id(name)
    except ValueError as error:
        problem = chosen.problem if isinstance(chosen, UnusableSubject) else None
        return UnusableSubject(printable(name), problem or InputError(None, str(error)))
    if isinstance(chosen, UnusableSubject):
        return UnusableSubject(name, chosen.problem)
    return SubjectFiles(
        subject_id=name,
        swi=chosen.swi,
        phase=chosen.phase,
        magnitude=chosen.magnitude,
        echoes=chosen.echoes,
    )


def _acquisition(folder: Path, files: list[_File]) -> SubjectFiles | UnusableSubject:
    """One acquisition's subject: the first of the SWI pair, the MEGRE echoes, the T2starw,
    the GRE that pairs; else the first that can at least be named (it fails at run time with
    its mode's reason); else the first problem."""
    swi = [f for f in files if f.suffix == SWI_SUFFIX]
    candidates = []
    if swi:
        lone = [f for f in files if f.suffix != SWI_SUFFIX and f.role == "magnitude"]
        joins = len(lone) == 1 and any(f.role == "swi" for f in swi)
        candidates.append(swi + (lone if joins else []))
    candidates += [[f for f in files if f.suffix == s] for s in GRE_SUFFIXES]
    fallback, problems = None, []
    for candidate in (c for c in candidates if c):
        try:
            subject = _subject(folder, candidate)
        except InputError as problem:
            problems.append(problem)
            continue
        if _complete(subject):
            return subject
        fallback = fallback or subject
    if fallback is not None:
        return fallback
    return UnusableSubject("", problems[0])


def _subject(folder: Path, files: list[_File]) -> SubjectFiles:
    """SWI + phase, or magnitude + phase (echoes paired by their ``echo-`` entity) of one
    suffix family; the phase-free cases are left to the input mode, which refuses them."""
    swi = [f.path for f in files if f.role == "swi"]
    phase = [f for f in files if f.role == "phase"]
    magnitude = [f for f in files if f.role == "magnitude"]
    if not swi and not magnitude:
        raise InputError(folder, "has a phase image but no SWI or magnitude image")
    if len(swi) > 1:
        names = ", ".join(p.name for p in swi)
        raise InputError(folder, f"more than one SWI image ({names}); list one in a --manifest")
    if swi:
        if len(phase) > 1:
            names = ", ".join(f.path.name for f in phase)
            raise InputError(
                folder,
                f"an SWI image with several phase images ({names}); list the intended "
                "one in a --manifest",
            )
        return SubjectFiles(
            subject_id="",
            swi=swi[0],
            phase=phase[0].path if phase else None,
            magnitude=magnitude[0].path if magnitude else None,
        )
    if len(phase) <= 1 and len(magnitude) <= 1:
        return SubjectFiles(
            subject_id="",
            swi=None,
            phase=phase[0].path if phase else None,
            magnitude=magnitude[0].path,
        )
    return SubjectFiles("", None, None, echoes=_paired_echoes(folder, magnitude, phase))


def _paired_echoes(folder: Path, magnitude: list[_File], phase: list[_File]):
    """Magnitude and phase files paired by echo number, in echo order, with their sidecars'
    echo times."""
    if not phase:
        raise InputError(folder, f"{len(magnitude)} magnitude echoes and no phase image")
    by_echo: dict[int, dict[str, Path]] = {}
    for kind, files in (("magnitude", magnitude), ("phase", phase)):
        if len(files) > 1 and any(f.echo is None or not f.echo.isdigit() for f in files):
            bad = next(f for f in files if f.echo is None or not f.echo.isdigit())
            raise InputError(bad.path, f"one of {len(files)} {kind} images without echo-<n>")
        for f in files:
            by_echo.setdefault(int(f.echo or 1), {})[kind] = f.path
    incomplete = sorted(n for n, pair in by_echo.items() if len(pair) != 2)
    if incomplete:
        number = incomplete[0]
        has = "a magnitude" if "magnitude" in by_echo[number] else "a phase"
        raise InputError(folder, f"echo {number} has {has} image but not the other")
    echoes = []
    for number in sorted(by_echo):
        pair = by_echo[number]
        times = read_sidecar(pair["phase"], phase=True).echo_times_ms
        times = times or read_sidecar(pair["magnitude"]).echo_times_ms
        echoes.append(EchoFiles(pair["magnitude"], pair["phase"], times[0] if times else None))
    return tuple(echoes)


def _role(entities: dict[str, str]) -> str | None:
    """``swi``, ``phase`` or ``magnitude`` for a file of an SWI-related suffix; else None."""
    suffix, part = entities["suffix"].lower(), entities.get("part")
    if suffix == SWI_SUFFIX and part in (None, "mag"):
        return "swi"
    if suffix in (SWI_SUFFIX, *GRE_SUFFIXES) and part == "phase":
        return "phase"
    if suffix in GRE_SUFFIXES and part in (None, "mag"):
        return "magnitude"
    return None


def _entities(path: Path) -> dict[str, str] | None:
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
