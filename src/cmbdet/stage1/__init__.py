"""Stage 1: a single-shot detector on two-channel axial slices, linked into 3D candidates.

:mod:`model` (network, train-mode loss) -> :mod:`targets` (boxes -> heatmap targets) ->
:mod:`decode` (heatmap -> per-slice boxes, outside ``forward``) -> :mod:`link` (boxes on
neighbouring slices -> 3D candidates). :mod:`frst` is the radial-symmetry baseline.
"""
