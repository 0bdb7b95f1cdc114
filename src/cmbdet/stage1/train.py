"""Train the stage-1 network on subjects with ground truth."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

import cmbdet
from cmbdet.io.dataset import Lesion
from cmbdet.modelio import load_weights, read_model_json, save_weights, write_model_json
from cmbdet.preprocess.pipeline import PreprocessConfig
from cmbdet.stage1.data import PositiveUnit, SliceSampler, TrainingVolume, boxes_from_labels
from cmbdet.stage1.model import CandidateNet, Stage1Config
from cmbdet.training import TrainConfig, default_device, train

log = logging.getLogger(__name__)


def training_volume(
    images: np.ndarray,
    brain: np.ndarray,
    labels: np.ndarray,
    lesions: list[Lesion],
    pixel_mm: float,
) -> TrainingVolume:
    """One subject's slices and CMB boxes on the model grid.

    Args:
        images: (Z, C, X, Y) slice images on the model grid.
        brain: (X, Y, Z) brain mask on the model grid.
        labels: (X', Y', Z) instance labels on the native canonical grid (same slices and
            field of view).
        lesions: the ground truth; the boxes are those of visible CMBs.
        pixel_mm: model-grid in-plane pixel size.
    """
    cmb_ids = [lesion.lesion_id for lesion in lesions if lesion.is_cmb and lesion.visible]
    model_shape = (images.shape[2], images.shape[3], images.shape[0])
    boxes, box_lesions = boxes_from_labels(labels, cmb_ids, labels.shape, model_shape, pixel_mm)
    return TrainingVolume(images.astype(np.float16), boxes, brain.any(axis=(0, 1)), box_lesions)


def train_stage1(
    volumes: list[TrainingVolume],
    out_dir: Path,
    train_config: TrainConfig = TrainConfig(),
    model_config: Stage1Config = Stage1Config(),
    crop: int = 128,
    device: torch.device | str | None = None,
    positives_per: PositiveUnit = "slice",
) -> tuple[CandidateNet, dict]:
    """Train from scratch (or resume from ``out_dir/checkpoint``), save ``stage1.safetensors``.

    Args:
        positives_per: what positive crops are drawn per, a slice with a CMB or a CMB
            (:class:`cmbdet.stage1.data.SliceSampler`).

    Returns:
        The trained network and its weights entry for model.json.
    """
    torch.manual_seed(train_config.seed)
    net = CandidateNet(model_config)
    sampler = SliceSampler(
        volumes,
        crop=crop,
        batch_size=train_config.batch_size,
        seed=train_config.seed,
        stride=model_config.stride,
        slices_per_pass=model_config.slices_per_pass,
        pass_channels=model_config.pass_channels,
        positives_per=positives_per,
    )
    log.info(
        "stage 1: %d volumes, %d CMBs on %d slices, a positive crop per %s",
        len(volumes),
        len(sampler.cmbs),
        len(sampler.positives),
        positives_per,
    )

    def report(step: int, losses: dict[str, float]) -> None:
        log.info(
            "stage 1 step %d/%d: %s",
            step,
            train_config.steps,
            " ".join(f"{k} {v:.4f}" for k, v in losses.items()),
        )

    train(
        net,
        sampler,
        train_config,
        checkpoint_dir=Path(out_dir) / "checkpoint-stage1",
        hooks=[report],
        device=device or default_device(),
    )
    return net.cpu().eval(), save_weights(Path(out_dir), "stage1", net)


def save_stage1_model(
    out_dir: Path,
    weights: dict,
    model_config: Stage1Config,
    preprocess_config: PreprocessConfig,
    train_config: TrainConfig,
    extra: dict | None = None,
) -> Path:
    """Write ``model.json`` for a stage-1 model folder (weights already saved)."""
    info = {
        "name": Path(out_dir).name,
        "cmbdet_version": cmbdet.__version__,
        "preprocessing": preprocess_config.to_json(),
        "stage1": {
            "config": model_config.to_json(),
            "weights": weights,
            "training": train_config.to_json(),
        },
        **(extra or {}),
    }
    return write_model_json(Path(out_dir), info)


def load_stage1_model(folder: Path) -> tuple[CandidateNet, PreprocessConfig, dict]:
    """The stage-1 network and preprocessing settings of a model folder (no unpickling)."""
    info = read_model_json(Path(folder))
    net = CandidateNet(Stage1Config.from_json(info["stage1"]["config"]))
    load_weights(Path(folder), info["stage1"]["weights"], net)
    return net, PreprocessConfig(**info["preprocessing"]), info
