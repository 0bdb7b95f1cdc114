"""The ``cmbdet`` argument parser: every command's options, with their defaults (read from the
torch-free config modules), and the handler each command runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from cmbdet.cli.arguments import (
    add_model_option,
    add_network_options,
    axis_codes,
    positive_float,
    positive_int,
    probability,
    seed,
)
from cmbdet.cli.data import evaluate_command, synth_command
from cmbdet.cli.demo import demo_command
from cmbdet.cli.detect_parser import add_detect
from cmbdet.cli.review import add_review
from cmbdet.cli.train import (
    calibrate_command,
    crossval_command,
    finetune_command,
    train_command,
)
from cmbdet.errors import EXIT_BAD_INPUT, print_one_line
from cmbdet.synth.families import AXES, parse_choice
from cmbdet.synth.presets import PRESET_HELP, PRESETS
from cmbdet.training.config import (
    FINETUNE_STAGE1,
    FINETUNE_STAGE2,
    STAGE1_TRAINING,
    STAGE2_TRAINING,
    FinetuneConfig,
    OperatingRule,
)
from cmbdet.version import __version__

MAX_FP_HELP = (
    "choose the operating threshold as the highest validation sensitivity at no more than "
    "this many false positives per subject (default: the highest threshold keeping 95%% "
    "validation sensitivity)"
)


class _OneLineErrors(argparse.ArgumentParser):
    """Usage errors as one line on stderr (DESIGN.md), pointing at ``--help``; exit 2."""

    def error(self, message: str):
        print_one_line(f"{self.prog}: error: {message} (see {self.prog} --help)")
        raise SystemExit(EXIT_BAD_INPUT)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = _OneLineErrors(
        prog="cmbdet",
        description="Detect cerebral microbleeds in SWI + phase MRI.",
    )
    parser.add_argument("--version", action="version", version=f"cmbdet {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of unexpected errors"
    )
    commands = parser.add_subparsers(
        title="commands", metavar="COMMAND", dest="command", parser_class=_OneLineErrors
    )
    common = _common_options()
    _add_synth(commands, common)
    add_detect(commands, common)
    _add_train(commands, common)
    _add_calibrate(commands, common)
    _add_finetune(commands, common)
    _add_demo(commands, common)
    _add_evaluate(commands, common)
    _add_crossval(commands, common)
    add_review(commands, common)
    return parser


def _common_options() -> argparse.ArgumentParser:
    """Options every subcommand also accepts after its name (e.g. ``cmbdet synth --debug``)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    return common


def _add_synth(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "synth",
        parents=[common],
        help="write a synthetic SWI + phase dataset",
        description="Write a synthetic dataset in the layout of DESIGN.md (sub-<id>/ folders).",
    )
    parser.add_argument("--out", type=Path, required=True, help="output dataset folder")
    parser.add_argument(
        "--preset",
        choices=PRESETS,
        required=True,
        help="the acquisition: "
        + "; ".join(f"{name}: {text}" for name, text in PRESET_HELP.items()),
    )
    parser.add_argument(
        "--voxel-mm",
        type=positive_float,
        nargs=3,
        metavar=("X", "Y", "Z"),
        help="another voxel size over the preset's field of view, 0.3-5 mm, e.g. 0.4 0.4 1.5",
    )
    parser.add_argument("--n", type=positive_int, required=True, help="number of subjects")
    parser.add_argument("--seed", type=int, default=0, help="base seed (default: 0)")
    parser.add_argument(
        "--start",
        type=int,
        default=0,
        help="index of the first subject, to extend an existing dataset (default: 0)",
    )
    parser.add_argument(
        "--workers", type=positive_int, default=1, help="parallel processes (default: 1)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing non-empty output folder"
    )
    parser.add_argument(
        "--handedness",
        choices=("right", "left"),
        default="right",
        help="sign convention of the written phase: right (a CMB gives negative phase above "
        "and below it) or left (default: right)",
    )
    parser.add_argument(
        "--phase-units",
        choices=("radians", "integer"),
        default="radians",
        help="units of the written phase: radians, or scanner integers -4096..4095 "
        "(default: radians)",
    )
    parser.add_argument(
        "--orientation",
        type=axis_codes,
        default="RAS",
        help="array order of the written files, e.g. RAS, LPS (default: RAS)",
    )
    parser.add_argument(
        "--phase-kind",
        choices=("filtered", "raw"),
        default="filtered",
        help="written phase: filtered (the scanner's high-pass SWI phase) or raw (wrapped, "
        "with background fields) (default: filtered)",
    )
    parser.add_argument(
        "--layout",
        choices=("cmbdet", "bids"),
        default="cmbdet",
        help="cmbdet: sub-*/swi, phase, magnitude (the DESIGN.md layout); bids: gradient-echo "
        "magnitude and phase in sub-*/anat/ (T2starw, or MEGRE with --echoes), sidecar JSON, "
        "no SWI, truth in sub-*/lesions.csv (default: cmbdet)",
    )
    parser.add_argument(
        "--echoes",
        type=positive_int,
        default=1,
        help="echoes per subject, 1-8 (more than one: --layout bids) (default: 1)",
    )
    parser.add_argument(
        "--cmb-richness",
        type=positive_float,
        default=1.0,
        help="CMB-rich training data: typical CMB count times this (default: 1, clinical)",
    )
    _add_family_options(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=synth_command)


def _add_family_options(parser: argparse.ArgumentParser) -> None:
    """What the generator varies per subject (cmbdet.synth.families), and how to fix it."""
    axes = "; ".join(f"{axis}: {', '.join(values)}" for axis, values in AXES.items())
    parser.add_argument(
        "--snr",
        choices=("mixed", "low"),
        default="mixed",
        help="low: white-matter SNR 5-12 for every subject (default: mixed, 20%% of subjects low)",
    )
    parser.add_argument(
        "--skull-stripped", action="store_true", help="every subject skull-stripped"
    )
    parser.add_argument(
        "--family",
        type=_family_choice,
        action="append",
        default=[],
        metavar="AXIS=VALUE",
        help=f"every subject of this family, e.g. veins=medullary (repeatable; {axes})",
    )
    parser.add_argument(
        "--exclude-family",
        type=_family_choice,
        action="append",
        default=[],
        metavar="AXIS=VALUE",
        help="no subject of this family, e.g. contrast=bright_csf (repeatable)",
    )
    parser.add_argument(
        "--standard",
        action="store_true",
        help="every subject of the standard families (generator 1.0's one appearance)",
    )


def _family_choice(text: str) -> tuple[str, str]:
    try:
        return parse_choice(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _add_train(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "train",
        parents=[common],
        help="train both stages on datasets with ground truth",
        description="Train stage 1 and stage 2 end to end (resumable) and write a model folder.",
    )
    parser.add_argument("--data", type=Path, nargs="+", required=True, help="dataset folder(s)")
    parser.add_argument("--out", type=Path, required=True, help="model folder to write")
    _add_training_options(parser, "")
    parser.set_defaults(handler=train_command)


def _add_steps_and_seed(
    parser: argparse.ArgumentParser, steps: tuple[int, int], what: str, per: str = ""
) -> None:
    """--stage1-steps and --stage2-steps (defaults ``steps``; ``what`` steps ``per``) and
    --seed."""
    for stage, default in zip(("1", "2"), steps, strict=True):
        parser.add_argument(
            f"--stage{stage}-steps",
            type=positive_int,
            default=default,
            help=f"stage-{stage} {what} steps{per} (default: {default})",
        )
    parser.add_argument("--seed", type=seed, default=0, help="split and training seed")


def _add_training_options(parser: argparse.ArgumentParser, per: str) -> None:
    """--stage1-steps, --stage2-steps, --seed and --max-fp of ``train`` and ``crossval``."""
    _add_steps_and_seed(parser, (STAGE1_TRAINING.steps, STAGE2_TRAINING.steps), "training", per)
    parser.add_argument("--max-fp", type=positive_float, help=MAX_FP_HELP)
    parser.add_argument(
        "--phase-free",
        action="store_true",
        help="a model that reads no phase (for SWI-only and T2*-weighted GRE data): trained on "
        "half the subjects' SWI and half their magnitude, the phase never read",
    )
    parser.add_argument(
        "--magnitude-share",
        type=probability,
        default=None,
        help="with --phase-free: the share of subjects read as their magnitude, 0-1 (default: "
        "0.5; 0 trains on SWI alone)",
    )


def _add_calibrate(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "calibrate",
        parents=[common],
        help="choose a model's thresholds again on subjects with ground truth",
        description="Choose a trained model's stage-1 and stage-2 thresholds on validation "
        "subjects with ground truth (e.g. scans of the population the model will serve) and "
        "write a new model folder with the same weights.",
    )
    add_model_option(parser)
    parser.add_argument("--data", type=Path, nargs="+", required=True, help="dataset folder(s)")
    parser.add_argument("--out", type=Path, required=True, help="new model folder to write")
    rule = OperatingRule()
    for option, stage, default in (
        ("--min-sensitivity", "stage-2", rule.min_sensitivity),
        ("--min-stage1-sensitivity", "stage-1", rule.min_stage1_sensitivity),
    ):
        parser.add_argument(
            option,
            type=probability,
            default=default,
            help=f"the highest {stage} threshold keeping this sensitivity (default: {default})",
        )
    parser.add_argument("--max-fp", type=positive_float, help=MAX_FP_HELP)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    add_network_options(parser, precision="float32")  # as the shipped thresholds
    parser.set_defaults(handler=calibrate_command)


def _add_finetune(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "finetune",
        parents=[common],
        help="adapt a trained model to a site's labelled subjects",
        description="Fine-tune both stages of a trained model (the shipped one by default) on "
        "labelled subjects of a site's scanner and protocol (lesions.csv, a review's "
        "reviewed_lesions.csv, labels or cmb_mask in each subject folder), choose its thresholds "
        "again on subjects it did not train on, and write a new model folder (resumable: run "
        "the same command again to go on).",
    )
    add_model_option(parser)
    parser.add_argument(
        "--data", type=Path, nargs="+", required=True, help="labelled dataset folder(s)"
    )
    parser.add_argument("--out", type=Path, required=True, help="new model folder to write")
    parser.add_argument(
        "--calibrate-on",
        type=Path,
        nargs="+",
        help="labelled dataset folder(s) to choose the thresholds on (default: hold out "
        "--calibration-share of the --data subjects)",
    )
    share = FinetuneConfig().calibration_share
    parser.add_argument(
        "--calibration-share",
        type=probability,
        default=share,
        help=f"without --calibrate-on: the share of subjects held out, by subject, to choose "
        f"the thresholds on (default: {share}; at least 1, and 2 from 5 subjects)",
    )
    _add_steps_and_seed(parser, (FINETUNE_STAGE1.steps, FINETUNE_STAGE2.steps), "fine-tuning")
    parser.set_defaults(handler=finetune_command)


def _add_demo(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "demo",
        parents=[common],
        help="generate a subject, detect, compare with the truth",
        description="With no data at all: make one synthetic subject, detect CMBs with the "
        "shipped model, print found / missed / false positives and the output folder.",
    )
    parser.add_argument("--out", type=Path, default=Path("cmbdet-demo"), help="output folder")
    parser.add_argument("--preset", choices=PRESETS, default="lr")
    parser.add_argument(
        "--sample",
        action="store_true",
        help="run on the sample subject shipped with cmbdet instead of generating one (what "
        "the demo does where the generator is not installed)",
    )
    add_network_options(parser, backend=True)
    parser.add_argument("--seed", type=int, default=20250101)
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the synthetic subject and its truth in OUT/input (the report's input paths "
        "then lead to it)",
    )
    add_model_option(parser)
    parser.set_defaults(handler=demo_command)


def _add_evaluate(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "evaluate",
        parents=[common],
        help="score detect outputs against ground truth",
        description="Sensitivity, precision, F1, FPavg, FROC and bootstrap intervals (centres "
        "within 5 mm, one-to-one matching, invisible CMBs ignored).",
    )
    parser.add_argument("--pred", type=Path, required=True, help="cmbdet detect output folder")
    parser.add_argument("--truth", type=Path, required=True, help="dataset with ground truth")
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        help="folder for metrics.json, per_subject.csv and froc.png (other files are left alone)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace tables an earlier evaluate wrote there"
    )
    parser.set_defaults(handler=evaluate_command)


def _add_crossval(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "crossval",
        parents=[common],
        help="k-fold cross-validation of both stages (the paper's protocol)",
        description="Split subjects into folds (balanced by CMB count); for each fold train "
        "both stages on the others and detect the held-out subjects; print per-fold and pooled "
        "tables. Resumable: rerun the same command to continue.",
    )
    parser.add_argument("--data", type=Path, required=True, help="dataset with ground truth")
    parser.add_argument("--out", type=Path, required=True, help="cross-validation folder")
    parser.add_argument("--folds", type=positive_int, default=5)
    _add_training_options(parser, " per fold")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.set_defaults(handler=crossval_command)
