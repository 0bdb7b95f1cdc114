"""Physics-based synthetic SWI + phase data (``cmbdet synth``).

Pipeline, one module each: :mod:`anatomy` (warped MNI tissue maps) -> :mod:`vessels` (veins) and
:mod:`lesions` (CMBs and mimics) -> :mod:`field` (dipole field) with :mod:`background` (air,
shim, coil) -> :mod:`subject` (complex GRE signal, noise, SWI) -> :mod:`dataset` (files).
"""

GENERATOR_VERSION = "2.2.0"
