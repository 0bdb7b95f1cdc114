"""Stage 2: false-positive reduction by a 3D CNN on SWI + phase patches around each stage-1
candidate: :mod:`patches` (extraction, sized in mm) -> :mod:`model` -> :mod:`train`."""
