"""A batch's local worker processes: a dead worker costs no subject; workers die with the batch."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures.process import BrokenProcessPool

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


def test_auto_workers_take_a_core_each_as_memory_allows(monkeypatch):
    """``--workers auto``: one per usable core, no more than the subjects or than the free
    memory holds (2 GiB each), at least one."""
    from cmbdet.batch import local

    monkeypatch.setattr(local, "available_cores", lambda: 8)
    monkeypatch.setattr(local, "available_memory_bytes", lambda: 64 * 2**30)
    assert local.auto_workers(100) == 8
    assert local.auto_workers(3) == 3
    monkeypatch.setattr(local, "available_memory_bytes", lambda: 5 * 2**30)
    assert local.auto_workers(100) == 2
    monkeypatch.setattr(local, "available_memory_bytes", lambda: 2**30)
    assert local.auto_workers(100) == 1
    monkeypatch.setattr(local, "available_memory_bytes", lambda: None)  # unknown: the cores
    monkeypatch.setattr(local, "cgroup_memory_limit", lambda: None)
    assert local.auto_workers(100) == 8
    monkeypatch.setattr(local, "cgroup_memory_limit", lambda: 6 * 2**30)  # a container's limit
    assert local.auto_workers(100) == 3


def test_the_cgroup_memory_limit_is_read_where_there_is_one(tmp_path, monkeypatch):
    from cmbdet.batch import local

    v2, v1 = tmp_path / "memory.max", tmp_path / "memory.limit_in_bytes"
    monkeypatch.setattr(local, "CGROUP_LIMITS", (v2, v1))
    assert local.cgroup_memory_limit() is None  # neither file
    v2.write_text("max\n")
    v1.write_text("9223372036854771712\n")  # cgroup v1's "no limit"
    assert local.cgroup_memory_limit() is None
    v2.write_text("8589934592\n")  # SLURM --mem=8G
    assert local.cgroup_memory_limit() == 8 * 2**30


def test_workers_auto_runs_a_batch_in_worker_processes(
    dataset, quick_model, tmp_path, capfd, monkeypatch
):
    """``cmbdet detect --dataset D --workers auto`` runs the subjects in one worker process per
    core (two here), every subject done; ``auto`` is refused for one subject."""
    from cmbdet.batch import local
    from cmbdet.batch import subject as subject_module
    from cmbdet.cli import main

    pools = []

    def recorded(jobs, settings, workers, debug=False, pool=None):
        pools.append(workers)
        return run_in_pool(jobs, settings, workers, debug, pool)

    monkeypatch.setattr(local, "run_in_pool", recorded)
    monkeypatch.setattr(subject_module, "_detectors", {})  # none loaded in this process yet
    monkeypatch.setattr(local, "available_cores", lambda: 2)
    monkeypatch.setattr(local, "available_memory_bytes", lambda: 8 * 2**30)
    monkeypatch.setattr(local, "cgroup_memory_limit", lambda: None)
    out = tmp_path / "out"
    argv = ["detect", "--dataset", str(dataset), "--out", str(out), "--model", str(quick_model)]
    assert main([*argv, "--workers", "auto"]) == 0
    assert pools == [2]
    assert "3 of 3 subjects done, 0 failed" in capfd.readouterr().out
    assert all((out / f"sub-{i}" / "run.json").is_file() for i in IDS)
    assert not subject_module._detectors  # the workers loaded the model, this process did not
    # a resumed batch plans with the precision the workers reported: nothing is redone, and
    # no workers start for the nothing left to do
    assert main([*argv, "--workers", "auto"]) == 0
    assert "0 of 3 subjects done, 0 failed, 3 skipped" in capfd.readouterr().out
    assert pools == [2]
    # a model the workers cannot load: one line, exit 2, before any subject runs
    bad = ["detect", "--dataset", str(dataset), "--out", str(tmp_path / "bad"), "--workers", "2"]
    assert main([*bad, "--model", str(quick_model), "--device", "cuda:7"]) == 2
    error = capfd.readouterr().err.strip().splitlines()  # the workers' stderr too
    assert len(error) == 1 and "cuda" in error[0]
    assert not (tmp_path / "bad").exists()
    assert main(["detect", "--swi", "x", "--out", str(tmp_path / "o"), "--workers", "auto"]) == 2


def test_a_worker_dying_while_the_model_loads_leaves_the_subjects_to_fresh_workers(quick_model):
    """A worker that dies while it loads the model (out of memory) breaks its pool: the model
    is then loaded in this process, and the subjects go to fresh workers, not the broken ones."""
    import concurrent.futures

    from cmbdet.batch.local import WorkerProcesses

    class BrokenPool(concurrent.futures.Executor):
        def submit(self, fn, /, *args, **kwargs):
            future = concurrent.futures.Future()
            future.set_exception(BrokenProcessPool("a worker died"))
            return future

    runner = WorkerProcesses(2)
    model = runner._loaded_by(BrokenPool(), 2, DetectSettings(model_dir=quick_model))
    assert model.precision in ("float32", "bfloat16") and model.spec.folder == quick_model
    assert runner._pool is None  # run_in_pool makes a pool of its own
