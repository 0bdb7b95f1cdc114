"""What a model folder's ``model.json`` says, checked field by field before any network is
built: a damaged or hand-edited file is one clear error (exit 2), never a crash, an absurd
allocation, or a silent wrong result.

The schema (format 1; every other key is an error):

- ``format`` (1), ``name``, ``description``, ``cmbdet_version``: the model's identity;
- ``preprocessing``: :class:`PreprocessConfig`;
- ``stage1``: ``config`` (:class:`Stage1Config`), ``weights`` (``file``, a plain file name in
  the folder, and its ``sha256``), and the records ``training``, ``positives_per`` and
  ``appearance`` (the appearance augmentation's ranges);
- ``stage2`` (optional): the same, plus ``patch`` (:class:`PatchConfig`) and ``test_views``
  (1-8 views averaged at test time), and the record ``hard_negative_weight``;
- ``threshold`` (stage-2 probability, default 0.5) and ``stage1_threshold`` (default 0), each
  in [0, 1];
- records of how the model was made: ``operating_rule`` (the rule that chose the thresholds);
  ``training_data`` (``folders``, ``fingerprint``, ``subjects``, ``splits``) and
  ``calibration`` (``from_model``, ``folders``, ``fingerprint``, ``subjects``, ``rule``,
  ``precision``) and ``finetuning`` (the base model's ``name``, ``folder`` and ``checksums``,
  the data ``folders`` and ``calibrate_on``, ``splits``, ``settings``, ``steps``, and the
  numbers and fingerprints of its training and calibration subjects), each with an optional
  ``made_with``: the commands that made the data and the
  model, a list of lines written by hand (the shipped model has them); and
  ``validation_metrics`` / ``validation_metrics_stage1`` (numbers by name).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cmbdet.detect.qc import TrainingRanges
from cmbdet.errors import InputError
from cmbdet.io.model_folder import read_model_json
from cmbdet.preprocess.config import PreprocessConfig
from cmbdet.stage1.config import Stage1Config
from cmbdet.stage2.config import Stage2Config
from cmbdet.stage2.patches import PatchConfig

IDENTITY_KEYS = ("format", "name", "description", "cmbdet_version")
RECORD_KEYS = {  # key: the keys it may hold (None: any)
    "operating_rule": None,
    "training_data": ("folders", "fingerprint", "subjects", "splits", "made_with"),
    "calibration": (
        "from_model",
        "folders",
        "fingerprint",
        "subjects",
        "rule",
        "precision",
        "made_with",
    ),
    "finetuning": (
        "base_model",
        "folders",
        "calibrate_on",
        "splits",
        "settings",
        "steps",
        "subjects",
        "fingerprint",
        "calibration_subjects",
        "calibration_fingerprint",
        "made_with",
    ),
    "validation_metrics": None,
    "validation_metrics_stage1": None,
}
TOP_KEYS = (
    *IDENTITY_KEYS,
    "preprocessing",
    "stage1",
    "stage2",
    "threshold",
    "stage1_threshold",
    "training_ranges",
)
STAGE_KEYS = {
    "stage1": ("config", "weights", "onnx", "training", "positives_per", "appearance"),
    "stage2": (
        "config",
        "weights",
        "onnx",
        "training",
        "patch",
        "test_views",
        "appearance",
        "hard_negative_weight",
    ),
}
MAX_TEST_VIEWS = 8
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class WeightsEntry:
    """A weights file of the model folder and the SHA-256 it must have."""

    file: str
    sha256: str

    def to_json(self) -> dict:
        return {"file": self.file, "sha256": self.sha256}


@dataclass(frozen=True)
class ModelSpec:
    """A checked ``model.json``.

    Attributes:
        folder: the model folder.
        info: model.json as read (recorded in outputs, copied by ``calibrate``).
        preprocess, stage1, stage2, patch: the configs (``stage2`` None for a stage-1-only
            model).
        stage1_weights, stage2_weights: the weights files.
        stage1_onnx, stage2_onnx: the networks exported to ONNX (BN folded, float32), for
            the ONNX Runtime backend; None in a folder made before they were exported.
        test_views: test-time views stage 2 averages (its threshold was chosen with them).
        threshold: stage-2 operating threshold, a probability.
        stage1_threshold: stage-1 score a candidate needs.
        training_ranges: what the model was trained and validated on (QC flags).
    """

    folder: Path
    info: dict
    preprocess: PreprocessConfig
    stage1: Stage1Config
    stage1_weights: WeightsEntry
    stage2: Stage2Config | None
    stage2_weights: WeightsEntry | None
    patch: PatchConfig
    test_views: int
    threshold: float
    stage1_threshold: float
    training_ranges: TrainingRanges = TrainingRanges()
    stage1_onnx: WeightsEntry | None = None
    stage2_onnx: WeightsEntry | None = None

    @property
    def has_onnx(self) -> bool:
        """Both networks (stage 1 alone for a stage-1-only model) exported to ONNX."""
        return self.stage1_onnx is not None and (
            self.stage2 is None or self.stage2_onnx is not None
        )

    @property
    def checksums(self) -> dict[str, str]:
        """SHA-256 of each stage's weights, by stage (what run.json records of the model)."""
        entries = {"stage1": self.stage1_weights, "stage2": self.stage2_weights}
        return {stage: entry.sha256 for stage, entry in entries.items() if entry is not None}


def read_model_spec(folder: str | Path) -> ModelSpec:
    """Read and check ``folder/model.json``.

    Raises:
        InputError: naming model.json and the first field that is missing, of the wrong
            type, out of range or unknown.
    """
    folder = Path(folder)
    info = read_model_json(folder)
    try:
        return _parse(folder, info)
    except ValueError as error:
        raise InputError(folder / "model.json", f"invalid model description: {error}") from None


def _parse(folder: Path, info: Any) -> ModelSpec:
    _known_keys("model.json", info, (*TOP_KEYS, *RECORD_KEYS))
    _check_records(info)
    for key in ("name", "description", "cmbdet_version"):
        if key in info and not isinstance(info[key], str):
            raise ValueError(f"{key} must be text")
    stage1 = _section(info, "stage1", required=True)
    stage2 = _section(info, "stage2", required=False)
    stage2_config = None if stage2 is None else _config(Stage2Config, stage2, "stage2.config")
    if stage2_config is not None and stage2_config.in_channels != 2:
        raise ValueError("stage2.config.in_channels must be 2 (SWI and phase patches)")
    preprocess = _config(PreprocessConfig, info, "preprocessing")
    stage1_config = _config(Stage1Config, stage1, "stage1.config")
    if stage1_config.in_channels != preprocess.channels:
        raise ValueError(
            f"stage1.config.in_channels is {stage1_config.in_channels} but the preprocessing "
            f"makes {preprocess.channels} channels per slice"
        )
    return ModelSpec(
        folder=folder,
        info=info,
        preprocess=preprocess,
        stage1=stage1_config,
        stage1_weights=_weights(stage1, "stage1"),
        stage2=stage2_config,
        stage2_weights=None if stage2 is None else _weights(stage2, "stage2"),
        patch=_patch(stage2),
        test_views=_test_views(stage2),
        threshold=_probability(info, "threshold", 0.5),
        stage1_threshold=_probability(info, "stage1_threshold", 0.0),
        training_ranges=_config(TrainingRanges, {"training_ranges": {}, **info}, "training_ranges"),
        stage1_onnx=_onnx(stage1, "stage1"),
        stage2_onnx=None if stage2 is None else _onnx(stage2, "stage2"),
    )


def _check_records(info: dict) -> None:
    """The records of how the model was made: objects of their known keys, ``made_with`` a
    list of text lines (they are records: detection reads none of them)."""
    for key, known in RECORD_KEYS.items():
        if key not in info:
            continue
        if known is None and not isinstance(info[key], dict):
            raise ValueError(f"{key} must be an object")
        if known is not None:
            _known_keys(key, info[key], known)
        made_with = info[key].get("made_with", [])
        if not isinstance(made_with, list) or not all(isinstance(x, str) for x in made_with):
            raise ValueError(f"{key}.made_with must be a list of text lines")


def _known_keys(where: str, values: Any, known: tuple[str, ...]) -> None:
    if not isinstance(values, dict):
        raise ValueError(f"{where} must be a JSON object, not {type(values).__name__}")
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown keys in {where}: {unknown} (known: {', '.join(known)})")


def _section(info: dict, stage: str, *, required: bool) -> dict | None:
    if stage not in info:
        if required:
            raise ValueError(f"{stage} is missing")
        return None
    _known_keys(stage, info[stage], STAGE_KEYS[stage])
    for key in ("config", "weights"):
        if key not in info[stage]:
            raise ValueError(f"{stage}.{key} is missing")
    return info[stage]


def _config(kind: type, section: dict, where: str):
    key = where.rsplit(".", 1)[-1]
    if key not in section:
        raise ValueError(f"{where} is missing")
    try:
        return kind.from_json(section[key])
    except (ValueError, TypeError) as error:
        raise ValueError(f"{where}: {error}") from None


def _weights(section: dict, stage: str) -> WeightsEntry:
    return _file_entry(section["weights"], f"{stage}.weights", ".safetensors")


def _onnx(section: dict, stage: str) -> WeightsEntry | None:
    return None if "onnx" not in section else _file_entry(section["onnx"], f"{stage}.onnx", ".onnx")


def _file_entry(entry: Any, where: str, suffix: str) -> WeightsEntry:
    """A ``{"file", "sha256"}`` entry naming a ``suffix`` file of the model folder."""
    _known_keys(where, entry, ("file", "sha256"))
    file, sha256 = entry.get("file"), entry.get("sha256")
    if not isinstance(file, str) or not file.endswith(suffix):
        raise ValueError(f"{where}.file must name a {suffix} file, got {file!r}")
    if Path(file).name != file or file.startswith("."):
        raise ValueError(f"{where}.file must be a file of the model folder, got {file!r}")
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise ValueError(f"{where}.sha256 must be 64 hex digits, got {sha256!r}")
    return WeightsEntry(file, sha256)


def _patch(stage2: dict | None) -> PatchConfig:
    if stage2 is None or "patch" not in stage2:
        return PatchConfig()
    return _config(PatchConfig, stage2, "stage2.patch")


def _test_views(stage2: dict | None) -> int:
    views = 1 if stage2 is None else stage2.get("test_views", 1)
    if isinstance(views, bool) or not isinstance(views, int) or not 1 <= views <= MAX_TEST_VIEWS:
        raise ValueError(f"stage2.test_views must be an integer 1-{MAX_TEST_VIEWS}, got {views!r}")
    return views


def _probability(info: dict, key: str, default: float) -> float:
    value = info.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"{key} must be a probability in [0, 1], got {value!r}")
    return float(value)
