"""The generator's BIDS output (``cmbdet synth --layout bids``): gradient-echo magnitude and phase
as BIDS stores them, one echo or several, with sidecar JSON; no SWI (users compute it, or
cmbdet does).

Per subject, in ``sub-<id>/anat/``:

- one echo: ``sub-<id>_part-mag_T2starw.nii.gz`` and ``sub-<id>_part-phase_T2starw.nii.gz``;
- N echoes: ``sub-<id>_echo-<k>_part-mag_MEGRE.nii.gz`` and ``..._part-phase_MEGRE.nii.gz``;

each with a ``.json`` sidecar (``EchoTime`` in s, ``MagneticFieldStrength`` in T, and for the
phase ``Units``: ``rad`` or ``arbitrary``). The ground truth, which BIDS has no place for, lies
beside ``anat/``: ``sub-<id>/lesions.csv`` and ``labels.nii.gz`` (``cmbdet evaluate --truth``
reads them).

**Echoes.** Echo k (k = 1..N) is the same subject, the same draws of anatomy, lesions and
noise, acquired at TE_k = TE x k / r with r = max(1, N // 2): echo r is the subject's drawn
TE, and lesions.csv (visibility included) is that echo's. Noise and intensity scaling are the
reference echo's, as a scanner gives them (later echoes: less signal, the same noise).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from cmbdet.geometry import world_to_voxel
from cmbdet.io.lesions import write_lesions_csv
from cmbdet.io.nifti import save_volume
from cmbdet.io.writing import write_atomic
from cmbdet.synth.config import SynthConfig
from cmbdet.synth.subject import EchoOf, SyntheticSubject, generate_subject

BIDS_VERSION = "1.10.0"
MAX_ECHOES = 8


def reference_echo(echoes: int) -> int:
    """The echo (1-based) acquired at the subject's drawn TE."""
    return max(1, echoes // 2)


def echo_times_s(te_s: float, echoes: int) -> list[float]:
    """The echo times of an ``echoes``-echo acquisition whose reference echo is at ``te_s``."""
    reference = reference_echo(echoes)
    return [te_s * k / reference for k in range(1, echoes + 1)]


def generate_echoes(config: SynthConfig, seed: np.random.SeedSequence) -> list[SyntheticSubject]:
    """The subject at each of ``config.echoes`` echo times (see the module docstring)."""
    reference = generate_subject(config, seed)
    subjects = []
    for k, te_s in enumerate(echo_times_s(reference.protocol.te_s, config.echoes), start=1):
        if k == reference_echo(config.echoes):
            subjects.append(reference)
            continue
        echo = EchoOf(te_s, reference.noise_sigma, reference.intensity_scale)
        subjects.append(generate_subject(config, seed, echo))
    return subjects


def write_bids_subject(
    folder: Path,
    subject_id: str,
    echoes: list[SyntheticSubject],
    config: SynthConfig,
    to_stored,
    affine,
) -> None:
    """Write one subject's echoes into ``folder`` (its ``sub-<id>/``) as the module docstring
    says; ``to_stored`` and ``affine`` give the storage orientation."""
    anat = Path(folder) / "anat"
    anat.mkdir(parents=True)
    multi = len(echoes) > 1
    suffix = "MEGRE" if multi else "T2starw"
    for k, subject in enumerate(echoes, start=1):
        echo = f"_echo-{k}" if multi else ""
        stem = f"sub-{subject_id}{echo}"
        sidecar = {
            "EchoTime": round(subject.protocol.te_s, 6),
            "MagneticFieldStrength": subject.protocol.field_t,
            "RepetitionTime": round(subject.protocol.tr_s, 6),
            "FlipAngle": round(subject.protocol.flip_deg, 3),
        }
        magnitude = anat / f"{stem}_part-mag_{suffix}.nii.gz"
        save_volume(magnitude, to_stored(subject.magnitude), affine, dtype=np.int16)
        _write_json(magnitude, sidecar)
        phase_data, dtype, units = stored_phase(subject, config)
        phase = anat / f"{stem}_part-phase_{suffix}.nii.gz"
        save_volume(phase, to_stored(phase_data), affine, dtype=dtype)
        _write_json(phase, {**sidecar, "Units": units})
    truth = echoes[reference_echo(len(echoes)) - 1]
    save_volume(Path(folder) / "labels.nii.gz", to_stored(truth.labels), affine, dtype=np.int16)
    lesions = []
    for lesion in truth.lesions:
        ijk = world_to_voxel(np.array([lesion.x_mm, lesion.y_mm, lesion.z_mm]), affine)
        lesions.append(replace(lesion, i=float(ijk[0]), j=float(ijk[1]), k=float(ijk[2])))
    write_lesions_csv(Path(folder) / "lesions.csv", lesions)


INTEGER_PHASE_MAX = 4096
"""Integer phase units: -4096..4095 stand for -pi..pi (a common scanner convention)."""


def stored_phase(subject: SyntheticSubject, config: SynthConfig):
    """(phase array, its dtype, BIDS ``Units``) in the configured kind, handedness and units."""
    phase = subject.hp_phase if config.phase_kind == "filtered" else subject.raw_phase
    if config.handedness == "left":
        phase = -phase
    if config.phase_units == "integer":
        limit = INTEGER_PHASE_MAX
        scaled = np.clip(np.round(phase / np.pi * limit), -limit, limit - 1)
        return scaled, np.int16, "arbitrary"
    return phase, np.float32, "rad"


def write_dataset_description(out_dir: Path, info: dict) -> None:
    """The BIDS ``dataset_description.json`` of a generated dataset."""
    description = {
        "Name": "cmbdet synthetic gradient-echo dataset",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "raw",
        "GeneratedBy": [
            {"Name": "cmbdet synth", "Version": info["cmbdet_version"]},
        ],
    }
    _write_json(Path(out_dir) / "dataset_description.json", description, image=False)


def _write_json(path: Path, content: dict, image: bool = True) -> None:
    if image:
        name = path.name
        path = path.with_name(name[: -len(".nii.gz")] + ".json")
    write_atomic(path, json.dumps(content, indent=2, sort_keys=True) + "\n")  # never via a link
