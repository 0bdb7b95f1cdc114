"""``cmbdet train``: both stages, end to end, on any dataset in the DESIGN.md layout.

Subjects are split once (saved in ``splits.json``): stage 1 trains on one part; stage 2 trains
on the stage-1 candidates of a second part that stage 1 never saw (no leakage); the operating
threshold is chosen on a third, validation part. Each stage resumes from its checkpoint.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from cmbdet.errors import InputError
from cmbdet.evaluation.matching import cmb_centres, match_detections
from cmbdet.geometry import voxel_to_world
from cmbdet.io.dataset import (
    SubjectFiles,
    ground_truth_fingerprint,
    load_ground_truth,
    subjects_with_ground_truth,
)
from cmbdet.io.model_folder import write_model_json
from cmbdet.io.nifti import load_labels, load_mask, load_volume
from cmbdet.io.writing import check_writable, write_atomic
from cmbdet.preprocess.config import PreprocessConfig
from cmbdet.preprocess.pipeline import Preprocessed, preprocess, slice_images
from cmbdet.stage1.inference import detect_candidates
from cmbdet.stage1.model import CandidateNet
from cmbdet.stage2.config import Stage2Config
from cmbdet.stage2.inference import score_patches
from cmbdet.stage2.patches import PatchConfig, extract_patches
from cmbdet.training.calibrate import choose_operating_point
from cmbdet.training.config import TrainModelConfig
from cmbdet.training.stage1 import train_stage1, training_volume
from cmbdet.training.stage2 import PatchSet, train_stage2
from cmbdet.version import __version__

log = logging.getLogger(__name__)


@dataclass
class _Subject:
    files: SubjectFiles
    pre: Preprocessed
    images: np.ndarray
    affine: np.ndarray
    lesions: list
    labels: np.ndarray | None


def split_subjects(ids: list[str], config: TrainModelConfig) -> dict[str, list[str]]:
    """Seeded split by subject into stage1 / stage2 / validation."""
    order = np.random.default_rng(config.seed).permutation(len(ids))
    n_val = max(1, int(round(config.validation_share * len(ids))))
    if len(ids) < 3:
        raise InputError(None, f"need at least 3 subjects with ground truth, got {len(ids)}")
    n_val = min(n_val, len(ids) - 2)
    n_stage1 = min(max(1, int(round(config.stage1_share * len(ids)))), len(ids) - n_val - 1)
    chosen = [ids[i] for i in order]
    return {
        "stage1": sorted(chosen[:n_stage1]),
        "stage2": sorted(chosen[n_stage1 : len(ids) - n_val]),
        "validation": sorted(chosen[len(ids) - n_val :]),
    }


def train_model(
    data_dirs: list[Path],
    out_dir: Path,
    config: TrainModelConfig = TrainModelConfig(),
    only_subjects: set[str] | None = None,
) -> Path:
    """Train both stages on the datasets in ``data_dirs``; write a model folder to ``out_dir``.

    Subjects are keyed ``<dataset folder name>/<subject id>`` in the saved splits;
    ``only_subjects`` (subject ids) restricts training to those, e.g. a cross-validation's
    training folds.
    """
    out_dir = Path(out_dir)
    check_writable(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    subjects = {
        key: files
        for key, files in subjects_with_ground_truth(data_dirs).items()
        if only_subjects is None or files.subject_id in only_subjects
    }
    splits_path = out_dir / "splits.json"
    if splits_path.exists():  # resuming: keep the split
        splits = json.loads(splits_path.read_text())
    else:
        splits = split_subjects(sorted(subjects), config)
        write_atomic(splits_path, json.dumps(splits, indent=2) + "\n")
    by_id = subjects

    volumes = []
    for n, subject_id in enumerate(splits["stage1"], 1):
        subject = _load(by_id[subject_id], config)
        volumes.append(
            training_volume(
                subject.images,
                subject.pre.brain,
                subject.labels,
                subject.lesions,
                subject.pre.spacing_mm[0],
            )
        )
        _log_loaded(n, len(splits["stage1"]), "stage-1 training")
    stage1_config = replace(
        config.network,
        in_channels=config.preprocess.channels,
        pass_channels=_pass_channels(config.preprocess, config.network.slices_per_pass),
    )
    stage1, stage1_weights = train_stage1(
        volumes, out_dir, config.stage1, stage1_config, positives_per=config.stage1_positives_per
    )
    del volumes

    margin = np.asarray(config.patch_jitter) * 2
    training_patch = PatchConfig(size=tuple(int(n) for n in np.add(config.patch.size, margin)))
    stage2_sets = []
    for n, subject_id in enumerate(splits["stage2"], 1):
        patches, _, _ = _candidate_patches(stage1, _load(by_id[subject_id], config), training_patch)
        stage2_sets.append(patches)
        _log_loaded(n, len(splits["stage2"]), "stage-2 training")
    stage2_data = PatchSet.concatenate(stage2_sets)
    if len(stage2_data.labels) == 0:
        raise InputError(
            None,
            "stage 1 proposed no candidates on the stage-2 subjects: "
            "train stage 1 longer (--stage1-steps)",
        )
    stage2, stage2_weights = train_stage2(
        stage2_data, out_dir, config.stage2, Stage2Config(), crop=config.patch.size
    )

    validation = []  # per subject: world centres, stage-1 scores, stage-2 scores, lesions
    for subject_id in splits["validation"]:
        subject = _load(by_id[subject_id], config)
        patches, candidates, stage1_scores = _candidate_patches(stage1, subject, config.patch)
        scores = score_patches(stage2, patches.patches, views=config.stage2_views)
        validation.append((candidates, stage1_scores, scores, subject.lesions))
    point = choose_operating_point(validation, config.rule)
    log.info("operating point on validation subjects: %s", point)

    info = {
        "name": out_dir.name,
        "cmbdet_version": __version__,
        "preprocessing": config.preprocess.to_json(),
        "stage1": {
            "config": stage1_config.to_json(),
            "weights": stage1_weights,
            "training": config.stage1.to_json(),
            "positives_per": config.stage1_positives_per,
        },
        "stage2": {
            "config": Stage2Config().to_json(),
            "weights": stage2_weights,
            "training": config.stage2.to_json(),
            "patch": config.patch.to_json(),
            "test_views": config.stage2_views,
        },
        **point.to_json(),
        "operating_rule": config.rule.to_json(),
        "training_data": {
            "folders": [str(folder) for folder in data_dirs],
            "fingerprint": ground_truth_fingerprint(subjects),
            "subjects": len(subjects),
            "splits": splits,
        },
    }
    write_model_json(out_dir, info)
    return out_dir


def _pass_channels(preprocess: PreprocessConfig, slices_per_pass: int) -> tuple[int, ...]:
    """What a stage-1 network trained by ``train`` reads of its stacked slice images: for
    several slices per pass, the distinct channels; for one, all of them (``()``; a network
    trained before the option read all channels for any number of slices, and loads so)."""
    if slices_per_pass == 1:
        return ()
    distinct = preprocess.distinct_channels(slices_per_pass)
    return () if len(distinct) == slices_per_pass * preprocess.channels else distinct


def _log_loaded(done: int, total: int, what: str) -> None:
    """A progress line every 10 subjects and at the end of a part."""
    if done % 10 == 0 or done == total:
        log.info("loaded %d/%d %s subjects", done, total, what)


def _load(files: SubjectFiles, config: TrainModelConfig) -> _Subject:
    swi = load_volume(files.swi, "SWI")
    phase = load_volume(files.phase, "phase")
    mask = load_mask(files.brainmask, swi) if files.brainmask else None
    pre = preprocess(swi, phase, mask=mask, config=config.preprocess)
    labels = load_labels(files.labels, swi) if files.labels else None
    lesions = load_ground_truth(files) or []
    if labels is None:
        raise InputError(files.labels or files.swi, "training needs labels.nii.gz")
    return _Subject(files, pre, slice_images(pre), swi.affine, lesions, labels)


def _candidate_patches(stage1: CandidateNet, subject: _Subject, patch: PatchConfig):
    """Stage-1 candidates of a subject as labelled patches of size ``patch``, their world
    centres and stage-1 scores."""
    pre = subject.pre
    linked = detect_candidates(stage1, subject.images, pre.spacing_mm[0], pre.brain)
    centres = np.array([c.centre for c in linked]).reshape(-1, 3)
    world = voxel_to_world(pre.grid.model_to_native(centres), subject.affine)
    hits = match_detections(world, *cmb_centres(subject.lesions)).detection_is_hit
    patches = extract_patches(pre.swi, pre.phase_norm, centres, patch)
    stage1_scores = np.array([c.score for c in linked])
    return PatchSet(patches.astype(np.float16), hits.astype(np.int64)), world, stage1_scores
