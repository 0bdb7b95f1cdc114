"""model.json is checked field by field: every damage is one line naming the file, exit 2."""

from __future__ import annotations

import json
import math
import shutil

import pytest

from cmbdet.cli import main
from cmbdet.detect.model_spec import read_model_spec
from cmbdet.detect.shipped import DEFAULT_MODEL
from cmbdet.errors import InputError


@pytest.fixture(scope="module")
def model(make_random_model):
    return make_random_model("spec-model", -4.0)


def _damaged(model, tmp_path, change) -> object:
    """A copy of ``model`` whose model.json ``change`` (a function of the dict) edited."""
    folder = tmp_path / "damaged"
    shutil.copytree(model, folder)
    info = json.loads((folder / "model.json").read_text())
    changed = change(info)  # edits in place, or returns a replacement
    (folder / "model.json").write_text(json.dumps(info if changed is None else changed))
    return folder


def _set(path: str, value):
    def change(info):
        *parents, key = path.split(".")
        node = info
        for name in parents:
            node = node.setdefault(name, {})
        node[key] = value

    return change


def _drop(path: str):
    def change(info):
        *parents, key = path.split(".")
        node = info
        for name in parents:
            node = node[name]
        del node[key]

    return change


DAMAGE = [
    (lambda info: [info], "must be a JSON object"),
    (_drop("stage1"), "stage1 is missing"),
    (_drop("stage1.weights"), "stage1.weights is missing"),
    (_drop("stage1.weights.sha256"), "stage1.weights.sha256"),
    (_set("stage1.weights.file", "../../x.safetensors"), "a file of the model folder"),
    (_set("stage1.weights.file", "../../../../etc/passwd"), ".safetensors file"),
    (_set("stage1.weights.file", "stage1.pt"), ".safetensors"),
    (_set("stage1.config", "x"), "stage1.config: must be a JSON object"),
    (_set("stage1.config.widths", [100000, 8, 8, 8]), "widths[0] is 100000"),
    (_set("stage1.config.widths", [-32, 8, 8, 8]), "widths[0] is -32"),
    (_set("stage1.config.widths", [8, 8]), "expected 4 values"),
    (_set("stage1.config.neck_width", 8.5), "neck_width: expected an integer"),
    (_set("stage1.config.stride", 8), "stride"),
    (_set("stage2.patch.size", [0, 0, 0]), "size[0] is 0"),
    (_set("stage2.patch.size", [100000, 100000, 100000]), "size[0] is 100000"),
    (_set("stage2.test_views", 1000), "test_views"),
    (_set("stage2.config.in_channels", 3), "in_channels must be 2"),
    (_set("preprocessing.bogus", 1), "unknown PreprocessConfig keys: ['bogus']"),
    (_set("preprocessing.target_in_plane_mm", 0), "target_in_plane_mm is 0"),
    (_set("preprocessing.target_in_plane_mm", -1), "target_in_plane_mm is -1"),
    (_set("preprocessing.slab_average", -3), "slab_average is -3"),
    (_set("preprocessing.context_slices", [-1000, 0, 1000]), "context_slices[0] is -1000"),
    (_set("preprocessing.context_slices", [0]), "in_channels is 2 but the preprocessing"),
    (_set("threshold", "abc"), "threshold must be a probability"),
    (_set("threshold", -5), "threshold must be a probability"),
    (_set("threshold", math.nan), "threshold must be a probability"),
    (_set("threshold", math.inf), "threshold must be a probability"),
    (_set("stage1_threshold", -1e9), "stage1_threshold must be a probability"),
    (_set("surprise", 1), "unknown keys in model.json: ['surprise']"),
    (_set("training_data", [1]), "training_data must be a JSON object"),
    (_set("training_data.made_with", "cmbdet train"), "made_with must be a list of text"),
    (_set("calibration.by", "hand"), "unknown keys in calibration: ['by']"),
]


@pytest.mark.parametrize(("change", "problem"), DAMAGE)
def test_a_damaged_model_json_is_one_clear_error(model, tmp_path, change, problem):
    folder = _damaged(model, tmp_path, change)
    with pytest.raises(InputError) as caught:
        read_model_spec(folder)
    assert caught.value.path == folder / "model.json"
    assert problem in caught.value.problem


def test_detect_with_a_damaged_model_exits_2_before_any_work(model, tmp_path, capsys):
    folder = _damaged(model, tmp_path, _set("stage1.config.widths", [-32, 8, 8, 8]))
    out = tmp_path / "out"
    argv = ["detect", "--swi", "s.nii.gz", "--phase", "p.nii.gz", "--out", str(out)]
    assert main([*argv, "--model", str(folder)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "model.json" in error[0] and "widths[0] is -32" in error[0]
    assert not out.exists()


def test_the_shipped_model_and_a_trained_one_pass(model):
    shipped = read_model_spec(DEFAULT_MODEL)
    assert shipped.test_views == 4 and shipped.stage1.slices_per_pass == 3
    assert 0 < shipped.stage1_threshold < shipped.threshold < 1
    small = read_model_spec(model)
    assert small.threshold == 0.5 and small.stage1_threshold == 0.0  # the defaults
    assert small.patch.size == (12, 12, 5)
