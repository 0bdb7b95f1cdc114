"""Does a generated dataset obey the physics a reader relies on? Checked from the written files
alone (NIfTI, lesions.csv, dataset.json), as any reader of the data would, not from the
generator's internals:

- every visible CMB is hypointense on SWI (the darkest voxel near its centre below 70% of the
  brain's median SWI);
- its high-pass phase above and below it along B0 has the paramagnetic sign of the stored
  handedness (negative right-handed, positive left-handed), read one slice past its radius,
  or farther where the dipole's phase on its axis is still above 1 radian (at high field and
  long echo times the phase next to a CMB wraps: its sign there says nothing);
- a calcification's phase there has the opposite sign (lesions whose expected phase there is
  under 0.3 radian are not judged by their phase).

    .venv/bin/python benchmarks/synth_physics_check.py data/check-hr data/check-lr ...

Prints one row per dataset; a dataset passes when >= 90% of its CMBs are dark, >= 85% have
the right phase sign, and >= 80% of its calcifications the opposite one. Datasets with raw
(unfiltered) phase are high-pass filtered here first (homodyne, 48 samples per 256 mm).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from cmbdet.io.dataset import find_subjects, read_dataset_json
from cmbdet.io.lesions import read_lesions_csv
from cmbdet.swi import homodyne_highpass

DARK_FRACTION = 0.7
MEASURABLE_RAD = 0.3  # a lesion whose phase there is weaker is not judged by it
PASS = {"dark": 0.9, "cmb_sign": 0.85, "calcification_sign": 0.8}


@dataclass
class Counts:
    """A dataset's visible CMBs and calcifications and how many obey the physics; lesions
    whose expected phase one reach away is under :data:`MEASURABLE_RAD` are not judged by
    their phase."""

    cmbs: int = 0
    dark: int = 0
    cmbs_judged: int = 0  # by their phase
    cmb_sign: int = 0
    calcifications: int = 0  # judged by their phase
    calcification_sign: int = 0

    def rates(self) -> dict[str, float]:
        return {
            "dark": self.dark / self.cmbs if self.cmbs else float("nan"),
            "cmb_sign": self.cmb_sign / self.cmbs_judged if self.cmbs_judged else float("nan"),
            "calcification_sign": self.calcification_sign / self.calcifications
            if self.calcifications
            else float("nan"),
        }

    def passes(self) -> bool:
        rates = self.rates()
        return all(not rates[k] < limit for k, limit in PASS.items())  # NaN: nothing to fail


def check_dataset(folder: Path) -> Counts:
    """The physics counts of every subject of a generated dataset."""
    settings = read_dataset_json(folder).get("settings", {})
    handedness = -1.0 if settings.get("handedness", "right") == "right" else 1.0
    counts = Counts()
    for subject in find_subjects(folder):
        swi_image = nib.load(subject.swi)
        swi = np.asarray(swi_image.dataobj, dtype=np.float32)
        phase = _phase_radians(subject, settings)
        brain = np.asarray(nib.load(subject.brainmask).dataobj) > 0
        median = float(np.median(swi[brain]))
        inverse = np.linalg.inv(swi_image.affine)
        protocol = _protocol(subject)
        b0 = np.asarray(protocol.get("b0_dir", (0.0, 0.0, 1.0)), dtype=float)
        per_ppm = (
            2 * np.pi * 42.577e6 * protocol.get("field_t", 3.0) * 1e-6 * protocol.get("te_s", 0.02)
        )
        for lesion in read_lesions_csv(subject.lesions_csv):
            if lesion.kind not in ("cmb", "calcification") or not lesion.visible:
                continue
            centre = np.array([lesion.x_mm, lesion.y_mm, lesion.z_mm])
            radius = (lesion.true_diameter_mm or lesion.diameter_mm) / 2
            unwrapped = radius * np.cbrt(per_ppm * abs(lesion.delta_chi_ppm or 1.0) * 2 / 3)
            reach = max(radius + _slice_mm(swi_image), unwrapped)
            expected = per_ppm * abs(lesion.delta_chi_ppm or 1.0) * 2 / 3 * (radius / reach) ** 3
            sign = _phase_sign(phase, swi_image.affine, centre, b0, reach)
            if lesion.kind == "cmb":
                counts.cmbs += 1
                counts.dark += _darkest(swi, inverse, centre) < DARK_FRACTION * median
                if expected >= MEASURABLE_RAD:
                    counts.cmbs_judged += 1
                    counts.cmb_sign += sign == handedness
            elif expected >= MEASURABLE_RAD:  # a faint calcification's phase is noise
                counts.calcifications += 1
                counts.calcification_sign += sign == -handedness
    return counts


def _phase_radians(subject, settings: dict) -> np.ndarray:
    phase = np.asarray(nib.load(subject.phase).dataobj, dtype=np.float32)
    if settings.get("phase_units") == "integer":
        phase = phase / 4096.0 * np.pi
    if settings.get("phase_kind") == "raw":
        magnitude = np.asarray(nib.load(subject.magnitude).dataobj, dtype=np.float32)
        window = int(2 * round(48 * magnitude.shape[0] / 512))
        phase = homodyne_highpass(magnitude * np.exp(1j * phase), max(window, 8))
    return phase


def _protocol(subject) -> dict:
    """The subject's acquisition (B0 direction in world RAS, field, TE) from its record."""
    record = subject.swi.parent / "acquisition.json"
    return json.loads(record.read_text())["protocol"] if record.is_file() else {}


def _slice_mm(image) -> float:
    return float(np.sort(np.asarray(image.header.get_zooms()[:3]))[-1])


def _voxel(inverse: np.ndarray, point_mm: np.ndarray, shape) -> tuple[int, int, int] | None:
    ijk = np.round(inverse[:3, :3] @ point_mm + inverse[:3, 3]).astype(int)
    if np.any(ijk < 0) or np.any(ijk >= shape):
        return None
    return tuple(int(v) for v in ijk)


def _darkest(swi: np.ndarray, inverse: np.ndarray, centre: np.ndarray) -> float:
    """The darkest SWI voxel within one voxel of the lesion's centre."""
    voxel = _voxel(inverse, centre, swi.shape)
    if voxel is None:
        return float("inf")
    box = tuple(slice(max(v - 1, 0), v + 2) for v in voxel)
    return float(swi[box].min())


def _phase_sign(
    phase: np.ndarray, affine: np.ndarray, centre: np.ndarray, b0: np.ndarray, reach: float
) -> float:
    """The sign of the summed phase one reach above and below the lesion along B0 (the median
    of the 3 x 3 neighbourhood across the array axis nearest to B0, at each)."""
    inverse = np.linalg.inv(affine)
    along = int(np.argmax(np.abs(affine[2, :3])))  # the stored axis closest to head-foot
    total = 0.0
    for side in (1.0, -1.0):
        voxel = _voxel(inverse, centre + side * reach * b0, phase.shape)
        if voxel is None:
            continue
        box = tuple(
            slice(v, v + 1) if axis == along else slice(max(v - 1, 0), v + 2)
            for axis, v in enumerate(voxel)
        )
        total += float(np.median(phase[box]))
    return float(np.sign(total))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", type=Path, nargs="+")
    args = parser.parse_args()
    print(
        "| dataset | CMBs | dark on SWI | judged by phase | phase sign | calcifications | "
        "opposite sign | passes |"
    )
    print("|---|---|---|---|---|---|---|---|")
    failed = False
    for folder in args.datasets:
        counts = check_dataset(folder)
        rates = counts.rates()
        failed |= not counts.passes()
        print(
            f"| {folder.name} | {counts.cmbs} | {rates['dark']:.1%} | {counts.cmbs_judged} | "
            f"{rates['cmb_sign']:.1%} | "
            f"{counts.calcifications} | {rates['calcification_sign']:.1%} | "
            f"{'yes' if counts.passes() else 'NO'} |"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
