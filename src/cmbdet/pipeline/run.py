"""The ``detect``, ``train`` and ``demo`` commands (argument handling around the library)."""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np

from cmbdet.errors import InputError
from cmbdet.evaluation.matching import cmb_centres, match_detections
from cmbdet.io.dataset import find_subjects, read_lesions_csv
from cmbdet.pipeline.detector import Detector
from cmbdet.pipeline.outputs import check_output_folder, write_outputs

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def detect_command(args: argparse.Namespace) -> int:
    single = args.swi is not None or args.phase is not None
    if single == (args.dataset is not None):
        raise InputError(None, "give either --swi and --phase, or --dataset")
    if single and (args.swi is None or args.phase is None):
        raise InputError(None, "--swi and --phase are both required for one subject")
    check_output_folder(args.out, args.overwrite)
    detector = Detector.load(args.model)
    options = {
        "threshold": args.threshold,
        "phase_units": args.phase_units,
        "handedness": args.phase_handedness,
        "phase_kind": args.phase_kind,
    }
    if single:
        count = _detect_one(
            detector,
            args.swi,
            args.phase,
            args.magnitude,
            args.mask,
            args.out,
            args.overwrite,
            options,
        )
        print(f"{count} CMBs found; outputs in {args.out}")
        return EXIT_OK
    failures = 0
    subjects = find_subjects(args.dataset)
    for subject in subjects:
        out = args.out / f"sub-{subject.subject_id}"
        try:
            count = _detect_one(
                detector,
                subject.swi,
                subject.phase,
                subject.magnitude,
                subject.brainmask,
                out,
                args.overwrite,
                options,
            )
            print(f"sub-{subject.subject_id}: {count} CMBs")
        except InputError as error:  # a bad subject is reported and skipped
            failures += 1
            print(f"sub-{subject.subject_id}: skipped: {error}", file=sys.stderr)
    print(f"{len(subjects) - failures} of {len(subjects)} subjects done; outputs in {args.out}")
    return EXIT_OK if failures == 0 else EXIT_BAD_INPUT


def _detect_one(detector, swi, phase, magnitude, mask, out, overwrite, options) -> int:
    result = detector.detect(swi, phase, magnitude, mask, **options)
    write_outputs(out, result, result.reference, overwrite=overwrite)
    return len(result.detections)


def train_command(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from cmbdet.pipeline.train_model import TrainModelConfig, train_model

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    defaults = TrainModelConfig()
    config = replace(
        defaults,
        seed=args.seed,
        stage1=replace(defaults.stage1, steps=args.stage1_steps, seed=args.seed),
        stage2=replace(defaults.stage2, steps=args.stage2_steps, seed=args.seed),
    )
    out = train_model(args.data, args.out, config)
    print(f"model written to {out}")
    return EXIT_OK


def demo_command(args: argparse.Namespace) -> int:
    """Generate a subject, detect, and compare with the generated truth."""
    from cmbdet.synth.dataset import generate_dataset

    ours = {"detections.csv", "candidates.csv", "cmb_labels.nii.gz", "run.json"}
    if args.out.is_dir() and not {p.name for p in args.out.iterdir()} <= ours:
        raise InputError(
            args.out, "exists and holds files a demo did not write; choose another --out"
        )
    detector = Detector.load(args.model)
    with tempfile.TemporaryDirectory() as scratch:
        data = generate_dataset(Path(scratch) / "data", args.preset, 1, args.seed, progress=False)
        (subject,) = find_subjects(data)
        result = detector.detect(subject.swi, subject.phase)
        write_outputs(args.out, result, result.reference, overwrite=True)
        lesions = read_lesions_csv(subject.lesions_csv)
    truth, ignored = cmb_centres(lesions)
    found = np.array([[d.x_mm, d.y_mm, d.z_mm] for d in result.detections])
    match = match_detections(found.reshape(-1, 3), truth, ignored)
    print(f"synthetic {args.preset} subject (seed {args.seed}): {len(truth)} visible CMBs")
    print(
        f"found {match.true_positives}, missed {match.false_negatives}, "
        f"false positives {match.false_positives} "
        f"({len(result.candidates)} stage-1 candidates)"
    )
    timings = result.record["timings_s"]
    print("time: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    print(f"outputs in {args.out}")
    return EXIT_OK
