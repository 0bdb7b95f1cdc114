"""The two networks of a model, ready for inference, on one of two backends, and their loading
in the background.

- ``torch``: the safetensors weights in PyTorch (CPU or CUDA, float32 or bfloat16).
- ``onnx``: the model folder's ONNX exports (``stageN.onnx``, made by ``train`` and
  ``calibrate``) in ONNX Runtime, float32: detection without PyTorch (the light install).
- ``auto``: PyTorch when it is installed, else ONNX Runtime.

Both run the same NumPy code around the networks (stage 1's cropping and decoding, stage 2's
test-time views), so they give the same candidates and scores to float rounding.
:class:`NetworksLoading` loads on a thread, so that importing PyTorch (about a second) overlaps
reading and preprocessing the first subject; the checksums are verified before the thread
starts, so damaged weights still fail at once.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import os
import sys
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cmbdet.config import BACKENDS
from cmbdet.detect.model_spec import ModelSpec, WeightsEntry
from cmbdet.errors import InputError
from cmbdet.io.model_folder import verify_weights
from cmbdet.stage1.inference import detect_candidates_with, torch_pass
from cmbdet.stage2.views import score_with

if TYPE_CHECKING:
    from cmbdet.stage1.link import LinkedCandidate

STAGE2_BATCH = 128  # patches per forward call


@dataclass(frozen=True)
class Networks:
    """Both stages' inference copies and where they run.

    Attributes:
        backend: ``torch`` or ``onnx``.
        stage1: the candidate network (a PyTorch ``CandidateNet``, or an ONNX Runtime session).
        stage2: the patch classifier (the same kinds), or None for a model without stage 2.
        spec: the model they belong to.
        device: where they run (``cpu``, ``cuda``, ``cuda:N``).
        precision: their number format (``float32``, ``bfloat16``).
    """

    backend: str
    stage1: Any
    stage2: Any | None
    spec: ModelSpec
    device: str
    precision: str

    def propose(
        self, images: np.ndarray, pixel_mm: float, brain: np.ndarray
    ) -> list[LinkedCandidate]:
        """Stage 1: (Z', C, X', Y') slice images -> 3D candidates on the model grid."""
        run = torch_pass(self.stage1) if self.backend == "torch" else self._onnx_stage1
        return detect_candidates_with(run, self.spec.stage1, images, pixel_mm, brain)

    def score(self, patches: np.ndarray, views: int) -> np.ndarray:
        """Stage 2: (N,) CMB probabilities of (N, C, X, Y, Z) patches, the logits averaged
        over the first ``views`` symmetries of :data:`cmbdet.stage2.views.VIEWS`."""
        if self.backend == "torch":
            from cmbdet.stage2.inference import torch_logits

            return score_with(torch_logits(self.stage2), patches, views, STAGE2_BATCH)
        return score_with(self._onnx_stage2, patches, views, STAGE2_BATCH)

    def _onnx_stage1(self, stacks: np.ndarray) -> dict[str, np.ndarray]:
        maps = self.stage1.run(None, {"images": np.ascontiguousarray(stacks, np.float32)})
        return dict(zip(("heatmap", "offset", "size"), maps, strict=True))

    def _onnx_stage2(self, patches: np.ndarray) -> np.ndarray:
        inputs = {"patches": np.ascontiguousarray(patches, dtype=np.float32)}
        return self.stage2.run(None, inputs)[0]


def resolve_backend(requested: str = "auto") -> str:
    """``auto``: ``torch`` where PyTorch is installed, else ``onnx``.

    Raises:
        InputError: an unknown backend, or one whose runtime is not installed.
    """
    if requested not in BACKENDS:
        raise InputError(None, f"unknown backend {requested!r} ({', '.join(BACKENDS)})")
    if requested == "auto":
        return "torch" if importlib.util.find_spec("torch") is not None else "onnx"
    package = {"torch": "torch", "onnx": "onnxruntime"}[requested]
    if importlib.util.find_spec(package) is None:
        extra = " (pip install 'cmbdet[train]')" if requested == "torch" else ""
        raise InputError(None, f"backend {requested}: {package} is not installed{extra}")
    return requested


def load_networks(
    spec: ModelSpec, device: str = "auto", precision: str = "auto", backend: str = "auto"
) -> Networks:
    """Build, load and prepare both networks of ``spec`` (see
    :meth:`cmbdet.detect.detector.Detector.load` for ``device`` and ``precision``).

    Raises:
        InputError: weights that do not fit the architecture, a model folder without ONNX
            exports for the ONNX backend, or a device or precision this backend lacks.
    """
    backend = resolve_backend(backend)
    if backend == "onnx":
        return _load_onnx(spec, device, precision)
    from cmbdet.io.model_folder import load_weights
    from cmbdet.runtime import prepare_for_inference, resolve_device, resolve_precision
    from cmbdet.stage1.model import CandidateNet
    from cmbdet.stage2.model import PatchClassifier

    resolved = resolve_device(device)
    dtype = resolve_precision(precision, resolved)
    folder = spec.folder
    stage1 = load_weights(folder, spec.stage1_weights.to_json(), CandidateNet(spec.stage1))
    stage2 = None
    if spec.stage2 is not None and spec.stage2_weights is not None:
        stage2 = load_weights(folder, spec.stage2_weights.to_json(), PatchClassifier(spec.stage2))
        stage2 = prepare_for_inference(stage2, resolved, dtype)
    stage1 = prepare_for_inference(stage1, resolved, dtype)
    precision = str(dtype).removeprefix("torch.")
    return Networks("torch", stage1, stage2, spec, str(resolved), precision)


def _load_onnx(spec: ModelSpec, device: str, precision: str) -> Networks:
    """ONNX Runtime sessions of the model's exports, on the CPU, float32."""
    import onnxruntime

    if not spec.has_onnx:
        raise InputError(
            spec.folder / "model.json",
            "this model folder has no ONNX exports (stage1.onnx, stage2.onnx): run it with "
            "--backend torch, or re-make it with this version's calibrate",
        )
    if device not in ("auto", "cpu"):
        raise InputError(None, f"device {device}: the ONNX backend runs on the CPU")
    if precision not in ("auto", "float32"):
        raise InputError(None, f"precision {precision}: the ONNX backend runs float32")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = int(os.environ.get("CMBDET_THREADS", "0"))  # 0: all cores
    options.inter_op_num_threads = 1

    def session(entry: WeightsEntry | None):
        if entry is None:
            return None
        path = verify_weights(spec.folder, entry.to_json())
        try:
            return onnxruntime.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # a damaged or foreign file
            raise InputError(path, f"cannot load the ONNX network ({error})") from None

    return Networks(
        "onnx", session(spec.stage1_onnx), session(spec.stage2_onnx), spec, "cpu", "float32"
    )


def _verify(spec: ModelSpec, backend: str) -> None:
    """Check the files ``backend`` will read against their checksums, at once."""
    if backend == "onnx":
        entries = (spec.stage1_onnx, spec.stage2_onnx)
    else:
        entries = (spec.stage1_weights, spec.stage2_weights)
    for entry in entries:
        if entry is not None:
            verify_weights(spec.folder, entry.to_json())


class NetworksLoading:
    """:func:`load_networks` on a background thread; :meth:`get` waits for its result (or
    raises its error).

    While it loads, the process's thread switch interval is a tenth of its own and the
    garbage collector is off (both process-wide; restored when the loading ends): one such
    load at a time, as a one-subject ``detect`` has.
    """

    def __init__(
        self, spec: ModelSpec, device: str = "auto", precision: str = "auto", backend: str = "auto"
    ):
        backend = resolve_backend(backend)
        _verify(spec, backend)
        self._future: Future[Networks] = Future()
        # not a daemon: a process that ends early (bad input) waits for the import to finish,
        # as ending the interpreter in the middle of importing PyTorch aborts it
        thread = threading.Thread(
            target=self._load, args=(spec, device, precision, backend), name="cmbdet-networks"
        )
        thread.start()

    def _load(self, spec: ModelSpec, device: str, precision: str, backend: str) -> None:
        try:
            with _quietly_for_other_threads():
                networks = load_networks(spec, device, precision, backend)
        except BaseException as error:  # handed to the thread that waits, and raised there
            self._future.set_exception(error)
        else:
            self._future.set_result(networks)

    def get(self) -> Networks:
        return self._future.result()


@contextlib.contextmanager
def _quietly_for_other_threads():
    """Importing PyTorch holds Python's lock most of the time: within the block, threads
    switch ten times as often (the reading and preprocessing threads have the lock back
    sooner) and the garbage collector makes no full passes over PyTorch's new objects (~0.15 s
    of the lock per one-subject run); both settings are back when the block is left."""
    switch_interval, collecting = sys.getswitchinterval(), gc.isenabled()
    sys.setswitchinterval(switch_interval / 10)
    gc.disable()
    try:
        yield
    finally:
        sys.setswitchinterval(switch_interval)
        if collecting:
            gc.enable()
