"""``Detector``: load a model folder once, detect microbleeds in one subject at a time.

    from cmbdet import Detector
    result = Detector.load().detect("swi.nii.gz", "phase.nii.gz")  # the shipped model
    for cmb in result.detections: print(cmb.x_mm, cmb.y_mm, cmb.z_mm, cmb.score)

Coordinates in results refer to the input file: voxel indices in its own array order and
world millimetres through its affine, whatever its storage orientation.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cmbdet.detect.candidates import input_candidates, model_centres
from cmbdet.detect.checks import check_image_roles, check_memory, check_swi_geometry
from cmbdet.detect.input_mode import (
    MAGNITUDE_ONLY,
    PHASE_FREE,
    SWI_PHASE,
    UNSTATED,
    AcquisitionOptions,
    SubjectVolumes,
    input_mode,
    load_subject,
)
from cmbdet.detect.model_spec import ModelSpec, read_model_spec
from cmbdet.detect.networks import Networks, NetworksLoading, load_networks
from cmbdet.detect.qc import qc_flags
from cmbdet.detect.shipped import model_folder, phase_free_model_dir
from cmbdet.errors import InputError
from cmbdet.io.dataset import SubjectFiles
from cmbdet.io.nifti import Volume
from cmbdet.preprocess.config import PreprocessConfig
from cmbdet.preprocess.pipeline import Preprocessed, SliceStack, preprocess
from cmbdet.records import DetectionResult
from cmbdet.stage1.link import LinkedCandidate
from cmbdet.stage2.patches import extract_patches
from cmbdet.version import __version__


class Detector:
    """Both stages and their settings, loaded from a model folder. A subject without phase
    goes to a phase-free model (this one when it reads no phase, else the shipped phase-free
    model of its input mode, loaded on first use with the same device, precision and
    backend)."""

    def __init__(self, spec: ModelSpec, networks: Networks | NetworksLoading):
        self.spec = spec
        self._networks = networks  # loaded, or loading on a thread (see Detector.load)
        self._phase_free: dict[str, Detector] = {}  # by input mode, loaded on first use

    @property
    def networks(self) -> Networks:
        """Both stages' inference copies (waits for them when they load in the background)."""
        if isinstance(self._networks, NetworksLoading):
            self._networks = self._networks.get()
        return self._networks

    @property
    def stage1(self):
        return self.networks.stage1

    @property
    def stage2(self):
        return self.networks.stage2

    @property
    def device(self) -> str:
        """Where the networks run (``cpu``, ``cuda``, ``cuda:N``)."""
        return self.networks.device

    @property
    def backend(self) -> str:
        """What runs the networks: ``torch`` (PyTorch) or ``onnx`` (ONNX Runtime)."""
        return self.networks.backend

    @property
    def reads_phase(self) -> bool:
        """False for a phase-free model (SWI or T2*-weighted magnitude alone)."""
        return self.spec.preprocess.reads_phase

    def phase_free(self, mode: str = MAGNITUDE_ONLY) -> Detector:
        """The model that serves subjects of input ``mode`` without phase (``swi-only``,
        ``magnitude-only``): this one when it reads no phase, else the shipped phase-free model
        for the mode (loaded once).

        Raises:
            InputError: this installation has no phase-free model.
        """
        if not self.reads_phase:
            return self
        if mode not in self._phase_free:
            folder = phase_free_model_dir(mode)
            if folder is None:
                raise InputError(None, "no phase-free model is installed: give the phase too")
            detector = Detector.load(folder, self.device, self.precision, backend=self.backend)
            if detector.reads_phase:
                raise InputError(folder, "is installed as the phase-free model but reads phase")
            self._phase_free[mode] = detector
        return self._phase_free[mode]

    @property
    def folder(self) -> Path:
        return self.spec.folder

    @property
    def info(self) -> dict:
        """model.json as read."""
        return self.spec.info

    @property
    def threshold(self) -> float:
        """The model's stage-2 operating threshold."""
        return self.spec.threshold

    @property
    def stage2_views(self) -> int:
        """Test-time views stage 2 averages (its threshold was chosen with this count)."""
        return self.spec.test_views

    @property
    def preprocess_config(self) -> PreprocessConfig:
        return self.spec.preprocess

    @property
    def precision(self) -> str:
        """The networks' number format by name (``float32``, ``bfloat16``), as run.json
        records it."""
        return self.networks.precision

    @classmethod
    def load(
        cls,
        folder: str | Path | None = None,
        device: str = "auto",
        precision: str = "auto",
        *,
        backend: str = "auto",
        background: bool = False,
    ) -> Detector:
        """Load a model folder (``model.json`` + checksummed safetensors, or their checksummed
        ONNX exports for the ONNX backend; nothing unpickled); by default the model shipped
        inside the package.

        ``device``: ``auto`` runs the networks on a CUDA GPU when PyTorch sees one, else on
        the CPU; ``cpu``, ``cuda`` or ``cuda:N`` choose. Preprocessing runs on the CPU.
        ``precision``: ``auto`` (bfloat16 on CPUs that have it in hardware, else float32),
        ``float32`` or ``bfloat16``; see :func:`cmbdet.runtime.resolve_precision`.
        ``backend``: ``auto`` (PyTorch where installed, else ONNX Runtime), ``torch`` or
        ``onnx`` (the model folder's ONNX exports, CPU, float32); see
        :mod:`cmbdet.detect.networks`.
        ``background``: return once model.json and the weights' checksums are checked, and
        import PyTorch and build the networks on a thread (a one-subject run's start-up then
        overlaps reading and preprocessing; errors of that part come at the first detection).

        Raises:
            InputError: a missing or invalid model.json, weights missing or not matching their
                checksum; without ``background`` also an unknown device or precision.
        """
        spec = read_model_spec(model_folder(folder))
        if background:
            return cls(spec, NetworksLoading(spec, device, precision, backend))
        return cls(spec, load_networks(spec, device, precision, backend))

    def detect(
        self,
        swi_path: str | Path | None,
        phase_path: str | Path | None,
        magnitude_path: str | Path | None = None,
        mask_path: str | Path | None = None,
        *,
        threshold: float | None = None,
        stage1_threshold: float | None = None,
        phase_units: str = "auto",
        handedness: str = "auto",
        phase_kind: str = "auto",
        acquisition: AcquisitionOptions = UNSTATED,
    ) -> DetectionResult:
        """Detect CMBs in one subject's files (bad input raises ``InputError``).

        Without ``swi_path`` the SWI is computed from the magnitude and phase (which may be
        4D stacks of echoes); see :mod:`cmbdet.detect.input_mode`. ``threshold`` and
        ``stage1_threshold`` replace the model's operating point (stage-2 probability,
        stage-1 score); None keeps it. ``phase_units``, ``handedness`` and ``phase_kind`` are
        "auto" or the stored phase's (see :func:`preprocess`); ``acquisition`` gives echo
        times and field strength where no sidecar does.
        """
        files = SubjectFiles(
            subject_id="subject",
            swi=_path(swi_path),
            phase=_path(phase_path),
            magnitude=_path(magnitude_path),
            brainmask=_path(mask_path),
        )
        return self.detect_subject(
            files,
            threshold=threshold,
            stage1_threshold=stage1_threshold,
            phase_units=phase_units,
            handedness=handedness,
            phase_kind=phase_kind,
            acquisition=acquisition,
        )

    def detect_subject(
        self,
        files: SubjectFiles,
        *,
        threshold: float | None = None,
        stage1_threshold: float | None = None,
        phase_units: str = "auto",
        handedness: str = "auto",
        phase_kind: str = "auto",
        acquisition: AcquisitionOptions = UNSTATED,
    ) -> DetectionResult:
        """Detect CMBs in a subject's files in whichever input mode they call for (BIDS
        echo files included); options as :meth:`detect`."""
        mode = input_mode(files)
        if self.reads_phase and mode in PHASE_FREE:
            # the phase-free model at its own operating point: thresholds given for this
            # model do not carry over to another model's scores
            return self._phase_free_detection(files, mode, acquisition=acquisition)
        started = time.perf_counter()
        field_te = self.spec.training_ranges.field_te_t_ms
        field_te = field_te if any(field_te) else None
        loaded = load_subject(files, acquisition, field_te, reads_phase=self.reads_phase)
        roles = {"SWI": files.swi, "phase": files.phase, "magnitude": files.magnitude}
        images = {"SWI": loaded.swi, "phase": loaded.phase, "magnitude": loaded.magnitude}
        check_image_roles(roles, {k: v for k, v in images.items() if v is not None})
        if phase_units == "auto" and loaded.phase_units is not None:
            phase_units = loaded.phase_units  # the sidecar's Units
        options = _Options(threshold, stage1_threshold, phase_units, handedness, phase_kind)
        return self._detect(loaded, options, timings={"load": time.perf_counter() - started})

    def _phase_free_detection(self, files: SubjectFiles, mode: str, **options) -> DetectionResult:
        """A subject without phase, by the shipped phase-free model of its input mode (or
        refused with its reason)."""
        if phase_free_model_dir(mode) is None:
            raise InputError(
                files.swi or files.magnitude,
                "no phase given: give the phase too (no phase-free model is installed)",
            )
        return self.phase_free(mode).detect_subject(files, **options)

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
        """Detect CMBs in loaded volumes (an SWI and a phase; canonical mask, if given);
        options as :meth:`detect`."""
        loaded = SubjectVolumes(SWI_PHASE, swi, phase, magnitude, mask, None, None)
        return self._detect(
            loaded,
            _Options(threshold, stage1_threshold, phase_units, handedness, phase_kind),
            timings={},
        )

    def _detect(self, inputs: SubjectVolumes, options: _Options, timings: dict) -> DetectionResult:
        """Check, preprocess, stage 1, stage 2; ``timings`` (s) gains each step's."""
        reference = inputs.reference
        check_swi_geometry(reference)
        check_memory(reference, self.spec.preprocess)
        clock = time.perf_counter()
        pre = preprocess(
            inputs.swi,
            inputs.phase,
            magnitude=inputs.magnitude,
            mask=inputs.mask,
            config=self.spec.preprocess,
            phase_units=options.phase_units,
            handedness=options.handedness,
            phase_kind=options.phase_kind,
            keep_native_phase=True,  # the report shows the phase the networks read
        )
        images = SliceStack(pre)  # the slice images, made batch by batch in stage 1
        timings["preprocess"], clock = time.perf_counter() - clock, time.perf_counter()
        networks = self.networks  # still loading in the background only on a first subject
        timings["networks_wait"], clock = time.perf_counter() - clock, time.perf_counter()
        stage1_threshold = _chosen(options.stage1_threshold, self.spec.stage1_threshold)
        linked = networks.propose(images, pre.spacing_mm[0], pre.brain)
        linked = [c for c in linked if c.score >= stage1_threshold]  # the stage-1 operating point
        timings["stage1"], clock = time.perf_counter() - clock, time.perf_counter()
        scores = self._stage2_scores(pre, linked)
        timings["stage2"] = time.perf_counter() - clock
        if pre.swi_native is not None:  # the computed SWI: what the outputs and report show
            reference = dataclasses.replace(reference, data=pre.swi_native)
        candidates = input_candidates(linked, scores, pre, reference)
        threshold = _chosen(options.threshold, self.spec.threshold)
        record = self._record(pre, threshold, stage1_threshold, len(candidates), timings, inputs)
        phase = None
        if inputs.phase is not None:
            phase = dataclasses.replace(inputs.phase, data=pre.phase_native)
        return DetectionResult(candidates, threshold, record, reference=reference, phase=phase)

    def _stage2_scores(self, pre: Preprocessed, linked: list[LinkedCandidate]) -> np.ndarray:
        """(N,) stage-2 probabilities of the candidates (their stage-1 scores for a model
        without stage 2)."""
        if self.stage2 is None or not linked:
            return np.array([c.score for c in linked], dtype=np.float32)
        patches = extract_patches(pre.swi, pre.phase_norm, model_centres(linked), self.spec.patch)
        return self.networks.score(patches, views=self.spec.test_views)

    def _record(
        self,
        pre: Preprocessed,
        threshold: float,
        stage1_threshold: float,
        candidates: int,
        timings: dict,
        inputs: SubjectVolumes,
    ) -> dict:
        """What run.json records of this detection (the input files, when read from files)."""
        preprocessing = pre.record()
        record = {
            "cmbdet_version": __version__,
            "model": {
                "folder": str(self.folder),
                "name": self.info.get("name"),
                "sha256": self.spec.checksums,
            },
            "threshold": threshold,
            "stage1_threshold": stage1_threshold,
            "stage2_views": self.stage2_views,
            "device": self.device,
            "backend": self.backend,
            "precision": self.precision,
            "input_mode": inputs.mode,
            "preprocessing": preprocessing,
            "timings_s": timings,
            "candidates": candidates,
            "qc_flags": qc_flags(
                preprocessing,
                candidates,
                self.spec.training_ranges,
                inputs.field_strength_t,
                echo=inputs.record.get("echo_used"),
            )
            + inputs.record.get("qc_flags", []),
        }
        if inputs.record:  # read from files
            skipped = ("files", "qc_flags")
            record["acquisition"] = {k: v for k, v in inputs.record.items() if k not in skipped}
            record["inputs"] = inputs.record["files"]
        return record


def _path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value)


@dataclass(frozen=True)
class _Options:
    """A detection's options: thresholds (None: the model's) and the phase's conventions."""

    threshold: float | None
    stage1_threshold: float | None
    phase_units: str
    handedness: str
    phase_kind: str


def _chosen(given: float | None, model: float) -> float:
    return model if given is None else float(given)
