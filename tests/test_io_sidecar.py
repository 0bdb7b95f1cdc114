"""BIDS sidecar JSON (``cmbdet.io.sidecar``): echo times, field strength, phase units."""

from __future__ import annotations

import json

import pytest

from cmbdet.errors import InputError
from cmbdet.io.sidecar import Sidecar, read_sidecar, sidecar_path


def _image_with(tmp_path, content, name="sub-01_echo-1_part-phase_MEGRE.nii.gz"):
    image = tmp_path / name
    image.write_bytes(b"")
    sidecar_path(image).write_text(content if isinstance(content, str) else json.dumps(content))
    return image


def test_sidecar_sits_beside_the_image_with_its_name(tmp_path):
    assert sidecar_path(tmp_path / "a_T2starw.nii.gz") == tmp_path / "a_T2starw.json"
    assert sidecar_path(tmp_path / "a_T2starw.nii") == tmp_path / "a_T2starw.json"
    assert read_sidecar(tmp_path / "none.nii.gz") == Sidecar()


def test_echo_times_in_seconds_become_ms_and_units_are_read_for_phase(tmp_path):
    image = _image_with(tmp_path, {"EchoTime": 0.0125, "MagneticFieldStrength": 3, "Units": "rad"})
    assert read_sidecar(image, phase=True) == Sidecar(
        path=sidecar_path(image), echo_times_ms=(12.5,), field_strength_t=3.0, phase_units="radians"
    )
    assert read_sidecar(image).phase_units is None  # not read for other images
    stack = _image_with(tmp_path, {"EchoTime": [0.005, 0.01]}, name="stack.nii.gz")
    assert read_sidecar(stack).echo_times_ms == (5.0, 10.0)
    arbitrary = _image_with(tmp_path, {"Units": "arbitrary"}, name="int.nii.gz")
    assert read_sidecar(arbitrary, phase=True).phase_units == "auto"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ({"EchoTime": 20}, "EchoTime 20 is not a time in seconds"),
        ({"EchoTime": [0.01, -1]}, "is not a time in seconds"),
        ({"MagneticFieldStrength": "3T"}, "MagneticFieldStrength '3T' is not a field in tesla"),
        ({"Units": "degrees"}, "Units 'degrees': a phase image's units are rad or arbitrary"),
        ("[1, 2]", "sidecar JSON must hold an object"),
        ("{not json", "sidecar JSON cannot be read"),
    ],
)
def test_impossible_sidecars_are_refused_naming_them(tmp_path, content, problem):
    image = _image_with(tmp_path, content)
    with pytest.raises(InputError, match=problem) as caught:
        read_sidecar(image, phase=True)
    assert caught.value.path == sidecar_path(image)


def test_bids_inheritance_the_nearest_wins(tmp_path):
    (tmp_path / "dataset_description.json").write_text("{}")
    anat = tmp_path / "sub-01" / "anat"
    anat.mkdir(parents=True)
    (tmp_path / "MEGRE.json").write_text(json.dumps({"MagneticFieldStrength": 7, "Units": "rad"}))
    (tmp_path / "part-phase_MEGRE.json").write_text(json.dumps({"MagneticFieldStrength": 3}))
    (tmp_path / "T2starw.json").write_text(json.dumps({"MagneticFieldStrength": 1.5}))
    phase = anat / "sub-01_echo-2_part-phase_MEGRE.nii"
    phase.write_bytes(b"")
    (anat / "sub-01_echo-2_part-phase_MEGRE.json").write_text(json.dumps({"EchoTime": 0.012}))
    (anat / "sub-01_echo-1_part-phase_MEGRE.json").write_text(json.dumps({"EchoTime": 0.004}))
    found = read_sidecar(phase, phase=True)
    assert (found.echo_times_ms, found.field_strength_t, found.phase_units) == (
        (12.0,),
        3.0,  # part-phase_MEGRE.json is more specific than MEGRE.json; T2starw.json not ours
        "radians",
    )
    magnitude = anat / "sub-01_echo-2_part-mag_MEGRE.nii"
    magnitude.write_bytes(b"")
    assert read_sidecar(magnitude).field_strength_t == 7.0  # only MEGRE.json applies
