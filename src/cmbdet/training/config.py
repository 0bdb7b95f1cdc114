"""Every training setting and its default, in one place: the optimisation of each stage, the
thresholds' rule, and the whole recipe of ``cmbdet train`` (what the command line's defaults
are read from; no torch here, so ``cmbdet --help`` stays fast)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from cmbdet.appearance import AppearanceRanges
from cmbdet.config import JsonConfig, check_range
from cmbdet.preprocess.config import PreprocessConfig
from cmbdet.stage1.config import PositiveUnit, Stage1Config, check_positive_unit
from cmbdet.stage2.patches import PatchConfig


@dataclass(frozen=True)
class TrainConfig(JsonConfig):
    """Optimisation settings (recorded beside the weights)."""

    steps: int = 2000
    batch_size: int = 16
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    grad_clip: float = 5.0
    seed: int = 0
    checkpoint_every: int = 200
    log_every: int = 50


STAGE1_TRAINING = TrainConfig(steps=2500, batch_size=32, learning_rate=2e-3)
STAGE2_TRAINING = TrainConfig(steps=1500, batch_size=32, learning_rate=1e-3)


@dataclass(frozen=True)
class OperatingRule(JsonConfig):
    """How validation subjects set the thresholds (recorded in ``model.json``)."""

    min_stage1_sensitivity: float = 0.98  # stage 1 keeps at least this
    min_sensitivity: float = 0.95  # stage 1 + 2 keeps at least this...
    # ...or, when set, the highest sensitivity at no more than this many false positives
    # per subject (suits a stage 2 too weak for min_sensitivity)
    max_fp_per_subject: float | None = None


@dataclass(frozen=True)
class TrainModelConfig(JsonConfig):
    """Settings of ``cmbdet train`` (all recorded in model.json)."""

    stage1: TrainConfig = STAGE1_TRAINING
    stage2: TrainConfig = STAGE2_TRAINING
    # 2 mm model slices: a 1 mm or 3 mm acquisition shows the networks the same millimetres
    # as the paper's 2 mm protocols (whose slices are kept)
    preprocess: PreprocessConfig = PreprocessConfig(
        target_in_plane_mm=0.625, target_slice_mm=2.0, context_slices=(-2, 0, 2)
    )
    # the stage-1 network (its in_channels and pass_channels are set from ``preprocess``): three
    # adjacent slices per pass read at once, which halves stage 1's time (benchmarks/RESULTS.md)
    network: Stage1Config = Stage1Config(slices_per_pass=3, widths=(32, 32, 64, 96))
    # positive crops per CMB, so that small CMBs (on one or two slices) are drawn as often as
    # large ones; or "slice": per slice with a CMB
    stage1_positives_per: PositiveUnit = "cmb"
    patch: PatchConfig = PatchConfig(size=(20, 20, 7))
    # stage-2 training crops are shifted from the candidate centre by up to this many voxels
    patch_jitter: tuple[int, int, int] = (2, 2, 1)
    stage2_views: int = 4  # test-time views averaged by stage 2 (cmbdet.stage2.views.VIEWS)
    # appearance augmentation of both stages' crops (gamma, contrast, phase gain, bias, blur,
    # noise), so that the networks cannot win on a protocol's look
    appearance: AppearanceRanges = AppearanceRanges()
    # stage 2 draws negatives on mimics (calcifications, iron, cavernomas) and the negatives
    # stage 1 scores highest this many times as often as other negatives
    hard_negative_weight: float = 3.0
    stage1_share: float = 0.5  # of subjects; stage 2 gets the rest but the validation share
    validation_share: float = 0.15
    rule: OperatingRule = OperatingRule()  # how validation subjects set the thresholds
    seed: int = 0
    # a phase-free model (``preprocess.reads_phase`` False) reads this share of its subjects
    # (chosen by subject, seeded) as their T2*-weighted magnitude, the rest as their SWI, so
    # that one model serves both; subjects without a magnitude file are read as their SWI
    magnitude_share: float = 0.5

    def __post_init__(self):  # before minutes of loading, not when the sampler is made
        check_positive_unit(self.stage1_positives_per, "stage1_positives_per")
        check_range("hard_negative_weight", self.hard_negative_weight, 1.0, 100.0)
        check_range("magnitude_share", self.magnitude_share, 0.0, 1.0)

    def with_steps(self, stage1_steps: int, stage2_steps: int, seed: int) -> TrainModelConfig:
        """These settings with other step counts and seed."""
        return replace(
            self,
            seed=seed,
            stage1=replace(self.stage1, steps=stage1_steps, seed=seed),
            stage2=replace(self.stage2, steps=stage2_steps, seed=seed),
        )

    @classmethod
    def from_options(
        cls,
        stage1_steps: int,
        stage2_steps: int,
        seed: int,
        max_fp: float | None,
        phase_free: bool = False,
        magnitude_share: float | None = None,
    ) -> TrainModelConfig:
        """The defaults with the command-line options of ``train`` and ``crossval``
        (``phase_free``: a model that reads no phase, reading ``magnitude_share`` of its
        subjects as their magnitude).

        Raises:
            ValueError: ``magnitude_share`` without ``phase_free``, or outside 0-1.
        """
        config = cls().with_steps(stage1_steps, stage2_steps, seed)
        config = replace(config, rule=replace(config.rule, max_fp_per_subject=max_fp))
        if magnitude_share is not None and not phase_free:
            raise ValueError("--magnitude-share is for --phase-free models")
        if phase_free:
            config = replace(config, preprocess=replace(config.preprocess, reads_phase=False))
        if magnitude_share is not None:
            config = replace(config, magnitude_share=magnitude_share)
        return config


# fine-tuning a trained model on a site's 5-30 labelled subjects: a quarter of the base recipe's
# learning rates, 13 minutes for 5-20 subjects on 2 CPU cores (benchmarks/RESULTS.md)
FINETUNE_STAGE1 = TrainConfig(steps=1000, batch_size=32, learning_rate=5e-4, warmup_steps=50)
FINETUNE_STAGE2 = TrainConfig(steps=1000, batch_size=32, learning_rate=2.5e-4, warmup_steps=50)


@dataclass(frozen=True)
class FinetuneConfig(JsonConfig):
    """Settings of ``cmbdet finetune`` (recorded in the model's ``finetuning`` record); what
    is not here (preprocessing, networks, patches, augmentation, the thresholds' rule) is the
    base model's."""

    stage1: TrainConfig = FINETUNE_STAGE1
    stage2: TrainConfig = FINETUNE_STAGE2
    # of the labelled subjects, chosen by seed, held out to choose the thresholds on (at least
    # one, and two where five or more are given); none with --calibrate-on
    calibration_share: float = 0.25
    seed: int = 0

    def __post_init__(self):
        check_range("calibration_share", self.calibration_share, 0.05, 0.5)

    @classmethod
    def from_options(
        cls, stage1_steps: int, stage2_steps: int, seed: int, calibration_share: float
    ) -> FinetuneConfig:
        """The defaults with ``finetune``'s command-line options."""
        return cls(
            stage1=replace(FINETUNE_STAGE1, steps=stage1_steps, seed=seed),
            stage2=replace(FINETUNE_STAGE2, steps=stage2_steps, seed=seed),
            calibration_share=calibration_share,
            seed=seed,
        )
