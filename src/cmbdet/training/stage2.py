"""Stage-2 training: patches of stage-1 candidates labelled CMB or mimic, balanced batches,
replayable 3D augmentation, the shared training loop."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cmbdet.appearance import AppearanceRanges, apply_appearance, draw_appearance
from cmbdet.io.model_folder import save_weights
from cmbdet.runtime import default_device
from cmbdet.stage2.config import Stage2Config
from cmbdet.stage2.model import PatchClassifier
from cmbdet.training.config import STAGE2_TRAINING, TrainConfig
from cmbdet.training.loop import train

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PatchSet:
    """Candidate patches with labels.

    Attributes:
        patches: (N, 2, sx, sy, sz) float16.
        labels: (N,) 1 for a candidate on a visible CMB, else 0.
        hard: (N,) bool, a negative on a mimic or among the highest stage-1 scores; None when
            not known (no negative is hard).
    """

    patches: np.ndarray
    labels: np.ndarray
    hard: np.ndarray | None = None

    @property
    def hard_negatives(self) -> np.ndarray:
        """(N,) bool, hard negatives (none when not known)."""
        if self.hard is None:
            return np.zeros(len(self.labels), bool)
        return np.asarray(self.hard, bool) & (self.labels == 0)

    def subset(self, keep: np.ndarray) -> PatchSet:
        """The patches where ``keep`` (N,) bool is true."""
        hard = None if self.hard is None else np.asarray(self.hard)[keep]
        return PatchSet(self.patches[keep], self.labels[keep], hard)

    @staticmethod
    def concatenate(sets: list[PatchSet]) -> PatchSet:
        return PatchSet(
            np.concatenate([s.patches for s in sets]),
            np.concatenate([s.labels for s in sets]),
            np.concatenate([s.hard_negatives for s in sets]),
        )


def augment_patches(
    patches: np.ndarray,
    rng: np.random.Generator,
    size: tuple[int, int, int] | None = None,
    appearance: AppearanceRanges | None = None,
) -> np.ndarray:
    """Per patch: a random crop of ``size`` (a shift of the candidate centre, as stage 1 places
    it a voxel or two off), random in-plane flips and quarter turns, slice-order flips,
    intensity jitter and noise, and with ``appearance`` a change of look within those ranges
    (:mod:`cmbdet.appearance`; channel 1 is the phase).

    Args:
        patches: (N, C, sx, sy, sz), square in-plane, at least ``size``.
        size: the crop (the network's patch size); None keeps the whole patch.
        appearance: ranges of the appearance augmentation, or None for none.

    Returns:
        (N, C, *size) float32.
    """
    size = tuple(size or patches.shape[2:])
    out = np.empty((len(patches), patches.shape[1], *size), dtype=np.float32)
    room = np.asarray(patches.shape[2:]) - size
    for n, patch in enumerate(patches):
        start = [int(rng.integers(r + 1)) for r in room]
        patch = patch[
            :,
            start[0] : start[0] + size[0],
            start[1] : start[1] + size[1],
            start[2] : start[2] + size[2],
        ].astype(np.float32)
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        if rng.random() < 0.5:
            patch = patch[:, :, :, ::-1]
        patch = np.rot90(patch, k=int(rng.integers(4)), axes=(1, 2))
        contrast = rng.uniform(0.85, 1.15, (patch.shape[0], 1, 1, 1)).astype(np.float32)
        patch = (patch - 1.0) * contrast + 1.0
        patch = patch + rng.normal(0.0, rng.uniform(0.0, 0.04), patch.shape).astype(np.float32)
        if appearance is not None:
            phase = np.arange(len(patch)) == 1
            patch = apply_appearance(patch, phase, draw_appearance(rng, appearance), rng)
        out[n] = patch
    return out


class BalancedPatchSampler:
    """Replayable batches with a fixed share of positives; hard negatives drawn
    ``hard_negative_weight`` times as often as other negatives."""

    def __init__(
        self,
        data: PatchSet,
        batch_size: int = 64,
        positive_fraction: float = 0.3,
        seed: int = 0,
        crop: tuple[int, int, int] | None = None,
        appearance: AppearanceRanges | None = None,
        hard_negative_weight: float = 1.0,
    ):
        self.data, self.batch_size, self.seed, self.crop = data, batch_size, seed, crop
        self.appearance = appearance
        self.positive = np.flatnonzero(data.labels > 0)
        self.negative = np.flatnonzero(data.labels == 0)
        weights = np.where(data.hard_negatives[self.negative], hard_negative_weight, 1.0)
        # None: uniform, as before hard negatives were known (replays draw for draw)
        self.negative_p = weights / weights.sum() if np.any(weights != 1.0) else None
        if len(self.positive) + len(self.negative) == 0:
            raise ValueError("no candidate patches to train stage 2 on")
        share = positive_fraction if len(self.negative) else 1.0
        self.n_positive = int(round(batch_size * share)) if len(self.positive) else 0

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """(batch_size,) indices of a batch's patches: its positives, then its negatives."""
        return np.concatenate(
            [
                rng.choice(self.positive, self.n_positive) if self.n_positive else [],
                rng.choice(self.negative, self.batch_size - self.n_positive, p=self.negative_p)
                if self.batch_size > self.n_positive
                else [],
            ]
        ).astype(int)

    def __call__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, step])
        chosen = self.draw(rng)
        patches = augment_patches(self.data.patches[chosen], rng, self.crop, self.appearance)
        return torch.from_numpy(patches), torch.from_numpy(
            self.data.labels[chosen].astype(np.float32)
        )


def classification_loss(
    net: PatchClassifier, patches: torch.Tensor, labels: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Class-weighted binary cross-entropy of (N, C, X, Y, Z) patches against (N,) labels (1:
    CMB); positives weigh ``net.config.positive_weight`` (CMBs are rare among candidates)."""
    logits = net(patches)  # (N,)
    weight = torch.where(labels > 0.5, net.config.positive_weight, 1.0)
    loss = F.binary_cross_entropy_with_logits(logits, labels.float(), weight=weight)
    return {"loss": loss}


def train_stage2(
    data: PatchSet,
    out_dir: Path,
    train_config: TrainConfig = STAGE2_TRAINING,
    model_config: Stage2Config = Stage2Config(),
    device: torch.device | str | None = None,
    crop: tuple[int, int, int] | None = None,
    appearance: AppearanceRanges | None = None,
    hard_negative_weight: float = 1.0,
    start: PatchClassifier | None = None,
) -> tuple[PatchClassifier, dict]:
    """Train the patch classifier (a new one, or ``start``, changed in place, when
    fine-tuning); save ``stage2.safetensors``; return it and its entry.

    ``crop``: the network's patch size, where ``data`` holds larger patches to crop at random
    offsets (centre jitter); None trains on the patches as they are. ``appearance`` and
    ``hard_negative_weight``: see :class:`BalancedPatchSampler`.
    """
    torch.manual_seed(train_config.seed)
    net = start if start is not None else PatchClassifier(model_config)
    sampler = BalancedPatchSampler(
        data,
        train_config.batch_size,
        seed=train_config.seed,
        crop=crop,
        appearance=appearance,
        hard_negative_weight=hard_negative_weight,
    )
    log.info(
        "stage 2: %d patches, %d CMBs, %d hard negatives",
        len(data.labels),
        int(data.labels.sum()),
        int(data.hard_negatives.sum()),
    )

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
        loss=classification_loss,
    )
    return net.cpu().eval(), save_weights(Path(out_dir), "stage2", net)
