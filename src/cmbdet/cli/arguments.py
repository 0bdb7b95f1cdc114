"""Argument types and the option groups several commands share (``--model``, ``--device``,
``--precision``)."""

from __future__ import annotations

import argparse
import math

from cmbdet.config import BACKENDS, PRECISIONS
from cmbdet.detect import shipped


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def seed(text: str) -> int:
    """A random seed: a whole number from 0 to 2**32 - 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"{text!r} is not a seed from 0 to 4294967295")
    return value


def workers_count(text: str) -> int | str:
    """``--workers``: a positive integer, or ``auto``."""
    return "auto" if text == "auto" else positive_int(text)


def positive_float(text: str) -> float:
    """A finite number above 0."""
    value = number(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return value


def probability(text: str) -> float:
    """A threshold: a number in [0, 1] (NaN, infinities and the rest refused)."""
    value = number(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a probability in [0, 1]")
    return value


def number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def axis_codes(text: str) -> str:
    """Three orientation letters, one from each of L/R, P/A, I/S (e.g. RAS, LPS, PSL)."""
    codes = text.upper()
    pairs = [set("LR"), set("PA"), set("IS")]
    if len(codes) != 3 or sorted(pair_index(pairs, c) for c in codes) != [0, 1, 2]:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an orientation: use one letter from each of L/R, A/P, S/I, e.g. LPS"
        )
    return codes


def pair_index(pairs: list[set[str]], letter: str) -> int:
    return next((n for n, pair in enumerate(pairs) if letter in pair), -1)


def add_network_options(
    parser: argparse.ArgumentParser, precision: str = "auto", backend: bool = False
) -> None:
    """--device and --precision: where the networks run, in which number format; with
    ``backend``, --backend too: what runs them."""
    if backend:
        parser.add_argument(
            "--backend",
            choices=BACKENDS,
            default="auto",
            help="what runs the networks: torch (PyTorch), onnx (ONNX Runtime, CPU, float32: "
            "the install without PyTorch) or auto (PyTorch where it is installed, else ONNX "
            "Runtime; default: auto)",
        )
    parser.add_argument(
        "--device",
        default="auto",
        help="where the networks run: auto (a CUDA GPU when PyTorch sees one, else the CPU), "
        "cpu, cuda or cuda:N (default: auto)",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=precision,
        help="number format of the networks: auto (bfloat16 on a CPU that has it in hardware, "
        "~2x faster, same detections; else float32), float32 (results that do not depend on "
        f"the CPU) or bfloat16 (default: {precision})",
    )


def add_model_option(parser: argparse.ArgumentParser) -> None:
    """``--model``: a model folder or the name of a model shipped with this installation."""
    names = ", ".join(shipped.installed_models()) or "none"
    parser.add_argument(
        "--model",
        type=shipped.model_folder,
        help=f"model folder, or the name of an installed model ({names}; default: "
        f"{shipped.DEFAULT_MODEL_NAME})",
    )
