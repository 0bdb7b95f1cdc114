"""Model folders: weights round-trip, checksums are enforced, nothing is unpickled."""

from __future__ import annotations

import pytest
import torch

from cmbdet.errors import InputError
from cmbdet.io.model_folder import load_weights, read_model_json, save_weights, write_model_json
from cmbdet.stage1.config import Stage1Config
from cmbdet.stage1.model import CandidateNet

SMALL = Stage1Config(widths=(4, 8, 8, 8), neck_width=8)


def test_weights_round_trip_with_checksum(tmp_path):
    torch.manual_seed(0)
    net = CandidateNet(SMALL)
    entry = save_weights(tmp_path, "stage1", net)
    write_model_json(tmp_path, {"stage1": {"config": SMALL.to_json(), "weights": entry}})
    info = read_model_json(tmp_path)
    loaded = load_weights(
        tmp_path,
        info["stage1"]["weights"],
        CandidateNet(Stage1Config.from_json(info["stage1"]["config"])),
    )
    for a, b in zip(net.state_dict().values(), loaded.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)


def test_tampered_weights_are_refused(tmp_path):
    entry = save_weights(tmp_path, "stage1", CandidateNet(SMALL))
    path = tmp_path / entry["file"]
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match="SHA-256"):
        load_weights(tmp_path, entry, CandidateNet(SMALL))


def test_missing_model_json_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="model.json is missing"):
        read_model_json(tmp_path)


def test_stage1_model_folder_round_trip(tmp_path):
    from cmbdet.detect.model_spec import read_model_spec
    from cmbdet.io.model_folder import load_weights, save_weights, write_model_json
    from cmbdet.preprocess.config import PreprocessConfig
    from cmbdet.training.config import TrainConfig

    config = Stage1Config(
        widths=(4, 8, 8, 8), neck_width=8, slices_per_pass=2, pass_channels=(1, 2)
    )
    net = CandidateNet(config)
    stage1 = {
        "config": config.to_json(),
        "weights": save_weights(tmp_path, "stage1", net),
        "training": TrainConfig(steps=3).to_json(),
    }
    preprocessing = PreprocessConfig(target_in_plane_mm=0.7).to_json()
    write_model_json(tmp_path, {"preprocessing": preprocessing, "stage1": stage1})
    spec = read_model_spec(tmp_path)
    loaded = load_weights(tmp_path, spec.stage1_weights.to_json(), CandidateNet(spec.stage1))
    assert spec.preprocess.target_in_plane_mm == 0.7
    assert spec.info["stage1"]["training"]["steps"] == 3
    assert loaded.config == config  # the channels it reads included
    net.eval()
    images = torch.randn(1, 2, 32, 32)
    torch.testing.assert_close(net(images)["heatmap"], loaded(images)["heatmap"])
