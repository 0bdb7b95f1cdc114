"""A batch's local worker processes: a dead worker costs no subject; workers die with the batch."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from cmbdet.batch.local import run_in_pool
from cmbdet.batch.subject import DetectSettings
from cmbdet.io.dataset import find_subjects
from cmbdet.synth.dataset import generate_dataset

IDS = ["0000", "0001", "0002"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return generate_dataset(tmp_path_factory.mktemp("data"), "tiny", 3, seed=1, progress=False)


def test_a_local_worker_that_dies_costs_no_subject(dataset, quick_model, tmp_path):
    jobs = [(s, tmp_path / f"sub-{s.subject_id}") for s in find_subjects(dataset)]
    killed = []

    def kill_a_worker():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            workers = multiprocessing.active_children()
            if workers:
                time.sleep(0.5)  # let it start (and maybe take a subject)
                os.kill(workers[0].pid, signal.SIGKILL)
                killed.append(workers[0].pid)
                return
            time.sleep(0.02)

    threading.Thread(target=kill_a_worker, daemon=True).start()
    rows = list(run_in_pool(jobs, DetectSettings(model_dir=quick_model), workers=2))
    assert killed
    assert sorted(row.subject for row in rows) == IDS  # each exactly once
    assert all(row.status == "done" for row in rows)  # the lost ones ran again in a new pool


def test_workers_exit_when_the_batch_is_killed(tmp_path):
    # a batch process whose two worker processes report their ids, then is killed (-9)
    script = tmp_path / "batch.py"
    script.write_text(
        "import os, sys, time\n"
        "from cmbdet.batch.local import _worker_pool\n"
        "if __name__ == '__main__':\n"
        "    pool = _worker_pool(2)\n"
        "    pids = {pool.submit(os.getpid).result() for _ in range(8)}\n"
        "    print(' '.join(map(str, pids)), flush=True)\n"
        "    time.sleep(120)\n"
    )
    batch = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE)
    workers = [int(pid) for pid in batch.stdout.readline().split()]
    assert workers and batch.pid not in workers
    batch.kill()
    batch.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in workers)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False
