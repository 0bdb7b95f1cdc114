"""BIDS sidecar JSON beside an image: the acquisition facts that input handling uses.

A sidecar is the ``.json`` file with the image's name (``sub-01_echo-1_part-phase_MEGRE.json``
beside ``sub-01_echo-1_part-phase_MEGRE.nii.gz``), as BIDS and dcm2niix write them, merged
over the files it inherits from (BIDS inheritance: a ``.json`` of the same suffix whose
entities are a subset of the image's, in the image's folder or any folder above it up to the
dataset root, the nearer one winning; e.g. ``MEGRE.json`` or ``part-phase_MEGRE.json`` at the
root). Read:

- ``EchoTime`` (seconds; a list for a 4D stack of echoes) -> echo times in ms;
- ``MagneticFieldStrength`` (tesla);
- ``Units`` of a phase image: ``rad`` (radians) or ``arbitrary`` (scanner integers).

A missing sidecar gives an empty :class:`Sidecar`; one that cannot be read, or holds values of
the wrong type, is an ``InputError`` naming it (a wrong echo time would choose a wrong echo).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from cmbdet.errors import InputError

_NIFTI_SUFFIXES = (".nii.gz", ".nii")
PHASE_UNITS = {"rad": "radians", "arbitrary": "auto"}
"""BIDS phase ``Units`` -> the ``--phase-units`` they mean (``auto`` tells integer scaling
from the values)."""


@dataclass(frozen=True)
class Sidecar:
    """What a sidecar says; None (or empty) where it says nothing.

    Attributes:
        path: the sidecar file; None when there is none.
        echo_times_ms: echo time of each volume, ms (one for a 3D image).
        field_strength_t: main field, tesla.
        phase_units: ``radians`` or ``auto`` (from BIDS ``Units``), for a phase image.
    """

    path: Path | None = None
    echo_times_ms: tuple[float, ...] = ()
    field_strength_t: float | None = None
    phase_units: str | None = None


def sidecar_path(image: Path) -> Path:
    """The sidecar's path for an image file (which need not exist)."""
    name = Path(image).name
    stem = next((name[: -len(s)] for s in _NIFTI_SUFFIXES if name.endswith(s)), name)
    return Path(image).with_name(stem + ".json")


def read_sidecar(image: Path, *, phase: bool = False) -> Sidecar:
    """The sidecar of ``image`` with what it inherits, or an empty one when there is none;
    ``Units`` is read only for a ``phase`` image.

    Raises:
        InputError: a sidecar exists but is not a JSON object, or ``EchoTime``,
            ``MagneticFieldStrength`` or ``Units`` has an impossible value (naming it).
    """
    files = _inherited(Path(image))
    if not files:
        return Sidecar()
    info: dict = {}
    for file in files:  # from the dataset root down: the nearest wins
        info.update(_read_object(file))
    path = files[-1]
    return Sidecar(
        path=path,
        echo_times_ms=_echo_times_ms(path, info.get("EchoTime")),
        field_strength_t=_field_strength(path, info.get("MagneticFieldStrength")),
        phase_units=_phase_units(path, info.get("Units")) if phase else None,
    )


MAX_LEVELS = 4  # sub-*/ses-*/anat/ below the dataset root


def _inherited(image: Path) -> list[Path]:
    """The JSON files that apply to ``image``, farthest first (its own sidecar last)."""
    own = sidecar_path(image)
    image_entities = _entities(image.name)
    if image_entities is None:  # not a BIDS name: its own sidecar only
        return [own] if own.is_file() else []
    suffix, entities = image_entities
    found = []
    folder = image.parent
    for _ in range(MAX_LEVELS):
        for candidate in sorted(folder.glob(f"*{suffix}.json")):
            parsed = _entities(candidate.name)
            if parsed and parsed[0] == suffix and parsed[1].items() <= entities.items():
                found.append((len(parsed[1]), candidate))
        if (folder / "dataset_description.json").is_file():
            break
        folder = folder.parent
    # deeper folders and more specific names come later; the own sidecar is the most specific
    ordered = [path for _, path in sorted(found, key=lambda f: f[0])]
    ordered = [p for p in ordered if p != own] + ([own] if own.is_file() else [])
    return ordered


def _entities(name: str) -> tuple[str, dict[str, str]] | None:
    """(suffix, entities) of a BIDS file name; None when it is not one."""
    stem = name
    for extension in (*_NIFTI_SUFFIXES, ".json"):
        if stem.endswith(extension):
            stem = stem[: -len(extension)]
            break
    else:
        return None
    *pairs, suffix = stem.split("_")
    if "-" in suffix or any("-" not in pair for pair in pairs):
        return None
    return suffix, dict(pair.split("-", 1) for pair in pairs)


def _read_object(path: Path) -> dict:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(path, f"sidecar JSON cannot be read ({error})") from None
    if not isinstance(info, dict):
        raise InputError(path, "sidecar JSON must hold an object")
    return info


def _echo_times_ms(path: Path, value) -> tuple[float, ...]:
    if value is None:
        return ()
    values = value if isinstance(value, list) else [value]
    if not values or not all(_positive_number(v) and v < 1.0 for v in values):
        raise InputError(
            path, f"EchoTime {value!r} is not a time in seconds (BIDS: e.g. 0.02 for 20 ms)"
        )
    return tuple(round(1000.0 * float(v), 6) for v in values)


def _field_strength(path: Path, value) -> float | None:
    if value is None:
        return None
    if not (_positive_number(value) and value <= 20.0):
        raise InputError(path, f"MagneticFieldStrength {value!r} is not a field in tesla")
    return float(value)


def _phase_units(path: Path, value) -> str | None:
    if value is None:
        return None
    if value not in PHASE_UNITS:
        raise InputError(path, f"Units {value!r}: a phase image's units are rad or arbitrary")
    return PHASE_UNITS[value]


def _positive_number(value) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )
