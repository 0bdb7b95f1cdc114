"""JSON round trips of configs: unknown keys, wrong types and non-finite numbers refused."""

from __future__ import annotations

import json
import math

import pytest

from cmbdet.preprocess.config import PreprocessConfig
from cmbdet.stage1.config import Stage1Config
from cmbdet.training.config import OperatingRule, TrainModelConfig


def test_nested_configs_round_trip_through_json():
    config = TrainModelConfig(seed=3, rule=OperatingRule(max_fp_per_subject=2.0))
    assert TrainModelConfig.from_json(json.loads(json.dumps(config.to_json()))) == config


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ([1], "must be a JSON object"),
        ({"bogus": 1}, "unknown Stage1Config keys: ['bogus']"),
        ({"neck_width": 8.0}, "neck_width: expected an integer"),
        ({"neck_width": True}, "neck_width: expected an integer"),
        ({"widths": [8, 8, 8]}, "widths: expected 4 values"),
        ({"widths": "8888"}, "widths: expected a list"),
        ({"focal_alpha": math.inf}, "focal_alpha: expected a finite number"),
        ({"focal_alpha": "2"}, "focal_alpha: expected a number"),
        ({"widths": [8, 8, 8, 0]}, "widths[3] is 0"),
    ],
)
def test_from_json_names_the_key_that_is_wrong(values, problem):
    with pytest.raises(ValueError) as caught:
        Stage1Config.from_json(values)
    assert problem in str(caught.value)


def test_nested_errors_name_the_path_and_none_takes_a_number():
    with pytest.raises(ValueError, match=r"preprocess: slab_average is -1"):
        TrainModelConfig.from_json({"preprocess": {"slab_average": -1}})
    assert OperatingRule.from_json({"max_fp_per_subject": None}).max_fp_per_subject is None
    assert OperatingRule.from_json({"max_fp_per_subject": 1}).max_fp_per_subject == 1.0
    assert PreprocessConfig.from_json({"context_slices": [-2, 0, 2]}).context_slices == (-2, 0, 2)
