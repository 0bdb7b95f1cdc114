"""Worker processes that cmbdet spawns (a batch's ``--workers``, ``synth --workers``, Dask
workers): they share the machine's cores without oversubscribing them, and never outlive the
command that started them."""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import os
import sys
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


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "CMBDET_THREADS")


def threads_per_worker(workers: int) -> int:
    """Math threads each of ``workers`` processes may use, so that together they fit the cores."""
    return max(1, available_cores() // workers)


def available_cores() -> int:
    """Cores this process may run on (a SLURM or container CPU set, else every core)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


KEEP_FREED_BYTES = 1 << 30
"""Freed memory glibc's allocator keeps for reuse (see :func:`reuse_freed_memory`)."""
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8  # mallopt's (malloc.h)


def reuse_freed_memory() -> None:
    """Have the C allocator (glibc's; elsewhere nothing is changed) keep freed blocks of up to
    :data:`KEEP_FREED_BYTES` for reuse instead of handing them back to the system.

    A subject's volumes are tens of MB each: by default each one is a fresh mapping, whose
    every page the kernel zeroes on first touch and unmaps when freed, and preprocessing makes
    dozens of them. Reusing the memory cut the system time of one ``hr`` subject from
    1.2-1.9 s to 0.5-0.9 s on a 2-core VM (``benchmarks/RESULTS.md``); the peak memory is the
    same, and a process holds it until it ends. Set for ``detect`` (the command, its batch
    workers), where it was measured; one heap for all threads (a thread's own heap maps
    anything over 64 MB afresh).
    """
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc
        return
    if mallopt(_M_MMAP_THRESHOLD, KEEP_FREED_BYTES) != 1:
        return  # an older glibc that caps the threshold: keep its defaults altogether
    mallopt(_M_TRIM_THRESHOLD, KEEP_FREED_BYTES)
    mallopt(_M_ARENA_MAX, 1)


def math_threads() -> int:
    """Threads this process's own numerical work may use: ``$CMBDET_THREADS`` where set (a
    worker's share of the cores, :func:`limit_threads`), else every core it may run on."""
    given = os.environ.get("CMBDET_THREADS", "")
    return max(1, int(given)) if given.isdigit() else available_cores()


def limit_threads(threads: int) -> None:
    """Cap this process's math thread pools at ``threads``.

    The variables bind libraries loaded afterwards (a fresh worker process: PyTorch reads
    ``OMP_NUM_THREADS`` when imported, ONNX Runtime sessions ``CMBDET_THREADS``);
    ``torch.set_num_threads`` covers a PyTorch that is already loaded. PyTorch is not imported
    here (the ONNX backend never needs it).
    """
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    torch = sys.modules.get("torch")  # one imported later reads OMP_NUM_THREADS itself
    if torch is not None:
        torch.set_num_threads(threads)


@contextlib.contextmanager
def worker_pool(pool: concurrent.futures.ProcessPoolExecutor):
    """Use ``pool`` in a ``with`` block that, when left by an error or an interrupt (Ctrl-C,
    SIGTERM), cancels the queued jobs and ends the worker processes at once; leaving a plain
    ``with`` block would first wait for every job submitted."""
    try:
        yield pool
    except BaseException:
        processes = list((getattr(pool, "_processes", None) or {}).values())  # shutdown forgets
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
        raise
    pool.shutdown(wait=True)
