"""The ``cmbdet`` command line: :func:`main` runs a command from :mod:`.parser`, whose bodies
live in :mod:`.detect` (``detect``), :mod:`.demo` (``demo``), :mod:`.train` (``train``,
``calibrate``, ``finetune``, ``crossval``) and :mod:`.data` (``synth``, ``evaluate``).

Exit codes (DESIGN.md, :mod:`cmbdet.errors`): 0 success; 2 bad input or usage, one line on
stderr naming the file and the problem, no traceback; 1 an unexpected failure; 130
interrupted (Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Sequence

from cmbdet.cli.parser import build_parser
from cmbdet.errors import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    InputError,
    print_one_line,
)
from cmbdet.processes import reuse_freed_memory

__all__ = ["build_parser", "command", "main"]

Handler = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None, *, as_program: bool = False) -> int:
    """Run ``cmbdet`` with ``argv`` (default: ``sys.argv[1:]``) and return the exit code.

    ``as_program``: this process is the command's own (:func:`command`), so ``detect`` may
    tune it for speed (:func:`~cmbdet.processes.reuse_freed_memory`); called from Python
    (tests, notebooks), the process is left as it is.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_request:  # --help, --version, usage errors
        return _exit_code(exit_request.code)
    if not hasattr(args, "handler"):
        print_one_line("cmbdet: error: a command is required (see cmbdet --help)")
        return EXIT_BAD_INPUT
    if as_program and args.command == "detect":
        reuse_freed_memory()
    return _run(args.handler, args)


def command() -> None:
    """The ``cmbdet`` program: :func:`main` as the process's own, then exit with its code.

    Before exiting, every object is frozen out of the garbage collector (``gc.freeze``): the
    process ends, and the collector's last passes over PyTorch's many objects would add about
    0.3 s to every run (``python -c "import torch"``: 1.33 s, 1.05 s with the freeze); the
    files are all written and closed by then.
    """
    code = main(as_program=True)
    gc.freeze()
    sys.exit(code)


EXTRA_OF = {"torch": "train", "nilearn": "train", "onnx": "train", "matplotlib": "plots"}
"""The optional packages, by the extra that installs them (the base install detects without)."""


def _run(handler: Handler, args: argparse.Namespace) -> int:
    # nibabel logs header repairs straight to stderr; cmbdet's own checks say what matters
    logging.getLogger("nibabel.global").setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings(), _terminate_as_interrupt():
            if not args.debug:  # stderr carries cmbdet's one-line messages, not library noise
                warnings.simplefilter("ignore")
            return handler(args)
    except InputError as error:
        print_one_line(f"cmbdet: error: {error}")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print_one_line("cmbdet: interrupted")
        return EXIT_INTERRUPTED
    except Exception as error:
        extra = None
        if isinstance(error, ModuleNotFoundError):
            extra = EXTRA_OF.get((error.name or "").split(".")[0])
        if extra is not None and not args.debug:  # an optional package the base install lacks
            print_one_line(
                f"cmbdet: error: {args.command} needs {error.name}, which this installation "
                f"lacks (pip install 'cmbdet[{extra}]')"
            )
            return EXIT_BAD_INPUT
        if args.debug:
            raise
        print_one_line(
            f"cmbdet: unexpected error: {type(error).__name__}: {error} "
            "(rerun with --debug for the traceback)"
        )
        return EXIT_FAILED


@contextlib.contextmanager
def _terminate_as_interrupt():
    """SIGTERM (``kill``, a SLURM time limit) ends the command like Ctrl-C: staging folders
    and temporaries are removed on the way out, and the exit code is 130."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _exit_code(code: int | str | None) -> int:
    if code is None:
        return EXIT_OK
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return EXIT_FAILED


if __name__ == "__main__":
    command()
