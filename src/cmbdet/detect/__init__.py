"""The detector end to end, for one subject: :mod:`.model_spec` (a model folder's checked
description) -> :mod:`.detector` (load the model; check, preprocess, stage 1, stage 2) ->
:mod:`.candidates` (model-grid candidates -> the input's voxels and world mm) ->
:mod:`.outputs` (the output folder of DESIGN.md, with its report). :mod:`.checks` holds the
input checks that need the model's settings. Nothing here imports training code."""
