"""``cmbdet finetune``: adapt a trained model's two stages to a site's labelled subjects.

Both networks start from the base model's weights and train on the labelled subjects with the
base model's own preprocessing, patches and augmentation, for fewer steps at lower learning
rates (:class:`cmbdet.training.config.FinetuneConfig`). The thresholds are chosen again, by
the base model's rule, on subjects the fine-tuning never saw: ``--calibrate-on`` subjects, or a
share of the labelled ones held out by subject (the split is saved). Each stage resumes from its
checkpoint; the model folder records its base (name and checksums), the data's fingerprint, the
steps and the split.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from cmbdet.appearance import AppearanceRanges
from cmbdet.detect.model_spec import ModelSpec, read_model_spec
from cmbdet.detect.shipped import model_folder
from cmbdet.errors import InputError
from cmbdet.io.dataset import SubjectFiles, check_phase_given, ground_truth_fingerprint
from cmbdet.io.model_folder import load_weights, verify_weights, write_model_json
from cmbdet.io.writing import check_not_inputs, check_writable, refuse_links, write_atomic
from cmbdet.stage1.model import CandidateNet
from cmbdet.stage2.model import PatchClassifier
from cmbdet.training.calibrate import choose_operating_point
from cmbdet.training.config import FinetuneConfig, OperatingRule, TrainModelConfig
from cmbdet.training.export import export_onnx
from cmbdet.training.model import (
    logged,
    record_or_check_settings,
    scored_subject,
    stage1_volume,
    train_stage2_on_candidates,
)
from cmbdet.training.ranges import training_ranges, widened, with_candidate_range
from cmbdet.training.stage1 import train_stage1
from cmbdet.training.truth import labelled_subjects
from cmbdet.version import __version__

log = logging.getLogger(__name__)

SETTINGS_FILE = "finetune_config.json"
SPLIT_FILE = "splits.json"


def finetune_model(
    model: str | Path | None,
    data_dirs: list[Path],
    out_dir: Path,
    config: FinetuneConfig = FinetuneConfig(),
    calibrate_on: list[Path] | None = None,
) -> Path:
    """Fine-tune ``model`` (a folder or an installed model's name; None: the shipped default)
    on the labelled subjects of ``data_dirs``; write the new model folder to ``out_dir``.

    Args:
        calibrate_on: dataset folders whose labelled subjects choose the thresholds; None holds
            ``config.calibration_share`` of the ``data_dirs`` subjects out for that.

    Raises:
        InputError: a bad base model, too few labelled subjects, subjects without phase for a
            model that reads phase, or an ``out_dir`` that is another run's or holds inputs.
    """
    base = Path(model_folder(model))
    spec = read_model_spec(base)
    if spec.stage2 is None:
        raise InputError(base / "model.json", "fine-tuning needs a model with both stages")
    for entry in (spec.stage1_weights, spec.stage2_weights):
        verify_weights(base, entry.to_json())
    subjects = labelled_subjects(data_dirs)
    held = labelled_subjects(calibrate_on) if calibrate_on else {}
    if spec.preprocess.reads_phase:
        check_phase_given([*subjects.values(), *held.values()])
    shared = _same_images(subjects, held)
    if shared:
        raise InputError(shared, "is both a training and a calibration subject")
    _check_out(out_dir, base, subjects, held, data_dirs + (calibrate_on or []))
    out_dir.mkdir(parents=True, exist_ok=True)
    record_or_check_settings(out_dir / SETTINGS_FILE, _settings(spec, config, calibrate_on))
    split = _load_or_make_split(out_dir / SPLIT_FILE, subjects, held, config)
    training = {key: subjects[key] for key in split["train"]}
    calibration = {key: {**subjects, **held}[key] for key in split["calibration"]}
    recipe = base_recipe(spec, config)

    stage1 = load_weights(base, spec.stage1_weights.to_json(), CandidateNet(spec.stage1))
    volumes = [stage1_volume(training[key], recipe) for key in logged(split, "train")]
    stage1, stage1_weights = train_stage1(
        volumes,
        out_dir,
        recipe.stage1,
        spec.stage1,
        positives_per=recipe.stage1_positives_per,
        appearance=recipe.appearance,
        start=stage1,
    )
    del volumes
    stage2 = load_weights(base, spec.stage2_weights.to_json(), PatchClassifier(spec.stage2))
    stage2, stage2_weights = train_stage2_on_candidates(
        stage1, list(training.values()), out_dir, recipe, start=stage2
    )
    scored = [scored_subject(stage1, stage2, files, recipe) for files in calibration.values()]
    point = choose_operating_point(scored, recipe.rule)
    log.info("operating point on %d calibration subjects: %s", len(scored), point)

    info = {
        "name": out_dir.name,
        "description": f"{spec.info.get('name', base.name)} fine-tuned on {len(training)} "
        "labelled subjects",
        "cmbdet_version": __version__,
        "preprocessing": spec.info["preprocessing"],
        **_stages(spec, stage1_weights, stage2_weights, config),
        **point.to_json(),
        "operating_rule": recipe.rule.to_json(),
        "training_data": spec.info.get("training_data", {}),
        "finetuning": _provenance(spec, base, config, data_dirs, calibrate_on, split)
        | _data_record(training, calibration),
    }
    ranges = widened(spec.training_ranges, training_ranges(training.values()))
    ranges = with_candidate_range(ranges, point.candidate_counts(scored))
    info = export_onnx(out_dir, info)
    write_model_json(out_dir, {**info, "training_ranges": ranges.to_json()})
    return out_dir


def base_recipe(spec: ModelSpec, config: FinetuneConfig) -> TrainModelConfig:
    """The training recipe of fine-tuning ``spec``'s model: its preprocessing, networks,
    patches, test-time views, augmentation and thresholds' rule, with ``config``'s steps,
    learning rates and seed; a phase-free model reads each subject's SWI (its magnitude where
    it has no SWI)."""
    stage1, stage2 = spec.info["stage1"], spec.info["stage2"]
    appearance = stage1.get("appearance")
    default = TrainModelConfig()
    return TrainModelConfig(
        stage1=config.stage1,
        stage2=config.stage2,
        preprocess=spec.preprocess,
        network=spec.stage1,
        stage1_positives_per=stage1.get("positives_per", default.stage1_positives_per),
        patch=spec.patch,
        stage2_views=spec.test_views,
        appearance=AppearanceRanges.from_json(appearance) if appearance else default.appearance,
        hard_negative_weight=stage2.get("hard_negative_weight", default.hard_negative_weight),
        rule=base_rule(spec),
        seed=config.seed,
        magnitude_share=0.0,
    )


def base_rule(spec: ModelSpec) -> OperatingRule:
    """The rule that chose the base model's thresholds: its calibration's, else its
    training's, else the default."""
    recorded = spec.info.get("calibration", {}).get("rule") or spec.info.get("operating_rule")
    return OperatingRule.from_json(recorded) if recorded else OperatingRule()


def split_for_finetuning(keys: list[str], config: FinetuneConfig) -> dict[str, list[str]]:
    """Seeded split by subject: ``calibration_share`` of ``keys`` (at least one; two where
    there are five or more) to choose the thresholds on, the rest (at least two) to train.

    Raises:
        InputError: fewer than 3 subjects.
    """
    if len(keys) < 3:
        raise InputError(
            None,
            f"fine-tuning needs at least 3 labelled subjects (2 to train, 1 to calibrate), got "
            f"{len(keys)}; or give the calibration subjects with --calibrate-on",
        )
    wanted = max(int(round(config.calibration_share * len(keys))), 2 if len(keys) >= 5 else 1)
    held = min(wanted, len(keys) - 2)
    order = np.random.default_rng(config.seed).permutation(len(keys))
    chosen = [sorted(keys)[i] for i in order]
    return {"train": sorted(chosen[held:]), "calibration": sorted(chosen[:held])}


def _check_out(out_dir: Path, base: Path, subjects: dict, held: dict, folders: list) -> None:
    """Refuse an ``--out`` that cannot be written, is or holds an input (the base model, the
    data), holds links, or is a folder that a fine-tuning run did not start.

    Raises:
        InputError: naming ``out_dir``.
    """
    if not subjects:
        raise InputError(
            folders[0],
            "no labelled subjects (lesions.csv, reviewed_lesions.csv, labels or cmb_mask)",
        )
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise InputError(out_dir, "output path exists and is not a folder")
    inputs = [base, *folders]
    inputs += [p for s in (*subjects.values(), *held.values()) for p in s.image_files()]
    check_not_inputs(out_dir, inputs, replaced=False)
    check_writable(out_dir)
    refuse_links(out_dir)
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / SETTINGS_FILE).is_file():
        raise InputError(
            out_dir, "exists and is not a fine-tuning run to resume; choose another --out"
        )


def _settings(spec: ModelSpec, config: FinetuneConfig, calibrate_on: list[Path] | None) -> dict:
    """What a resumed run must share with the run it goes on: the base weights, the settings,
    where the thresholds are chosen."""
    return {
        "base_checksums": spec.checksums,
        "settings": config.to_json(),
        "calibrate_on": [str(folder) for folder in calibrate_on or []],
    }


def _load_or_make_split(path: Path, subjects: dict, held: dict, config: FinetuneConfig) -> dict:
    """The saved split when resuming, else a new one (saved): every subject trains where
    ``held`` (the ``--calibrate-on`` subjects) calibrates, else :func:`split_for_finetuning`.

    Raises:
        InputError: a damaged saved split, or one naming subjects the data lack.
    """
    if path.exists():
        try:
            split = json.loads(path.read_text(encoding="utf-8"))
            named = [*split["train"], *split["calibration"]]
        except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError) as error:
            raise InputError(path, f"is not a split cmbdet finetune wrote ({error!r})") from None
        if any(not isinstance(k, str) or k not in {**subjects, **held} for k in named):
            raise InputError(path, "names subjects the data lack; choose another --out")
        return split
    if held:
        split = {"train": sorted(subjects), "calibration": sorted(held)}
    else:
        split = split_for_finetuning(sorted(subjects), config)
    write_atomic(path, json.dumps(split, indent=2) + "\n")
    return split


def _same_images(subjects: dict, held: dict) -> Path | None:
    """An image that a training subject and a calibration subject share, or None."""
    seen = {p.resolve() for s in subjects.values() for p in s.image_files()}
    return next((p for s in held.values() for p in s.image_files() if p.resolve() in seen), None)


def _stages(spec: ModelSpec, stage1_weights: dict, stage2_weights: dict, config) -> dict:
    """model.json's stage sections: the base model's (networks, patches, views, records) with
    the new weights and the fine-tuning's optimisation settings."""
    stages = {}
    for stage, weights, training in (
        ("stage1", stage1_weights, config.stage1),
        ("stage2", stage2_weights, config.stage2),
    ):
        section = {k: v for k, v in spec.info[stage].items() if k != "onnx"}
        stages[stage] = {**section, "weights": weights, "training": training.to_json()}
    return stages


def _provenance(
    spec: ModelSpec,
    base: Path,
    config: FinetuneConfig,
    data_dirs: list[Path],
    calibrate_on: list[Path] | None,
    split: dict,
) -> dict:
    """model.json's ``finetuning`` record: the base model, the folders, the settings and
    steps, the split."""
    return {
        "base_model": {
            "name": spec.info.get("name", base.name),
            "folder": str(base),
            "checksums": spec.checksums,
        },
        "folders": [str(folder) for folder in data_dirs],
        "splits": split,
        "calibrate_on": [str(folder) for folder in calibrate_on or []],
        "settings": config.to_json(),
        "steps": {"stage1": config.stage1.steps, "stage2": config.stage2.steps},
    }


def _data_record(training: dict[str, SubjectFiles], calibration: dict[str, SubjectFiles]) -> dict:
    """Which subjects trained and which calibrated: their numbers and truth fingerprints."""
    return {
        "subjects": len(training),
        "fingerprint": ground_truth_fingerprint(training),
        "calibration_subjects": len(calibration),
        "calibration_fingerprint": ground_truth_fingerprint(calibration),
    }
