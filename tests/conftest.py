"""Fixtures shared by several test files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from cmbdet.io.model_folder import save_weights, write_model_json
from cmbdet.preprocess.config import PreprocessConfig
from cmbdet.stage1.config import Stage1Config
from cmbdet.stage1.model import CandidateNet
from cmbdet.stage2.config import Stage2Config
from cmbdet.stage2.model import PatchClassifier
from cmbdet.stage2.patches import PatchConfig


@pytest.fixture(scope="session")
def make_random_model(tmp_path_factory) -> Callable[[str, float], Path]:
    """A factory of small untrained model folders (seeded random weights, 1 mm model grid).

    ``heatmap_bias`` sets how much stage 1 proposes: 0 gives many candidates (plumbing tests
    of coordinates and outputs), -4 none (fast batch tests); ``target_slice_mm`` the model
    grid's slices (0: the acquired ones); ``reads_phase`` False a phase-free model.
    """

    def make(
        name: str, heatmap_bias: float, target_slice_mm: float = 0.0, reads_phase: bool = True
    ) -> Path:
        folder = tmp_path_factory.mktemp(name)
        torch.manual_seed(0)
        stage1_config = Stage1Config(widths=(4, 8, 8, 8), neck_width=8)
        stage1 = CandidateNet(stage1_config)
        torch.nn.init.constant_(stage1.heatmap.bias, heatmap_bias)
        stage2_config = Stage2Config(widths=(4, 4, 8, 8, 8), dense=(4, 4))
        stage2 = PatchClassifier(stage2_config)
        write_model_json(
            folder,
            {
                "name": name,
                "preprocessing": PreprocessConfig(
                    target_in_plane_mm=1.0,
                    target_slice_mm=target_slice_mm,
                    reads_phase=reads_phase,
                ).to_json(),
                "stage1": {
                    "config": stage1_config.to_json(),
                    "weights": save_weights(folder, "stage1", stage1),
                },
                "stage2": {
                    "config": stage2_config.to_json(),
                    "weights": save_weights(folder, "stage2", stage2),
                    "patch": PatchConfig(size=(12, 12, 5)).to_json(),
                },
                "threshold": 0.5,
            },
        )
        return folder

    return make


@pytest.fixture
def small_stage1() -> Callable[..., CandidateNet]:
    """A factory of small seeded stage-1 networks: ``small_stage1(slices_per_pass,
    pass_channels)``."""

    def make(slices_per_pass: int = 1, pass_channels: tuple[int, ...] = ()) -> CandidateNet:
        torch.manual_seed(0)
        config = Stage1Config(
            widths=(8, 16, 16, 16),
            neck_width=16,
            slices_per_pass=slices_per_pass,
            pass_channels=pass_channels,
        )
        return CandidateNet(config)

    return make


@pytest.fixture
def net(small_stage1) -> CandidateNet:
    """A small seeded stage-1 network reading one slice per pass."""
    return small_stage1()


@pytest.fixture(scope="session")
def quick_model(make_random_model) -> Path:
    """An untrained model that proposes no candidates: a subject takes well under a second."""
    return make_random_model("quick-test-model", -4.0)
