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
from cmbdet.io.dataset import (
    SubjectFiles,
    check_phase_given,
    ground_truth_fingerprint,
)
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
from cmbdet.training.truth import labelled_subjects, visible_cmbs
from cmbdet.version import __version__

log = logging.getLogger(__name__)

SETTINGS_FILE = "finetune_config.json"
SPLIT_FILE = "splits.json"
TRUTH_FILES = "reviewed_lesions.csv, lesions.csv, labels or cmb_mask in sub-*/"


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
        InputError: a bad base model; too few labelled subjects, or none with a visible CMB
            among those that train or those that calibrate; subjects that a model reading
            phase cannot read; an ``out_dir`` that is another run's or holds inputs. All before
            anything is written.
    """
    base = Path(model_folder(model))
    spec = read_model_spec(base)
    recipe = _base_recipe_checked(spec, base, config)
    subjects = labelled_subjects(data_dirs)
    held = labelled_subjects(calibrate_on) if calibrate_on else {}
    _check_subjects(spec, subjects, held, data_dirs, calibrate_on)
    _check_out(out_dir, base, subjects, held, data_dirs + (calibrate_on or []))
    settings = _settings(spec, config, data_dirs, calibrate_on, subjects, held)
    everyone = {**subjects, **held}
    cmbs = visible_cmbs(everyone)
    split = _saved_or_new_split(out_dir / SPLIT_FILE, subjects, held, cmbs, config)
    training = {key: subjects[key] for key in split["train"]}
    calibration = {key: everyone[key] for key in split["calibration"]}
    _check_cmbs(split["train"], cmbs, "train", data_dirs[0])
    _check_cmbs(
        split["calibration"], cmbs, "choose the thresholds on", (calibrate_on or data_dirs)[0]
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    record_or_check_settings(out_dir / SETTINGS_FILE, settings)
    if not (out_dir / SPLIT_FILE).exists():
        write_atomic(out_dir / SPLIT_FILE, json.dumps(split, indent=2) + "\n")

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
    # stage 2 learns from the fine-tuned stage 1's candidates on the same subjects (with 5-30
    # subjects, splitting them between the stages as train does would halve what each learns)
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
        **_stages(spec, recipe, stage1_weights, stage2_weights),
        **point.to_json(),
        "operating_rule": recipe.rule.to_json(),
        "training_data": spec.info.get("training_data", {}),
        "finetuning": _provenance(spec, base, settings, split, training, calibration),
    }
    ranges = widened(spec.training_ranges, training_ranges(training.values()))
    ranges = with_candidate_range(ranges, point.candidate_counts(scored))
    info = export_onnx(out_dir, info)
    write_model_json(out_dir, {**info, "training_ranges": ranges.to_json()})
    return out_dir


def _base_recipe_checked(spec: ModelSpec, base: Path, config: FinetuneConfig) -> TrainModelConfig:
    """:func:`base_recipe` of a model with both stages and intact weights.

    Raises:
        InputError: naming the base model's model.json or weights.
    """
    if spec.stage2 is None:
        raise InputError(base / "model.json", "fine-tuning needs a model with both stages")
    for entry in (spec.stage1_weights, spec.stage2_weights):
        verify_weights(base, entry.to_json())
    try:
        return base_recipe(spec, config)
    except (ValueError, TypeError) as error:
        message = f"a training record cannot be read ({error})"
        raise InputError(base / "model.json", message) from None


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


def split_for_finetuning(cmbs: dict[str, int], config: FinetuneConfig) -> dict[str, list[str]]:
    """Seeded split by subject: ``calibration_share`` of the subjects (at least one; two where
    there are five or more) to choose the thresholds on, the rest (at least two) to train;
    dealt evenly along the subjects ordered by their visible CMBs (``cmbs``: key -> count), so
    that both parts hold CMB-rich and CMB-poor subjects.

    Raises:
        InputError: fewer than 3 subjects.
    """
    keys = sorted(cmbs)
    if len(keys) < 3:
        raise InputError(
            None,
            f"fine-tuning needs at least 3 labelled subjects (2 to train, 1 to calibrate), got "
            f"{len(keys)}; or give the calibration subjects with --calibrate-on",
        )
    wanted = max(int(round(config.calibration_share * len(keys))), 2 if len(keys) >= 5 else 1)
    held = min(wanted, len(keys) - 2)
    rng = np.random.default_rng(config.seed)
    shuffled = [keys[i] for i in rng.permutation(len(keys))]
    ordered = sorted(shuffled, key=lambda key: -cmbs[key])  # stable: ties stay shuffled
    stride = len(keys) / held
    picks = {int(stride * n + rng.uniform(0, stride)) for n in range(held)}
    calibration = [ordered[i] for i in sorted(picks)]
    return {
        "train": sorted(k for k in keys if k not in calibration),
        "calibration": sorted(calibration),
    }


def _check_subjects(
    spec: ModelSpec,
    subjects: dict[str, SubjectFiles],
    held: dict[str, SubjectFiles],
    data_dirs: list[Path],
    calibrate_on: list[Path] | None,
) -> None:
    """Refuse, before any work, data that cannot fine-tune this model.

    Raises:
        InputError: no labelled subjects in ``data_dirs`` or in ``calibrate_on``; a folder name
            given twice (subjects are keyed by it); a subject both training and calibrating;
            for a model that reads phase, subjects without phase or without an SWI.
    """
    if not subjects:
        raise InputError(data_dirs[0], f"no labelled subjects ({TRUTH_FILES})")
    if calibrate_on and not held:
        raise InputError(calibrate_on[0], f"no labelled subjects ({TRUTH_FILES})")
    shared = _same_images(subjects, held)
    if shared:
        raise InputError(shared, "is both a training and a calibration subject")
    folders = data_dirs + (calibrate_on or [])
    names = [Path(folder).name for folder in folders]
    twice = next((f for f, n in zip(folders, names, strict=True) if names.count(n) > 1), None)
    if twice is not None:
        raise InputError(twice, "another --data or --calibrate-on folder has this name; rename one")
    if spec.preprocess.reads_phase:
        everyone = [*subjects.values(), *held.values()]
        check_phase_given(everyone)
        without_swi = next((s.magnitude for s in everyone if s.swi is None), None)
        if without_swi is not None:
            raise InputError(
                without_swi.parent,
                "has no swi.nii.gz: a model that reads phase fine-tunes on SWI + phase",
            )


def _check_cmbs(part: list[str], cmbs: dict[str, int], role: str, where: Path) -> None:
    """Refuse a part of the split without a visible CMB (nothing to learn, or no sensitivity
    to choose thresholds by).

    Raises:
        InputError: naming ``where``.
    """
    if sum(cmbs[key] for key in part) == 0:
        raise InputError(
            where,
            f"the subjects to {role} hold no visible CMB; label more subjects with CMBs "
            "(or give calibration subjects with --calibrate-on)",
        )


def _check_out(
    out_dir: Path,
    base: Path,
    subjects: dict[str, SubjectFiles],
    held: dict[str, SubjectFiles],
    folders: list[Path],
) -> None:
    """Refuse an ``--out`` that cannot be written, is or holds an input (the base model, the
    data), holds links, or is a folder that a fine-tuning run did not start.

    Raises:
        InputError: naming ``out_dir``.
    """
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


def _settings(
    spec: ModelSpec,
    config: FinetuneConfig,
    data_dirs: list[Path],
    calibrate_on: list[Path] | None,
    subjects: dict[str, SubjectFiles],
    held: dict[str, SubjectFiles],
) -> dict:
    """What a resumed run must share with the run it goes on: the base weights, the settings,
    the data folders and their truth (fingerprints), where the thresholds are chosen."""
    return {
        "base_checksums": spec.checksums,
        "settings": config.to_json(),
        "folders": [str(Path(folder).resolve()) for folder in data_dirs],
        "fingerprint": ground_truth_fingerprint(subjects),
        "calibrate_on": [str(Path(folder).resolve()) for folder in calibrate_on or []],
        "calibrate_on_fingerprint": ground_truth_fingerprint(held) if held else None,
    }


def _saved_or_new_split(
    path: Path,
    subjects: dict[str, SubjectFiles],
    held: dict[str, SubjectFiles],
    cmbs: dict[str, int],
    config: FinetuneConfig,
) -> dict[str, list[str]]:
    """The saved split when resuming, else a new one: every subject trains where ``held`` (the
    ``--calibrate-on`` subjects) calibrates, else :func:`split_for_finetuning`.

    Raises:
        InputError: a damaged saved split, or one naming subjects the data lack.
    """
    if not path.exists():
        if held:
            return {"train": sorted(subjects), "calibration": sorted(held)}
        return split_for_finetuning({key: cmbs[key] for key in subjects}, config)
    try:
        split = json.loads(path.read_text(encoding="utf-8"))
        train, calibration = list(split["train"]), list(split["calibration"])
    except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError) as error:
        raise InputError(path, f"is not a split cmbdet finetune wrote ({error!r})") from None
    known = set(subjects) if not held else set(subjects) | set(held)
    if (
        not set(train) <= set(subjects)
        or not set(calibration) <= known
        or set(train) & set(calibration)
    ):
        raise InputError(path, "names subjects the data lack; choose another --out")
    return {"train": train, "calibration": calibration}


def _same_images(subjects: dict[str, SubjectFiles], held: dict[str, SubjectFiles]) -> Path | None:
    """An image (SWI, phase or magnitude) that a training and a calibration subject share."""

    def images(files: SubjectFiles) -> list[Path]:
        return [p.resolve() for p in (files.swi, files.phase, files.magnitude) if p is not None]

    seen = {p for files in subjects.values() for p in images(files)}
    return next((p for files in held.values() for p in images(files) if p in seen), None)


def _stages(
    spec: ModelSpec, recipe: TrainModelConfig, stage1_weights: dict, stage2_weights: dict
) -> dict:
    """model.json's stage sections: the base model's (networks, patches, views) with the new
    weights, the fine-tuning's optimisation settings and the augmentation it trained with."""
    trained = {
        "stage1": {
            "weights": stage1_weights,
            "training": recipe.stage1.to_json(),
            "positives_per": recipe.stage1_positives_per,
            "appearance": recipe.appearance.to_json(),
        },
        "stage2": {
            "weights": stage2_weights,
            "training": recipe.stage2.to_json(),
            "appearance": recipe.appearance.to_json(),
            "hard_negative_weight": recipe.hard_negative_weight,
        },
    }
    return {
        stage: {**{k: v for k, v in spec.info[stage].items() if k != "onnx"}, **new}
        for stage, new in trained.items()
    }


def _provenance(
    spec: ModelSpec,
    base: Path,
    settings: dict,
    split: dict[str, list[str]],
    training: dict[str, SubjectFiles],
    calibration: dict[str, SubjectFiles],
) -> dict:
    """model.json's ``finetuning`` record: the base model (and how it was made, where it was
    fine-tuned or calibrated itself), the folders, settings, steps and split, and which
    subjects trained and calibrated (their numbers and truth fingerprints)."""
    made = {k: spec.info[k] for k in ("calibration", "finetuning") if k in spec.info}
    return {
        "base_model": {
            "name": spec.info.get("name", base.name),
            "folder": str(base.resolve()),
            "checksums": spec.checksums,
            **made,
        },
        "folders": settings["folders"],
        "calibrate_on": settings["calibrate_on"],
        "splits": split,
        "settings": settings["settings"] | {"magnitude_share": 0.0},
        "steps": {
            "stage1": settings["settings"]["stage1"]["steps"],
            "stage2": settings["settings"]["stage2"]["steps"],
        },
        "subjects": len(training),
        "fingerprint": ground_truth_fingerprint(training),
        "calibration_subjects": len(calibration),
        "calibration_fingerprint": ground_truth_fingerprint(calibration),
    }
