"""The ``detect`` command: one subject, or a batch of them.

Heavy modules (torch, the networks, the generator) are imported inside the commands, so that
``cmbdet --help`` and usage errors stay fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cmbdet.errors import EXIT_OK, InputError


def detect_command(args: argparse.Namespace) -> int:
    """``cmbdet detect``: one subject (``--swi`` or ``--magnitude``, ``--phase``) or a batch
    (``--dataset``, ``--manifest``); returns the exit code."""
    single = any(x is not None for x in (args.swi, args.phase, args.magnitude))
    many = args.dataset is not None or args.manifest is not None
    if single == many:
        raise InputError(
            None, "give either --swi (or --magnitude) and --phase, or --dataset (or --manifest)"
        )
    if single:
        if args.bids_derivatives:
            raise InputError(None, "--bids-derivatives is for a batch (--dataset or --manifest)")
        return _detect_single(args)
    if args.dataset is not None and args.manifest is not None:
        raise InputError(None, "give either --dataset or --manifest, not both")
    if args.magnitude is not None or args.mask is not None:
        raise InputError(
            None,
            "--magnitude and --mask are for one subject (list them per subject in a --manifest)",
        )
    return _detect_batch(args)


def _detect_batch(args: argparse.Namespace) -> int:
    from cmbdet.batch.dask import LOCAL, connect, on_dask
    from cmbdet.batch.local import AUTO, WorkerProcesses, auto_workers
    from cmbdet.batch.run import run_batch
    from cmbdet.io.inputs import discover_inputs

    if args.scheduler not in (None, LOCAL) and args.workers != 1:
        raise InputError(None, "--workers is for this machine; the cluster's workers run the tasks")
    found = discover_inputs(args.dataset, args.manifest)
    settings = _detect_settings(args)
    batch = {
        "overwrite": args.overwrite,
        "debug": args.debug,
        "unusable": found.unusable,
        "title": _cohort_title(args.dataset, args.manifest),
        "bids_derivatives": args.bids_derivatives,
    }
    if args.scheduler is None:
        runner = WorkerProcesses(args.workers, args.debug)
        summary = run_batch(found.subjects, args.out, settings, runner=runner, **batch)
    else:
        workers = args.workers
        if workers == AUTO:
            workers = auto_workers(len(found.subjects))
        with connect(args.scheduler, workers) as client:
            summary = run_batch(found.subjects, args.out, settings, runner=on_dask(client), **batch)
    print(summary.line())
    return summary.exit_code


def _cohort_title(dataset: Path | None, manifest: Path | None) -> str:
    """The cohort page's title: the dataset folder's name, or the manifest's."""
    if dataset is not None:
        return dataset.resolve().name
    return manifest.resolve().stem


def _detect_settings(args: argparse.Namespace):
    from cmbdet.batch.subject import DetectSettings

    return DetectSettings(
        model_dir=args.model,
        threshold=args.threshold,
        phase_units=args.phase_units,
        handedness=args.phase_handedness,
        phase_kind=args.phase_kind,
        device=args.device,
        precision=args.precision,
        backend=args.backend,
        echo_times_ms=tuple(args.echo_times_ms or ()),
        field_strength_t=args.field_strength,
    )


def _detect_single(args: argparse.Namespace) -> int:
    from cmbdet.detect.detector import Detector
    from cmbdet.detect.outputs import check_output_folder, write_outputs
    from cmbdet.detect.shipped import MODELS_DIR

    if args.swi is None and args.magnitude is None:
        raise InputError(None, "give --swi or --magnitude (with --phase, or alone)")
    if args.workers != 1 or args.scheduler is not None:
        raise InputError(None, "--workers and --scheduler are for --dataset or --manifest")
    inputs = (args.swi, args.phase, args.magnitude, args.mask, args.model, MODELS_DIR)
    out = check_output_folder(args.out, args.overwrite, inputs)
    settings = _detect_settings(args)
    # PyTorch is imported and the networks built on a thread while the inputs are read
    detector = Detector.load(
        settings.model_dir,
        settings.device,
        settings.precision,
        backend=settings.backend,
        background=True,
    )
    result = detector.detect(
        args.swi, args.phase, args.magnitude, args.mask, **settings.detect_options()
    )
    write_outputs(out, result, result.reference, overwrite=args.overwrite)
    print(f"{len(result.detections)} CMBs found; outputs in {args.out}")
    return EXIT_OK
