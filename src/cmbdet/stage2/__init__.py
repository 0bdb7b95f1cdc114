"""Stage 2: false-positive reduction by a 3D CNN on SWI + phase patches around each stage-1
candidate: :mod:`.config` -> :mod:`.patches` (extraction on the model grid, fixed mm) ->
:mod:`.model` (logits) -> :mod:`.inference` (probabilities, averaged over test-time views).
Its training lives in :mod:`cmbdet.training.stage2`."""
