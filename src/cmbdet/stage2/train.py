"""Stage-2 training: patches of stage-1 candidates labelled CMB or mimic, balanced batches,
replayable 3D augmentation, the shared training loop."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cmbdet.modelio import save_weights
from cmbdet.stage2.model import PatchClassifier, Stage2Config
from cmbdet.training import TrainConfig, default_device, train

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PatchSet:
    """Candidate patches with labels.

    Attributes:
        patches: (N, 2, sx, sy, sz) float16.
        labels: (N,) 1 for a candidate on a visible CMB, else 0.
    """

    patches: np.ndarray
    labels: np.ndarray

    @staticmethod
    def concatenate(sets: list[PatchSet]) -> PatchSet:
        return PatchSet(
            np.concatenate([s.patches for s in sets]), np.concatenate([s.labels for s in sets])
        )


def augment_patches(patches: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random in-plane flips and quarter turns, and slice-order flips, per patch, plus
    intensity jitter and noise (N, C, sx, sy, sz; square in-plane)."""
    out = np.empty_like(patches, dtype=np.float32)
    for n, patch in enumerate(patches.astype(np.float32)):
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        if rng.random() < 0.5:
            patch = patch[:, :, :, ::-1]
        patch = np.rot90(patch, k=int(rng.integers(4)), axes=(1, 2))
        contrast = rng.uniform(0.85, 1.15, (patch.shape[0], 1, 1, 1)).astype(np.float32)
        patch = (patch - 1.0) * contrast + 1.0
        patch = patch + rng.normal(0.0, rng.uniform(0.0, 0.04), patch.shape).astype(np.float32)
        out[n] = patch
    return out


class BalancedPatchSampler:
    """Replayable batches with a fixed share of positives."""

    def __init__(
        self, data: PatchSet, batch_size: int = 64, positive_fraction: float = 0.3, seed: int = 0
    ):
        self.data, self.batch_size, self.seed = data, batch_size, seed
        self.positive = np.flatnonzero(data.labels > 0)
        self.negative = np.flatnonzero(data.labels == 0)
        if len(self.positive) + len(self.negative) == 0:
            raise ValueError("no candidate patches to train stage 2 on")
        share = positive_fraction if len(self.negative) else 1.0
        self.n_positive = int(round(batch_size * share)) if len(self.positive) else 0

    def __call__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, step])
        chosen = np.concatenate(
            [
                rng.choice(self.positive, self.n_positive) if self.n_positive else [],
                rng.choice(self.negative, self.batch_size - self.n_positive)
                if self.batch_size > self.n_positive
                else [],
            ]
        ).astype(int)
        patches = augment_patches(self.data.patches[chosen], rng)
        return torch.from_numpy(patches), torch.from_numpy(
            self.data.labels[chosen].astype(np.float32)
        )


def train_stage2(
    data: PatchSet,
    out_dir: Path,
    train_config: TrainConfig = TrainConfig(steps=1500, batch_size=64, learning_rate=1e-3),
    model_config: Stage2Config = Stage2Config(),
    device: torch.device | str | None = None,
) -> tuple[PatchClassifier, dict]:
    """Train the patch classifier; save ``stage2.safetensors``; return it and its entry."""
    torch.manual_seed(train_config.seed)
    net = PatchClassifier(model_config)
    sampler = BalancedPatchSampler(data, train_config.batch_size, seed=train_config.seed)
    log.info("stage 2: %d patches, %d CMBs", len(data.labels), int(data.labels.sum()))

    def report(step: int, losses: dict[str, float]) -> None:
        log.info(
            "stage 2 step %d/%d: loss %.4f (%.0f s)",
            step,
            train_config.steps,
            losses["loss"],
            losses["seconds"],
        )

    train(
        net,
        sampler,
        train_config,
        checkpoint_dir=Path(out_dir) / "checkpoint-stage2",
        hooks=[report],
        device=device or default_device(),
    )
    return net.cpu().eval(), save_weights(Path(out_dir), "stage2", net)


@torch.inference_mode()
def score_patches(
    net: PatchClassifier,
    patches: np.ndarray,
    batch_size: int = 128,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """CMB probability (N,) of each patch (N, C, X, Y, Z); ``net`` must be on ``device``."""
    net.eval()
    scores = [
        torch.sigmoid(
            net(torch.from_numpy(patches[i : i + batch_size].astype(np.float32)).to(device))
        ).cpu()
        for i in range(0, len(patches), batch_size)
    ]
    return torch.cat(scores).numpy() if scores else np.zeros(0, np.float32)
