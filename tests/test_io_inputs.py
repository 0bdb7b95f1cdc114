"""Finding a batch's subjects (``cmbdet.io.inputs``): cmbdet folders, BIDS, CSV manifests."""

from __future__ import annotations

import csv
import shutil

import pytest

from cmbdet.cli import main
from cmbdet.detect.input_mode import MULTI_ECHO, SWI_ONLY, input_mode
from cmbdet.errors import InputError
from cmbdet.io.inputs import (
    dataset_kind,
    discover_inputs,
    read_manifest,
)
from cmbdet.synth.dataset import generate_dataset


def _touch(root, *names):
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")  # discovery reads names only
    return root


@pytest.fixture
def bids(tmp_path):
    root = tmp_path / "bids"
    return _touch(
        root,
        "dataset_description.json",
        "participants.tsv",
        "sub-01/anat/sub-01_part-mag_swi.nii.gz",
        "sub-01/anat/sub-01_part-mag_swi.json",
        "sub-01/anat/sub-01_part-phase_swi.nii.gz",
        "sub-01/anat/sub-01_T1w.nii.gz",
        "sub-02/ses-1/swi/sub-02_ses-1_swi.nii.gz",
        "sub-02/ses-1/swi/sub-02_ses-1_part-phase_swi.nii.gz",
        "sub-02/ses-1/swi/sub-02_ses-1_part-mag_GRE.nii",
        "sub-02/ses-2/anat/sub-02_ses-2_T1w.nii.gz",  # a visit without SWI: not a subject
        "sub-03/anat/sub-03_acq-3d_part-mag_T2starw.nii.gz",
        "sub-03/anat/sub-03_acq-3d_part-phase_T2starw.nii.gz",
        "sub-04/anat/sub-04_T1w.nii.gz",
        "derivatives/cmbdet/sub-01/run.json",
    )


def test_bids_subjects_are_found_by_their_entities(bids):
    assert dataset_kind(bids) == "bids"
    subjects = {s.subject_id: s for s in discover_inputs(dataset=bids).subjects}
    assert list(subjects) == ["01", "02_ses-1", "03"]
    one, two, three = subjects.values()
    assert (one.swi.name, one.phase.name, one.magnitude) == (
        "sub-01_part-mag_swi.nii.gz",
        "sub-01_part-phase_swi.nii.gz",
        None,
    )
    assert (two.swi.name, two.phase.name, two.magnitude.name) == (
        "sub-02_ses-1_swi.nii.gz",
        "sub-02_ses-1_part-phase_swi.nii.gz",
        "sub-02_ses-1_part-mag_GRE.nii",
    )
    # no processed SWI: magnitude + phase, and the SWI is computed from them
    assert three.swi is None
    assert three.magnitude.name == "sub-03_acq-3d_part-mag_T2starw.nii.gz"
    assert three.phase.name == "sub-03_acq-3d_part-phase_T2starw.nii.gz"


def test_bids_is_recognised_without_a_description_file(tmp_path):
    root = _touch(tmp_path, "sub-1/anat/sub-1_swi.nii.gz", "sub-1/anat/sub-1_part-phase_swi.nii")
    assert dataset_kind(root) == "bids"
    assert [s.subject_id for s in discover_inputs(dataset=root).subjects] == ["1"]


def test_a_cmbdet_dataset_is_not_taken_for_bids(tmp_path):
    root = _touch(tmp_path, "dataset_description.json", "sub-1/swi.nii.gz", "sub-1/phase.nii.gz")
    assert dataset_kind(root) == "cmbdet"
    assert [s.subject_id for s in discover_inputs(dataset=root).subjects] == ["1"]


@pytest.mark.parametrize(
    ("names", "problem"),
    [
        (
            ["sub-01_acq-a_swi.nii.gz", "sub-01_acq-b_swi.nii.gz", "sub-01_part-phase_swi.nii.gz"],
            "images of several acquisitions ((none), acq-a, acq-b), none with both",
        ),
        (
            ["sub-01_swi.nii.gz", "sub-01_part-mag_swi.nii.gz", "sub-01_part-phase_swi.nii"],
            "more than one SWI image (sub-01_part-mag_swi.nii.gz, sub-01_swi.nii.gz)",
        ),
        (
            ["sub-01_swi.nii.gz", "sub-01_part-phase_swi.nii.gz", "sub-01_part-phase_swi.nii"],
            "an SWI image with several phase images",
        ),
        (["sub-01_part-phase_swi.nii.gz"], "has a phase image but no SWI or magnitude image"),
        (
            [
                "sub-01_echo-1_part-mag_MEGRE.nii",
                "sub-01_echo-1_part-phase_MEGRE.nii",
                "sub-01_echo-2_part-mag_MEGRE.nii",
            ],
            "echo 2 has a magnitude image but not the other",
        ),
        (
            ["sub-01_echo-1_part-mag_MEGRE.nii", "sub-01_echo-2_part-mag_MEGRE.nii"],
            "2 magnitude echoes and no phase image",
        ),
        (
            ["sub-01_echo-1_part-real_MEGRE.nii", "sub-01_echo-1_part-imag_MEGRE.nii"],
            "holds real and imaginary parts",
        ),
    ],
)
def test_an_ambiguous_or_incomplete_bids_subject_names_its_folder(tmp_path, names, problem):
    _touch(tmp_path, "dataset_description.json", *[f"sub-01/anat/{n}" for n in names])
    (unusable,) = discover_inputs(dataset=tmp_path).unusable
    assert unusable.problem.path == tmp_path / "sub-01"
    assert problem in unusable.problem.problem


def test_a_bids_dataset_without_swi_is_an_error(tmp_path):
    _touch(tmp_path, "dataset_description.json", "sub-01/anat/sub-01_T1w.nii.gz")
    with pytest.raises(InputError, match="no SWI images"):
        discover_inputs(dataset=tmp_path)


# ----------------------------------------------------------------------------- manifest


def _write_manifest(path, rows):
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return path


def test_a_manifest_resolves_paths_against_its_folder(tmp_path):
    _touch(tmp_path, "scans/a_swi.nii.gz", "scans/a_ph.nii.gz", "scans/a_mask.nii.gz")
    elsewhere = _touch(tmp_path / "far", "b_swi.nii", "b_ph.nii", "b_mag.nii")
    manifest = _write_manifest(
        tmp_path / "list.csv",
        [
            ["Subject", "swi", "phase", "magnitude", "mask", "site"],
            ["sub-b", elsewhere / "b_swi.nii", elsewhere / "b_ph.nii", elsewhere / "b_mag.nii", ""],
            ["a", "scans/a_swi.nii.gz", "scans/a_ph.nii.gz", "", "scans/a_mask.nii.gz", "x"],
        ],
    )
    a, b = discover_inputs(manifest=manifest).subjects
    assert (a.subject_id, b.subject_id) == ("a", "b")
    assert a.swi == tmp_path / "scans" / "a_swi.nii.gz"
    assert (a.magnitude, a.brainmask) == (None, tmp_path / "scans" / "a_mask.nii.gz")
    assert (b.phase, b.magnitude, b.brainmask) == (
        elsewhere / "b_ph.nii",
        elsewhere / "b_mag.nii",
        None,
    )


@pytest.mark.parametrize(
    ("rows", "problem"),
    [
        ([["subject", "swi"], ["a", "a_swi.nii"]], "lacks required columns: phase"),
        ([["subject", "swi", "phase"]], "lists no subjects"),
        ([["subject", "swi", "phase"], ["a", "", ""]], "line 2: empty swi"),
        ([["subject", "swi", "phase"], ["a", "a_swi.nii", "nope.nii"]], "line 2: phase file not"),
        ([["subject", "swi", "phase"], ["../a", "a_swi.nii", "a_ph.nii"]], "line 2: invalid"),
        (
            [
                ["subject", "swi", "phase"],
                ["a", "a_swi.nii", "a_ph.nii"],
                ["sub-a", "a_swi.nii", "a_ph.nii"],
            ],
            "line 3: subject 'a' is already listed on line 2",
        ),
        ([["subject", "swi", "phase"], ["a\nb", "a_swi.nii", "a_ph.nii"]], "control characters"),
        ([["subject", "swi", "phase"], ["a\x00b", "a_swi.nii", "a_ph.nii"]], "line 2: manifest "),
        ([["subject", "swi", "phase"], ["L" * 300, "a_swi.nii", "a_ph.nii"]], "300 bytes"),
    ],
)
def test_manifest_problems_name_the_file_and_line(tmp_path, rows, problem):
    _touch(tmp_path, "a_swi.nii", "a_ph.nii")
    manifest = _write_manifest(tmp_path / "list.csv", rows)
    with pytest.raises(InputError) as caught:
        read_manifest(manifest)
    assert caught.value.path == manifest
    assert problem in caught.value.problem


def test_an_unusable_bids_subject_is_listed_not_raised(bids):
    _touch(bids, "sub-05/anat/sub-05_part-phase_swi.nii.gz")  # a phase alone
    _touch(bids, "sub-06/anat/sub-06_swi.nii.gz")  # no phase: the phase-free model runs
    found = discover_inputs(dataset=bids)
    assert [s.subject_id for s in found.subjects] == ["01", "02_ses-1", "03", "06"]
    assert input_mode(found.subjects[-1]) == SWI_ONLY
    assert [u.subject_id for u in found.unusable] == ["05"]
    assert found.unusable[0].problem.path == bids / "sub-05"
    assert "no SWI or magnitude image" in found.unusable[0].problem.problem


@pytest.mark.parametrize(
    ("names", "used"),
    [
        (  # the scanner's SWI pair wins over the echoes it was made from
            ["sub-01_swi.nii.gz", "sub-01_part-phase_swi.nii.gz"]
            + [f"sub-01_echo-{n}_part-{p}_MEGRE.nii" for n in (1, 2) for p in ("mag", "phase")],
            ("sub-01_swi.nii.gz", "sub-01_part-phase_swi.nii.gz", None),
        ),
        (  # a minimum-intensity projection exported beside the SWI is left out
            ["sub-01_swi.nii.gz", "sub-01_part-phase_swi.nii.gz", "sub-01_rec-minip_swi.nii.gz"],
            ("sub-01_swi.nii.gz", "sub-01_part-phase_swi.nii.gz", None),
        ),
        (  # echoes before a single-echo T2starw of the same session
            ["sub-01_part-mag_T2starw.nii", "sub-01_part-phase_T2starw.nii"]
            + [f"sub-01_echo-{n}_part-{p}_MEGRE.nii" for n in (1, 2) for p in ("mag", "phase")],
            (None, None, "echoes 2"),
        ),
    ],
)
def test_the_acquisition_a_folder_runs_is_chosen(tmp_path, names, used):
    _touch(tmp_path, "dataset_description.json", *[f"sub-01/anat/{n}" for n in names])
    found = discover_inputs(dataset=tmp_path)
    assert found.unusable == []
    (subject,) = found.subjects
    swi, phase = (None if p is None else p.name for p in (subject.swi, subject.phase))
    echoes = f"echoes {len(subject.echoes)}" if subject.echoes else None
    assert (swi, phase, echoes or None) == used


def test_bids_echoes_and_acquisitions(tmp_path):
    names = [f"sub-01_echo-{n}_part-{p}_MEGRE.nii.gz" for n in (2, 1, 3) for p in ("mag", "phase")]
    names += [f"sub-01_run-{r}_part-{p}_T2starw.nii" for r in (1, 2) for p in ("mag", "phase")]
    _touch(tmp_path, "dataset_description.json", *[f"sub-01/anat/{n}" for n in names])
    (tmp_path / "sub-01/anat/sub-01_echo-2_part-phase_MEGRE.json").write_text('{"EchoTime": 0.02}')
    found = {s.subject_id: s for s in discover_inputs(dataset=tmp_path).subjects}
    assert sorted(found) == ["01", "01_run-1", "01_run-2"]
    echoes = found["01"].echoes
    assert [e.magnitude.name for e in echoes] == [
        f"sub-01_echo-{n}_part-mag_MEGRE.nii.gz" for n in (1, 2, 3)
    ]
    assert [e.echo_time_ms for e in echoes] == [None, 20.0, None]
    assert input_mode(found["01"]) == MULTI_ECHO
    assert found["01_run-2"].phase.name == "sub-01_run-2_part-phase_T2starw.nii"


def test_a_missing_manifest_is_one_line_and_exit_2(tmp_path, capsys):
    argv = ["detect", "--manifest", str(tmp_path / "none.csv"), "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "none.csv: manifest file not found" in error[0]


# ----------------------------------------------------------------------------- end to end


def test_bids_and_manifest_batches_run_end_to_end(tmp_path, capsys):
    data = generate_dataset(tmp_path / "data", "tiny", 1, seed=3, progress=False)
    source = data / "sub-0000"
    root = tmp_path / "bids"
    anat = root / "sub-07" / "ses-a" / "anat"
    anat.mkdir(parents=True)
    (root / "dataset_description.json").write_text('{"Name": "t", "BIDSVersion": "1.9.0"}')
    shutil.copy(source / "swi.nii.gz", anat / "sub-07_ses-a_part-mag_swi.nii.gz")
    shutil.copy(source / "phase.nii.gz", anat / "sub-07_ses-a_part-phase_swi.nii.gz")
    out = root / "derivatives" / "cmbdet"  # the BIDS place for outputs, inside the dataset
    assert main(["detect", "--dataset", str(root), "--out", str(out)]) == 0
    assert (out / "sub-07_ses-a" / "run.json").is_file()

    manifest = _write_manifest(
        tmp_path / "list.csv",
        [["subject", "swi", "phase"], ["x", source / "swi.nii.gz", "data/sub-0000/phase.nii.gz"]],
    )
    listed = tmp_path / "listed"
    assert main(["detect", "--manifest", str(manifest), "--out", str(listed)]) == 0
    same = [(o / "detections.csv").read_text() for o in (out / "sub-07_ses-a", listed / "sub-x")]
    assert same[0] == same[1]
    assert "1 of 1 subjects done" in capsys.readouterr().out
