"""The ``synth`` and ``evaluate`` commands: making data, and scoring detections against it."""

from __future__ import annotations

import argparse

from cmbdet.errors import EXIT_OK, InputError
from cmbdet.synth.families import FamilyWeights, standard_weights


def synth_command(args: argparse.Namespace) -> int:
    """``cmbdet synth``: write a synthetic dataset."""
    from cmbdet.synth.dataset import generate_dataset  # heavy: imported only when used

    families = family_weights(args)
    generate_dataset(
        out_dir=args.out,
        preset=args.preset,
        n=args.n,
        seed=args.seed,
        workers=args.workers,
        overwrite=args.overwrite,
        handedness=args.handedness,
        phase_units=args.phase_units,
        orientation=args.orientation,
        phase_kind=args.phase_kind,
        progress=not args.quiet,
        start=args.start,
        cmb_richness=args.cmb_richness,
        families=families,
        voxel_mm=args.voxel_mm,
        layout=args.layout,
        echoes=args.echoes,
    )
    if not args.quiet:
        print(f"wrote {args.n} subjects to {args.out}")
    return EXIT_OK


def family_weights(args: argparse.Namespace) -> FamilyWeights:
    """The family weights of ``synth``'s options: ``--standard``, then ``--snr``,
    ``--skull-stripped``, ``--family`` (forced) and ``--exclude-family`` (left out).

    Raises:
        InputError: the options force two values of one axis, or leave an axis with no value
            to draw.
    """
    weights = standard_weights() if args.standard else FamilyWeights()
    forced = list(args.family)
    if args.snr == "low":
        forced.append(("snr", "low"))
    if args.skull_stripped:
        forced.append(("skull", "stripped"))
    chosen: dict[str, str] = {}
    for axis, value in forced:
        if chosen.setdefault(axis, value) != value:
            raise InputError(None, f"--family: {axis} forced to both {chosen[axis]} and {value}")
    try:
        for axis, value in forced:
            weights = weights.forced(axis, value)
        for axis, value in args.exclude_family:
            weights = weights.without(axis, value)
    except ValueError as error:
        raise InputError(None, f"--family / --exclude-family: {error}") from None
    return weights


def evaluate_command(args: argparse.Namespace) -> int:
    """``cmbdet evaluate``: score detections against ground truth; write and print the tables."""
    from cmbdet.evaluation.evaluate import can_plot, evaluate

    metrics = evaluate(args.pred, args.truth, args.out, overwrite=args.overwrite)
    for stage in ("stage1", "stage1+2"):
        m = metrics[stage]
        print(
            f"{stage:>9}: sensitivity {m['sensitivity']:.3f}  precision {m['precision']:.3f}"
            f"  F1 {m['f1']:.3f}  FP/subject {m['fp_per_subject']:.2f}  "
            f"FROC mean {m['froc']['mean']:.3f}"
        )
    print(f"tables in {args.out}")
    if not can_plot():
        print("froc.png not drawn: matplotlib is not installed (pip install 'cmbdet[plots]'); "
              "the FROC's sensitivity at each false-positive rate is in metrics.json")  # fmt: skip
    return EXIT_OK
