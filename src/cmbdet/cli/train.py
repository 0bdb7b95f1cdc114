"""The ``train``, ``calibrate``, ``finetune`` and ``crossval`` commands (torch and the
training code are imported inside them)."""

from __future__ import annotations

import argparse
import logging

from cmbdet.errors import EXIT_OK, InputError


def show_progress_log() -> None:
    """Training's progress (``logging`` INFO) on stderr, with the time of each line."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")


def train_command(args: argparse.Namespace) -> int:
    """``cmbdet train``: both stages and the operating point; writes a model folder."""
    from cmbdet.training.model import train_model

    show_progress_log()
    config = _training_config(args)
    out = train_model(args.data, args.out, config)
    print(f"model written to {out}")
    return EXIT_OK


def calibrate_command(args: argparse.Namespace) -> int:
    """Choose a model's thresholds again on validation subjects; write the new model."""
    from cmbdet.training.calibrate import calibrate_model
    from cmbdet.training.config import OperatingRule

    show_progress_log()
    rule = OperatingRule(args.min_stage1_sensitivity, args.min_sensitivity, args.max_fp)
    out, point = calibrate_model(
        args.model,
        args.data,
        args.out,
        rule,
        overwrite=args.overwrite,
        device=args.device,
        precision=args.precision,
    )
    metrics = point.metrics
    print(
        f"stage-1 threshold {point.stage1_threshold:g}, stage-2 threshold {point.threshold:g}: "
        f"sensitivity {metrics['sensitivity']:.1%}, {metrics['fp_per_subject']:.2f} false "
        f"positives per subject on {int(metrics['subjects'])} subjects ({int(metrics['cmbs'])} "
        f"CMBs)"
    )
    print(f"model written to {out}")
    return EXIT_OK


def finetune_command(args: argparse.Namespace) -> int:
    """``cmbdet finetune``: both stages adapted to labelled subjects; writes a model folder."""
    from cmbdet.training.config import FinetuneConfig
    from cmbdet.training.finetune import finetune_model

    show_progress_log()
    try:
        config = FinetuneConfig.from_options(
            args.stage1_steps, args.stage2_steps, args.seed, args.calibration_share
        )
    except ValueError as error:
        raise InputError(None, f"--calibration-share: {error}") from None
    out = finetune_model(args.model, args.data, args.out, config, args.calibrate_on)
    print(f"model written to {out}")
    return EXIT_OK


def crossval_command(args: argparse.Namespace) -> int:
    """``cmbdet crossval``: the paper's k-fold protocol; prints the tables."""
    from cmbdet.training.crossval import crossval, format_table

    if not args.quiet:
        show_progress_log()
    config = _training_config(args)
    result = crossval(args.data, args.out, args.folds, config, progress=not args.quiet)
    print(format_table(result))
    print(f"tables in {args.out}")
    return EXIT_OK


def _training_config(args: argparse.Namespace):
    """The TrainModelConfig of ``train``'s and ``crossval``'s options."""
    from cmbdet.training.config import TrainModelConfig

    if args.magnitude_share is not None and not args.phase_free:
        raise InputError(None, "--magnitude-share is for --phase-free models")
    return TrainModelConfig.from_options(
        args.stage1_steps,
        args.stage2_steps,
        args.seed,
        args.max_fp,
        args.phase_free,
        args.magnitude_share,
    )
