"""``cmbdet train``: both stages, end to end, on any dataset in the DESIGN.md layout.

Subjects are split once (saved in ``splits.json``): stage 1 trains on one part; stage 2 trains
on the stage-1 candidates of a second part that stage 1 never saw (no leakage); the operating
threshold is chosen on a third, validation part. Each stage resumes from its checkpoint.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy.spatial.distance import cdist

from cmbdet.detect.candidates import input_candidates, model_centres
from cmbdet.errors import InputError
from cmbdet.evaluation.matching import MATCH_RADIUS_MM, cmb_centres, match_detections
from cmbdet.io.dataset import (
    SubjectFiles,
    check_phase_given,
    ground_truth_fingerprint,
    load_ground_truth,
)
from cmbdet.io.lesions import Lesion
from cmbdet.io.model_folder import write_model_json
from cmbdet.io.nifti import Volume, load_mask, load_volume
from cmbdet.io.writing import check_writable, refuse_links, write_atomic
from cmbdet.preprocess.config import PreprocessConfig
from cmbdet.preprocess.pipeline import Preprocessed, preprocess, slice_images
from cmbdet.records import centres_mm
from cmbdet.stage1.data import TrainingVolume
from cmbdet.stage1.inference import detect_candidates
from cmbdet.stage1.model import CandidateNet
from cmbdet.stage2.config import Stage2Config
from cmbdet.stage2.inference import score_patches
from cmbdet.stage2.model import PatchClassifier
from cmbdet.stage2.patches import PatchConfig, extract_patches
from cmbdet.training.calibrate import OperatingPoint, ScoredSubject, choose_operating_point
from cmbdet.training.config import TrainModelConfig
from cmbdet.training.export import export_onnx
from cmbdet.training.ranges import training_ranges, with_candidate_range
from cmbdet.training.stage1 import train_stage1, training_volume
from cmbdet.training.stage2 import PatchSet, train_stage2
from cmbdet.training.truth import cmb_label_map, labelled_subjects
from cmbdet.version import __version__

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class _Subject:
    """A training subject, preprocessed: its files, input SWI, model-grid images and truth."""

    files: SubjectFiles
    swi: Volume
    pre: Preprocessed
    images: np.ndarray  # (Z', C, X', Y') slice images of the model grid
    lesions: list[Lesion]
    labels: np.ndarray  # (X, Y, Z) instance labels, native canonical grid


@dataclass(frozen=True)
class _CandidatePatches:
    """A subject's stage-1 candidates as labelled patches (1: on a visible CMB), with their
    world centres (N, 3) mm, stage-1 scores (N,) and which are ambiguous (N,): not hits, yet
    within the hit radius of a CMB (a second candidate on one, or one on a CMB too faint to
    count), so that their patches show a CMB while their label says not; stage 2 does not
    train on them."""

    patches: PatchSet
    centres_mm: np.ndarray
    stage1_scores: np.ndarray
    ambiguous: np.ndarray


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
    refuse_links(out_dir)
    subjects = {
        key: files
        for key, files in labelled_subjects(data_dirs).items()
        if only_subjects is None or files.subject_id in only_subjects
    }
    if config.preprocess.reads_phase:
        check_phase_given(subjects.values())
    out_dir.mkdir(parents=True, exist_ok=True)
    record_or_check_settings(out_dir / "train_config.json", config.to_json())
    splits = load_or_make_splits(out_dir / "splits.json", sorted(subjects), config)
    stage1_config = replace(
        config.network,
        in_channels=config.preprocess.channels,
        pass_channels=_pass_channels(config.preprocess, config.network.slices_per_pass),
    )
    volumes = [stage1_volume(subjects[key], config) for key in logged(splits, "stage1")]
    stage1, stage1_weights = train_stage1(
        volumes,
        out_dir,
        config.stage1,
        stage1_config,
        positives_per=config.stage1_positives_per,
        appearance=config.appearance,
    )
    del volumes
    stage2, stage2_weights = train_stage2_on_candidates(
        stage1, [subjects[k] for k in splits["stage2"]], out_dir, config
    )
    validation = [
        scored_subject(stage1, stage2, subjects[key], config) for key in splits["validation"]
    ]
    point = choose_operating_point(validation, config.rule)
    log.info("operating point on validation subjects: %s", point)
    stages = {
        "stage1": {
            "config": stage1_config.to_json(),
            "weights": stage1_weights,
            "training": config.stage1.to_json(),
            "positives_per": config.stage1_positives_per,
            "appearance": config.appearance.to_json(),
        },
        "stage2": {
            "config": Stage2Config().to_json(),
            "weights": stage2_weights,
            "training": config.stage2.to_json(),
            "patch": config.patch.to_json(),
            "test_views": config.stage2_views,
            "appearance": config.appearance.to_json(),
            "hard_negative_weight": config.hard_negative_weight,
        },
    }
    training_data = {
        "folders": [str(folder) for folder in data_dirs],
        "fingerprint": ground_truth_fingerprint(subjects),
        "subjects": len(subjects),
        "splits": splits,
    }
    ranges = with_candidate_range(
        training_ranges(subjects.values()), point.candidate_counts(validation)
    )
    info = _model_json(out_dir.name, config, stages, point, training_data)
    info = export_onnx(out_dir, info)  # the networks for the ONNX backend, beside the weights
    write_model_json(out_dir, {**info, "training_ranges": ranges.to_json()})
    return out_dir


def _model_json(
    name: str, config: TrainModelConfig, stages: dict, point: OperatingPoint, data: dict
) -> dict:
    """model.json of a trained model (schema: :mod:`cmbdet.detect.model_spec`)."""
    return {
        "name": name,
        "cmbdet_version": __version__,
        "preprocessing": config.preprocess.to_json(),
        **stages,
        **point.to_json(),
        "operating_rule": config.rule.to_json(),
        "training_data": data,
    }


def record_or_check_settings(path: Path, settings: dict) -> None:
    """Write the run's resolved settings; when resuming, refuse other settings than those the
    run started with (checkpoints made under one recipe must not go on under another).

    Raises:
        InputError: the saved settings differ or cannot be read.
    """
    if path.exists():
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise InputError(path, f"is not settings cmbdet wrote ({error!r})") from None
        if saved != settings:
            changed = sorted(
                k for k in settings.keys() | saved.keys() if saved.get(k) != settings.get(k)
            )
            raise InputError(
                path,
                f"this run was started with other settings ({', '.join(changed)}); "
                "choose another --out to start over",
            )
        return
    write_atomic(path, json.dumps(settings, indent=2) + "\n")


def load_or_make_splits(path: Path, keys: list[str], config: TrainModelConfig) -> dict:
    """The saved split when resuming, else a new one (saved).

    Raises:
        InputError: a saved split that is damaged or names subjects the data lack.
    """
    if path.exists():
        try:
            splits = json.loads(path.read_text(encoding="utf-8"))
            parts = [splits[part] for part in ("stage1", "stage2", "validation")]
        except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError) as error:
            raise InputError(path, f"is not a split cmbdet train wrote ({error!r})") from None
        named = [key for part in parts for key in (part if isinstance(part, list) else [part])]
        if any(key not in keys for key in named):
            raise InputError(
                path, "names subjects the --data folders lack; choose another --out to start over"
            )
        return splits
    splits = split_subjects(keys, config)
    write_atomic(path, json.dumps(splits, indent=2) + "\n")
    return splits


def logged(splits: dict[str, list[str]], part: str) -> Iterator[str]:
    """The subject keys of a part of the split, logging progress as they are loaded."""
    keys = splits[part]
    for n, key in enumerate(keys, 1):
        yield key
        if n % 10 == 0 or n == len(keys):
            log.info("loaded %d/%d %s subjects", n, len(keys), part)


def stage1_volume(files: SubjectFiles, config: TrainModelConfig) -> TrainingVolume:
    """A subject read and preprocessed as ``config`` says, as stage 1 trains on it: its slice
    images and CMB boxes on the model grid."""
    subject = _load(files, config)
    pre = subject.pre
    return training_volume(
        subject.images, pre.brain, subject.labels, subject.lesions, pre.spacing_mm[0]
    )


def train_stage2_on_candidates(
    stage1: CandidateNet,
    subjects: list[SubjectFiles],
    out_dir: Path,
    config: TrainModelConfig,
    start: PatchClassifier | None = None,
) -> tuple[PatchClassifier, dict]:
    """Stage 2 (a new network, or ``start`` when fine-tuning) on the stage-1 candidates of
    ``subjects``, as patches larger than the network's by the centre jitter (cropped at random
    offsets while training)."""
    margin = np.asarray(config.patch_jitter) * 2
    training_patch = PatchConfig(size=tuple(int(n) for n in np.add(config.patch.size, margin)))
    data = PatchSet.concatenate(
        [
            _unambiguous(_candidate_patches(stage1, _load(files, config), training_patch))
            for files in subjects
        ]
    )
    if len(data.labels) == 0:
        raise InputError(
            None,
            "stage 1 proposed no candidates on the stage-2 subjects: "
            "train stage 1 longer (--stage1-steps)",
        )
    log.info("loaded %d stage-2 subjects", len(subjects))
    return train_stage2(
        data,
        out_dir,
        config.stage2,
        start.config if start is not None else Stage2Config(),
        crop=config.patch.size,
        appearance=config.appearance,
        hard_negative_weight=config.hard_negative_weight,
        start=start,
    )


def scored_subject(
    stage1: CandidateNet, stage2: PatchClassifier, files: SubjectFiles, config: TrainModelConfig
) -> ScoredSubject:
    """A validation subject's candidates with both stages' scores, and its truth."""
    subject = _load(files, config)
    found = _candidate_patches(stage1, subject, config.patch)
    scores = score_patches(stage2, found.patches.patches, views=config.stage2_views)
    return ScoredSubject(found.centres_mm, found.stage1_scores, scores, subject.lesions)


def _pass_channels(preprocess: PreprocessConfig, slices_per_pass: int) -> tuple[int, ...]:
    """What a stage-1 network trained by ``train`` reads of its stacked slice images: for
    several slices per pass, the distinct channels; for one, all of them (``()``; a network
    trained before the option read all channels for any number of slices, and loads so)."""
    if slices_per_pass == 1:
        return ()
    distinct = preprocess.distinct_channels(slices_per_pass)
    return () if len(distinct) == slices_per_pass * preprocess.channels else distinct


def _load(files: SubjectFiles, config: TrainModelConfig) -> _Subject:
    if not config.preprocess.reads_phase:
        return _load_phase_free(files, config)
    swi = load_volume(files.swi, "SWI")
    phase = load_volume(files.phase, "phase")
    return _loaded(files, swi, phase, config)


def _load_phase_free(files: SubjectFiles, config: TrainModelConfig) -> _Subject:
    """A phase-free model's subject: its magnitude (a T2*-weighted GRE) for
    ``config.magnitude_share`` of subjects, chosen by subject and seed, else its SWI."""
    drawn = zlib.crc32(f"{config.seed}/{files.subject_id}/{files.swi}".encode()) / 2**32
    as_magnitude = files.magnitude is not None and drawn < config.magnitude_share
    if as_magnitude or files.swi is None:
        image = load_volume(files.magnitude, "magnitude")
    else:
        image = load_volume(files.swi, "SWI")
    return _loaded(files, image, None, config)


def _loaded(files: SubjectFiles, swi: Volume, phase: Volume | None, config) -> _Subject:
    mask = load_mask(files.brainmask, swi) if files.brainmask else None
    pre = preprocess(swi, phase, mask=mask, config=config.preprocess)
    lesions = load_ground_truth(files) or []
    labels = cmb_label_map(files, swi, lesions)
    return _Subject(files, swi, pre, slice_images(pre), lesions, labels)


def _candidate_patches(
    stage1: CandidateNet, subject: _Subject, patch: PatchConfig
) -> _CandidatePatches:
    """A subject's stage-1 candidates as patches of size ``patch``, labelled by the truth."""
    pre = subject.pre
    linked = detect_candidates(stage1, subject.images, pre.spacing_mm[0], pre.brain)
    stage1_scores = np.array([c.score for c in linked])
    world = centres_mm(input_candidates(linked, stage1_scores, pre, subject.swi))
    hits = match_detections(world, *cmb_centres(subject.lesions)).detection_is_hit
    ambiguous = ~hits & _near_cmbs(world, subject.lesions)
    patches = extract_patches(pre.swi, pre.phase_norm, model_centres(linked), patch)
    hard = hard_negatives(world, stage1_scores, hits, subject.lesions)
    labelled = PatchSet(patches.astype(np.float16), hits.astype(np.int64), hard)
    return _CandidatePatches(labelled, world, stage1_scores, ambiguous)


def _unambiguous(found: _CandidatePatches) -> PatchSet:
    """The patches stage 2 trains on: all but the ambiguous ones."""
    return found.patches.subset(~found.ambiguous)


MIMIC_MARGIN_MM = 2.0
"""A candidate within a mimic's radius and this much is on that mimic."""

TOP_SCORE_SHARE = 0.25
"""Of a subject's negatives, the share with the highest stage-1 scores that counts as hard."""


def hard_negatives(
    world_mm: np.ndarray, stage1_scores: np.ndarray, hits: np.ndarray, lesions: list[Lesion]
) -> np.ndarray:
    """The candidates stage 2 should see more often: those farther than the hit radius from
    every CMB (visible or not) that lie on a mimic of the truth or have the
    ``TOP_SCORE_SHARE`` highest stage-1 scores of such candidates (mostly vein fragments,
    which the truth does not list).

    Args:
        world_mm: (N, 3) candidate centres, world mm.
        stage1_scores: (N,) their stage-1 scores.
        hits: (N,) bool, on a visible CMB.
        lesions: the subject's truth.

    Returns:
        (N,) bool.
    """
    negative = ~np.asarray(hits, bool) & ~_near_cmbs(world_mm, lesions)
    return negative & (_on_mimics(world_mm, lesions) | _top_scores(stage1_scores, negative))


def _near_cmbs(world_mm: np.ndarray, lesions: list[Lesion]) -> np.ndarray:
    """(N,) bool: candidates (N, 3) world mm within the hit radius of a CMB, visible or not."""
    where = np.array([[c.x_mm, c.y_mm, c.z_mm] for c in lesions if c.is_cmb]).reshape(-1, 3)
    return _within(world_mm, where, np.full(len(where), MATCH_RADIUS_MM))


def _on_mimics(world_mm: np.ndarray, lesions: list[Lesion]) -> np.ndarray:
    """(N,) bool: candidates (N, 3) world mm on a mimic of the truth (calcification, iron,
    cavernoma...: any lesion that is not a CMB), within its radius and ``MIMIC_MARGIN_MM``."""
    mimics = [lesion for lesion in lesions if not lesion.is_cmb]
    where = np.array([[m.x_mm, m.y_mm, m.z_mm] for m in mimics]).reshape(-1, 3)
    radius = np.nan_to_num(np.array([m.diameter_mm / 2 for m in mimics], float))
    return _within(world_mm, where, radius + MIMIC_MARGIN_MM)


def _within(points: np.ndarray, centres: np.ndarray, reach: np.ndarray) -> np.ndarray:
    """(N,) bool: points (N, 3) within ``reach`` (M,) of any of ``centres`` (M, 3)."""
    if len(points) == 0 or len(centres) == 0:
        return np.zeros(len(points), bool)
    return np.any(cdist(points, centres) <= reach[None], axis=1)


def _top_scores(scores: np.ndarray, among: np.ndarray) -> np.ndarray:
    """(N,) bool: the ``TOP_SCORE_SHARE`` highest ``scores`` of the candidates ``among``."""
    chosen = np.zeros(len(scores), bool)
    if among.any():
        cut = np.quantile(scores[among], 1.0 - TOP_SCORE_SHARE)
        chosen[among & (scores >= cut)] = True
    return chosen
