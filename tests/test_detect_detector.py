"""The detector end to end through files and the CLI, with a small untrained model.

The weights are random (the heatmap bias is raised so that stage 1 proposes candidates):
these tests check the plumbing — coordinates, orientation invariance, output contract, bad
input — not detection quality, which benchmarks/ measures with trained models.
"""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from cmbdet.cli import main
from cmbdet.detect.detector import Detector
from cmbdet.io.dataset import find_subjects
from cmbdet.io.results import COLUMNS
from cmbdet.synth.dataset import generate_dataset


@pytest.fixture(scope="module")
def model_dir(make_random_model):
    return make_random_model("test-model", 0.0)


@pytest.fixture(scope="module")
def subjects(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    ras = generate_dataset(root / "ras", "tiny", 1, seed=11, progress=False)
    lps = generate_dataset(root / "lps", "tiny", 1, seed=11, progress=False, orientation="LPS")
    return find_subjects(ras)[0], find_subjects(lps)[0]


def test_storage_orientation_does_not_change_world_coordinates(model_dir, subjects):
    detector = Detector.load(model_dir)
    ras, lps = (detector.detect(s.swi, s.phase) for s in subjects)
    assert len(ras.candidates) > 0 and len(ras.candidates) == len(lps.candidates)
    world_ras = np.array([[c.x_mm, c.y_mm, c.z_mm] for c in ras.candidates])
    world_lps = np.array([[c.x_mm, c.y_mm, c.z_mm] for c in lps.candidates])
    np.testing.assert_allclose(world_ras, world_lps, atol=1e-3)
    shape = nib.load(subjects[0].swi).shape
    ijk_ras = np.array([[c.i, c.j, c.k] for c in ras.candidates])
    ijk_lps = np.array([[c.i, c.j, c.k] for c in lps.candidates])
    np.testing.assert_allclose(ijk_lps[:, 0], shape[0] - 1 - ijk_ras[:, 0], atol=1e-3)
    np.testing.assert_allclose(ijk_lps[:, 1], shape[1] - 1 - ijk_ras[:, 1], atol=1e-3)
    np.testing.assert_allclose(ijk_lps[:, 2], ijk_ras[:, 2], atol=1e-3)


def test_a_model_grid_of_thicker_slices_maps_candidates_back_to_the_input(
    make_random_model, subjects
):
    detector = Detector.load(make_random_model("thick-slice-model", 0.0, target_slice_mm=4.0))
    ras, lps = (detector.detect(s.swi, s.phase) for s in subjects)
    image = nib.load(subjects[0].swi)  # 2 mm slices: two per model slice
    assert ras.record["preprocessing"]["model_shape"][2] == image.shape[2] // 2
    assert ras.record["preprocessing"]["model_spacing_mm"][2] == pytest.approx(4.0)
    assert len(ras.candidates) > 0 and len(ras.candidates) == len(lps.candidates)
    for candidate in ras.candidates:
        assert -0.5 <= candidate.k <= image.shape[2] - 0.5 and candidate.slices >= 1
        world = image.affine @ [candidate.i, candidate.j, candidate.k, 1.0]
        np.testing.assert_allclose(world[:3], candidate.centre_mm, atol=1e-3)
    world_ras = np.array([c.centre_mm for c in ras.candidates])
    world_lps = np.array([c.centre_mm for c in lps.candidates])
    np.testing.assert_allclose(world_ras, world_lps, atol=1e-3)


def test_detect_cli_writes_the_output_contract(model_dir, subjects, tmp_path, capsys):
    subject = subjects[1]  # LPS-stored: outputs must overlay the input file
    out = tmp_path / "out"
    argv = _single(subject, out, model_dir, "--threshold", "0.0")
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "candidates.csv",
        "cmb_labels.nii.gz",
        "detections.csv",
        "report.html",
        "run.json",
    ]
    with open(out / "detections.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == (*COLUMNS, "region")
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    labels = nib.load(out / "cmb_labels.nii.gz")
    source = nib.load(subject.swi)
    assert labels.shape == source.shape
    np.testing.assert_allclose(labels.affine, source.affine)
    first = rows[0]
    low = [int(np.floor(float(first[c]))) for c in "ijk"]  # centres may sit between voxels
    near = np.asarray(labels.dataobj)[low[0] : low[0] + 2, low[1] : low[1] + 2, low[2] : low[2] + 2]
    assert 1 in near
    assert main(argv) == 2  # the folder now exists: no overwrite without --overwrite
    assert "--overwrite" in capsys.readouterr().err


def test_bad_input_ends_with_one_line_and_no_outputs(model_dir, subjects, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "detect",
            "--swi",
            str(tmp_path / "missing.nii.gz"),
            "--phase",
            str(subjects[0].phase),
            "--out",
            str(out),
            "--model",
            str(model_dir),
        ]
    )
    assert code == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "missing.nii.gz" in error[0]
    assert not out.exists()


def test_demo_runs_on_generated_data(model_dir, tmp_path, capsys):
    assert (
        main(
            ["demo", "--preset", "tiny", "--out", str(tmp_path / "demo"), "--model", str(model_dir)]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "found" in printed and "missed" in printed and "false positives" in printed
    counts = re.search(r"found (\d+), missed (\d+), false positives (\d+)", printed)
    missed, false_positives = int(counts.group(2)), int(counts.group(3))
    assert printed.count("  missed: CMB ") == missed  # each error named, as detections.csv
    assert printed.count("  false positive: detection ") == false_positives
    assert str(tmp_path / "demo" / "report.html") in printed
    assert (tmp_path / "demo" / "run.json").exists()
    assert (tmp_path / "demo" / "report.html").exists()
    # a second demo replaces the first one's outputs (its own files, report included)
    assert main(["demo", "--preset", "tiny", "--out", str(tmp_path / "demo"),
                 "--model", str(model_dir)]) == 0  # fmt: skip


def test_the_shipped_model_loads_with_matching_checksums():
    from cmbdet import Detector

    detector = Detector.load()  # verifies the SHA-256 of both weight files
    assert detector.stage2 is not None and 0.0 < detector.threshold < 1.0
    size = sum(p.stat().st_size for p in detector.folder.iterdir())
    assert size < 20 * 2**20


def test_demo_refuses_a_folder_it_did_not_write(model_dir, tmp_path, capsys):
    folder = tmp_path / "precious"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    assert main(["demo", "--preset", "tiny", "--out", str(folder), "--model", str(model_dir)]) == 2
    assert (folder / "notes.txt").read_text() == "keep me"


def test_dataset_mode_skips_a_bad_subject_and_fails_at_the_end(model_dir, tmp_path, capsys):
    import shutil

    data = generate_dataset(tmp_path / "data", "tiny", 2, seed=12, progress=False)
    (data / "sub-0001" / "phase.nii.gz").write_bytes(b"")  # corrupt one subject
    out = tmp_path / "out"
    code = main(["detect", "--dataset", str(data), "--out", str(out), "--model", str(model_dir)])
    assert code == 2
    assert (out / "sub-0000" / "detections.csv").exists()
    assert not (out / "sub-0001").exists()
    err = capsys.readouterr().err
    assert "sub-0001" in err and "phase.nii.gz" in err and "Traceback" not in err
    shutil.rmtree(out)


# ----------------------------------------------------------------------------- hardening


def _single(subject, out, model_dir, *more) -> list[str]:
    return [
        "detect",
        "--swi",
        str(subject.swi),
        "--phase",
        str(subject.phase),
        "--out",
        str(out),
        "--model",
        str(model_dir),
        *more,
    ]


def _files(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_an_output_folder_holding_the_inputs_is_refused(model_dir, tmp_path, capsys):
    data = generate_dataset(tmp_path / "data", "tiny", 1, seed=11, progress=False)
    (data / "notes.txt").write_text("keep")
    (subject,) = find_subjects(data)
    before = _files(data)
    for out in (subject.swi.parent, data, tmp_path):
        assert main(_single(subject, out, model_dir, "--overwrite")) == 2
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and "holds the input" in error[0]
    assert _files(data) == before
    assert main(_single(subject, tmp_path / "elsewhere", model_dir)) == 0
    assert main(_single(subject, model_dir.parent, model_dir, "--overwrite")) == 2  # the model


def test_the_working_folder_is_never_replaced(model_dir, subjects, tmp_path, monkeypatch, capsys):
    here = tmp_path / "here"
    here.mkdir()
    (here / "mine.txt").write_text("keep")
    monkeypatch.chdir(here)
    assert main(_single(subjects[0], ".", model_dir, "--overwrite")) == 2
    assert "current folder" in capsys.readouterr().err
    assert (here / "mine.txt").read_text() == "keep"


def test_an_unwritable_out_is_refused_before_detection(model_dir, subjects, monkeypatch, capsys):
    def never(*args, **kwargs):
        raise AssertionError("detection ran")

    monkeypatch.setattr(Detector, "detect", never)
    for out in ("/proc/cmbdet-test-out", "/sys/cmbdet-test-out"):
        assert main(_single(subjects[0], out, model_dir)) == 2
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and error[0].startswith(f"cmbdet: error: {out}:")


def test_a_killed_runs_staging_folder_is_cleaned_by_the_next_run(model_dir, subjects, tmp_path):
    import subprocess
    import sys

    from cmbdet.io.writing import HOST_TAG

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # a process id that is gone
    out = tmp_path / "out"
    killed = tmp_path / f".out.partial-{HOST_TAG}-{child.pid}-x1y2z3"
    killed.mkdir()
    (killed / "detections.csv").write_text("half\n")
    running = tmp_path / f".out.partial-{HOST_TAG}-{os.getpid()}-x1y2z3"  # a live run's
    running.mkdir()
    assert main(_single(subjects[0], out, model_dir)) == 0
    assert not killed.exists() and running.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out", running.name])


def test_a_terminated_detect_leaves_nothing_behind(model_dir, subjects, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "out"
    code = "import sys; from cmbdet.cli import main; sys.exit(main())"
    run = subprocess.Popen(
        [sys.executable, "-c", code, *_single(subjects[0], out, model_dir)],
        stderr=subprocess.PIPE,
        text=True,
    )
    while run.poll() is None and not list(tmp_path.glob(".out.partial-*")):
        time.sleep(0.005)
    run.send_signal(signal.SIGTERM)  # as SLURM does at a time limit
    run.wait(timeout=60)
    assert run.returncode == 130 and run.stderr.read().strip() == "cmbdet: interrupted"
    assert list(tmp_path.iterdir()) == []


def test_an_output_folder_holding_linked_inputs_is_refused(model_dir, subjects, tmp_path, capsys):
    annex = tmp_path / "annex"  # git-annex / DataLad: the dataset holds links to the objects
    annex.mkdir()
    folder = tmp_path / "ds" / "sub-0000"
    folder.mkdir(parents=True)
    for name, source in (("swi.nii.gz", subjects[0].swi), ("phase.nii.gz", subjects[0].phase)):
        (annex / name).write_bytes(source.read_bytes())
        (folder / name).symlink_to(annex / name)
    argv = ["detect", "--swi", str(folder / "swi.nii.gz"), "--phase", str(folder / "phase.nii.gz")]
    argv += ["--out", str(folder), "--model", str(model_dir), "--overwrite"]
    assert main(argv) == 2
    assert "holds the input" in capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir()) == ["phase.nii.gz", "swi.nii.gz"]


def test_the_result_carries_the_phase_the_networks_read(model_dir, tmp_path):
    """Raw, left-handed phase in integer units is shown as the networks read it: filtered,
    radians, right-handed, on the input's grid (what the report's crops show)."""
    kinds = {"phase_kind": "raw", "handedness": "left", "phase_units": "integer"}
    raw = generate_dataset(tmp_path / "raw", "tiny", 1, seed=11, progress=False, **kinds)
    plain = generate_dataset(tmp_path / "plain", "tiny", 1, seed=11, progress=False)
    detector = Detector.load(model_dir, device="cpu")
    results = [
        detector.detect(d / "sub-0000" / "swi.nii.gz", d / "sub-0000" / "phase.nii.gz")
        for d in (raw, plain)
    ]
    brain = nib.load(plain / "sub-0000" / "brainmask.nii.gz").get_fdata() > 0
    shown_raw, shown_plain = (r.phase.data[brain] for r in results)
    stored = nib.load(raw / "sub-0000" / "phase.nii.gz").get_fdata()[brain]
    assert results[0].phase.data.shape == results[0].reference.data.shape
    assert np.abs(shown_raw).max() <= np.pi + 1e-4 and np.abs(stored).max() > 100  # radians
    assert np.corrcoef(shown_raw, shown_plain)[0, 1] > 0.5  # same sign: right-handed, filtered
    assert np.median(np.abs(shown_raw)) < 0.5


def test_demo_keep_leaves_the_input_the_outputs_name(model_dir, tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--preset", "tiny", "--out", str(out), "--model", str(model_dir)]
    assert main([*argv, "--keep"]) == 0
    inputs = json.loads((out / "run.json").read_text())["inputs"]
    assert Path(inputs["swi"]).is_file() and Path(inputs["swi"]).parent.parent == out / "input"
    assert (out / "input" / "sub-0000" / "lesions.csv").is_file()
    assert str(out / "input" / "sub-0000" / "swi.nii.gz") in (out / "report.html").read_text()
    assert main(argv) == 0  # without --keep: no input left that the outputs do not name
    assert not (out / "input").exists() and (out / "run.json").is_file()


def test_demo_never_replaces_an_input_folder_it_did_not_keep(model_dir, tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--preset", "tiny", "--out", str(out), "--model", str(model_dir)]
    assert main(argv) == 0
    (out / "input").mkdir()
    (out / "input" / "scan.nii.gz").write_text("the user's")
    capsys.readouterr()
    assert main([*argv, "--keep"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "input" in error[0] and "earlier cmbdet demo" in error[0]
    assert (out / "input" / "scan.nii.gz").read_text() == "the user's"


def test_networks_loaded_in_the_background_give_the_same_result(model_dir, subjects, tmp_path):
    """``background=True`` (the one-subject command line) builds the networks on a thread
    while the subject is read and preprocessed: the same candidates; damaged weights still
    fail at load; an unusable device fails at the first detection, naming it."""
    import gc
    import shutil
    import sys

    from cmbdet.errors import InputError

    switch_interval = sys.getswitchinterval()
    now = Detector.load(model_dir, precision="float32").detect(subjects[0].swi, subjects[0].phase)
    later = Detector.load(model_dir, precision="float32", background=True)
    result = later.detect(subjects[0].swi, subjects[0].phase)
    assert len(result.candidates) == len(now.candidates) > 0
    assert [c.score for c in result.candidates] == [c.score for c in now.candidates]
    assert result.record["timings_s"]["networks_wait"] >= 0.0
    damaged = tmp_path / "damaged"
    shutil.copytree(model_dir, damaged)
    (damaged / "stage2.safetensors").write_bytes(b"not weights")
    with pytest.raises(InputError, match="do not match the SHA-256"):
        Detector.load(damaged, background=True)
    nowhere = Detector.load(model_dir, device="tpu", background=True)
    with pytest.raises(InputError, match="unknown device 'tpu'"):
        nowhere.detect(subjects[0].swi, subjects[0].phase)
    # the loading thread's process-wide settings are back once it ends, loaded or failed
    assert sys.getswitchinterval() == pytest.approx(switch_interval) and gc.isenabled()


def test_the_onnx_backend_from_the_command_line(model_dir, subjects, tmp_path, monkeypatch, capsys):
    """``--backend onnx`` runs the shipped model's ONNX exports and run.json says so; a model
    folder without exports is refused for it, naming the folder; ``auto`` is ONNX Runtime
    where PyTorch is not installed."""
    import importlib.util

    from cmbdet.detect.networks import resolve_backend

    subject = subjects[0]
    out = tmp_path / "onnx"
    argv = ["detect", "--swi", str(subject.swi), "--phase", str(subject.phase), "--out", str(out)]
    assert main([*argv, "--backend", "onnx"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["backend"] == "onnx" and run["precision"] == "float32" and run["device"] == "cpu"
    refused = [*argv[:-1], str(tmp_path / "refused"), "--model", str(model_dir)]
    capsys.readouterr()
    assert main([*refused, "--backend", "onnx"]) == 2
    assert "has no ONNX exports" in capsys.readouterr().err
    assert not (tmp_path / "refused" / "detections.csv").exists()
    assert resolve_backend("auto") == "torch"
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "torch" else real_find_spec(name)
    )
    assert resolve_backend("auto") == "onnx"


def test_demo_runs_on_the_shipped_sample_without_the_generator(tmp_path, monkeypatch, capsys):
    """Where the generator's packages are missing (the light install), ``demo`` says so and
    detects the sample subject shipped in the package, on the ONNX backend too; the truth it
    compares with is the sample's lesions.csv."""
    from cmbdet.cli import demo

    monkeypatch.setattr(demo, "generator_missing", lambda: ["torch", "nilearn"])
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--backend", "onnx", "--keep"]) == 0
    printed = capsys.readouterr().out
    assert "the generator needs torch and nilearn" in printed
    found = re.search(r"sample subject .*: (\d+) visible CMBs\nfound (\d+), missed (\d+)", printed)
    assert found and int(found[1]) == int(found[2]) + int(found[3]) >= 10
    assert int(found[2]) >= int(found[1]) * 0.8  # the shipped model finds most of them
    assert json.loads((out / "run.json").read_text())["backend"] == "onnx"
    assert (out / "input" / "sub-sample" / "lesions.csv").is_file()


def test_demo_on_the_sample_replaces_only_its_own_kept_input(tmp_path, capsys):
    """``demo --sample --keep`` run twice replaces its kept input and outputs (the demo's own);
    an input folder it did not write is refused, untouched."""
    out = tmp_path / "demo"
    for _ in range(2):
        assert main(["demo", "--sample", "--keep", "--out", str(out), "--backend", "onnx"]) == 0
    assert sorted(p.name for p in (out / "input").iterdir()) == ["dataset.json", "sub-sample"]
    (out / "input" / "notes.txt").write_text("mine")
    assert main(["demo", "--sample", "--keep", "--out", str(out), "--backend", "onnx"]) == 2
    assert (out / "input" / "notes.txt").read_text() == "mine"
