"""Where the networks run (``--device auto|cpu|cuda``) and in which number format
(``--precision auto|float32|bfloat16``); the CUDA comparison needs a GPU."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cmbdet.cli import arguments, main
from cmbdet.detect.detector import Detector
from cmbdet.errors import InputError
from cmbdet.io.dataset import find_subjects
from cmbdet.runtime import (
    PRECISIONS,
    fold_batch_norm,
    network_input,
    prepare_for_inference,
    resolve_device,
    resolve_precision,
)
from cmbdet.stage1.config import Stage1Config
from cmbdet.stage1.model import CandidateNet
from cmbdet.stage2.config import Stage2Config
from cmbdet.stage2.model import PatchClassifier
from cmbdet.synth.dataset import generate_dataset


@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    data = generate_dataset(tmp_path_factory.mktemp("data"), "tiny", 1, seed=21, progress=False)
    return find_subjects(data)[0]


def test_auto_picks_cuda_only_where_pytorch_sees_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("cpu") == torch.device("cpu")


def test_cuda_without_a_gpu_and_unknown_devices_are_bad_input(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match="device cuda: PyTorch"):
        resolve_device("cuda")
    with pytest.raises(InputError, match="unknown device 'banana'"):
        resolve_device("banana")
    with pytest.raises(InputError, match="runs on cpu or cuda"):
        resolve_device("meta")


def test_detect_with_cuda_on_a_machine_without_it_exits_2(
    subject, make_random_model, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "out"
    argv = ["detect", "--swi", str(subject.swi), "--phase", str(subject.phase), "--out", str(out)]
    model = ["--model", str(make_random_model("device-model", 0.0))]
    assert main([*argv, *model, "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "device cuda" in err and err.count("\n") == 1 and not out.exists()
    assert main([*argv, *model, "--device", "cpu", "--precision", "float32"]) == 0
    record = json.loads((out / "run.json").read_text())
    assert record["device"] == "cpu" and record["precision"] == "float32"


def test_auto_precision_is_bfloat16_only_on_a_cpu_that_has_it(monkeypatch):
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, probe, lambda: False, raising=False)
    assert resolve_precision("auto", cpu) == torch.float32
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert resolve_precision("auto", cpu) == torch.bfloat16
    assert resolve_precision("auto", gpu) == torch.float32  # thresholds were chosen in float32
    assert resolve_precision("float32", cpu) == torch.float32
    assert resolve_precision("bfloat16", gpu) == torch.bfloat16
    with pytest.raises(InputError, match="unknown precision 'half'"):
        resolve_precision("half", cpu)
    assert arguments.PRECISIONS == PRECISIONS  # the CLI offers them without loading torch


def test_bfloat16_networks_give_the_float32_outputs_to_within_rounding():
    torch.manual_seed(0)
    stage1 = CandidateNet(Stage1Config(in_channels=5, widths=(8, 16, 16, 16), neck_width=16))
    stage2 = PatchClassifier(Stage2Config(widths=(4, 4, 8, 8, 8), dense=(4, 4)))
    slices, patches = torch.randn(2, 5, 64, 48), torch.randn(3, 2, 20, 20, 7)
    cpu = torch.device("cpu")
    for net, batch in ((stage1, slices), (stage2, patches)):
        exact = prepare_for_inference(net, cpu, torch.float32)
        rounded = prepare_for_inference(net, cpu, torch.bfloat16)
        inputs = network_input(batch, rounded)
        layout = {4: torch.channels_last, 5: torch.channels_last_3d}[batch.dim()]
        assert inputs.dtype == torch.bfloat16 and inputs.is_contiguous(memory_format=layout)
        with torch.inference_mode():
            want, got = exact(network_input(batch, exact)), rounded(inputs)
        if isinstance(want, dict):
            want, got = want["heatmap"], got["heatmap"]
        difference = (torch.sigmoid(want) - torch.sigmoid(got.float())).abs().max()
        assert 0 < difference < 0.02  # rounded, not converted back to float32 somewhere
        assert next(net.parameters()).dtype == torch.float32  # the original is left alone


def test_network_input_brings_chosen_channels_in_the_networks_format():
    net = CandidateNet(Stage1Config(in_channels=5, widths=(8, 16, 16, 16), neck_width=16))
    stacks = torch.randn(2, 10, 32, 48)[:, :, 3:29, 5:45]  # strided, as the real crops are
    chosen = (1, 2, 3, 4, 6, 9)
    for dtype, layout in ((torch.float32, torch.contiguous_format), (torch.bfloat16, None)):
        ready = prepare_for_inference(net, torch.device("cpu"), dtype)
        inputs = network_input(stacks, ready, channels=chosen)
        torch.testing.assert_close(inputs, stacks[:, list(chosen)].to(dtype), rtol=0, atol=0)
        assert inputs.is_contiguous(memory_format=layout or torch.channels_last)
        assert network_input(stacks, ready).shape == stacks.shape  # no channels: all of them


def test_bfloat16_detects_what_float32_detects(subject):
    results = {
        precision: Detector.load(None, "cpu", precision).detect(subject.swi, subject.phase)
        for precision in ("float32", "bfloat16")
    }
    assert results["bfloat16"].record["precision"] == "bfloat16"
    exact, rounded = (
        [(np.array([c.x_mm, c.y_mm, c.z_mm]), c.stage1_score, c.score) for c in r.candidates]
        for r in (results["float32"], results["bfloat16"])
    )
    threshold = results["float32"].record["stage1_threshold"]
    for these, those in ((exact, rounded), (rounded, exact)):  # each finds the other's
        clear = [c for c in these if c[1] > threshold + 0.05]  # not at the stage-1 cut
        assert clear
        for centre, _, score in clear:
            partner = min(those, key=lambda c: np.linalg.norm(centre - c[0]))
            assert np.linalg.norm(centre - partner[0]) < 1.0 and abs(partner[2] - score) < 0.05


@pytest.mark.gpu
def test_cuda_gives_the_cpu_candidates(subject, make_random_model):
    model = make_random_model("gpu-model", 0.0)
    on_cpu = Detector.load(model, "cpu", "float32").detect(subject.swi, subject.phase)
    on_gpu = Detector.load(model, "cuda", "float32").detect(subject.swi, subject.phase)
    assert on_gpu.record["device"].startswith("cuda")
    assert len(on_gpu.candidates) == len(on_cpu.candidates) > 0
    centres = [np.array([[c.x_mm, c.y_mm, c.z_mm] for c in r.candidates]) for r in (on_cpu, on_gpu)]
    np.testing.assert_allclose(*centres, atol=0.05)
    scores = [np.array([c.score for c in r.candidates]) for r in (on_cpu, on_gpu)]
    np.testing.assert_allclose(*scores, atol=1e-3)


SMALL = Stage1Config(widths=(4, 8, 8, 8), neck_width=8)


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
