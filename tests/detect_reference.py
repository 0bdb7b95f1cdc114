"""Reference detections of the shipped models on fixed generated subjects: what a change that
should not alter results (speed work, a new backend) is checked against.

Each case is a seeded ``cmbdet synth`` subject chosen to take one path through preprocessing:
a fine in-plane grid stored LPS (anti-aliased shrink to the model grid, coarse brain mask,
reorientation), raw integer phase on 0.8 x 0.8 x 3 mm voxels (homodyne filter, units,
in-plane and through-plane upsampling), a magnitude + phase BIDS subject (the computed SWI,
handedness from dipole lobes) and an SWI alone (the phase-free model).

Re-make the stored file after a new model ships (the test names the command when the model's
checksums differ from the stored ones):

    .venv/bin/python tests/detect_reference.py --write
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cmbdet.detect.detector import Detector
from cmbdet.io.dataset import SubjectFiles
from cmbdet.synth import GENERATOR_VERSION

ROLES = ("swi", "phase", "magnitude")
REFERENCE_FILE = Path(__file__).parent / "data" / "detect_reference.json"
CMBDET = str(Path(sys.executable).parent / "cmbdet")


@dataclass(frozen=True)
class Case:
    """One reference subject: how it is generated and which of its files are given."""

    name: str
    synth_args: tuple[str, ...]
    files: tuple[str, ...]  # roles given to detect: swi, phase, magnitude

    def generate(self, root: Path) -> SubjectFiles:
        """Write the subject under ``root / name`` and return the files ``detect`` is given."""
        out = root / self.name
        subprocess.run(
            [CMBDET, "synth", "--out", str(out), "--n", "1", "--quiet", *self.synth_args],
            check=True,
            capture_output=True,
        )
        folder = out / "sub-0000"
        if (folder / "anat").is_dir():  # BIDS: the echo's magnitude and phase
            anat = folder / "anat"
            found = {
                "magnitude": next(anat.glob("*part-mag*.nii.gz")),
                "phase": next(anat.glob("*part-phase*.nii.gz")),
            }
        else:
            found = {role: folder / f"{role}.nii.gz" for role in ("swi", "phase", "magnitude")}
        given = {role: found.get(role) if role in self.files else None for role in ROLES}
        return SubjectFiles(subject_id=self.name, **given)


CASES = (
    Case(
        "fine-lps-filtered",
        (
            "--preset",
            "tiny",
            "--seed",
            "101",
            "--voxel-mm",
            "0.5",
            "0.5",
            "2",
            "--orientation",
            "LPS",
            "--cmb-richness",
            "3",
        ),
        ("swi", "phase"),
    ),
    Case(
        "coarse-raw-integer",
        (
            "--preset",
            "tiny",
            "--seed",
            "102",
            "--voxel-mm",
            "0.8",
            "0.8",
            "3",
            "--phase-kind",
            "raw",
            "--phase-units",
            "integer",
            "--cmb-richness",
            "3",
        ),
        ("swi", "phase", "magnitude"),
    ),
    Case(
        "bids-magnitude-phase",
        ("--preset", "tiny", "--seed", "103", "--layout", "bids", "--cmb-richness", "3"),
        ("magnitude", "phase"),
    ),
    Case(
        "swi-alone",
        ("--preset", "tiny", "--seed", "104", "--cmb-richness", "3"),
        ("swi",),
    ),
)


def detect_cases(detector: Detector, root: Path) -> dict:
    """Every case's candidates (world mm, stage-1 score, stage-2 probability) by case name."""
    results = {}
    for case in CASES:
        result = detector.detect_subject(case.generate(root))
        results[case.name] = {
            "model": result.record["model"]["name"],
            "stage1_threshold": result.record["stage1_threshold"],
            "candidates": [
                {
                    "mm": [round(c.x_mm, 4), round(c.y_mm, 4), round(c.z_mm, 4)],
                    "stage1_score": round(c.stage1_score, 5),
                    "score": round(c.score, 5),
                }
                for c in result.candidates
            ],
        }
    return results


def model_checksums(detector: Detector) -> dict:
    """The checksums of the default and the phase-free model the cases run on."""
    models = [detector, detector.phase_free("swi-only"), detector.phase_free("magnitude-only")]
    return {model.info["name"]: model.spec.checksums for model in models}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"write {REFERENCE_FILE.name}")
    args = parser.parse_args()
    detector = Detector.load(precision="float32")
    with tempfile.TemporaryDirectory() as scratch:
        results = detect_cases(detector, Path(scratch))
    reference = {
        "generator_version": GENERATOR_VERSION,
        "models": model_checksums(detector),
        "cases": results,
    }
    text = json.dumps(reference, indent=1) + "\n"
    if args.write:
        REFERENCE_FILE.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
