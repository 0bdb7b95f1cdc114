"""The shipped models give the stored reference candidates and scores on fixed generated
subjects (float32 networks), on both backends (PyTorch and ONNX Runtime), so speed work and
backends are held to the same results.

The reference (tests/data/detect_reference.json) is tied to the models' checksums and the
generator's version: after either changes, re-make it with ``python tests/detect_reference.py
--write`` (the failure says so).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from cmbdet.detect.detector import Detector
from cmbdet.synth import GENERATOR_VERSION
from detect_reference import REFERENCE_FILE, detect_cases, model_checksums

POSITION_MM = 0.05
SCORE = 2e-3
BORDERLINE = 5e-3
"""A candidate whose stage-1 score is this close to the stage-1 threshold may be on either side
of it after float32 rounding: it alone may be missing from one of the two lists."""
REMAKE = "re-make the reference with: python tests/detect_reference.py --write"


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(REFERENCE_FILE.read_text())


@pytest.fixture(scope="module", params=["torch", "onnx"])
def detected(request, tmp_path_factory) -> dict:
    detector = Detector.load(precision="float32", backend=request.param)
    assert detector.backend == request.param
    return {
        "models": model_checksums(detector),
        "cases": detect_cases(detector, tmp_path_factory.mktemp("reference")),
    }


def test_the_reference_belongs_to_the_shipped_models_and_generator(reference, detected):
    assert reference["models"] == detected["models"], f"the shipped models changed: {REMAKE}"
    assert reference["generator_version"] == GENERATOR_VERSION, f"new generator: {REMAKE}"


@pytest.mark.parametrize(
    "case", ["fine-lps-filtered", "coarse-raw-integer", "bids-magnitude-phase", "swi-alone"]
)
def test_candidates_and_scores_equal_the_reference(reference, detected, case):
    expected, got = reference["cases"][case], detected["cases"][case]
    assert got["model"] == expected["model"]
    assert len(expected["candidates"]) >= 20  # a case that proposes nothing proves nothing
    unmatched = _match(expected["candidates"], got["candidates"])
    unmatched_got = _match(got["candidates"], expected["candidates"])
    threshold = expected["stage1_threshold"]
    for candidate in unmatched + unmatched_got:
        assert abs(candidate["stage1_score"] - threshold) < BORDERLINE, (
            f"{case}: candidate {candidate} of one run has no equal in the other"
        )
    assert len(unmatched) + len(unmatched_got) <= 1


def _match(candidates: list[dict], others: list[dict]) -> list[dict]:
    """The ``candidates`` without an equal in ``others`` (position, stage-1 score, score)."""
    if not others:
        return list(candidates)
    positions = np.array([o["mm"] for o in others])
    unmatched = []
    for candidate in candidates:
        distance = np.linalg.norm(positions - np.array(candidate["mm"]), axis=1)
        nearest = others[int(np.argmin(distance))]
        equal = (
            distance.min() <= POSITION_MM
            and abs(nearest["stage1_score"] - candidate["stage1_score"]) <= SCORE
            and abs(nearest["score"] - candidate["score"]) <= SCORE
        )
        if not equal:
            unmatched.append(candidate)
    return unmatched
