"""The review page in a real browser (headless Chromium from the system, driven by
Playwright): a reader confirms, rejects with a reason, marks unsure, adds a missed CMB, saves and
reloads; the written reviewed_lesions.csv is checked row by row and round-trips through
``cmbdet evaluate``. Runs by default and in CI (``.ci/run`` installs Chromium)."""

from __future__ import annotations

import csv
import json
import re
import shutil
import threading

import numpy as np
import pytest
from playwright.sync_api import expect, sync_playwright

from cmbdet.cli import main
from cmbdet.geometry import voxel_to_world, world_to_voxel
from cmbdet.io.lesions import read_lesions_csv
from cmbdet.io.nifti import load_volume
from cmbdet.review.server import ReviewServer
from cmbdet.review.subjects import REVIEW_COLUMNS
from cmbdet.synth.dataset import generate_dataset

pytestmark = pytest.mark.browser
READER = "dr test"


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise AssertionError("the browser tests need Chromium: apt-get install chromium")


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """Three tiny subjects detected with the shipped model: sub-0002 with several detections,
    sub-0001 with at least one, sub-0000 with a CMB the model missed."""
    root = tmp_path_factory.mktemp("review")
    data = generate_dataset(root / "data", "tiny", 3, seed=100, progress=False)
    out = root / "out"
    argv = ["detect", "--dataset", str(data), "--out", str(out), "--precision", "float32"]
    assert main(argv) == 0
    return data, out


def _detections(out, subject) -> list[dict]:
    with open(out / f"sub-{subject}" / "detections.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _missed_cmb(data, out, subject) -> np.ndarray:
    """World position (mm) of a visible CMB at least 10 mm from every detection."""
    found = [[float(r[k]) for k in ("x_mm", "y_mm", "z_mm")] for r in _detections(out, subject)]
    for lesion in read_lesions_csv(data / f"sub-{subject}" / "lesions.csv"):
        where = np.array([lesion.x_mm, lesion.y_mm, lesion.z_mm])
        far = all(np.linalg.norm(where - np.array(f)) > 10 for f in found)
        if lesion.kind == "cmb" and lesion.visible and far:
            return where
    raise AssertionError(f"sub-{subject} has no missed CMB to add (the test data changed)")


@pytest.fixture
def server(batch):
    _, out = batch
    serving = ReviewServer(out, "login-name")
    thread = threading.Thread(target=serving.serve_forever, daemon=True)
    thread.start()
    yield serving
    serving.shutdown()
    serving.server_close()


def test_a_review_is_clicked_through_saved_reloaded_and_evaluated(batch, server, tmp_path):
    data, out = batch
    several, some = _detections(out, "0002"), _detections(out, "0001")
    assert len(several) >= 2 and len(some) >= 1, "the test data changed"
    missed = _missed_cmb(data, out, "0000")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(server.url)
        expect(page.locator("#subject-0000")).to_contain_text("0000: 0 of")
        page.fill("#reader", READER)

        page.click("#subject-0002")  # confirm all but the last detection, reject it as a vein
        expect(page.locator("#subject-title")).to_have_text("sub-0002")
        for row in several[:-1]:
            page.click(f"#item-d{row['detection_id']}")
            page.keyboard.press("1")
            expect(page.locator(f"#item-d{row['detection_id']}")).to_contain_text("CMB")
        page.click(f"#item-d{several[-1]['detection_id']}")
        page.click("#decide button[data-reason=vein]")
        rejected = page.locator("tr.rejected-by-model").first
        rejected.click()
        page.keyboard.press("3")  # calcification
        expect(rejected).to_contain_text("not CMB: calcification")
        expect(page.locator("#progress")).to_contain_text(f"{len(several) + 1} of")
        page.keyboard.press("s")
        expect(page.locator("#status")).to_contain_text("saved")

        page.click("#subject-0001")  # unsure of every detection
        expect(page.locator("#subject-title")).to_have_text("sub-0001")
        for row in some:
            page.click(f"#item-d{row['detection_id']}")
            page.keyboard.press("u")
        page.click("#save")
        expect(page.locator("#status")).to_contain_text("saved")

        page.click("#subject-0000")  # add the missed CMB by clicking it on its slice
        expect(page.locator("#subject-title")).to_have_text("sub-0000")
        image = load_volume(data / "sub-0000" / "swi.nii.gz", "SWI")
        voxel = np.rint(world_to_voxel(missed, image.affine)).astype(int)
        page.fill("#slice", str(voxel[2]))
        page.keyboard.press("Enter")
        axial = page.locator("#axial img")
        expect(axial).to_have_attribute("src", re.compile(f"index={voxel[2]}&"))
        box = axial.bounding_box()
        shape = image.shape
        at = {
            "x": (shape[0] - 1 - voxel[0] + 0.5) * box["width"] / shape[0],
            "y": (shape[1] - 1 - voxel[1] + 0.5) * box["height"] / shape[1],
        }
        axial.click(position=at, modifiers=["Shift"])
        expect(page.locator("#status")).to_contain_text("added CMB a1")
        page.keyboard.press("s")
        expect(page.locator("#status")).to_contain_text("saved")

        page.reload()  # decisions are kept
        page.click("#subject-0002")
        last = page.locator(f"#item-d{several[-1]['detection_id']}")
        expect(last).to_contain_text("not CMB: vein")
        expect(page.locator(f"#item-d{several[0]['detection_id']}")).to_contain_text("CMB")
        expect(page.locator("#subject-0002")).to_contain_text(f"0002: {len(several) + 1} of")
        refused = page.goto(server.url.split("?")[0])  # the page without its token
        assert refused.status == 403 and "forbidden" in page.content()
        browser.close()

    _check_table(out / "sub-0002" / "reviewed_lesions.csv", several, ["cmb"] * (len(several) - 1))
    rows = _check_table(out / "sub-0001" / "reviewed_lesions.csv", some, [], unsure=True)
    assert all(row["visible"] == "0" for row in rows)
    (added,) = _read(out / "sub-0000" / "reviewed_lesions.csv")
    world = voxel_to_world(voxel.astype(float), image.affine)
    assert [added[k] for k in ("x_mm", "y_mm", "z_mm")] == [f"{v:.3f}" for v in world]
    assert (added["kind"], added["visible"], added["decision"]) == ("cmb", "1", "added")
    assert float(added["diameter_mm"]) > 0  # measured from the dark blob
    evaluated = tmp_path / "evaluated"
    assert main(["evaluate", "--pred", str(out), "--truth", str(out), "--out", str(evaluated)]) == 0
    metrics = json.loads((evaluated / "metrics.json").read_text())["stage1+2"]
    assert (metrics["tp"], metrics["fp"], metrics["fn"]) == (len(several) - 1, 1, 1)


def _read(path) -> list[dict]:
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == REVIEW_COLUMNS
        return list(reader)


def _check_table(path, detections: list[dict], kinds: list[str], unsure: bool = False):
    """The rows of the reviewed detections: their own positions, in order, by this reader."""
    rows = _read(path)
    reviewed = [r for r in rows if r["decision"] != "not_cmb" or r["kind"] == "vein"]
    assert len(reviewed) == len(detections)
    for row, detection in zip(reviewed, detections, strict=True):
        for key in ("x_mm", "y_mm", "z_mm", "i", "j", "k", "diameter_mm"):
            assert row[key] == detection[key], (key, row, detection)
        assert row["reader"] == READER and row["time"]
    if unsure:
        assert {r["decision"] for r in rows} == {"unsure"}
        return rows
    assert [r["kind"] for r in reviewed] == [*kinds, "vein"]
    assert [r["decision"] for r in reviewed[-1:]] == ["not_cmb"]
    calcification = [r for r in rows if r["kind"] == "calcification"]
    assert len(calcification) == 1 and calcification[0]["reason"] == "calcification"
    return rows
