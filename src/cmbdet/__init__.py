"""cmbdet: cerebral microbleed detection in susceptibility-weighted MRI (SWI + phase).

The pipeline, package by package, in the order data flows: :mod:`cmbdet.io` (NIfTI, datasets,
inputs, model folders, safe writing) -> :mod:`cmbdet.synth` (the generator) ->
:mod:`cmbdet.preprocess` -> :mod:`cmbdet.stage1` (candidates) -> :mod:`cmbdet.stage2`
(false-positive reduction) -> :mod:`cmbdet.detect` (the detector end to end) ->
:mod:`cmbdet.batch` (many subjects) -> :mod:`cmbdet.evaluation` -> :mod:`cmbdet.report` ->
:mod:`cmbdet.cli`; beside them :mod:`cmbdet.training` (the loop, both stages' recipe,
calibration, cross-validation). At the bottom: :mod:`cmbdet.errors`, :mod:`cmbdet.geometry`,
:mod:`cmbdet.config`, :mod:`cmbdet.records`, :mod:`cmbdet.runtime`.
"""

from __future__ import annotations

from cmbdet.version import __version__

__all__ = ["Candidate", "DetectionResult", "Detector", "__version__"]


def __getattr__(name: str):
    """``from cmbdet import Detector`` without importing torch for every ``import cmbdet``."""
    if name == "Detector":
        from cmbdet.detect.detector import Detector

        return Detector
    if name in ("Candidate", "DetectionResult"):
        from cmbdet import records

        return getattr(records, name)
    raise AttributeError(f"module 'cmbdet' has no attribute {name!r}")
