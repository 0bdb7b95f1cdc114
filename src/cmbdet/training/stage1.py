"""Train the stage-1 network on subjects with ground truth."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from cmbdet.appearance import AppearanceRanges
from cmbdet.io.lesions import Lesion
from cmbdet.io.model_folder import save_weights
from cmbdet.runtime import default_device
from cmbdet.stage1.config import PositiveUnit, Stage1Config
from cmbdet.stage1.data import SliceSampler, TrainingVolume, boxes_from_labels
from cmbdet.stage1.layout import per_slice
from cmbdet.stage1.model import CandidateNet
from cmbdet.stage1.targets import HeatmapTargets
from cmbdet.training.config import STAGE1_TRAINING, TrainConfig
from cmbdet.training.loop import train

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
        images: (Z', C, X', Y') slice images on the model grid.
        brain: (X', Y', Z') brain mask on the model grid.
        labels: (X, Y, Z) instance labels on the native canonical grid (the same field of
            view).
        lesions: the ground truth; the boxes are those of visible CMBs.
        pixel_mm: model-grid in-plane pixel size.
    """
    cmb_ids = [lesion.lesion_id for lesion in lesions if lesion.is_cmb and lesion.visible]
    model_shape = (images.shape[2], images.shape[3], images.shape[0])
    boxes, box_lesions = boxes_from_labels(labels, cmb_ids, labels.shape, model_shape, pixel_mm)
    return TrainingVolume(images.astype(np.float16), boxes, brain.any(axis=(0, 1)), box_lesions)


def detection_loss(
    net: CandidateNet, images: torch.Tensor, targets: HeatmapTargets
) -> dict[str, torch.Tensor]:
    """The training loss of a batch of passes: focal loss on the heatmap, L1 on offset and log
    size at object centres (weights from the network's config).

    Args:
        net: the stage-1 network (in training mode).
        images: (B, K C, H, W) passes of K slice images.
        targets: the B K slices' targets, in the order of
            :func:`cmbdet.stage1.layout.per_slice`.

    Returns:
        ``loss`` (the total, to minimise) and its parts ``focal``, ``offset``, ``size``.
    """
    config = net.config
    outputs = per_slice(net(images), config.slices_per_pass)
    heatmap = outputs["heatmap"].float()
    focal = _focal_loss(heatmap, targets.heatmap, config.focal_alpha, config.focal_beta)
    positives = targets.centre_mask.float()  # (B K, 1, h, w)
    count = positives.sum().clamp(min=1.0)
    offset = (torch.abs(outputs["offset"] - targets.offset) * positives).sum() / count
    size = (torch.abs(outputs["size"] - targets.log_size) * positives).sum() / count
    total = focal + config.offset_weight * offset + config.size_weight * size
    return {"loss": total, "focal": focal, "offset": offset, "size": size}


def _focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float, beta: float):
    """CenterNet's penalty-reduced focal loss, normalised by the number of objects."""
    probability = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    positive = target.eq(1.0).float()
    negative = 1.0 - positive
    positive_loss = -torch.log(probability) * (1 - probability) ** alpha * positive
    negative_loss = (
        -torch.log(1 - probability) * probability**alpha * (1 - target) ** beta * negative
    )
    count = positive.sum().clamp(min=1.0)
    return (positive_loss.sum() + negative_loss.sum()) / count


def train_stage1(
    volumes: list[TrainingVolume],
    out_dir: Path,
    train_config: TrainConfig = STAGE1_TRAINING,
    model_config: Stage1Config = Stage1Config(),
    crop: int = 128,
    device: torch.device | str | None = None,
    positives_per: PositiveUnit = "slice",
    appearance: AppearanceRanges | None = None,
    start: CandidateNet | None = None,
) -> tuple[CandidateNet, dict]:
    """Train from scratch, or from ``start`` (fine-tuning), or resume from
    ``out_dir/checkpoint-stage1``; save ``stage1.safetensors``.

    Args:
        positives_per: what positive crops are drawn per, a slice with a CMB or a CMB
            (:class:`cmbdet.stage1.data.SliceSampler`).
        appearance: ranges of the crops' appearance augmentation, or None for none.
        start: a trained network of ``model_config`` to go on from (changed in place); None:
            a new one.

    Returns:
        The trained network and its weights entry for model.json.
    """
    torch.manual_seed(train_config.seed)
    net = start if start is not None else CandidateNet(model_config)
    sampler = SliceSampler(
        volumes,
        crop=crop,
        batch_size=train_config.batch_size,
        seed=train_config.seed,
        stride=model_config.stride,
        slices_per_pass=model_config.slices_per_pass,
        pass_channels=model_config.pass_channels,
        positives_per=positives_per,
        appearance=appearance,
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
        loss=detection_loss,
    )
    return net.cpu().eval(), save_weights(Path(out_dir), "stage1", net)
