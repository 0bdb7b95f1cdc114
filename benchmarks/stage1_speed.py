"""Stage-1 time per subject against the 3D FRST baseline, measured in the same run.

    .venv/bin/python benchmarks/stage1_speed.py --test data/test-hr data/test-lr --n 10 \
        --models runs/model-v3-cal src/cmbdet/models/default

For each subject, preprocessed once per preprocessing configuration: the FRST candidate
detector on the preprocessed SWI (:func:`frst.frst_candidates`, beside this script), then stage 1
(network over the slices, decoding, linking: what ``detect`` times as ``stage1``) of every model
in every precision, in turn, so that a busy machine slows them all alike. Medians per test set;
the ratio FRST / stage 1 is the issue's speed target (>= 20x). FRST is NumPy/SciPy and runs on
one core; stage 1 uses torch's threads (``--threads 1`` for a one-core comparison).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from frst import frst_candidates

from cmbdet.detect.detector import Detector
from cmbdet.io.dataset import find_subjects
from cmbdet.io.nifti import load_volume
from cmbdet.preprocess.pipeline import preprocess, slice_images
from cmbdet.stage1.inference import detect_candidates


def seconds(function, *args) -> float:
    started = time.perf_counter()
    function(*args)
    return time.perf_counter() - started


def time_subject(detectors: dict[str, Detector], swi: Path, phase: Path) -> dict[str, float]:
    """Seconds of FRST and of each detector's stage 1 on one subject."""
    swi, phase = load_volume(swi, "SWI"), load_volume(phase, "phase")
    prepared = {}  # by preprocessing configuration
    row = {}
    for name, detector in detectors.items():
        key = detector.preprocess_config  # frozen, hashable
        if key not in prepared:
            pre = preprocess(swi, phase, config=detector.preprocess_config)
            prepared[key] = pre, slice_images(pre)
        pre, images = prepared[key]
        if "FRST" not in row:
            row["FRST"] = seconds(frst_candidates, pre.swi, pre.brain, pre.spacing_mm)
        row[name] = seconds(
            detect_candidates, detector.stage1, images, pre.spacing_mm[0], pre.brain
        )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test", type=Path, nargs="+", required=True)
    parser.add_argument("--n", type=int, default=10, help="subjects per test set")
    parser.add_argument("--models", type=Path, nargs="+", default=[None])
    parser.add_argument("--precisions", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--threads", type=int, help="torch threads (default: one per core)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    detectors = {
        f"{model.name if model else 'shipped'} {precision}": Detector.load(model, "cpu", precision)
        for model in args.models
        for precision in args.precisions
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; seconds per subject")
    print("| test set | FRST | " + " | ".join(detectors) + " |")
    print("|---" * (len(detectors) + 2) + "|")
    for folder in args.test:
        subjects = find_subjects(folder)[: args.n]
        time_subject(detectors, subjects[0].swi, subjects[0].phase)  # warm-up, not counted
        rows = [time_subject(detectors, s.swi, s.phase) for s in subjects]
        median = {k: float(np.median([r[k] for r in rows])) for k in rows[0]}
        cells = [f"{median[name]:.3f} ({median['FRST'] / median[name]:.1f}x)" for name in detectors]
        print(f"| {folder.name} ({len(rows)}) | {median['FRST']:.2f} | " + " | ".join(cells) + " |")
    print("\ncells: stage-1 seconds (FRST seconds / stage-1 seconds, medians)")


if __name__ == "__main__":
    main()
