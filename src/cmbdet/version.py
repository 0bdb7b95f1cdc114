"""The installed cmbdet's version (``0.0.0+unknown`` when run from a source tree without
installation); recorded in every output, model and dataset."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cmbdet")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"
