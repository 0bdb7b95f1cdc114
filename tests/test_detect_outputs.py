"""A subject's output folder: never through a link, never over files it did not write, in
place when the folder exists (a mount point), with run.json last."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cmbdet.detect.outputs import OUTPUT_FILES, check_output_folder, write_outputs
from cmbdet.errors import InputError
from cmbdet.io.nifti import load_volume
from cmbdet.records import Candidate, DetectionResult
from cmbdet.synth.dataset import generate_dataset


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    data = generate_dataset(tmp_path_factory.mktemp("data"), "tiny", 1, seed=6, progress=False)
    swi = load_volume(data / "sub-0000" / "swi.nii.gz", "SWI")
    centre = swi.reorientation.original_affine @ np.array([80.0, 100.0, 12.0, 1.0])
    cmb = Candidate(*centre[:3], 80.0, 100.0, 12.0, 0.9, 0.8, 3.0, 2)
    record = {"model": {"name": "test"}, "timings_s": {}, "threshold": 0.5}
    return DetectionResult([cmb], 0.5, record, reference=swi)


def test_outputs_are_written_into_an_existing_folder_in_place(result, tmp_path):
    out = tmp_path / "out"  # an existing empty folder, as a mount point is
    out.mkdir()
    inode = out.stat().st_ino
    write_outputs(out, result, result.reference)
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES)
    assert out.stat().st_ino == inode  # the folder itself was never replaced
    write_outputs(out, result, result.reference, overwrite=True)
    assert json.loads((out / "run.json").read_text())["detections"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_link_at_the_output_folder_is_never_followed(result, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "thesis.txt").write_text("years")
    (tmp_path / "out").symlink_to(victim)  # e.g. planted in a batch folder while it runs
    with pytest.raises(InputError):
        write_outputs(tmp_path / "out", result, result.reference, overwrite=True)
    assert sorted(p.name for p in victim.iterdir()) == ["thesis.txt"]


def test_overwrite_replaces_outputs_only(result, tmp_path):
    out = tmp_path / "sub-0001"  # another subject's input folder, say
    out.mkdir()
    (out / "swi.nii.gz").write_bytes(b"scan")
    for overwrite in (False, True):
        with pytest.raises(InputError, match="did not write"):
            check_output_folder(out, overwrite)
        with pytest.raises(InputError, match="did not write"):
            write_outputs(out, result, result.reference, overwrite=overwrite)
    assert sorted(p.name for p in out.iterdir()) == ["swi.nii.gz"]


@pytest.mark.parametrize("failing", ["label map", "report"])
def test_a_failure_while_writing_leaves_no_outputs(result, tmp_path, monkeypatch, failing):
    """The label map is written on a thread while the report is drawn: whichever of them
    fails, the error reaches the caller and neither the output folder nor a staging folder
    is left behind."""
    from cmbdet.detect import outputs

    def broken(*args, **kwargs):
        raise OSError(f"the {failing} cannot be written")

    monkeypatch.setattr(
        outputs, "save_like" if failing == "label map" else "write_subject_report", broken
    )
    with pytest.raises(OSError, match=failing):
        write_outputs(tmp_path / "out", result, result.reference)
    assert list(tmp_path.iterdir()) == []
