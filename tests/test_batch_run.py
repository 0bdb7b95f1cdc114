"""``cmbdet detect --dataset``: batch log, resume, failures and exit codes, local workers."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil

import nibabel as nib
import numpy as np
import pytest

from cmbdet.batch.folder import COHORT_REPORT
from cmbdet.batch.log import BATCH_LOG, COUNT_COLUMNS, COUNTS_TABLE, LOG_COLUMNS
from cmbdet.cli import main
from cmbdet.detect.detector import Detector
from cmbdet.detect.shipped import DEFAULT_MODEL_NAME
from cmbdet.io.dataset import find_subjects
from cmbdet.io.results import COLUMNS
from cmbdet.synth.dataset import generate_dataset

IDS = ["0000", "0001", "0002"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return generate_dataset(tmp_path_factory.mktemp("data"), "tiny", 3, seed=1, progress=False)


@pytest.fixture(scope="module")
def shipped_run(dataset, tmp_path_factory):
    """The shipped model on the dataset, one worker: (out, exit code)."""
    out = tmp_path_factory.mktemp("shipped") / "out"
    return out, main(["detect", "--dataset", str(dataset), "--out", str(out)])


@pytest.fixture(scope="module")
def quick_run(dataset, quick_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("quick") / "out"
    assert _detect(dataset, out, quick_model) == 0
    return out


def _detect(data, out, model, *more) -> int:
    return main(["detect", "--dataset", str(data), "--out", str(out), "--model", str(model), *more])


def _log(out) -> list[dict[str, str]]:
    with open(out / BATCH_LOG, newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == LOG_COLUMNS
        return list(reader)


def _table_rows(path) -> int:
    with open(path, newline="") as handle:
        return len(list(csv.DictReader(handle)))


def _numbers(table) -> np.ndarray:
    """(rows, columns) of a detections or candidates table, its numeric columns."""
    return np.loadtxt(table, delimiter=",", skiprows=1, ndmin=2, usecols=range(len(COLUMNS)))


PROGRESS = re.compile(r"cmbdet: \d+/\d+ sub-\S+ done in [0-9.]+ s; (about \S+ \S+ left|all done)")


def _without_progress(stderr: str) -> list[str]:
    """The lines of stderr other than the progress lines of a run without a terminal."""
    return [line for line in stderr.strip().splitlines() if not PROGRESS.fullmatch(line)]


def _summary(capsys) -> str:
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, out
    return out[0]


# ----------------------------------------------------------------------------- a batch


def test_a_batch_detects_every_subject_and_logs_it(shipped_run, capsys):
    out, code = shipped_run
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == [BATCH_LOG, COUNTS_TABLE, COHORT_REPORT] + [
        f"sub-{i}" for i in IDS
    ]
    rows = _log(out)
    assert [r["subject"] for r in rows] == IDS
    for row in rows:
        folder = out / row["outputs"]
        record = json.loads((folder / "run.json").read_text())
        assert row["status"] == "done" and row["error"] == ""
        assert int(row["cmb_count"]) == record["detections"]
        assert int(row["cmb_count"]) == _table_rows(folder / "detections.csv")
        assert int(row["candidates"]) == _table_rows(folder / "candidates.csv")
        assert float(row["seconds"]) > 0
    assert sum(int(r["cmb_count"]) for r in rows) > 0  # the shipped model finds some


def test_the_cohort_counts_equal_each_subjects_detections(shipped_run):
    out, _ = shipped_run
    with open(out / COUNTS_TABLE, newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == COUNT_COLUMNS
        table = list(reader)
    assert [row["subject"] for row in table] == IDS
    for row in table:
        with open(out / f"sub-{row['subject']}" / "detections.csv", newline="") as handle:
            detections = list(csv.DictReader(handle))
        regions = [d["region"] for d in detections]
        sizes = np.array([float(d["diameter_mm"]) for d in detections])
        assert row["status"] == "done" and row["model"] == DEFAULT_MODEL_NAME
        assert int(row["total"]) == len(detections)
        for region in ("lobar", "deep", "infratentorial"):
            assert int(row[region]) == regions.count(region)
        assert int(row["region_not_determined"]) == regions.count("not determined")
        assert int(row["under_5mm"]) == np.sum(sizes < 5)
        assert int(row["5_to_10mm"]) + int(row["over_10mm"]) == np.sum(sizes >= 5)
    assert sum(int(row["total"]) for row in table) > 0


def test_two_workers_give_the_same_outputs_as_one(dataset, shipped_run, tmp_path, capsys):
    one, _ = shipped_run
    two = tmp_path / "two"
    assert main(["detect", "--dataset", str(dataset), "--out", str(two), "--workers", "2"]) == 0
    assert _summary(capsys) == (
        f"3 of 3 subjects done, 0 failed, 0 skipped (already complete); outputs in {two}; "
        f"log in {two / BATCH_LOG}"
    )
    for i in IDS:  # equal up to float round-off: 1 and 2 torch threads sum in other orders
        for table in ("detections.csv", "candidates.csv"):
            tables = [_numbers(o / f"sub-{i}" / table) for o in (one, two)]
            assert tables[0].shape == tables[1].shape
            np.testing.assert_allclose(*tables, rtol=0, atol=2e-3)
        labels = [nib.load(o / f"sub-{i}" / "cmb_labels.nii.gz").get_fdata() for o in (one, two)]
        assert np.mean(labels[0] != labels[1]) < 1e-4
    counts = [
        [(r["subject"], r["cmb_count"], r["candidates"]) for r in _log(o)] for o in (one, two)
    ]
    assert counts[0] == counts[1]


# ----------------------------------------------------------------------------- resume


def test_a_rerun_skips_complete_subjects_and_redoes_the_others(
    dataset, quick_model, quick_run, tmp_path, capsys
):
    out = tmp_path / "out"
    shutil.copytree(quick_run, out)
    kept = (out / "sub-0000" / "run.json").stat().st_mtime_ns
    (out / "sub-0001" / "run.json").unlink()  # a folder that is not complete
    shutil.rmtree(out / "sub-0002")  # killed while writing: only its staging folder is left
    (out / ".sub-0002.partial-123").mkdir()
    (out / ".sub-0002.partial-123" / "detections.csv").write_text("half")
    capsys.readouterr()

    assert _detect(dataset, out, quick_model) == 0
    assert _summary(capsys).startswith("2 of 3 subjects done, 0 failed, 1 skipped")
    assert (out / "sub-0000" / "run.json").stat().st_mtime_ns == kept
    assert all((out / f"sub-{i}" / "run.json").is_file() for i in IDS)
    assert sorted(p.name for p in out.iterdir()) == [BATCH_LOG, COUNTS_TABLE, COHORT_REPORT] + [
        f"sub-{i}" for i in IDS
    ]
    rows = {r["subject"]: r for r in _log(out)}
    assert [rows[i]["status"] for i in IDS] == ["skipped", "done", "done"]
    first = {r["subject"]: r for r in _log(quick_run)}
    assert rows["0000"]["seconds"] == first["0000"]["seconds"]  # carried over
    assert rows["0000"]["cmb_count"] == first["0000"]["cmb_count"]


def test_overwrite_redoes_every_subject(dataset, quick_model, quick_run, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(quick_run, out)
    before = {i: (out / f"sub-{i}" / "run.json").stat().st_mtime_ns for i in IDS}
    assert _detect(dataset, out, quick_model, "--overwrite") == 0
    assert [r["status"] for r in _log(out)] == ["done"] * 3
    assert all((out / f"sub-{i}" / "run.json").stat().st_mtime_ns != before[i] for i in IDS)


def test_a_rerun_with_another_model_is_refused(dataset, quick_run, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(quick_run, out)
    assert main(["detect", "--dataset", str(dataset), "--out", str(out)]) == 2  # shipped model
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "sub-0000" in error[0] and "--overwrite" in error[0]


def test_a_rerun_in_another_precision_is_refused(dataset, quick_model, quick_run, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(quick_run, out)
    used = json.loads((out / "sub-0000" / "run.json").read_text())["precision"]
    other = {"float32": "bfloat16", "bfloat16": "float32"}[used]
    assert _detect(dataset, out, quick_model, "--precision", other) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "sub-0000" in error[0] and "--precision" in error[0]
    assert _detect(dataset, out, quick_model, "--precision", used) == 0
    assert [r["status"] for r in _log(out)] == ["skipped"] * 3


def test_a_rerun_with_other_echo_times_is_refused(
    dataset, quick_model, quick_run, tmp_path, capsys
):
    out = tmp_path / "out"
    shutil.copytree(quick_run, out)
    assert _detect(dataset, out, quick_model, "--echo-times-ms", "20") == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "sub-0000" in error[0] and "--echo-times-ms" in error[0]
    assert _detect(dataset, out, quick_model) == 0  # as first run: every subject kept
    assert [r["status"] for r in _log(out)] == ["skipped"] * 3


def test_a_folder_with_other_files_is_refused(dataset, quick_model, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert _detect(dataset, out, quick_model) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "notes.txt" in error[0]
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert _detect(dataset, dataset, quick_model) == 2  # would replace the inputs
    assert "holds the input" in capsys.readouterr().err


# ----------------------------------------------------------------------------- failures


def test_a_corrupt_subject_fails_and_the_others_finish(dataset, quick_model, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(dataset, data)
    swi = data / "sub-0001" / "swi.nii.gz"
    swi.write_bytes(swi.read_bytes()[:2000])  # truncated
    out = tmp_path / "out"

    assert _detect(data, out, quick_model) == 2
    captured = capsys.readouterr()
    assert captured.out.strip() == (
        f"2 of 3 subjects done, 1 failed, 0 skipped (already complete); outputs in {out}; "
        f"log in {out / BATCH_LOG}"
    )
    error = _without_progress(captured.err)
    assert len(error) == 1 and "sub-0001" in error[0] and "swi.nii.gz" in error[0]
    assert "Traceback" not in captured.err
    rows = {r["subject"]: r for r in _log(out)}
    assert [rows[i]["status"] for i in IDS] == ["done", "failed", "done"]
    assert "swi.nii.gz" in rows["0001"]["error"] and rows["0001"]["cmb_count"] == ""
    assert not (out / "sub-0001").exists()
    cohort = (out / "report.html").read_text()  # the cohort page links the subjects done
    assert "<h1>Cerebral microbleeds: data</h1>" in cohort  # titled by the dataset, not --out
    assert 'href="sub-0000/report.html"' in cohort and 'href="sub-0002/report.html"' in cohort
    assert "sub-0001/report.html" not in cohort and "failed" in cohort

    assert _detect(data, out, quick_model) == 2  # a rerun tries the failed subject again
    rows = _log(out)
    assert [(r["subject"], r["status"]) for r in rows] == [
        ("0000", "skipped"),
        ("0001", "failed"),
        ("0002", "skipped"),
    ]


def test_an_unexpected_failure_exits_1(dataset, quick_model, tmp_path, monkeypatch, capsys):
    detect = Detector.detect_subject

    def flaky(self, files, *args, **kwargs):
        if "sub-0002" in str(files.swi):
            raise RuntimeError("out of cheese")
        return detect(self, files, *args, **kwargs)

    monkeypatch.setattr(Detector, "detect_subject", flaky)
    out = tmp_path / "out"
    assert _detect(dataset, out, quick_model) == 1
    rows = {r["subject"]: r for r in _log(out)}
    assert rows["0002"]["status"] == "failed"
    assert rows["0002"]["error"] == "unexpected RuntimeError: out of cheese"
    assert [rows[i]["status"] for i in IDS[:2]] == ["done", "done"]
    assert "sub-0002: failed: unexpected RuntimeError" in capsys.readouterr().err


# ----------------------------------------------------------------------------- hardening


def _tree(folder) -> dict[str, bytes]:
    """Every file under ``folder`` (links as their target) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_link_planted_in_the_output_folder_is_refused(dataset, quick_model, tmp_path, capsys):
    victim = tmp_path / "victim"
    (victim / "data").mkdir(parents=True)
    (victim / "thesis.txt").write_text("years of work")
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub-0001").symlink_to(victim, target_is_directory=True)
    before = _tree(victim)
    assert _detect(dataset, out, quick_model) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "sub-0001" in error[0] and "symbolic link" in error[0]
    assert _detect(dataset, out, quick_model, "--overwrite") == 2
    assert _tree(victim) == before and (victim / "data").is_dir()
    assert sorted(p.name for p in out.iterdir()) == ["sub-0001"]


def test_inputs_reached_through_links_are_read(dataset, quick_model, tmp_path):
    annexed = tmp_path / "annex"  # DataLad / git-annex: files are links into an object store
    linked = tmp_path / "linked"
    for subject in find_subjects(dataset):
        folder = linked / f"sub-{subject.subject_id}"
        folder.mkdir(parents=True)
        for name in ("swi.nii.gz", "phase.nii.gz"):
            stored = annexed / subject.subject_id / name
            stored.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(dataset / f"sub-{subject.subject_id}" / name, stored)
            (folder / name).symlink_to(stored)
    out = tmp_path / "out"
    assert _detect(linked, out, quick_model) == 0
    assert [r["status"] for r in _log(out)] == ["done"] * 3


def test_user_files_in_a_subject_folder_are_never_deleted(dataset, quick_model, tmp_path, capsys):
    out = tmp_path / "out"
    (out / "sub-0000").mkdir(parents=True)
    (out / "sub-0000" / "my_t1w.nii.gz").write_text("scan")
    assert _detect(dataset, out, quick_model) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "my_t1w.nii.gz" in error[0] and "sub-0000" in error[0]
    assert _detect(dataset, out, quick_model, "--overwrite") == 2
    assert (out / "sub-0000" / "my_t1w.nii.gz").read_text() == "scan"
    assert sorted(p.name for p in out.iterdir()) == ["sub-0000"]


def test_a_second_batch_into_a_locked_folder_is_refused(dataset, quick_model, tmp_path, capsys):
    from cmbdet.io.writing import LOCK_NAME, folder_lock

    out = tmp_path / "out"
    out.mkdir()
    with folder_lock(out):  # as a running batch holds it
        assert _detect(dataset, out, quick_model) == 2
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and f"process {os.getpid()}" in error[0]
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]
    assert _detect(dataset, out, quick_model) == 0  # free again
    assert not (out / LOCK_NAME).exists()


def test_predictable_temporary_names_cannot_redirect_writes(dataset, quick_model, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    out = tmp_path / "out"
    out.mkdir()
    pid = os.getpid()  # the names earlier versions used
    for name in (f".batch.csv.{pid}.tmp", f".report.html.partial-{pid}"):
        (out / name).symlink_to(victim)
    assert _detect(dataset, out, quick_model) == 2  # links in --out are refused outright
    for name in (f".batch.csv.{pid}.tmp", f".report.html.partial-{pid}"):
        (out / name).unlink()
    assert _detect(dataset, out, quick_model) == 0
    assert victim.read_text() == "keep"


def test_an_unwritable_output_folder_is_refused_before_any_work(
    dataset, quick_model, monkeypatch, capsys
):
    def never(*args, **kwargs):
        raise AssertionError("detection ran")

    monkeypatch.setattr(Detector, "detect", never)
    monkeypatch.setattr(Detector, "detect_subject", never)
    assert _detect(dataset, "/proc/cmbdet-test-out", quick_model) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("cmbdet: error: /proc/cmbdet-test-out")
    assert "cannot be written" in error[0]


def test_a_subject_without_an_image_is_logged_and_the_others_run(
    dataset, quick_model, tmp_path, capsys
):
    data = tmp_path / "data"
    shutil.copytree(dataset, data)
    for name in ("swi.nii.gz", "magnitude.nii.gz"):  # a phase alone
        (data / "sub-0001" / name).unlink(missing_ok=True)
    out = tmp_path / "out"
    assert _detect(data, out, quick_model) == 2
    captured = capsys.readouterr()
    assert captured.out.startswith("2 of 3 subjects done, 1 failed")
    rows = {r["subject"]: r for r in _log(out)}
    assert [rows[i]["status"] for i in IDS] == ["done", "failed", "done"]
    assert "required swi file is missing" in rows["0001"]["error"]
    failures = _without_progress(captured.err)
    assert len(failures) == 1 and failures[0].startswith("sub-0001: failed:")


def test_without_a_terminal_each_subject_gets_a_progress_line(
    dataset, quick_model, tmp_path, capsys
):
    out = tmp_path / "out"
    assert _detect(dataset, out, quick_model) == 0  # pytest's stderr is not a terminal
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and all(PROGRESS.fullmatch(line) for line in lines)
    assert [line.split()[1] for line in lines] == ["1/3", "2/3", "3/3"]
    assert lines[-1].endswith("all done")
