"""Worker processes that cmbdet spawns (a batch's ``--workers``, ``synth --workers``): they
never outlive the command that started them."""

from __future__ import annotations

import os
import threading
import time

PARENT_CHECK_S = 1.0  # how often a worker checks that the process that started it lives


def exit_with_parent(parent: int) -> None:
    """Exit this process as soon as process ``parent`` is gone.

    A daemon thread checks every :data:`PARENT_CHECK_S` seconds: when the parent dies (killed
    by the OOM killer, ``kill -9``), this process is handed to another parent. Without this,
    a worker of a killed batch would idle forever, holding its memory and the caller's pipes.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_S)
        os._exit(1)

    threading.Thread(target=watch, name="cmbdet-exit-with-parent", daemon=True).start()
