"""What the generator varies from subject to subject beyond the protocol, so that a model
trained on it cannot win on one appearance (domain randomisation).

Each axis has named values; every subject draws one value per axis with the dataset's weights,
and ``acquisition.json`` records what it drew. A dataset may force a value (a held-out test set
of one family) or leave values out (training without a held-out family). The values, against
``shared/reference/swi-appearance.md``:

- ``veins``: ``long_tubes`` (long smooth tubes through the slab), ``short_segments`` (short,
  turning dashes of 2-8 mm in every direction and of CMB calibre, 0.7-2 mm across: dots that
  end within one to three slices, with a vein's phase), ``medullary`` (thin, tortuous,
  branching veins from the cortex toward the ventricles), ``cortical_dense`` (many short small
  veins near the cortex). Every family adds
  to a sparser set of long tubes and the anatomical sinuses and deep veins.
- ``contrast``: ``swi_3d`` (the preset's short-TR 3D protocol), ``t1_weighted`` (high flip:
  white matter bright, CSF dark), ``bright_csf`` (long-TR 2D T2*-weighted GRE: CSF bright),
  ``low_contrast`` (low flip: proton-density-like).
- ``iron``: deep grey-matter iron ``faint``, ``typical`` or ``dark`` (0.3-0.7x, 0.8-1.3x,
  1.6-2.6x the atlas' nucleus susceptibilities).
- ``skull``: ``present`` or ``stripped`` (zero outside a dilated brain mask, as skull-stripped
  inputs are).
- ``swi_power``: ``0`` (plain GRE magnitude) to ``6``: the power of the negative-phase mask.
- ``artefacts``: ``none``, ``ringing`` (k-space truncated along phase encoding: Gibbs rings),
  ``motion`` (phase errors on k-space lines: ghosts), ``both``.
- ``snr``: ``normal`` (the preset's range) or ``low`` (white-matter SNR 5-12).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from cmbdet.config import JsonConfig

AXES: dict[str, tuple[str, ...]] = {
    "veins": ("long_tubes", "short_segments", "medullary", "cortical_dense"),
    "contrast": ("swi_3d", "t1_weighted", "bright_csf", "low_contrast"),
    "iron": ("faint", "typical", "dark"),
    "skull": ("present", "stripped"),
    "swi_power": ("0", "1", "2", "3", "4", "5", "6"),
    "artefacts": ("none", "ringing", "motion", "both"),
    "snr": ("normal", "low"),
}
STANDARD = {  # generator 1.0's one appearance
    "veins": "long_tubes",
    "contrast": "swi_3d",
    "iron": "typical",
    "skull": "present",
    "swi_power": "4",
    "artefacts": "none",
    "snr": "normal",
}


@dataclass(frozen=True)
class FamilyWeights(JsonConfig):
    """How often each value of each axis is drawn (relative weights, in the order of
    :data:`AXES`; recorded in ``dataset.json``)."""

    veins: tuple[float, float, float, float] = (0.3, 0.25, 0.25, 0.2)
    contrast: tuple[float, float, float, float] = (0.5, 0.2, 0.15, 0.15)
    iron: tuple[float, float, float] = (0.2, 0.55, 0.25)
    skull: tuple[float, float] = (0.8, 0.2)
    swi_power: tuple[float, float, float, float, float, float, float] = (
        0.08,
        0.06,
        0.1,
        0.16,
        0.3,
        0.16,
        0.14,
    )
    artefacts: tuple[float, float, float, float] = (0.55, 0.15, 0.15, 0.15)
    snr: tuple[float, float] = (0.8, 0.2)

    def __post_init__(self):
        for spec in fields(self):
            weights = getattr(self, spec.name)
            if len(weights) != len(AXES[spec.name]):
                raise ValueError(f"{spec.name}: {len(AXES[spec.name])} weights expected")
            if any(not (w >= 0 and np.isfinite(w)) for w in weights) or not sum(weights) > 0:
                raise ValueError(f"{spec.name}: weights must be >= 0 with a positive sum")

    def forced(self, axis: str, value: str) -> FamilyWeights:
        """These weights with ``axis`` always ``value``."""
        index = _index(axis, value)
        return replace(self, **{axis: tuple(float(i == index) for i in range(len(AXES[axis])))})

    def without(self, axis: str, value: str) -> FamilyWeights:
        """These weights with ``value`` of ``axis`` never drawn."""
        index = _index(axis, value)
        weights = tuple(0.0 if i == index else w for i, w in enumerate(getattr(self, axis)))
        if not sum(weights) > 0:
            raise ValueError(f"{axis}: leaving out {value!r} leaves no value to draw")
        return replace(self, **{axis: weights})

    def draw(self, rng: np.random.Generator) -> dict[str, str]:
        """One subject's value of every axis."""
        drawn = {}
        for axis, values in AXES.items():
            weights = np.asarray(getattr(self, axis), dtype=np.float64)
            drawn[axis] = values[int(rng.choice(len(values), p=weights / weights.sum()))]
        return drawn


def standard_weights() -> FamilyWeights:
    """Weights that always draw :data:`STANDARD` (generator 1.0's appearance)."""
    weights = FamilyWeights()
    for axis, value in STANDARD.items():
        weights = weights.forced(axis, value)
    return weights


def parse_choice(text: str) -> tuple[str, str]:
    """``AXIS=VALUE`` (e.g. ``veins=medullary``) as (axis, value).

    Raises:
        ValueError: an unknown axis or value (the known ones are named).
    """
    axis, _, value = text.partition("=")
    _index(axis.strip(), value.strip())
    return axis.strip(), value.strip()


def _index(axis: str, value: str) -> int:
    if axis not in AXES:
        raise ValueError(f"unknown family axis {axis!r} (known: {', '.join(AXES)})")
    if value not in AXES[axis]:
        raise ValueError(f"unknown {axis} family {value!r} (known: {', '.join(AXES[axis])})")
    return AXES[axis].index(value)
