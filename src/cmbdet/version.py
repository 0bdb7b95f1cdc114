"""cmbdet's version, recorded in every output, model and dataset. The one place it is written:
``pyproject.toml`` reads it from here (a constant: no package metadata to search for at
start-up, which cost every run ~30 ms)."""

from __future__ import annotations

__version__ = "0.1.0"
