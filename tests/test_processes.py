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


REUSE_CHECK = """
import ctypes, sys
import numpy as np
from cmbdet.processes import reuse_freed_memory


class MallInfo2(ctypes.Structure):  # glibc's mallinfo2 (malloc.h)
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
mallinfo2.restype = MallInfo2
if sys.argv[1] == "reuse":
    reuse_freed_memory()
volume = np.ones((512, 448, 72), np.float32)  # an hr volume, 66 MB
mapped_alone = mallinfo2().hblkhd  # bytes in blocks mapped on their own
del volume
print(mapped_alone, mallinfo2().fordblks)  # and the freed bytes the allocator keeps
"""


def test_freed_volumes_are_kept_for_reuse():
    """After ``reuse_freed_memory`` (glibc), a 66 MB volume comes from the allocator's heap and
    stays there once freed, for the next one; by default it is a mapping of its own, handed
    back to the system when freed (the next one is mapped and zeroed afresh)."""
    import subprocess
    import sys

    def allocator(mode: str) -> tuple[int, int]:
        run = [sys.executable, "-c", REUSE_CHECK, mode]
        out = subprocess.run(run, check=True, capture_output=True, text=True).stdout
        mapped, kept = out.split()
        return int(mapped), int(kept)

    volume_bytes = 512 * 448 * 72 * 4
    mapped, kept = allocator("default")
    assert mapped >= volume_bytes and kept < volume_bytes
    mapped, kept = allocator("reuse")
    assert mapped < volume_bytes <= kept
