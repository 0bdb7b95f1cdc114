"""The review server without a browser: the token and the loopback host, the decisions'
rules, the table a review writes, the blob a reader-added CMB is measured on, and batches that
keep a reader's review."""

from __future__ import annotations

import csv
import http.client
import json
import threading
from urllib.parse import urlsplit

import numpy as np
import pytest

from cmbdet.cli import main
from cmbdet.errors import InputError
from cmbdet.io.lesions import read_lesions_csv
from cmbdet.io.nifti import load_volume, save_volume
from cmbdet.io.truth import find_truth
from cmbdet.review.blob import blob_diameter_mm
from cmbdet.review.server import ReviewServer
from cmbdet.review.subjects import decide, find_review_subjects, save_reviewed_lesions
from cmbdet.synth.dataset import generate_dataset

SHAPE, SPACING = (40, 40, 20), (0.5, 0.5, 1.0)
HEADER = "detection_id,x_mm,y_mm,z_mm,i,j,k,score,stage1_score,diameter_mm,slices,region\n"


def _image(dark=()) -> np.ndarray:
    """A bright (1000) volume with dark (100) spheres: ((centre voxel), radius mm)."""
    image = np.full(SHAPE, 1000.0, np.float32)
    grid = np.indices(SHAPE).transpose(1, 2, 3, 0) * np.array(SPACING)
    for centre, radius in dark:
        inside = np.linalg.norm(grid - np.array(centre) * SPACING, axis=-1) <= radius
        image[inside] = 100.0
    return image


@pytest.fixture
def outputs(tmp_path):
    """A subject's output folder: two detections and two rejected candidates (threshold 0.5)
    on an image with one dark sphere; a flipped affine, so file and canonical orders differ."""
    affine = np.diag([-SPACING[0], SPACING[1], SPACING[2], 1.0])
    swi = save_volume(tmp_path / "swi.nii.gz", _image([((10, 20, 10), 1.5)]), affine, dtype="f4")
    out = tmp_path / "out"
    out.mkdir()
    rows = [(1, 0.9), (2, 0.8), (3, 0.4), (4, 0.1)]
    candidates = "".join(
        f"{n},{-n:.3f},{2 * n:.3f},{n:.3f},{n:.3f},{4 * n:.3f},{n:.3f},{s},0.5,2.000,2,lobar\n"
        for n, s in rows
    )
    (out / "candidates.csv").write_text(HEADER + candidates)
    (out / "detections.csv").write_text(HEADER + "".join(candidates.splitlines(True)[:2]))
    (out / "run.json").write_text(json.dumps({"threshold": 0.5, "inputs": {"swi": str(swi)}}))
    return out


def test_a_subject_s_items_are_its_detections_and_rejected_candidates(outputs):
    (subject,) = find_review_subjects(outputs)
    items = subject.items()
    assert [(i.item_id, i.source) for i in items] == [
        ("d1", "detection"),
        ("d2", "detection"),
        ("c3", "rejected"),
        ("c4", "rejected"),
    ]
    assert items[1].world_mm == (-2.0, 4.0, 2.0) and items[1].input_voxel == (2.0, 8.0, 2.0)
    assert items[1].voxel == pytest.approx((35.0, 8.0, 2.0))  # canonical: x flipped


def test_decisions_follow_the_rules_and_the_table_holds_the_decided_items(outputs):
    (subject,) = find_review_subjects(outputs)
    with pytest.raises(ValueError, match="a rejection needs a reason"):
        decide(subject, "d1", "not_cmb", None)
    with pytest.raises(ValueError, match="a rejection needs a reason"):
        decide(subject, "d1", "cmb", "vein")
    with pytest.raises(ValueError, match="no item 'd9'"):
        decide(subject, "d9", "cmb", None)
    decide(subject, "d1", "cmb", None)
    decide(subject, "d2", "not_cmb", "vein")
    decide(subject, "c3", "unsure", None)
    decide(subject, "c4", "cmb", None)
    decide(subject, "c4", None, None)  # cleared
    added = subject.add_cmb((29, 20, 10))  # the dark sphere (file voxel 10, 20, 10)
    assert added["id"] == "a1" and added["diameter_mm"] == pytest.approx(3.0, rel=0.2)
    with pytest.raises(ValueError, match="outside the image"):
        subject.add_cmb((40, 0, 0))
    table = save_reviewed_lesions(subject, "reader one")
    lesions = read_lesions_csv(table)
    assert [(x.kind, x.visible) for x in lesions] == [
        ("cmb", True),
        ("vein", True),
        ("cmb", False),
        ("cmb", True),
    ]
    assert (lesions[0].x_mm, lesions[0].i, lesions[0].k) == (-1.0, 1.0, 1.0)
    image = load_volume(subject.image_path)
    centre = image.reorientation.original_affine @ [10, 20, 10, 1]
    assert (lesions[3].x_mm, lesions[3].y_mm, lesions[3].z_mm) == tuple(centre[:3])
    assert (lesions[3].i, lesions[3].j, lesions[3].k) == (10.0, 20.0, 10.0)
    with open(table, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["decision"], r["reason"]) for r in rows] == [
        ("cmb", ""),
        ("not_cmb", "vein"),
        ("unsure", ""),
        ("added", ""),
    ]
    assert {r["reader"] for r in rows} == {"reader one"}
    assert find_truth(outputs)[outputs.name].lesions_csv == table  # evaluate reads it first


def test_the_blob_of_a_reader_added_cmb_is_measured_and_veins_are_not(tmp_path):
    image = _image([((20, 20, 10), 2.0)])
    image[5, 5, :] = 100.0  # a vein through the slab
    affine = np.diag([*SPACING, 1.0])
    volume = load_volume(save_volume(tmp_path / "v.nii.gz", image, affine, dtype="f4"))
    assert blob_diameter_mm(volume, (20, 20, 10)) == pytest.approx(4.0, rel=0.15)
    assert blob_diameter_mm(volume, (21, 20, 10)) == blob_diameter_mm(volume, (20, 20, 10))
    assert blob_diameter_mm(volume, (5, 5, 10)) is None  # runs out of its window
    assert blob_diameter_mm(volume, (30, 30, 10)) is None  # nothing dark there


@pytest.fixture
def served(outputs):
    server = ReviewServer(outputs, "reader")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _request(server, path, token=None, host=None, body=None):
    connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
    headers = {"Host": host or f"127.0.0.1:{server.server_port}"}
    if token is not None:
        headers["X-Review-Token"] = token
    payload = None if body is None else json.dumps(body)
    if payload is not None:
        headers["Content-Type"] = "application/json"
    connection.request("GET" if body is None else "POST", path, payload, headers)
    response = connection.getresponse()
    return response.status, response.read()


def test_the_server_answers_only_with_its_token_on_a_loopback_host(served, outputs):
    assert urlsplit(served.url).hostname == "127.0.0.1"
    assert served.server_address[0] == "127.0.0.1"
    assert _request(served, "/api/subjects")[0] == 403
    assert _request(served, "/api/subjects", token="wrong")[0] == 403
    assert _request(served, "/api/subjects", served.token, host="evil.example:80")[0] == 403
    status, body = _request(served, "/api/subjects", served.token)
    assert status == 200 and json.loads(body) == [{"id": "out", "items": 4, "reviewed": 0}]
    status, body = _request(served, f"/?token={served.token}")
    assert status == 200 and b"cmbdet review" in body
    forbidden = _request(served, "/api/subjects/out/save", body={"reader": "x"})
    assert forbidden[0] == 403 and not (outputs / "reviewed_lesions.csv").exists()
    status, body = _request(served, "/api/subjects/out/slice?view=axial&index=3", served.token)
    assert status == 200 and body[:8] == b"\x89PNG\r\n\x1a\n"
    bad = {"item": "d1", "decision": "not_cmb"}
    status, body = _request(served, "/api/subjects/out/decide", served.token, body=bad)
    assert status == 400 and "a rejection needs a reason" in json.loads(body)["error"]
    good = {"item": "d1", "decision": "cmb"}
    status, body = _request(served, "/api/subjects/out/decide", served.token, body=good)
    assert status == 200 and json.loads(body)["reviewed"] == 1
    assert sorted(p.name for p in outputs.iterdir()) == [
        "candidates.csv",
        "detections.csv",
        "review.json",
        "run.json",
    ]


def test_review_of_a_folder_without_outputs_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["review", str(tmp_path)]) == 2
    assert "no detection outputs here" in capsys.readouterr().err


def test_a_batch_keeps_a_reader_s_review_and_refuses_to_overwrite_it(tmp_path, quick_model, capsys):
    data = generate_dataset(tmp_path / "data", "tiny", 1, seed=3, progress=False)
    out = tmp_path / "out"
    argv = ["detect", "--dataset", str(data), "--out", str(out), "--model", str(quick_model)]
    assert main(argv) == 0
    review = out / "sub-0000" / "reviewed_lesions.csv"
    review.write_text("a reader's work\n")
    capsys.readouterr()
    assert main(argv) == 0  # resumed: the subject is complete, its review stays
    assert "1 skipped (already complete)" in capsys.readouterr().out
    assert main([*argv, "--overwrite"]) == 2
    assert "holds a reader's review (reviewed_lesions.csv)" in capsys.readouterr().err
    assert review.read_text() == "a reader's work\n"
    with pytest.raises(InputError, match="no detection outputs"):
        find_review_subjects(data)


def test_a_partial_review_leaves_undecided_detections_unreviewed_and_names_each_reader(outputs):
    (subject,) = find_review_subjects(outputs)
    decide(subject, "d2", "cmb", None, reader="first reader")
    added = subject.add_cmb((5, 5, 5), reader="second reader")  # nothing dark: no diameter
    assert added["diameter_mm"] is None
    decide(subject, added["id"], "not_cmb", "artefact", reader="second reader")
    table = save_reviewed_lesions(subject, "saver")
    with open(table, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["decision"], r["kind"], r["visible"], r["reader"]) for r in rows] == [
        ("unreviewed", "cmb", "0", "saver"),
        ("cmb", "cmb", "1", "first reader"),
        ("not_cmb", "artefact", "1", "second reader"),
    ]
    lesions = read_lesions_csv(table)  # an empty diameter reads as "not measured"
    assert np.isnan(lesions[2].diameter_mm) and lesions[1].diameter_mm == 2.0


def test_a_review_s_leftover_temporary_does_not_stop_a_batch_resume(tmp_path, quick_model):
    data = generate_dataset(tmp_path / "data", "tiny", 1, seed=4, progress=False)
    out = tmp_path / "out"
    argv = ["detect", "--dataset", str(data), "--out", str(out), "--model", str(quick_model)]
    assert main(argv) == 0
    (out / "sub-0000" / ".review.json.x1y2.tmp").write_text("{")
    assert main(argv) == 0
    (out / "sub-0000" / ".notes.tmp").write_text("")
    assert main(argv) == 2  # not a review's: foreign, refused


def test_a_broken_subject_is_listed_with_its_problem_and_the_others_stay_reviewable(
    outputs, tmp_path
):
    batch = tmp_path / "batch"
    for name in ("sub-a", "sub-b"):
        (batch / name).mkdir(parents=True)
        for file in outputs.iterdir():
            (batch / name / file.name).write_bytes(file.read_bytes())
    (batch / "sub-b" / "candidates.csv").unlink()
    server = ReviewServer(batch, "reader")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        status, body = _request(server, "/api/subjects", server.token)
    finally:
        server.shutdown()
        server.server_close()
    listed = json.loads(body)
    assert status == 200 and listed[0] == {"id": "a", "items": 4, "reviewed": 0}
    assert "candidates.csv" in listed[1]["error"]
    assert server.subjects["a"]._image is None  # the list reads no image


def test_review_port_options_end_in_one_line(tmp_path, capsys):
    assert main(["review", str(tmp_path), "--port", "80"]) == 2
    assert "not 0 or a port in 1024-65535" in capsys.readouterr().err


def test_a_review_never_writes_through_links(outputs, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    for name in ("review.json", "reviewed_lesions.csv"):
        (outside / name).write_text("not the review's\n")
        (outputs / name).symlink_to(outside / name)
    (outputs / "review.json").unlink()  # a state file must be read: only the table is linked
    (subject,) = find_review_subjects(outputs)
    decide(subject, "d1", "cmb", None)
    table = save_reviewed_lesions(subject, "reader")
    assert not table.is_symlink() and "lesion_id" in table.read_text()
    assert (outside / "reviewed_lesions.csv").read_text() == "not the review's\n"
    batch = tmp_path / "batch"
    batch.mkdir()
    (batch / "sub-linked").symlink_to(outputs)  # a linked subject folder is not reviewed
    with pytest.raises(InputError, match="no detection outputs"):
        find_review_subjects(batch)
