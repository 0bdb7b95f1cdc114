"""A batch on a Dask cluster: ``cmbdet detect --dataset D --out O --scheduler ADDRESS``.

Dask schedules, retries and scales (on SLURM and other HPC systems through dask-jobqueue, see
``docs/slurm.md``); cmbdet submits one task per subject and collects the rows as they finish.
A task is :func:`cmbdet.batch.subject.detect_subject`: it reads its inputs and writes its
subject's outputs on a file system that the workers share with the driver, and returns a small
row. When a worker dies, the scheduler reruns its tasks on others, up to
``distributed.scheduler.allowed-failures`` times (default 3); a rerun replaces whatever the
dead attempt wrote, so no subject is lost or written twice. A subject that keeps killing
workers ends as a ``failed`` row.

Needs the optional extra: ``pip install 'cmbdet[distributed]'``.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cmbdet.batch.subject import BatchRow, DetectSettings, Job, detect_subject, failed_row
from cmbdet.errors import InputError
from cmbdet.processes import THREAD_VARIABLES, threads_per_worker

if TYPE_CHECKING:
    from cmbdet.io.dataset import SubjectFiles

DASK_MISSING = "--scheduler needs Dask, an optional extra: pip install 'cmbdet[distributed]'"
LOCAL = "local"
CONNECT_TIMEOUT = "30s"


@contextmanager
def connect(scheduler: str, workers: int = 1) -> Iterator[Any]:
    """A ``distributed.Client`` of the cluster at ``scheduler``, closed on exit.

    Args:
        scheduler: ``tcp://host:port`` (any address Dask takes), a scheduler JSON file (from
            ``dask scheduler --scheduler-file``), or ``"local"``: a cluster on this machine,
            scheduler and workers on 127.0.0.1, shut down on exit.
        workers: for ``"local"``: worker processes, one task at a time each, with
            ``cores // workers`` math threads.

    Raises:
        InputError: Dask is not installed, or the scheduler cannot be reached.
    """
    try:
        import distributed
    except ImportError:
        raise InputError(None, DASK_MISSING) from None
    if scheduler == LOCAL:
        threads = str(threads_per_worker(workers))
        with (
            distributed.LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",  # any free port: never clash with another
                silence_logs=logging.ERROR,
                env=dict.fromkeys(THREAD_VARIABLES, threads),
            ) as cluster,
            distributed.Client(cluster) as client,
        ):
            yield client
        return
    try:
        if scheduler.endswith(".json") and Path(scheduler).is_file():
            client = distributed.Client(scheduler_file=scheduler, timeout=CONNECT_TIMEOUT)
        else:
            client = distributed.Client(scheduler, timeout=CONNECT_TIMEOUT)
    except (OSError, ValueError) as error:  # includes timeouts
        raise InputError(None, f"cannot reach the Dask scheduler {scheduler} ({error})") from None
    with client:
        yield client


def on_dask(client: Any) -> Callable[[list[Job], DetectSettings], Iterator[BatchRow]]:
    """The runner that detects the subjects on ``client``'s cluster (see :func:`run_on_dask`)."""

    def run(jobs: list[Job], settings: DetectSettings) -> Iterator[BatchRow]:
        return run_on_dask(client, jobs, settings)

    return run


def run_on_dask(client: Any, jobs: list[Job], settings: DetectSettings) -> Iterator[BatchRow]:
    """One task per subject on ``client``'s cluster; their rows as they finish.

    Each subject yields exactly one row: its task's result, or a ``failed`` row when the task
    itself failed (its workers died too often: ``KilledWorker``; or the cluster went away).
    """
    from distributed import as_completed

    run = uuid.uuid4().hex[:8]  # keys unique per run: a rerun never reuses old results
    futures = {
        client.submit(
            _detect_on_worker,
            subject,
            folder,
            settings,
            key=f"cmbdet-detect-{run}-sub-{subject.subject_id}",
            pure=False,
        ): subject.subject_id
        for subject, folder in jobs
    }
    try:
        for future in as_completed(futures):
            subject_id = futures[future]
            try:
                row = future.result()
            except Exception as error:
                row = failed_row(subject_id, f"unexpected {type(error).__name__}: {error}")
            future.release()
            yield row
    finally:
        client.cancel(list(futures))  # when the driver stops early (interrupt)


_threads_capped = False


def _detect_on_worker(subject: SubjectFiles, folder: Path, settings: DetectSettings) -> BatchRow:
    """The task: cap the math threads once per worker process, then detect one subject.

    Threads per task: ``$CMBDET_THREADS``, else ``$OMP_NUM_THREADS`` (a Dask nanny sets it to
    1 by default), else 1 — so a worker that runs several tasks at once never oversubscribes.
    """
    global _threads_capped
    if not _threads_capped:
        from cmbdet.processes import limit_threads

        threads = os.environ.get("CMBDET_THREADS") or os.environ.get("OMP_NUM_THREADS") or "1"
        limit_threads(max(1, int(threads)))  # torch's, and ONNX Runtime's sessions to come
        _threads_capped = True
    return detect_subject(subject, folder, settings)
