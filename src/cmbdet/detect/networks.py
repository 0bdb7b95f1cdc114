"""The two networks of a model, ready for inference, and their loading in the background.

:func:`load_networks` imports PyTorch, builds both networks from the model's configuration,
loads their checksummed weights and prepares inference copies (batch norm folded, device,
number format). :class:`NetworksLoading` runs it on a thread, so that importing PyTorch
(about a second) overlaps reading and preprocessing the first subject; the checksums are
verified before the thread starts, so damaged weights still fail at once.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from cmbdet.detect.model_spec import ModelSpec
from cmbdet.io.model_folder import verify_weights

if TYPE_CHECKING:
    from cmbdet.stage1.link import LinkedCandidate


@dataclass(frozen=True)
class Networks:
    """Both stages' inference copies and where they run.

    Attributes:
        stage1: the candidate network (``cmbdet.stage1.model.CandidateNet``).
        stage2: the patch classifier, or None for a model without stage 2.
        device: ``torch.device`` the networks run on.
        dtype: their ``torch.dtype`` (float32 or bfloat16).
    """

    stage1: Any
    stage2: Any | None
    device: Any
    dtype: Any

    @property
    def precision(self) -> str:
        """The number format by name (``float32``, ``bfloat16``), as run.json records it."""
        return str(self.dtype).removeprefix("torch.")

    def propose(
        self, images: np.ndarray, pixel_mm: float, brain: np.ndarray
    ) -> list[LinkedCandidate]:
        """Stage 1: (Z', C, X', Y') slice images -> 3D candidates on the model grid."""
        from cmbdet.stage1.inference import detect_candidates

        return detect_candidates(self.stage1, images, pixel_mm, brain)

    def score(self, patches: np.ndarray, views: int) -> np.ndarray:
        """Stage 2: (N,) CMB probabilities of (N, C, X, Y, Z) patches over ``views`` views."""
        from cmbdet.stage2.inference import score_patches

        return score_patches(self.stage2, patches, views=views)


def load_networks(spec: ModelSpec, device: str = "auto", precision: str = "auto") -> Networks:
    """Build, load and prepare both networks of ``spec`` (see
    :meth:`cmbdet.detect.detector.Detector.load` for ``device`` and ``precision``).

    Raises:
        InputError: weights that do not fit the architecture, or a device or precision this
            machine does not have.
    """
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
    return Networks(prepare_for_inference(stage1, resolved, dtype), stage2, resolved, dtype)


class NetworksLoading:
    """:func:`load_networks` on a background thread; :meth:`get` waits for its result (or
    raises its error)."""

    def __init__(self, spec: ModelSpec, device: str = "auto", precision: str = "auto"):
        for entry in (spec.stage1_weights, spec.stage2_weights):
            if entry is not None:
                verify_weights(spec.folder, entry.to_json())
        self._future: Future[Networks] = Future()
        # not a daemon: a process that ends early (bad input) waits for the import to finish,
        # as ending the interpreter in the middle of importing PyTorch aborts it
        thread = threading.Thread(
            target=self._load, args=(spec, device, precision), name="cmbdet-networks"
        )
        thread.start()

    def _load(self, spec: ModelSpec, device: str, precision: str) -> None:
        try:
            self._future.set_result(load_networks(spec, device, precision))
        except BaseException as error:  # handed to the thread that waits, and raised there
            self._future.set_exception(error)

    def get(self) -> Networks:
        return self._future.result()
