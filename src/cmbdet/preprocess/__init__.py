"""Preprocessing shared by stage 1, stage 2 and inference.

In the order data flow through it: phase made canonical (:mod:`.phase`: units, raw -> homodyne,
handedness), a brain mask (:mod:`.mask`), intensity normalisation and the two image channels
(:mod:`.intensity`), in-plane resampling to the model grid with an exact voxel map
(:mod:`.resample`), and the whole subject (:mod:`.pipeline`).
"""

from cmbdet.preprocess.intensity import complemented_phase, normalise_phase, normalise_swi
from cmbdet.preprocess.mask import estimate_brain_mask
from cmbdet.preprocess.phase import (
    HandednessEstimate,
    PhaseDecisions,
    PhaseScale,
    canonical_phase,
    detect_handedness,
    detect_phase_kind,
    detect_phase_units,
    phase_to_radians,
)
from cmbdet.preprocess.pipeline import (
    PreprocessConfig,
    Preprocessed,
    preprocess,
    preprocess_arrays,
    slab_average,
    slice_images,
)
from cmbdet.preprocess.resample import (
    ResampleMap,
    resample_in_plane,
    resample_phase_to,
    resample_to,
)

__all__ = [
    "HandednessEstimate",
    "PhaseDecisions",
    "PhaseScale",
    "PreprocessConfig",
    "Preprocessed",
    "ResampleMap",
    "canonical_phase",
    "complemented_phase",
    "detect_handedness",
    "detect_phase_kind",
    "detect_phase_units",
    "estimate_brain_mask",
    "normalise_phase",
    "normalise_swi",
    "phase_to_radians",
    "preprocess",
    "preprocess_arrays",
    "resample_in_plane",
    "resample_phase_to",
    "resample_to",
    "slab_average",
    "slice_images",
]
