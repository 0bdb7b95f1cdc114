"""``cmbdet evaluate``: its tables, what it refuses, valid JSON."""

from __future__ import annotations

import csv
import json

import pytest

from cmbdet.cli import main
from cmbdet.io.lesions import Lesion, write_lesions_csv
from cmbdet.io.results import COLUMNS


def test_evaluate_command_writes_the_tables(tmp_path):
    lesions = [
        Lesion(1, "cmb", 0.0, 0.0, 0.0, 0, 0, 0, 3.0, True),
        Lesion(2, "cmb", 50.0, 0.0, 0.0, 0, 0, 0, 3.0, True),
        Lesion(3, "calcification", 90.0, 0.0, 0.0, 0, 0, 0, 3.0, True),
    ]
    rows = [
        [1, 1.0, 0, 0, 0, 0, 0, 0.95, 0.9, 3, 2],
        [2, 90.0, 0, 0, 0, 0, 0, 0.6, 0.8, 3, 2],  # on the calcification
        [3, 53.0, 4.0, 0, 0, 0, 0, 0.4, 0.5, 3, 2],  # exactly 5 mm away
    ]
    _evaluation_case(tmp_path, lesions, rows)
    out = tmp_path / "eval"
    assert (
        main(
            [
                "evaluate",
                "--pred",
                str(tmp_path / "pred"),
                "--truth",
                str(tmp_path / "truth"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["stage1+2"]["sensitivity"] == pytest.approx(1 / 2)
    assert metrics["stage1+2"]["fp"] == 1
    assert metrics["stage1"]["sensitivity"] == pytest.approx(1.0)  # all candidates
    assert metrics["stage1"]["fp"] == 1  # the calcification is a false positive
    assert metrics["breakdown"]["missed_by_size"] == {"<5 mm": [1, 2], "5-10 mm": [0, 0]}
    assert metrics["breakdown"]["false_positives_on"] == {"calcification": 1}
    assert (out / "froc.png").stat().st_size > 1000
    assert (out / "per_subject.csv").read_text().startswith("subject,tp,fp,fn")


ONE_CMB = [Lesion(1, "cmb", 0.0, 0.0, 0.0, 0, 0, 0, 3.0, True)]
HIT_AND_MISS = [[1, 1.0, 0, 0, 0, 0, 0, 0.95, 0.9, 3, 2], [2, 40.0, 0, 0, 0, 0, 0, 0.6, 0.8, 3, 2]]


def _evaluation_case(tmp_path, lesions=ONE_CMB, rows=HIT_AND_MISS):
    """A truth dataset and predictions folder (threshold 0.5) of one subject: (pred, truth)."""
    truth = tmp_path / "truth" / "sub-0001"
    truth.mkdir(parents=True)
    for name in ("swi", "phase"):
        (truth / f"{name}.nii.gz").write_bytes(b"")  # only the layout is read
    write_lesions_csv(truth / "lesions.csv", lesions)
    pred = tmp_path / "pred" / "sub-0001"
    pred.mkdir(parents=True)
    with open(pred / "candidates.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    (pred / "run.json").write_text(json.dumps({"threshold": 0.5}))
    return tmp_path / "pred", tmp_path / "truth"


def _evaluate(pred, truth, out, *more) -> int:
    return main(["evaluate", "--pred", str(pred), "--truth", str(truth), "--out", str(out), *more])


def test_evaluate_never_overwrites_tables_unless_asked(tmp_path, capsys):
    pred, truth = _evaluation_case(tmp_path)
    out = tmp_path / "eval"
    out.mkdir()
    (out / "metrics.json").write_text("mine")
    (out / "notes.txt").write_text("keep")
    assert _evaluate(pred, truth, out) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "metrics.json" in error[0] and "--overwrite" in error[0]
    assert (out / "metrics.json").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "notes.txt"]
    assert _evaluate(pred, truth, out, "--overwrite") == 0
    assert json.loads((out / "metrics.json").read_text())["stage1+2"]["tp"] == 1
    assert (out / "notes.txt").read_text() == "keep"


def test_evaluate_refuses_an_out_that_is_a_file_or_unwritable(tmp_path, capsys):
    pred, truth = _evaluation_case(tmp_path)
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file", "/proc/cmbdet-test-out"):
        assert _evaluate(pred, truth, out) == 2
        error = capsys.readouterr().err.strip().splitlines()
        assert len(error) == 1 and error[0].startswith(f"cmbdet: error: {out}")
    assert (tmp_path / "file").read_text() == "x"


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda pred: (pred / "candidates.csv").write_bytes(b""), "empty"),
        (lambda pred: (pred / "run.json").unlink(), "run record is missing"),
        (lambda pred: (pred / "run.json").write_text('{"threshold": NaN}'), "not a probability"),
        (
            lambda pred: (pred / "candidates.csv").write_text(
                ",".join(COLUMNS) + "\n1,0,0,0,0,0,0,nan,0.9,3,2\n"
            ),
            "line 2: score is nan",
        ),
        (
            lambda pred: (pred / "candidates.csv").write_text("detection_id,x_mm\n1,0\n"),
            "lacks columns: y_mm, z_mm, score, stage1_score",
        ),
    ],
)
def test_evaluate_refuses_predictions_it_cannot_trust(tmp_path, capsys, damage, problem):
    pred, truth = _evaluation_case(tmp_path)
    damage(pred / "sub-0001")
    assert _evaluate(pred, truth, tmp_path / "eval") == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and problem in error[0] and "sub-0001" in error[0]
    assert not (tmp_path / "eval").exists()


def test_metrics_json_is_valid_json_when_the_truth_has_no_cmbs(tmp_path):
    pred, truth = _evaluation_case(tmp_path, lesions=[])
    assert _evaluate(pred, truth, tmp_path / "eval") == 0

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    text = (tmp_path / "eval" / "metrics.json").read_text()
    metrics = json.loads(text, parse_constant=refuse)
    assert metrics["stage1+2"]["sensitivity"] is None  # undefined without CMBs: null
    assert metrics["stage1+2"]["fp"] == 2 and metrics["stage1+2"]["precision"] == 0.0


def test_evaluate_without_matplotlib_writes_the_tables_and_says_why_no_plot(
    tmp_path, monkeypatch, capsys
):
    """The light install has no matplotlib: the tables are written, a plot an earlier run left
    is removed (with --overwrite), and the command says where the FROC figures are."""
    from cmbdet.evaluation import evaluate

    _evaluation_case(tmp_path, ONE_CMB, HIT_AND_MISS)
    out = tmp_path / "eval"
    argv = ["evaluate", "--pred", str(tmp_path / "pred"), "--truth", str(tmp_path / "truth")]
    assert main([*argv, "--out", str(out)]) == 0
    assert (out / "froc.png").is_file()
    monkeypatch.setattr(evaluate, "can_plot", lambda: False)
    capsys.readouterr()
    assert main([*argv, "--out", str(out), "--overwrite"]) == 0
    assert "froc.png not drawn: matplotlib is not installed" in capsys.readouterr().out
    assert not (out / "froc.png").exists()
    assert json.loads((out / "metrics.json").read_text())["stage1+2"]["froc"]["sensitivity_at"]


def test_without_matplotlib_a_linked_froc_png_is_refused_and_left_alone(tmp_path, monkeypatch):
    """The light install removes an earlier run's plot (--overwrite, no matplotlib); a froc.png
    that is a link is refused before any of that, the link and its target untouched."""
    from cmbdet.evaluation import evaluate

    _evaluation_case(tmp_path, ONE_CMB, HIT_AND_MISS)
    out = tmp_path / "eval"
    out.mkdir()
    outside = tmp_path / "precious.png"
    outside.write_bytes(b"keep me")
    (out / "froc.png").symlink_to(outside)
    monkeypatch.setattr(evaluate, "can_plot", lambda: False)
    argv = ["evaluate", "--pred", str(tmp_path / "pred"), "--truth", str(tmp_path / "truth")]
    assert main([*argv, "--out", str(out), "--overwrite"]) == 2
    assert (out / "froc.png").is_symlink() and outside.read_bytes() == b"keep me"
    assert not (out / "metrics.json").exists()
