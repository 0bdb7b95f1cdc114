"""Preprocessing shared by training and detection: SWI + phase -> the networks' view.

In the order data flow through it: phase made canonical (:mod:`.phase`: units, raw -> homodyne,
handedness), a brain mask (:mod:`.mask`), intensity normalisation and the two image channels
(:mod:`.intensity`), in-plane resampling to the model grid with an exact voxel map
(:mod:`.resample`), and the whole subject (:mod:`.pipeline`); :mod:`.config` holds the
settings a model records.
"""
