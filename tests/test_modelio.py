"""Model folders: weights round-trip, checksums are enforced, nothing is unpickled."""

from __future__ import annotations

import pytest
import torch

from cmbdet.errors import InputError
from cmbdet.io.model_folder import load_weights, read_model_json, save_weights, write_model_json
from cmbdet.runtime import fold_batch_norm
from cmbdet.stage1.config import Stage1Config
from cmbdet.stage1.model import CandidateNet
from cmbdet.stage2.config import Stage2Config
from cmbdet.stage2.model import PatchClassifier

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


def test_folding_batch_norm_keeps_the_outputs_and_the_original():
    torch.manual_seed(0)
    stage1, stage2 = CandidateNet(SMALL), PatchClassifier(Stage2Config(widths=(4, 4, 8, 8, 8)))
    for net in (stage1, stage2):  # non-trivial running statistics and affine parameters
        for norm in (
            m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
        ):
            norm.running_mean.uniform_(-0.5, 0.5)
            norm.running_var.uniform_(0.5, 2.0)
            norm.weight.data.uniform_(0.5, 1.5)
            norm.bias.data.uniform_(-0.2, 0.2)
    slices, patches = torch.randn(2, 2, 64, 48), torch.randn(3, 2, 20, 20, 7)
    folded1, folded2 = fold_batch_norm(stage1), fold_batch_norm(stage2)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in folded1.modules())
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in folded2.modules())
    with torch.no_grad():
        expected = stage1.eval()(slices)
        for key, value in folded1(slices).items():
            torch.testing.assert_close(value, expected[key], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(folded2(patches), stage2.eval()(patches), atol=1e-4, rtol=1e-4)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in stage1.modules())  # original kept
