"""Which rule tells the phase handedness from a magnitude image (no SWI): the phase *at* the
magnitude's locally dark voxels (the rule that serves an SWI), or the dipole lobes above and
below them (:func:`cmbdet.preprocess.handedness.detect_handedness_from_lobes`)?

Each subject of the given cmbdet-layout datasets (generated, right-handed, with
``magnitude.nii.gz``) is judged twice by each rule: with its canonical phase as stored, and
negated (a left-handed acquisition). Prints one row per dataset and the totals.

    .venv/bin/python benchmarks/handedness_check.py data/g2-train/lr data/g2-train/7t --n 8
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cmbdet.io.nifti import load_volume
from cmbdet.preprocess.config import PreprocessConfig
from cmbdet.preprocess.handedness import detect_handedness, detect_handedness_from_lobes
from cmbdet.preprocess.mask import estimate_brain_mask
from cmbdet.preprocess.phase import (
    canonical_phase,
    default_hp_window,
)

RULES = {"dark voxels": detect_handedness, "dipole lobes": detect_handedness_from_lobes}


def judge(subject: Path) -> dict[str, list[tuple[bool, float]]]:
    """Per rule, (right?, confidence) for the stored and the negated phase of one subject."""
    magnitude = load_volume(subject / "magnitude.nii.gz", "magnitude")
    phase = load_volume(subject / "phase.nii.gz", "phase")
    spacing = magnitude.spacing_mm
    brain = estimate_brain_mask(magnitude.data, spacing)
    window = default_hp_window(magnitude.shape, spacing, PreprocessConfig().hp_window_per_256mm)
    radians, _ = canonical_phase(
        phase.data, brain, magnitude.data, spacing_mm=spacing, hp_window=window, handedness="right"
    )
    verdicts = {}
    for name, rule in RULES.items():
        verdicts[name] = []
        for sign, truth in ((1, "right"), (-1, "left")):
            found = rule(magnitude.data, sign * radians, brain, spacing)
            verdicts[name].append((found.handedness == truth, found.confidence))
    return verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", type=Path, nargs="+")
    parser.add_argument("--n", type=int, default=8, help="subjects per dataset (default: 8)")
    args = parser.parse_args()
    print(
        "| dataset | cases | dark voxels: right | lowest confidence | dipole lobes: right "
        "| lowest confidence |"
    )
    print("|---|---|---|---|---|---|")
    totals = {name: [0, 0] for name in RULES}
    for dataset in args.datasets:
        verdicts = {name: [] for name in RULES}
        for subject in sorted(dataset.glob("sub-*"))[: args.n]:
            for name, cases in judge(subject).items():
                verdicts[name] += cases
        cells = []
        for name in RULES:
            right = sum(ok for ok, _ in verdicts[name])
            totals[name][0] += right
            totals[name][1] += len(verdicts[name])
            lowest = min(c for ok, c in verdicts[name] if ok) if right else float("nan")
            cells += [f"{right} of {len(verdicts[name])}", f"{lowest:.2f}"]
        print(f"| {dataset.name} | {len(verdicts['dark voxels'])} | " + " | ".join(cells) + " |")
    summary = ", ".join(f"{name}: {r} of {n} right" for name, (r, n) in totals.items())
    print(f"\n{summary}")


if __name__ == "__main__":
    main()
