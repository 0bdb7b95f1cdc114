"""Scoring detections against ground truth (DESIGN.md's rule), pure NumPy/SciPy."""
