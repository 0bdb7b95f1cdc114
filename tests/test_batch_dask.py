"""Batches on a real Dask cluster on loopback, a worker killed mid-run included.

Skipped when Dask is not installed (``pip install 'cmbdet[distributed]'``), except the test
that checks the message given without it.
"""

from __future__ import annotations

import csv
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import replace

import pytest

from cmbdet.batch.dask import on_dask
from cmbdet.batch.log import BATCH_LOG
from cmbdet.batch.run import run_batch
from cmbdet.batch.subject import DetectSettings
from cmbdet.cli import main
from cmbdet.detect.outputs import OUTPUT_FILES
from cmbdet.io.dataset import find_subjects
from cmbdet.synth.dataset import generate_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return generate_dataset(tmp_path_factory.mktemp("data"), "tiny", 2, seed=2, progress=False)


@pytest.fixture(scope="module")
def cluster():
    """A scheduler and two one-thread worker processes (with nannies) on 127.0.0.1."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        silence_logs=logging.CRITICAL,
    ) as cluster:
        yield cluster


def _log(out) -> list[dict[str, str]]:
    with open(out / BATCH_LOG, newline="") as handle:
        return list(csv.DictReader(handle))


def _manifest(path, dataset, ids):
    lines = ["subject,swi,phase"]
    lines += [f"{i},{dataset}/sub-{i}/swi.nii.gz,{dataset}/sub-{i}/phase.nii.gz" for i in ids]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_cli_runs_a_batch_on_a_scheduler(cluster, dataset, tmp_path, capsys):
    manifest = _manifest(tmp_path / "two.csv", dataset, ["0000", "0001"])
    out = tmp_path / "out"
    argv = ["detect", "--manifest", str(manifest), "--out", str(out)]
    assert main([*argv, "--scheduler", cluster.scheduler_address]) == 0
    assert [(r["subject"], r["status"]) for r in _log(out)] == [("0000", "done"), ("0001", "done")]
    assert "2 of 2 subjects done, 0 failed" in capsys.readouterr().out
    assert main([*argv, "--scheduler", cluster.scheduler_address]) == 0  # resumed: all skipped
    assert [r["status"] for r in _log(out)] == ["skipped", "skipped"]


def test_the_cli_starts_a_local_cluster(dataset, tmp_path, capsys):
    pytest.importorskip("distributed")
    manifest = _manifest(tmp_path / "one.csv", dataset, ["0001"])
    out = tmp_path / "out"
    argv = ["detect", "--manifest", str(manifest), "--out", str(out), "--scheduler", "local"]
    assert main(argv) == 0
    assert [(r["subject"], r["status"]) for r in _log(out)] == [("0001", "done")]


def test_a_killed_worker_loses_and_duplicates_no_subject(cluster, dataset, tmp_path):
    import distributed

    generated = find_subjects(dataset)
    subjects = [replace(generated[n % 2], subject_id=f"x{n}") for n in range(6)]  # 6 tasks
    out = tmp_path / "out"
    killed = []

    with distributed.Client(cluster) as client:

        def kill_a_busy_worker_after_the_first_result():
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if any((out / f"sub-{s.subject_id}" / "run.json").exists() for s in subjects):
                    busy = {w: keys for w, keys in client.processing().items() if keys}
                    if busy:
                        worker, running = next(iter(busy.items()))
                        pid = client.run(os.getpid, workers=[worker])[worker]
                        os.kill(pid, signal.SIGKILL)
                        killed.append((pid, running))
                        return
                time.sleep(0.02)

        killer = threading.Thread(target=kill_a_busy_worker_after_the_first_result, daemon=True)
        killer.start()
        summary = run_batch(subjects, out, DetectSettings(), runner=on_dask(client), progress=False)
        killer.join()

    assert killed, "no worker was busy after the first result"
    (_, running), rows = killed[0], {r["subject"]: r for r in _log(out)}
    interrupted = [str(key).rsplit("-sub-", 1)[1] for key in running]
    assert interrupted and all(rows[i]["status"] == "done" for i in interrupted)  # rerun
    rows = _log(out)
    assert sorted(r["subject"] for r in rows) == [s.subject_id for s in subjects]  # each once
    for row in rows:
        assert row["status"] == "done" or (row["status"] == "failed" and row["error"]), row
        if row["status"] == "done":
            assert all((out / row["outputs"] / name).is_file() for name in OUTPUT_FILES)
    assert summary.exit_code in (0, 1)
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # the killed attempt's staging folder was cleared


def test_without_dask_the_scheduler_option_says_what_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed fails
    for name in ("swi", "phase"):  # discovery reads names only
        (tmp_path / "data" / "sub-1").mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / "sub-1" / f"{name}.nii.gz").write_bytes(b"")
    argv = ["detect", "--dataset", str(tmp_path / "data"), "--out", str(tmp_path / "out")]
    assert main([*argv, "--scheduler", "tcp://127.0.0.1:1"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "pip install 'cmbdet[distributed]'" in error[0]
    assert main([*argv, "--scheduler", "tcp://127.0.0.1:1", "--workers", "2"]) == 2
    assert "--workers is for this machine" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
