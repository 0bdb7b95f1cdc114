"""report.html (and its regions), on a small in-memory phantom shaped like the MNI brain.

The phantom's axial slices are ellipses whose areas follow the MNI brain's (so the approximate
region map has something true to find), placed in world space at a known shift from MNI, with
dark spheres where the test puts its detections.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import io
import json
import re

import matplotlib.image
import numpy as np
import pytest

from cmbdet.detect.outputs import write_outputs
from cmbdet.geometry import Reorientation, spacing_mm
from cmbdet.io.nifti import Volume
from cmbdet.records import Candidate, DetectionResult
from cmbdet.report import subject as subject_module
from cmbdet.report.crops import CROP_PIXELS
from cmbdet.report.regions import (
    MNI_AXIAL_AREA_MM2,
    MNI_AXIAL_AREA_Z_MM,
    coarse_brain_mask,
    fit_mni_map,
)
from cmbdet.report.subject import MAX_REJECTED_SHOWN, write_subject_report

MNI_SHIFT_MM = np.array([6.0, -4.0, 12.0])  # world = MNI + shift
SPACING_MM = (2.0, 2.0, 3.0)
# (MNI point, region of region_of_mni): well inside their boxes
SITES_MNI = {
    "deep": (20.0, 0.0, 6.0),
    "lobar": (-50.0, 20.0, 40.0),
    "infratentorial": (24.0, -66.0, -36.0),
}
THRESHOLD = 0.5


def _volume(data: np.ndarray, origin_mm: np.ndarray, name: str) -> Volume:
    affine = np.diag([*SPACING_MM, 1.0])
    affine[:3, 3] = origin_mm
    return Volume(
        data=data.astype(np.float32),
        reorientation=Reorientation(affine, data.shape),
        path=f"/data/{name}.nii.gz",
        spacing_mm=spacing_mm(affine),
    )


def mni_phantom(z_mni_range=(-84.0, 96.0), lesions_mni=(), seed=0) -> tuple[Volume, Volume]:
    """SWI and phase of an MNI-shaped brain, world = MNI + MNI_SHIFT_MM, canonical RAS."""
    axes_mni = [
        np.arange(-84.0, 84.1, SPACING_MM[0]),
        np.arange(-120.0, 86.1, SPACING_MM[1]),
        np.arange(z_mni_range[0], z_mni_range[1] + 0.1, SPACING_MM[2]),
    ]
    x, y, z = np.meshgrid(*axes_mni, indexing="ij")  # (X, Y, Z) MNI mm
    area = np.interp(z, MNI_AXIAL_AREA_Z_MM, MNI_AXIAL_AREA_MM2, 0.0, 0.0)
    fraction = np.sqrt(area / MNI_AXIAL_AREA_MM2.max())  # ellipse semi-axes shrink with area
    with np.errstate(divide="ignore", invalid="ignore"):
        inside = (x / (72.0 * fraction)) ** 2 + ((y + 17.0) / (90.0 * fraction)) ** 2 <= 1.0
    rng = np.random.default_rng(seed)
    swi = np.where(inside, 1.0, 0.05) + rng.normal(0.0, 0.03, x.shape)
    phase = np.where(inside, rng.normal(0.0, 0.05, x.shape), rng.uniform(-3, 3, x.shape))
    for centre in lesions_mni:
        ball = (x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2 <= 2.5**2
        swi[ball] = 0.1
        phase[ball] = -1.0
    origin = np.array([axes[0] for axes in axes_mni]) + MNI_SHIFT_MM
    return _volume(np.abs(swi), origin, "swi"), _volume(phase, origin, "phase")


def _candidate(world_mm, score: float, diameter_mm: float = 3.0) -> Candidate:
    x, y, z = (float(v) for v in world_mm)
    return Candidate(x, y, z, 0.0, 0.0, 0.0, score, 0.7, diameter_mm, 3)


def _record() -> dict:
    return {
        "cmbdet_version": "test",
        "model": {"name": "phantom-model"},
        "threshold": THRESHOLD,
        "timings_s": {"stage1": 1.0, "stage2": 0.5},
        "preprocessing": {
            "brain_mask": "estimated from SWI",
            "phase": {"units": "radians", "handedness": "right", "kind": "filtered"},
        },
    }


@pytest.fixture(scope="module")
def phantom():
    """The phantom with a CMB at each site, its detections (one per site) and 5 rejections."""
    sites = [np.array(p) for p in SITES_MNI.values()]
    swi, phase = mni_phantom(lesions_mni=sites)
    detections = [_candidate(p + MNI_SHIFT_MM, 0.9 - 0.1 * n) for n, p in enumerate(sites)]
    rejected = [_candidate(MNI_SHIFT_MM + (-30.0, -20.0 + 8 * n, 30.0), 0.1 * n) for n in range(5)]
    candidates = sorted(detections + rejected, key=lambda c: -c.score)
    result = DetectionResult(candidates, THRESHOLD, _record(), reference=swi, phase=phase)
    return result


def _page(tmp_path, result, title="sub-01") -> str:
    path = tmp_path / "report.html"
    write_subject_report(path, result, title)
    return path.read_text(encoding="utf-8")


def _blocks(html: str, css_class: str) -> list[str]:
    """The HTML of each ``<div class="...css_class...">`` up to the next such block."""
    starts = [m.start() for m in re.finditer(rf'<div class="[^"]*\b{css_class}\b', html)]
    ends = starts[1:] + [len(html)]
    return [html[a:b] for a, b in zip(starts, ends[: len(starts)], strict=True)]


def _images(html: str) -> list[np.ndarray]:
    """Each embedded PNG, decoded to (H, W) floats in [0, 1]."""
    uris = re.findall(r'<img src="data:image/png;base64,([^"]+)"', html)
    return [matplotlib.image.imread(io.BytesIO(base64.b64decode(u)), format="png") for u in uris]


def _region_counts(html: str) -> dict[str, int]:
    table = re.search(r'<table class="counts">(.*?)</table>', html, re.S).group(1)
    rows = re.findall(r'<tr(?: class="total")?><td>([^<]+)</td><td class="n">(\d+)</td>', table)
    return {name: int(n) for name, n in rows}


# ----------------------------------------------------------------------------- subject page


def test_page_is_self_contained_with_six_centred_crops_per_detection(phantom, tmp_path):
    html = _page(tmp_path, phantom)
    assert "http:" not in html and "https:" not in html and "<script" not in html
    assert "<link" not in html and "url(" not in html
    tags = re.findall(r"<img\b[^>]*>", html)
    assert tags and all('src="data:image/png;base64,' in tag for tag in tags)
    cards = _blocks(html.split("<details>")[0], "detection")
    assert len(cards) == len(phantom.detections) == 3
    for card in cards:
        images = _images(card)
        assert len(images) == 6  # axial, coronal, sagittal x SWI, phase
        labels = re.findall(r'alt="CMB \d+ (\w+) (\w+)"', card)
        assert sorted(labels) == sorted(
            (c, v) for c in ("SWI", "Phase") for v in ("axial", "coronal", "sagittal")
        )
        for image in images:  # every view is centred on the dark lesion of its detection
            assert image.shape == (CROP_PIXELS, CROP_PIXELS)
            centre = image[CROP_PIXELS // 2 - 1 : CROP_PIXELS // 2 + 1, CROP_PIXELS // 2]
            assert centre.max() < np.median(image) - 0.1


def test_rejected_candidates_sit_in_a_collapsed_section(phantom, tmp_path):
    html = _page(tmp_path, phantom)
    details = re.search(r"<details>(.*)</details>", html, re.S).group(1)
    outside = html.replace(details, "")
    assert len(_blocks(details, "rejected")) == 5 and not _blocks(outside, "rejected")
    assert "5 candidates scored below 0.500" in details
    for block in _blocks(details, "rejected"):
        assert len(_images(block)) == 4  # axial and coronal SWI and phase, labelled
        assert re.findall(r'<div class="head">(\w+)</div>', block) == ["axial", "coronal"]
        assert re.findall(r'<div class="side">(\w+)</div>', block) == ["SWI", "Phase"]
    # numbers follow candidates.csv (all candidates, highest score first)
    assert re.findall(r"Candidate (\d+) &middot;", details) == ["4", "5", "6", "7", "8"]


def test_rejected_section_is_capped_and_says_how_many_more(tmp_path):
    swi, phase = mni_phantom(z_mni_range=(-20.0, 40.0))
    rejected = [
        _candidate(MNI_SHIFT_MM + (-40.0 + n, -10.0, 10.0), 0.4 * (1 - n / 50)) for n in range(40)
    ]
    result = DetectionResult(rejected, THRESHOLD, _record(), reference=swi, phase=phase)
    html = _page(tmp_path, result)
    assert len(_blocks(html, "rejected")) == MAX_REJECTED_SHOWN
    assert f"{40 - MAX_REJECTED_SHOWN} more are listed in candidates.csv" in html
    assert "No CMBs found" in html


def test_detections_beyond_the_card_limit_are_listed_without_crops(phantom, tmp_path, monkeypatch):
    monkeypatch.setattr(subject_module, "MAX_CARDS", 2)
    html = _page(tmp_path, phantom)
    assert len(_blocks(html, "detection")) == 2
    assert "CMBs 3 to 3, without crops" in html
    assert re.search(r'<tr><td class="n">3</td><td class="n">0.700</td>', html)
    assert _region_counts(html)["total"] == 3


def test_regions_are_read_from_the_approximate_mni_map(phantom, tmp_path):
    counts = _region_counts(_page(tmp_path, phantom))
    assert counts == {"lobar": 1, "deep": 1, "infratentorial": 1, "total": 3}


def test_region_counts_add_up_when_no_region_can_be_told(phantom, tmp_path):
    result = DetectionResult(phantom.candidates, THRESHOLD, _record())  # no volumes kept
    html = _page(tmp_path, result)
    counts = _region_counts(html)
    assert counts["not determined"] == counts["total"] == len(result.detections) == 3
    assert "<img" not in html and "not available" in html
    assert len(_blocks(html, "card")) == 3


def test_zero_detections_and_zero_candidates(phantom, tmp_path):
    below = DetectionResult(phantom.candidates, 0.95, _record(), reference=phantom.reference)
    html = _page(tmp_path, below)
    assert "No CMBs found" in html and not _blocks(html, "detection")
    assert _region_counts(html) == {"lobar": 0, "deep": 0, "infratentorial": 0, "total": 0}
    assert len(_blocks(html, "rejected")) == 8

    empty = DetectionResult([], THRESHOLD, _record(), reference=phantom.reference)
    html = _page(tmp_path, empty)
    assert "No CMBs found" in html and "proposed no candidates" in html
    assert "<details" not in html and "<img" not in html


def test_swi_only_when_the_phase_is_missing(phantom, tmp_path):
    result = DetectionResult(phantom.candidates, THRESHOLD, _record(), reference=phantom.reference)
    html = _page(tmp_path, result)
    for card in _blocks(html.split("<details>")[0], "detection"):
        assert len(_images(card)) == 3 and "Phase" not in card


def test_title_and_paths_are_escaped(phantom, tmp_path):
    record = {**_record(), "inputs": {"swi": "/x/<b>&swi.nii.gz", "phase": "/x/p.nii.gz"}}
    result = DetectionResult(phantom.candidates, THRESHOLD, record)
    html = _page(tmp_path, result, title='<script>alert("x")</script>')
    assert "<script" not in html and "<b>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert "/x/&lt;b&gt;&amp;swi.nii.gz" in html


def test_qc_flags_are_shown_first_and_only_when_raised(phantom, tmp_path):
    flags = ["slice thickness 5 mm outside the model's training range 1-3", "a <b> flag"]
    record = {**_record(), "qc_flags": flags}
    flagged = _page(tmp_path, DetectionResult(phantom.candidates, THRESHOLD, record))
    assert flagged.index("Check this subject by eye") < flagged.index("<h2>Detections")
    assert "training range 1-3</li>" in flagged and "a &lt;b&gt; flag" in flagged
    quiet = _page(tmp_path, DetectionResult(phantom.candidates, THRESHOLD, _record()))
    assert "by eye" not in quiet


# ----------------------------------------------------------------------------- crops


# ----------------------------------------------------------------------------- regions


@pytest.mark.parametrize("z_mni_range", [(-84.0, 96.0), (-40.0, 96.0), (-60.0, 70.0)])
def test_mni_map_recovers_the_shift_when_the_slab_cuts_the_brain(z_mni_range):
    swi, _ = mni_phantom(z_mni_range=z_mni_range)
    mask, factor = coarse_brain_mask(swi.data, swi.spacing_mm)
    coarse = (swi.spacing_mm[0] * factor, swi.spacing_mm[1] * factor, swi.spacing_mm[2])
    mni_map = fit_mni_map(mask, coarse, swi.affine, swi.spacing_mm)
    points_mni = np.array(list(SITES_MNI.values()))
    error_mm = np.abs(mni_map.to_mni(points_mni + MNI_SHIFT_MM) - points_mni)
    assert error_mm.max() < 5.0, error_mm
    assert abs(mni_map.scale - 1.0) < 0.04
    assert ("inferior" in mni_map.cut) == (z_mni_range[0] > -72.0)


def test_no_brain_gives_no_map():
    mask = np.zeros((10, 10, 4), dtype=bool)
    assert fit_mni_map(mask, (2.0, 2.0, 3.0), np.eye(4), (2.0, 2.0, 3.0)) is None


# ----------------------------------------------------------------------------- outputs


def test_write_outputs_adds_the_report_and_its_time(phantom, tmp_path):
    out = tmp_path / "sub-07"
    write_outputs(out, phantom, phantom.reference)
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "Cerebral microbleeds: sub-07" in html
    with open(out / "detections.csv") as handle:
        assert len(list(csv.DictReader(handle))) == len(_blocks(html, "detection")) == 3
    record = json.loads((out / "run.json").read_text())
    assert record["timings_s"]["report"] > 0 and record["timings_s"]["stage1"] == 1.0
    assert not list(tmp_path.glob(".sub-07.partial-*"))


def test_the_tables_and_the_counts_name_each_detections_region(phantom, tmp_path):
    big = dataclasses.replace(phantom.candidates[0], diameter_mm=7.0)  # the deep site's CMB
    result = dataclasses.replace(phantom, candidates=[big, *phantom.candidates[1:]])
    out = tmp_path / "sub-07"
    written = write_outputs(out, result, result.reference)
    with open(out / "detections.csv") as handle:
        assert [row["region"] for row in csv.DictReader(handle)] == list(SITES_MNI)
    with open(out / "candidates.csv") as handle:
        regions = [row["region"] for row in csv.DictReader(handle)]
    assert len(regions) == 8 and regions[:3] == list(SITES_MNI)
    counts = {"total": 3, "lobar": 1, "deep": 1, "infratentorial": 1}
    counts |= {"region_not_determined": 0, "under_5mm": 2, "5_to_10mm": 1, "over_10mm": 0}
    assert written["cmb_counts"] == counts
    assert json.loads((out / "run.json").read_text())["cmb_counts"] == counts


# ----------------------------------------------------------------------------- cohort
