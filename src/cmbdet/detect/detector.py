"""``Detector``: load a model folder once, detect microbleeds in one subject at a time.

    from cmbdet import Detector
    result = Detector.load().detect("swi.nii.gz", "phase.nii.gz")  # the shipped model
    for cmb in result.detections: print(cmb.x_mm, cmb.y_mm, cmb.z_mm, cmb.score)

Coordinates in results refer to the input file: voxel indices in its own array order and
world millimetres through its affine, whatever its storage orientation.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from cmbdet.detect.checks import check_memory, check_swi_geometry
from cmbdet.detect.model_spec import read_model_spec
from cmbdet.errors import InputError
from cmbdet.geometry import voxel_to_world
from cmbdet.io.model_folder import load_weights
from cmbdet.io.nifti import Volume, check_same_grid, load_mask, load_volume
from cmbdet.preprocess.config import PreprocessConfig
from cmbdet.preprocess.pipeline import preprocess, slice_images
from cmbdet.records import Candidate, DetectionResult
from cmbdet.runtime import prepare_for_inference, resolve_device, resolve_precision
from cmbdet.stage1.inference import detect_candidates
from cmbdet.stage1.model import CandidateNet
from cmbdet.stage2.inference import score_patches
from cmbdet.stage2.model import PatchClassifier
from cmbdet.stage2.patches import PatchConfig, extract_patches
from cmbdet.version import __version__

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "default"


def default_model_dir() -> Path:
    """The shipped model's folder (an InputError if this installation lacks it)."""
    if not (DEFAULT_MODEL / "model.json").is_file():
        raise InputError(
            DEFAULT_MODEL,
            "the shipped model is missing from this installation (pass --model MODEL_DIR)",
        )
    return DEFAULT_MODEL


class Detector:
    """Both stages and their settings, loaded from a model folder."""

    def __init__(
        self,
        folder: Path,
        stage1: CandidateNet,
        stage2: PatchClassifier | None,
        preprocess_config: PreprocessConfig,
        patch_config: PatchConfig,
        threshold: float,
        info: dict,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ):
        self.device, self.dtype = torch.device(device), dtype
        self.folder = Path(folder)
        # inference copies: batch norm folded into the convolutions, in the chosen precision
        self.stage1 = prepare_for_inference(stage1, self.device, dtype)
        self.stage2 = None
        if stage2 is not None:
            self.stage2 = prepare_for_inference(stage2, self.device, dtype)
        self.preprocess_config, self.patch_config = preprocess_config, patch_config
        self.threshold, self.info = threshold, info
        # test-time symmetries averaged by stage 2; the threshold was chosen with this count
        self.stage2_views = int(info.get("stage2", {}).get("test_views", 1))

    @property
    def precision(self) -> str:
        """The networks' number format by name (``float32``, ``bfloat16``), as run.json
        records it."""
        return str(self.dtype).removeprefix("torch.")

    @classmethod
    def load(
        cls, folder: str | Path | None = None, device: str = "auto", precision: str = "auto"
    ) -> Detector:
        """Load a model folder (``model.json`` + checksummed safetensors; nothing unpickled);
        by default the model shipped inside the package.

        ``device``: ``auto`` runs the networks on a CUDA GPU when PyTorch sees one, else on
        the CPU; ``cpu``, ``cuda`` or ``cuda:N`` choose. Preprocessing runs on the CPU.
        ``precision``: ``auto`` (bfloat16 on CPUs that have it in hardware, else float32),
        ``float32`` or ``bfloat16``; see :func:`cmbdet.io.model_folder.resolve_precision`.
        """
        device = resolve_device(device)
        dtype = resolve_precision(precision, device)
        folder = Path(folder) if folder is not None else default_model_dir()
        spec = read_model_spec(folder)
        stage1 = load_weights(folder, spec.stage1_weights.to_json(), CandidateNet(spec.stage1))
        stage2 = None
        if spec.stage2 is not None and spec.stage2_weights is not None:
            stage2 = load_weights(
                folder, spec.stage2_weights.to_json(), PatchClassifier(spec.stage2)
            )
        return cls(
            folder,
            stage1,
            stage2,
            spec.preprocess,
            spec.patch,
            spec.threshold,
            spec.info,
            device,
            dtype,
        )

    def detect(
        self,
        swi_path: str | Path,
        phase_path: str | Path,
        magnitude_path: str | Path | None = None,
        mask_path: str | Path | None = None,
        *,
        threshold: float | None = None,
        stage1_threshold: float | None = None,
        phase_units: str = "auto",
        handedness: str = "auto",
        phase_kind: str = "auto",
    ) -> DetectionResult:
        """Detect CMBs in one subject's files (bad input raises ``InputError``).

        ``threshold`` and ``stage1_threshold`` replace the model's operating point (stage-2
        probability, stage-1 score); None keeps it.
        """
        started = time.perf_counter()
        swi = load_volume(swi_path, "SWI")
        phase = load_volume(phase_path, "phase")
        check_same_grid(swi, phase)
        magnitude = load_volume(magnitude_path, "magnitude") if magnitude_path else None
        mask = load_mask(mask_path, swi) if mask_path else None
        loaded = time.perf_counter()
        result = self.detect_volumes(
            swi,
            phase,
            magnitude,
            mask,
            threshold=threshold,
            stage1_threshold=stage1_threshold,
            phase_units=phase_units,
            handedness=handedness,
            phase_kind=phase_kind,
        )
        result.record["timings_s"]["load"] = loaded - started
        result.record["inputs"] = {
            "swi": str(swi_path),
            "phase": str(phase_path),
            "magnitude": str(magnitude_path) if magnitude_path else None,
            "mask": str(mask_path) if mask_path else None,
        }
        return result

    def detect_volumes(
        self,
        swi: Volume,
        phase: Volume,
        magnitude: Volume | None = None,
        mask: np.ndarray | None = None,
        *,
        threshold: float | None = None,
        stage1_threshold: float | None = None,
        phase_units: str = "auto",
        handedness: str = "auto",
        phase_kind: str = "auto",
    ) -> DetectionResult:
        """Detect CMBs in loaded volumes (canonical mask, if given); thresholds as
        :meth:`detect`."""
        check_swi_geometry(swi)
        check_memory(swi, self.preprocess_config.target_in_plane_mm)
        timings = {}
        clock = time.perf_counter()
        pre = preprocess(
            swi,
            phase,
            magnitude=magnitude,
            mask=mask,
            config=self.preprocess_config,
            phase_units=phase_units,
            handedness=handedness,
            phase_kind=phase_kind,
        )
        images = slice_images(pre)
        timings["preprocess"], clock = time.perf_counter() - clock, time.perf_counter()
        linked = detect_candidates(self.stage1, images, pre.spacing_mm[0], pre.brain)
        if stage1_threshold is None:
            stage1_threshold = float(self.info.get("stage1_threshold", 0.0))
        linked = [c for c in linked if c.score >= stage1_threshold]  # the stage-1 operating point
        timings["stage1"], clock = time.perf_counter() - clock, time.perf_counter()
        model_centres = np.array([c.centre for c in linked]).reshape(-1, 3)
        if self.stage2 is not None and len(linked):
            patches = extract_patches(pre.swi, pre.phase_norm, model_centres, self.patch_config)
            scores = score_patches(self.stage2, patches, views=self.stage2_views)
        else:
            scores = np.array([c.score for c in linked], dtype=np.float32)
        timings["stage2"] = time.perf_counter() - clock
        canonical = pre.grid.model_to_native(model_centres)
        original = swi.reorientation.canonical_to_original_voxels(canonical)
        world = voxel_to_world(original, swi.reorientation.original_affine)
        candidates = [
            Candidate(
                float(w[0]),
                float(w[1]),
                float(w[2]),
                float(o[0]),
                float(o[1]),
                float(o[2]),
                float(score),
                float(c.score),
                float(c.size_px.max() * pre.spacing_mm[0]),
                int(c.slices),
            )
            for c, o, w, score in zip(
                linked, original.reshape(-1, 3), world.reshape(-1, 3), scores, strict=True
            )
        ]
        candidates.sort(key=lambda c: -c.score)
        chosen = self.threshold if threshold is None else float(threshold)
        record = {
            "cmbdet_version": __version__,
            "model": {
                "folder": str(self.folder),
                "name": self.info.get("name"),
                "sha256": {
                    k: self.info[k]["weights"]["sha256"]
                    for k in ("stage1", "stage2")
                    if k in self.info
                },
            },
            "threshold": chosen,
            "stage1_threshold": stage1_threshold,
            "stage2_views": self.stage2_views,
            "device": str(self.device),
            "precision": self.precision,
            "preprocessing": pre.record(),
            "timings_s": timings,
            "candidates": len(candidates),
        }
        return DetectionResult(candidates, chosen, record, reference=swi, phase=phase)
