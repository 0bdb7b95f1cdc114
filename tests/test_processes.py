"""Worker processes: cores shared without oversubscription, never outliving their parent."""

from __future__ import annotations

import subprocess
import sys
import time

from cmbdet.processes import available_cores, threads_per_worker


def test_workers_share_the_cores():
    cores = available_cores()
    assert threads_per_worker(1) == cores
    assert threads_per_worker(cores) == 1 and threads_per_worker(4 * cores) == 1
    assert threads_per_worker(2) * 2 <= max(cores, 2)


def test_a_process_exits_when_its_parent_is_killed():
    # parent: starts a child that watches it (cmbdet.processes.exit_with_parent), prints the
    # child's pid, then waits
    child_code = (
        "import os, sys, time; from cmbdet.processes import exit_with_parent; "
        "exit_with_parent(int(sys.argv[1])); time.sleep(60)"
    )
    parent_code = (
        "import os, subprocess, sys, time; "
        f"c = subprocess.Popen([sys.executable, '-c', {child_code!r}, str(os.getpid())]); "
        "print(c.pid, flush=True); time.sleep(60)"
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE)
    child = int(parent.stdout.readline())
    time.sleep(0.5)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _running(child):
        time.sleep(0.2)
    assert not _running(child)


def _running(pid: int) -> bool:
    """Whether ``pid`` runs and is not a zombie (an exited child not yet reaped by init)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False
