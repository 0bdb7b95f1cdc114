"""BIDS sidecar JSON beside an image: the acquisition facts that input handling uses.

A sidecar is the ``.json`` file with the image's name (``sub-01_echo-1_part-phase_MEGRE.json``
beside ``sub-01_echo-1_part-phase_MEGRE.nii.gz``), as BIDS and dcm2niix write them. Read:

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
    """The sidecar of ``image``, or an empty one when it has none; ``Units`` is read only
    for a ``phase`` image.

    Raises:
        InputError: the sidecar exists but is not a JSON object, or ``EchoTime``,
            ``MagneticFieldStrength`` or ``Units`` has an impossible value (naming it).
    """
    path = sidecar_path(image)
    if not path.is_file():
        return Sidecar()
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(path, f"sidecar JSON cannot be read ({error})") from None
    if not isinstance(info, dict):
        raise InputError(path, "sidecar JSON must hold an object")
    return Sidecar(
        path=path,
        echo_times_ms=_echo_times_ms(path, info.get("EchoTime")),
        field_strength_t=_field_strength(path, info.get("MagneticFieldStrength")),
        phase_units=_phase_units(path, info.get("Units")) if phase else None,
    )


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
