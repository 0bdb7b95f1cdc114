"""Stage 1: a single-shot detector on axial slice images, linked into 3D candidates.

At detection: :mod:`.config` (architecture, torch-free) -> :mod:`.model` (the network: head
maps) -> :mod:`.inference` (every slice with brain, in passes over slice groups) ->
:mod:`.decode` (head maps -> per-slice boxes) -> :mod:`.link` (boxes on neighbouring slices ->
3D candidates). For training: :mod:`.targets` (boxes -> heatmap targets) and :mod:`.data`
(boxes from labels, augmentation, the replayable slice sampler); the loss and the training run
live in :mod:`cmbdet.training.stage1`.
"""
