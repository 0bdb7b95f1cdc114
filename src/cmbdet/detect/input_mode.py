"""Input modes: which files a subject has decides what runs (the one place that decides).

==========================================  ==================  ==============================
the subject has                             mode                what runs
==========================================  ==================  ==============================
SWI + phase (magnitude optional)            ``swi+phase``       both stages, as trained
magnitude + phase, one echo                 ``magnitude+phase`` SWI computed, both stages
magnitude + phase, several echoes (4D       ``multi-echo``      one echo chosen by field x
stacks, or BIDS ``echo-<n>`` files)                             echo time, SWI computed from
                                                                it, both stages
SWI only                                    ``swi-only``        the phase-free model
magnitude only (a T2*-weighted GRE)         ``magnitude-only``  the phase-free model
==========================================  ==================  ==============================

A subject without phase runs the phase-free model (``cmbdet-phasefree-v1``, shipped beside the
default; or the ``--model`` given, when that one reads no phase): it was trained on SWI and on
plain GRE magnitude alike, and cannot tell a calcification from a CMB by its phase, which each
such subject's QC flags say. A phase-free ``--model`` reads the SWI (else the magnitude) of
every subject and never its phase, whatever files the subject has.

The computed SWI is Haacke's: the magnitude times the negative-phase mask of the *canonical*
phase (high-pass, radians, right-handed) to the 4th power. The phase handedness is then
decided from the magnitude's dark voxels, never from an SWI that may have been made with the
other sign (:mod:`cmbdet.preprocess.phase`).

**Echo choice.** The phase of a gradient echo grows with field strength x echo time (B0 x TE);
a model reads phase contrast of the size it was trained on. Of several echoes, the one whose
B0 x TE lies nearest (on a log scale) to the middle of the model's range (model.json
``training_ranges.field_te_t_ms``; the generator presets' 37.5-105 T ms when the model does not
say) is used, its magnitude and phase both. Echo times come from ``--echo-times-ms`` or the
sidecars; without them a multi-echo subject is refused, never guessed. The field strength
comes from ``--field-strength`` or the sidecars; when neither gives it, 3 T is assumed and
recorded.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from cmbdet.errors import InputError
from cmbdet.io.dataset import SubjectFiles
from cmbdet.io.nifti import (
    Volume,
    check_same_grid,
    load_echoes,
    load_mask,
    load_volume,
    load_volumes,
)
from cmbdet.io.sidecar import read_sidecar

SWI_PHASE = "swi+phase"
MAGNITUDE_PHASE = "magnitude+phase"
MULTI_ECHO = "multi-echo"
SWI_ONLY = "swi-only"
MAGNITUDE_ONLY = "magnitude-only"
MODES = {
    SWI_PHASE: "scanner SWI + phase",
    MAGNITUDE_PHASE: "magnitude + phase, SWI computed",
    MULTI_ECHO: "multi-echo magnitude + phase, one echo chosen, SWI computed",
    SWI_ONLY: "SWI without phase",
    MAGNITUDE_ONLY: "magnitude without phase",
}
PHASE_FREE = (SWI_ONLY, MAGNITUDE_ONLY)
NO_PHASE = (
    "no phase: calcifications (and other diamagnetic mimics) cannot be told from CMBs by "
    "their phase; check detections on calcified structures by eye"
)
DEFAULT_FIELD_TE_T_MS = (37.5, 105.0)
"""B0 x TE of the generator's protocol presets (1.5 T 25-40 ms to 7 T 8-15 ms), T ms: the
range a model trained on them reads, when its model.json does not state one."""
ASSUMED_FIELD_T = 3.0
SWI_IS_MAGNITUDE = (
    "SWI identical to the magnitude (no phase weighting); leave out --swi to have cmbdet "
    "compute an SWI from the magnitude and phase"
)


@dataclass(frozen=True)
class AcquisitionOptions:
    """What the command line says about the acquisition (overriding the sidecars).

    Attributes:
        echo_times_ms: echo time of each echo, ms, in the order stored; () to read sidecars.
        field_strength_t: main field, T; None to read sidecars.
    """

    echo_times_ms: tuple[float, ...] = ()
    field_strength_t: float | None = None


UNSTATED = AcquisitionOptions()  # nothing given on the command line: the sidecars decide


@dataclass(frozen=True, eq=False)
class SubjectVolumes:
    """One subject's loaded volumes for its mode.

    Attributes:
        mode: one of :data:`MODES`.
        swi: the scanner's SWI; None when the mode computes it from ``magnitude`` (or reads
            the magnitude alone).
        phase: the phase (of the chosen echo); None in the phase-free modes.
        magnitude: the magnitude (of the chosen echo); None when not given.
        mask: (X, Y, Z) bool canonical brain mask, or None.
        phase_units: the phase units a sidecar states (``radians``/``auto``), else None.
        field_strength_t: the field strength, T, when known (given or from a sidecar).
        record: what run.json records of the inputs (mode, files, echoes, field strength).
    """

    mode: str
    swi: Volume | None
    phase: Volume | None
    magnitude: Volume | None
    mask: np.ndarray | None
    phase_units: str | None
    field_strength_t: float | None
    record: dict = field(default_factory=dict)

    @property
    def reference(self) -> Volume:
        """The image whose grid the outputs are written on (the SWI, else the magnitude)."""
        return self.swi if self.swi is not None else self.magnitude


def input_mode(files: SubjectFiles) -> str:
    """The mode of a subject's files (see the module docstring); 4D stacks are told from
    their headers.

    Raises:
        InputError: a subject with neither SWI nor magnitude, or with no image at all.
    """
    if files.echoes:
        return MULTI_ECHO if len(files.echoes) > 1 else MAGNITUDE_PHASE
    if files.swi is not None:
        return SWI_PHASE if files.phase is not None else SWI_ONLY
    if files.magnitude is not None:
        if files.phase is None:
            return MAGNITUDE_ONLY
        stacked = max(_volumes_in(files.magnitude), _volumes_in(files.phase))
        return MULTI_ECHO if stacked > 1 else MAGNITUDE_PHASE
    where = files.phase or Path(f"sub-{files.subject_id}")
    raise InputError(where, "a phase image alone: give the SWI or the magnitude with it")


def load_subject(
    files: SubjectFiles,
    options: AcquisitionOptions = UNSTATED,
    field_te_t_ms: tuple[float, float] | None = None,
    reads_phase: bool = True,
) -> SubjectVolumes:
    """Load what a subject's mode reads, choosing the echo of a multi-echo subject.

    Args:
        files: the subject's files.
        options: echo times and field strength from the command line.
        field_te_t_ms: the model's B0 x TE range, T ms (for the echo choice); None for
            :data:`DEFAULT_FIELD_TE_T_MS`.
        reads_phase: False for a phase-free model: the SWI (else the magnitude) is read,
            never the phase.

    Raises:
        InputError: a phase-free subject for a model that reads phase, a bad file, grids
            that differ, or a multi-echo subject without echo times.
    """
    mode = input_mode(files)
    if not reads_phase:
        return _phase_free_subject(files, mode, options)
    if mode in PHASE_FREE:
        image = files.swi or files.magnitude
        raise InputError(
            image,
            f"{MODES[mode]}: this model needs the phase too (--phase, or a part-phase image), "
            "and no phase-free model is installed",
        )
    if mode == SWI_PHASE:
        extra = [(files.magnitude, "magnitude")] if files.magnitude else []
        swi, phase, *more = load_volumes((files.swi, "SWI"), (files.phase, "phase"), *extra)
        check_same_grid(swi, phase)
        magnitude = more[0] if more else None
        if magnitude is not None:
            check_same_grid(magnitude, swi)
        echo = _single_echo(files, options, field_te_t_ms or DEFAULT_FIELD_TE_T_MS)
    else:
        swi = None
        magnitude, phase, echo = _chosen_echo(
            files, options, field_te_t_ms or DEFAULT_FIELD_TE_T_MS
        )
    reference = swi if swi is not None else magnitude
    mask = load_mask(files.brainmask, reference) if files.brainmask else None
    if swi is not None and magnitude is not None and np.array_equal(swi.data, magnitude.data):
        echo = dataclasses.replace(echo, flags=(*echo.flags, SWI_IS_MAGNITUDE))
    record = {
        "mode": mode,
        "swi": "given" if swi is not None else "computed from the magnitude and phase",
        **echo.record(),
        "given": {
            "echo_times_ms": [float(t) for t in options.echo_times_ms] or None,
            "field_strength_t": options.field_strength_t,
        },
        "files": {
            "swi": _name(files.swi),
            "phase": _name(phase.path),
            "magnitude": None if magnitude is None else _name(magnitude.path),
            "mask": _name(files.brainmask),
        },
    }
    return SubjectVolumes(
        mode=mode,
        swi=swi,
        phase=phase,
        magnitude=magnitude,
        mask=mask,
        phase_units=echo.phase_units,
        field_strength_t=echo.field_strength_t,
        record=record,
    )


def _phase_free_subject(
    files: SubjectFiles, mode: str, options: AcquisitionOptions
) -> SubjectVolumes:
    """A phase-free model's subject: its SWI, else its magnitude (one 3D image); the phase,
    when there is one, is not read."""
    if mode == MULTI_ECHO:
        raise InputError(
            files.magnitude or files.echoes[0].magnitude,
            "several echoes: the phase-free model reads one SWI or magnitude image; give "
            "--magnitude with a single echo",
        )
    path, role = (files.swi, "SWI") if files.swi is not None else (files.magnitude, "magnitude")
    image = load_volume(path, role)
    mask = load_mask(files.brainmask, image) if files.brainmask else None
    field = _field_strength(options, [read_sidecar(path)])
    record = {
        "mode": SWI_ONLY if role == "SWI" else MAGNITUDE_ONLY,
        "swi": "given" if role == "SWI" else "none: the magnitude is read as it is",
        "phase": "not read: the model reads no phase" if files.phase else "none given",
        "qc_flags": [NO_PHASE],
        "field_strength_t": field,
        "given": {
            "echo_times_ms": [float(t) for t in options.echo_times_ms] or None,
            "field_strength_t": options.field_strength_t,
        },
        "files": {
            "swi": _name(files.swi),
            "phase": None,
            "magnitude": None if role == "SWI" else _name(path),
            "mask": _name(files.brainmask),
        },
    }
    return SubjectVolumes(
        mode=record["mode"],
        swi=image if role == "SWI" else None,
        phase=None,
        magnitude=None if role == "SWI" else image,
        mask=mask,
        phase_units=None,
        field_strength_t=field,
        record=record,
    )


@dataclass(frozen=True)
class _Echo:
    """The acquisition facts of the echo used."""

    echo_times_ms: tuple[float, ...]  # every echo's, ms (() when unknown)
    chosen: int | None  # index of the echo used, None for a single-echo subject
    field_strength_t: float | None
    field_assumed: bool
    phase_units: str | None
    outside_range: bool = False
    flags: tuple[str, ...] = ()

    def record(self) -> dict:
        record = {
            "qc_flags": list(self.flags),
            "field_strength_t": self.field_strength_t,
            "field_strength_assumed": self.field_assumed,
            "echo_times_ms": list(self.echo_times_ms) or None,
        }
        if self.chosen is not None:
            te = self.echo_times_ms[self.chosen]
            record["echo_used"] = {
                "index": self.chosen + 1,
                "of": len(self.echo_times_ms),
                "echo_time_ms": te,
                "field_x_echo_time_t_ms": round(te * self._field(), 3),
                "outside_model_range": self.outside_range,
            }
        return record

    def _field(self) -> float:
        return self.field_strength_t if self.field_strength_t is not None else ASSUMED_FIELD_T


def _single_echo(
    files: SubjectFiles, options: AcquisitionOptions, field_te_t_ms: tuple[float, float]
) -> _Echo:
    phase_side = read_sidecar(files.phase, phase=True)
    sides = [read_sidecar(p) for p in (files.swi, files.magnitude) if p is not None]
    field = _field_strength(options, [phase_side, *sides])
    times = tuple(options.echo_times_ms or phase_side.echo_times_ms)
    return _one_echo(times, field, phase_side.phase_units, field_te_t_ms)


def _one_echo(times, field, units, field_te_t_ms) -> _Echo:
    """The facts of a single-echo acquisition: its field x TE is checked against the model's
    range when its echo time is known."""
    if len(times) != 1:
        return _Echo(tuple(times), None, field, False, units)
    _, outside = choose_echo(times, field or ASSUMED_FIELD_T, field_te_t_ms)
    return _Echo(tuple(times), 0, field, field is None, units, outside)


def _chosen_echo(
    files: SubjectFiles, options: AcquisitionOptions, field_te_t_ms: tuple[float, float]
) -> tuple[Volume, Volume, _Echo]:
    """(magnitude, phase, echo facts) of the echo a magnitude + phase subject uses; only that
    echo's volumes are read (a stack's others stay on disk)."""
    if files.echoes:
        sidecar_times = [e.echo_time_ms for e in files.echoes]
        times = tuple(sidecar_times) if None not in sidecar_times else ()
        phase_sides = [read_sidecar(e.phase, phase=True) for e in files.echoes]
        sides = phase_sides + [read_sidecar(e.magnitude) for e in files.echoes]
        count, where = len(files.echoes), files.echoes[0].magnitude
    else:
        count = _volumes_in(files.magnitude)
        phases = _volumes_in(files.phase)
        if count != phases:
            raise InputError(
                files.phase,
                f"{phases} phase echoes and {count} magnitude echoes "
                f"({files.magnitude.name}): one phase per magnitude is needed",
            )
        phase_sides = [read_sidecar(files.phase, phase=True)]
        sides = phase_sides + [read_sidecar(files.magnitude)]
        times = phase_sides[0].echo_times_ms or sides[1].echo_times_ms
        where = files.magnitude
    times = tuple(options.echo_times_ms) or times
    field = _field_strength(options, sides)
    units = next((s.phase_units for s in phase_sides if s.phase_units), None)
    if count == 1:
        echo = _one_echo(times[:1], field, units, field_te_t_ms)
        return *_echo_volumes(files, 0), echo
    if len(times) != count:
        raise InputError(
            where,
            f"{count} echoes and {len(times) or 'no'} echo times: give "
            "--echo-times-ms (one per echo) or sidecar JSON files with EchoTime",
        )
    chosen, outside = choose_echo(times, field or ASSUMED_FIELD_T, field_te_t_ms)
    echo = _Echo(times, chosen, field, field is None, units, outside)
    return *_echo_volumes(files, chosen), echo


def _echo_volumes(files: SubjectFiles, index: int) -> tuple[Volume, Volume]:
    """(magnitude, phase) of echo ``index`` (0-based), on one grid."""
    if files.echoes:
        echo = files.echoes[index]
        magnitude, phase = load_volumes((echo.magnitude, "magnitude"), (echo.phase, "phase"))
    else:
        magnitude = load_echoes(files.magnitude, "magnitude", index)
        phase = load_echoes(files.phase, "phase", index)
    check_same_grid(phase, magnitude)
    return magnitude, phase


def choose_echo(
    echo_times_ms, field_strength_t: float, field_te_t_ms: tuple[float, float]
) -> tuple[int, bool]:
    """The echo whose B0 x TE is nearest (log scale) to the middle of ``field_te_t_ms``.

    Returns:
        (index of the echo, whether its B0 x TE lies outside the range).
    """
    low, high = field_te_t_ms
    middle = math.sqrt(low * high)
    products = [field_strength_t * t for t in echo_times_ms]
    chosen = min(range(len(products)), key=lambda n: abs(math.log(products[n] / middle)))
    return chosen, not low <= products[chosen] <= high


def _field_strength(options: AcquisitionOptions, sidecars) -> float | None:
    if options.field_strength_t is not None:
        return float(options.field_strength_t)
    return next((s.field_strength_t for s in sidecars if s.field_strength_t), None)


def _name(path: Path | None) -> str | None:
    """A file as run.json records it: absolute, so that the outputs lead back to it from
    anywhere (the review, the report)."""
    return None if path is None else str(Path(path).absolute())


def _volumes_in(path: Path) -> int:
    """Volumes along a NIfTI file's 4th axis (1 for 3D; the loader reports bad files)."""
    try:
        shape = nib.load(str(path)).shape
    except Exception:  # the loader names the problem later
        return 1
    return int(shape[3]) if len(shape) == 4 else 1
