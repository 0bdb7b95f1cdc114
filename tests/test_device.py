"""Where the networks run: ``--device auto|cpu|cuda``; the CUDA comparison needs a GPU."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cmbdet.cli import main
from cmbdet.errors import InputError
from cmbdet.io.dataset import find_subjects
from cmbdet.pipeline.detector import Detector
from cmbdet.synth.dataset import generate_dataset
from cmbdet.training import resolve_device


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
    assert main([*argv, *model, "--device", "cpu"]) == 0
    assert json.loads((out / "run.json").read_text())["device"] == "cpu"


@pytest.mark.gpu
def test_cuda_gives_the_cpu_candidates(subject, make_random_model):
    model = make_random_model("gpu-model", 0.0)
    on_cpu = Detector.load(model, "cpu").detect(subject.swi, subject.phase)
    on_gpu = Detector.load(model, "cuda").detect(subject.swi, subject.phase)
    assert on_gpu.record["device"].startswith("cuda")
    assert len(on_gpu.candidates) == len(on_cpu.candidates) > 0
    centres = [np.array([[c.x_mm, c.y_mm, c.z_mm] for c in r.candidates]) for r in (on_cpu, on_gpu)]
    np.testing.assert_allclose(*centres, atol=0.05)
    scores = [np.array([c.score for c in r.candidates]) for r in (on_cpu, on_gpu)]
    np.testing.assert_allclose(*scores, atol=1e-3)
