"""The generator's BIDS output (``cmbdet synth --layout bids``), and a BIDS tree of multi-echo
MEGRE and single-echo T2starw subjects (magnitude + raw phase, no SWI) run as it is."""

from __future__ import annotations

import csv
import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from cmbdet.cli import main
from cmbdet.errors import InputError
from cmbdet.synth.bids import echo_times_s, reference_echo
from cmbdet.synth.dataset import generate_dataset


def _anat(root, subject="0000"):
    return root / f"sub-{subject}" / "anat"


def _read(path):
    return np.asarray(nib.load(str(path)).dataobj, dtype=np.float64)


def test_echo_times_put_the_reference_echo_at_the_drawn_te():
    assert reference_echo(1) == 1 and reference_echo(4) == 2 and reference_echo(3) == 1
    assert echo_times_s(0.02, 4) == pytest.approx([0.01, 0.02, 0.03, 0.04])
    assert echo_times_s(0.02, 1) == pytest.approx([0.02])


def test_echoes_are_one_subject_at_several_echo_times(tmp_path):
    single = generate_dataset(tmp_path / "single", "tiny", 1, seed=11, progress=False)
    bids = generate_dataset(
        tmp_path / "bids",
        "tiny",
        1,
        seed=11,
        progress=False,
        layout="bids",
        echoes=3,
        phase_kind="raw",
    )
    anat = _anat(bids)
    names = sorted(p.name for p in anat.iterdir())
    assert names == sorted(
        f"sub-0000_echo-{n}_part-{part}_MEGRE.{ext}"
        for n in (1, 2, 3)
        for part in ("mag", "phase")
        for ext in ("nii.gz", "json")
    )
    sidecars = [
        json.loads((anat / f"sub-0000_echo-{n}_part-phase_MEGRE.json").read_text())
        for n in (1, 2, 3)
    ]
    times = [s["EchoTime"] for s in sidecars]
    assert times == pytest.approx([times[0], 2 * times[0], 3 * times[0]], rel=1e-4)
    assert {s["Units"] for s in sidecars} == {"rad"}
    # echo 1 is the reference: the single-echo subject's own magnitude and truth
    reference = _read(anat / "sub-0000_echo-1_part-mag_MEGRE.nii.gz")
    np.testing.assert_array_equal(reference, _read(single / "sub-0000" / "magnitude.nii.gz"))
    truth = (bids / "sub-0000" / "lesions.csv").read_text()
    assert truth == (single / "sub-0000" / "lesions.csv").read_text()
    # physics: signal decays with TE, and the phase accrues linearly with TE
    brain = _read(single / "sub-0000" / "brainmask.nii.gz") > 0
    magnitudes = [
        _read(anat / f"sub-0000_echo-{n}_part-mag_MEGRE.nii.gz")[brain] for n in (1, 2, 3)
    ]
    assert magnitudes[0].mean() > magnitudes[1].mean() > magnitudes[2].mean()
    phases = [_read(anat / f"sub-0000_echo-{n}_part-phase_MEGRE.nii.gz")[brain] for n in (1, 2, 3)]
    one_step = np.angle(np.exp(1j * (phases[1] - phases[0])))
    two_steps = np.angle(np.exp(1j * (phases[2] - phases[0])))
    small = np.abs(one_step) < 0.5  # away from wraps
    assert np.corrcoef(one_step[small], two_steps[small])[0, 1] > 0.9
    assert np.median(two_steps[small] / np.where(one_step[small] == 0, 1, one_step[small])) == (
        pytest.approx(2.0, abs=0.3)
    )


def _as_a_simulator_writes_it(tree, subject, new_name):
    """A generated subject renamed and stored as the qsm-forward simulator stores BIDS:
    uncompressed ``.nii``, sidecars with EchoTime, MagneticFieldStrength, EchoNumber and null
    entries, no phase ``Units``."""
    source = tree / f"sub-{subject}"
    target = tree.parent / "bids" / f"sub-{new_name}"
    (target / "anat").mkdir(parents=True)
    shutil.copy(source / "lesions.csv", target / "lesions.csv")
    for path in (source / "anat").glob("*.nii.gz"):
        name = path.name.replace(f"sub-{subject}", f"sub-{new_name}").replace(".nii.gz", ".nii")
        nib.save(nib.load(str(path)), str(target / "anat" / name))
        sidecar = json.loads(path.with_name(path.name.replace(".nii.gz", ".json")).read_text())
        sidecar.pop("Units", None)
        sidecar.update({"Session": None, "Acquisition": None, "EchoNumber": 1, "PeakSNR": "inf"})
        (target / "anat" / name.replace(".nii", ".json")).write_text(json.dumps(sidecar))
    return target.parent


def test_a_bids_tree_of_megre_and_t2starw_subjects_runs_as_it_is(tmp_path, capsys):
    megre = generate_dataset(
        tmp_path / "megre",
        "tiny",
        1,
        seed=7,
        progress=False,
        layout="bids",
        echoes=4,
        phase_kind="raw",
    )
    t2starw = generate_dataset(
        tmp_path / "t2starw",
        "tiny",
        1,
        seed=8,
        progress=False,
        layout="bids",
        phase_kind="raw",
    )
    _as_a_simulator_writes_it(megre, "0000", "1")
    root = _as_a_simulator_writes_it(t2starw, "0000", "2")
    (root / "dataset_description.json").write_text('{"Name": "sim", "BIDSVersion": "1.9.0"}')
    out = tmp_path / "out"
    assert main(["detect", "--dataset", str(root), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "2 of 2 subjects done" in printed
    assert "mixes input modes (magnitude+phase 1, multi-echo 1)" in printed
    with open(out / "batch.csv", newline="") as handle:
        rows = {row["subject"]: row for row in csv.DictReader(handle)}
    assert (rows["1"]["input_mode"], rows["2"]["input_mode"]) == ("multi-echo", "magnitude+phase")
    record = json.loads((out / "sub-1" / "run.json").read_text())
    assert record["acquisition"]["echo_used"]["index"] == 2  # 3 T x TE nearest the model's
    assert record["acquisition"]["field_strength_t"] == 3.0
    assert record["preprocessing"]["phase"]["kind"] == "raw"
    assert record["preprocessing"]["phase"]["units"] == "radians"
    assert record["inputs"]["swi"] is None
    evaluated = ["evaluate", "--pred", str(out), "--truth", str(root), "--out", str(tmp_path / "e")]
    assert main(evaluated) == 0
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    # the echo chosen and the SWI computed show every CMB to stage 1 (3 in these two subjects);
    # stage 2 keeps every one by 4 false positives per subject, and 2 of 3 at its threshold
    assert metrics["stage1"]["tp"] == 3 and metrics["stage1"]["fn"] == 0, metrics["stage1"]
    assert metrics["stage1+2"]["froc"]["sensitivity_at"]["4.0"] == 1.0, metrics["stage1+2"]
    assert metrics["stage1+2"]["tp"] >= 2 and metrics["stage1+2"]["fp_per_subject"] <= 3.0


def test_a_link_planted_as_the_dataset_description_is_replaced_not_followed(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    out = tmp_path / "bids"
    out.mkdir()
    (out / "dataset_description.json").symlink_to(victim)
    with pytest.raises(InputError, match="not empty"):  # a foreign folder is refused as before
        generate_dataset(out, "tiny", 1, seed=3, progress=False, layout="bids")
    generate_dataset(out, "tiny", 1, seed=3, progress=False, layout="bids", overwrite=True)
    assert victim.read_text() == "keep"
    assert not (out / "dataset_description.json").is_symlink()
    assert json.loads((out / "dataset_description.json").read_text())["BIDSVersion"]
