"""Scoring detections against ground truth (DESIGN.md's rule), pure NumPy/SciPy:
:mod:`.matching` (the 5 mm one-to-one hit rule) -> :mod:`.metrics` (counts, exact FROC,
bootstrap intervals) -> :mod:`.evaluate` (``cmbdet evaluate``: prediction folders against a
dataset, the tables and the plot)."""
