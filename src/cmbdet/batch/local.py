"""A batch on this machine: subjects in this process, or in spawned worker processes that
share the cores (``cmbdet detect --dataset D --out O --workers N``)."""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import gc
import multiprocessing
import os
import warnings
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from cmbdet.batch.subject import (
    BatchRow,
    DetectSettings,
    Job,
    LoadedModel,
    detect_subject,
    failed_row,
    loaded_detector,
    loaded_model,
)
from cmbdet.detect.checks import available_memory_bytes
from cmbdet.processes import (
    available_cores,
    exit_with_parent,
    limit_threads,
    reuse_freed_memory,
    threads_per_worker,
    worker_pool,
)

AUTO = "auto"
WORKER_MEMORY_BYTES = 2 * 2**30
"""Memory set aside per worker by ``--workers auto``: an ``hr`` subject peaks at about
1.1 GiB, PyTorch and the networks add about 0.4 GiB."""


CGROUP_LIMITS = (
    Path("/sys/fs/cgroup/memory.max"),  # cgroup v2 (containers, SLURM --mem)
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),  # cgroup v1
)


def auto_workers(jobs: int) -> int:
    """Workers for ``--workers auto``: one per core this process may use, no more than the
    jobs and than the available memory holds (:data:`WORKER_MEMORY_BYTES` each: the machine's
    free memory, or this process's cgroup limit where that is lower); at least 1.
    Preprocessing runs on one core per subject, so on a CPU a worker per core uses them all."""
    limits = [m for m in (available_memory_bytes(), cgroup_memory_limit()) if m is not None]
    by_memory = min(limits) // WORKER_MEMORY_BYTES if limits else available_cores()
    return max(1, min(available_cores(), jobs, by_memory))


def cgroup_memory_limit() -> int | None:
    """The memory limit of this process's control group (a container's, a SLURM job's), bytes;
    None where there is none or it cannot be read."""
    for path in CGROUP_LIMITS:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:  # "max", or v1's "no limit" sentinel
            return int(text)
    return None


def in_this_process(jobs: list[Job], settings: DetectSettings) -> Iterator[BatchRow]:
    """The runner that detects the subjects one after another in this process."""
    return (detect_subject(subject, folder, settings) for subject, folder in jobs)


class WorkerProcesses:
    """The runner that detects the subjects in ``workers`` spawned processes (``"auto"``:
    :func:`auto_workers` of the subjects; in this process when there are fewer than two
    subjects or workers).

    The workers alone load the model: :meth:`started` spawns them before the batch is planned
    and has one of them load it and say what it runs in, so that this process never imports
    PyTorch and the workers' start-up is the batch's only one. Called outside :meth:`started`
    (or with one worker) it detects the subjects in this process.
    """

    def __init__(self, workers: int | str, debug: bool = False):
        self.workers, self.debug = workers, debug
        self._count = 0  # workers of the started block; 0: none started
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    @contextlib.contextmanager
    def started(self, settings: DetectSettings, subjects: int) -> Iterator[LoadedModel]:
        """Within the block, the workers for ``subjects`` subjects are running; it yields the
        model they loaded (loaded in this process when one worker does, or when a worker died
        while loading it: fresh workers then run the subjects).

        Raises:
            InputError: a bad model folder, device or precision (from the worker).
        """
        count = auto_workers(subjects) if self.workers == AUTO else min(self.workers, subjects)
        if count < 2:
            yield loaded_model(settings)
            return
        with worker_pool(_worker_pool(count, self.debug, settings)) as pool:
            self._count = count
            try:
                yield self._loaded_by(pool, count, settings)
            finally:
                self._count, self._pool = 0, None

    def _loaded_by(
        self, pool: concurrent.futures.Executor, count: int, settings: DetectSettings
    ) -> LoadedModel:
        # one task per worker: the pool spawns a process per task while none is idle, so
        # every worker starts (and loads the model) now, not at its first subject
        loaded = [pool.submit(loaded_model, settings) for _ in range(count)]
        try:
            model = loaded[0].result()
        except BrokenProcessPool:  # a worker died starting (out of memory?)
            return loaded_model(settings)  # run_in_pool starts fresh workers
        self._pool = pool
        return model

    def __call__(self, jobs: list[Job], settings: DetectSettings) -> Iterator[BatchRow]:
        if not self._count:
            return in_this_process(jobs, settings)
        return run_in_pool(jobs, settings, self._count, self.debug, self._pool)


WORKER_DEATHS_ALLOWED = 2  # a subject whose worker process died this often is failed


def run_in_pool(
    jobs: list[Job],
    settings: DetectSettings,
    workers: int,
    debug: bool = False,
    pool: concurrent.futures.ProcessPoolExecutor | None = None,
) -> Iterator[BatchRow]:
    """Rows of ``jobs`` run in ``workers`` spawned processes (first those of ``pool``, which
    its owner shuts down; else a pool of its own), as they finish.

    Only ``workers`` subjects are handed out at a time, so a worker process that dies (killed,
    out of memory) loses only the subjects then running: they are retried in a fresh pool, and
    failed once their worker has died :data:`WORKER_DEATHS_ALLOWED` times.
    """
    waiting = deque(jobs)
    deaths: Counter[str] = Counter()
    while waiting:
        lost: list[Job] = []
        if pool is None:
            round_of = worker_pool(_worker_pool(workers, debug, settings))
        else:  # the given pool, once: after a worker died, a fresh one of our own
            round_of, pool = contextlib.nullcontext(pool), None
        with round_of as current:
            running: dict[concurrent.futures.Future, Job] = {}
            while (waiting and not lost) or running:
                while waiting and not lost and len(running) < workers:
                    job = waiting.popleft()
                    try:
                        running[current.submit(detect_subject, *job, settings)] = job
                    except BrokenProcessPool:  # a worker died since the last result
                        waiting.appendleft(job)
                        break
                if not running:
                    break
                finished, _ = concurrent.futures.wait(
                    running, return_when=concurrent.futures.FIRST_COMPLETED
                )
                for future in finished:
                    job = running.pop(future)
                    try:
                        yield future.result()
                    except BrokenProcessPool:
                        lost.append(job)
        for subject, folder in lost:
            deaths[subject.subject_id] += 1
            if deaths[subject.subject_id] < WORKER_DEATHS_ALLOWED:
                waiting.appendleft((subject, folder))
            else:
                yield failed_row(
                    subject.subject_id,
                    f"unexpected: the worker process died {WORKER_DEATHS_ALLOWED} times while "
                    "detecting this subject (out of memory?)",
                )


def _worker_pool(
    workers: int, debug: bool = False, settings: DetectSettings | None = None
) -> concurrent.futures.ProcessPoolExecutor:
    # spawn, not fork: a forked copy of a process that has started torch's threads can hang
    return concurrent.futures.ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=start_worker,
        initargs=(threads_per_worker(workers), os.getpid(), debug, settings),
    )


def start_worker(
    threads: int, parent: int, debug: bool = False, settings: DetectSettings | None = None
) -> None:
    """Set up a worker process: cap its math threads, exit when ``parent`` does (a batch
    killed by the OOM killer or ``kill -9`` leaves no worker behind), keep Python's warnings
    off stderr unless ``debug``, and load the model of ``settings`` at once (every worker at
    the same time, before its first subject)."""
    limit_threads(threads)
    reuse_freed_memory()
    exit_with_parent(parent)
    atexit.register(gc.freeze)  # the process ends: no last collection over PyTorch's objects
    if not debug:
        warnings.simplefilter("ignore")
    if settings is not None:
        try:
            loaded_detector(settings)
        except Exception:  # noqa: BLE001 - the first task loads it again and reports why
            pass
