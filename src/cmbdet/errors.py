"""Exceptions that the command line turns into one clear message and exit code 2, and the
exit codes of DESIGN.md."""

from __future__ import annotations

import sys
from pathlib import Path

EXIT_OK = 0
EXIT_FAILED = 1  # an unexpected failure
EXIT_BAD_INPUT = 2  # bad input or usage: one line on stderr naming the file and the problem
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM


class InputError(Exception):
    """Bad input from the user: a file that is missing, unreadable or inconsistent.

    The message names the file and the problem in one line; the CLI prints it to stderr
    without a traceback and exits with code 2.
    """

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path is not None else problem)

    def __reduce__(self):
        # rebuilt from (path, problem) when it crosses from a worker process
        return type(self), (self.path, self.problem)


def print_one_line(message: str) -> None:
    """Print ``message`` to stderr as one line (newlines inside it folded), as DESIGN.md asks
    of every error."""
    print(" ".join(message.split()), file=sys.stderr)
