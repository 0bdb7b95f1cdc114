"""cmbdet: cerebral microbleed detection in susceptibility-weighted MRI (SWI + phase)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cmbdet")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"


def __getattr__(name: str):
    """``from cmbdet import Detector`` without importing torch for every ``import cmbdet``."""
    if name in ("Detector", "DetectionResult", "Candidate"):
        from cmbdet.pipeline import detector

        return getattr(detector, name)
    raise AttributeError(f"module 'cmbdet' has no attribute {name!r}")
