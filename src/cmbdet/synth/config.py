"""Settings of the synthetic generator: acquisition presets, protocol ranges, tissue values.

Every value here is recorded in ``dataset.json`` so that a dataset states what made it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np

from cmbdet.config import JsonConfig, check_each
from cmbdet.synth.families import FamilyWeights
from cmbdet.synth.lesions import LesionCounts
from cmbdet.synth.presets import LOW_SNR, PRESETS, PROTOCOLS, Grid, ProtocolRanges
from cmbdet.synth.vessels import VeinCounts


@dataclass(frozen=True)
class Tissue:
    """3 T relaxation and susceptibility of one tissue class (chi relative to water, ppm)."""

    m0: float
    t1_s: float
    r2star_per_s: float
    chi_ppm: float


TISSUES = {
    "gm": Tissue(0.83, 1.6, 16.5, 0.02),
    "wm": Tissue(0.70, 0.9, 21.0, -0.03),
    "csf": Tissue(1.00, 4.3, 6.0, 0.0),
    "csf_outer": Tissue(1.00, 4.3, 6.0, 0.0),
    "skull": Tissue(0.08, 0.3, 300.0, -2.1),
    "scalp": Tissue(0.90, 0.4, 30.0, 0.0),
}


@dataclass(frozen=True)
class Protocol:
    """One subject's acquisition, drawn from :class:`ProtocolRanges`."""

    field_t: float
    te_s: float
    tr_s: float
    flip_deg: float
    snr_white_matter: float
    b0_dir: tuple[float, float, float]
    b0_tilt_deg: float
    hp_window: int
    stored_max_intensity: float
    venous_delta_chi_ppm: float
    venous_r2star_per_s: float

    def to_json(self) -> dict:
        return {
            key: (list(value) if isinstance(value, tuple) else value)
            for key, value in asdict(self).items()
        }


VOXEL_MM_RANGE = (0.3, 5.0)
"""The voxel sizes (mm, each axis) a dataset may be made at."""
MAX_VOXELS = 40_000_000
"""The largest grid generated (about 4 GB of working memory; the 7 T preset has 16.5 M)."""


@dataclass(frozen=True)
class SynthConfig(JsonConfig):
    """Everything that defines a synthetic dataset besides its seed and size."""

    preset: str = "lr"
    handedness: str = "right"  # of the stored phase: "right" (Haacke) or "left" (negated)
    phase_units: str = "radians"  # or "integer": -4096..4095 for -pi..pi, int16
    phase_kind: str = "filtered"  # or "raw": stored phase is the wrapped raw phase
    orientation: str = "RAS"  # axis codes of the stored arrays, e.g. "LPS"
    protocol: ProtocolRanges = field(default_factory=ProtocolRanges)
    veins: VeinCounts = field(default_factory=VeinCounts)
    lesions: LesionCounts = field(default_factory=LesionCounts)
    families: FamilyWeights = field(default_factory=FamilyWeights)
    voxel_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)  # zeros: the preset's own
    layout: str = "cmbdet"  # or "bids": gradient-echo magnitude + phase (cmbdet.synth.bids)
    echoes: int = 1  # echoes per subject (more than one: the bids layout's MEGRE files)

    def __post_init__(self):
        if self.layout not in ("cmbdet", "bids"):
            raise ValueError(f"layout must be cmbdet or bids, got {self.layout!r}")
        if not 1 <= self.echoes <= 8:
            raise ValueError(f"echoes must be 1 to 8, got {self.echoes}")
        if self.echoes > 1 and self.layout != "bids":
            raise ValueError("several echoes are written in the bids layout (--layout bids)")
        if any(self.voxel_mm):
            check_each("voxel_mm", self.voxel_mm, VOXEL_MM_RANGE[0], VOXEL_MM_RANGE[1])
            voxels = int(np.prod(self.grid.shape))
            if voxels > MAX_VOXELS:
                raise ValueError(
                    f"voxel_mm {self.voxel_mm} makes a grid of {voxels / 1e6:.0f} M voxels over "
                    f"the {self.preset} field of view (at most {MAX_VOXELS / 1e6:.0f} M): "
                    "choose larger voxels"
                )

    @property
    def grid(self) -> Grid:
        """The preset's grid, or another voxel size over the preset's field of view."""
        preset = PRESETS[self.preset]
        return preset.with_voxel(self.voxel_mm) if any(self.voxel_mm) else preset

    @classmethod
    def for_preset(cls, preset: str, **settings) -> SynthConfig:
        """The settings of a preset: its grid and its protocol ranges (:data:`PROTOCOLS`)."""
        return cls(preset=preset, protocol=PROTOCOLS.get(preset, ProtocolRanges()), **settings)


CONTRAST_TIMING = {  # a contrast family's TR (ms) and flip (degrees) ranges; None: the preset's
    "swi_3d": None,
    "t1_weighted": ((25.0, 40.0), (22.0, 35.0)),
    "bright_csf": ((500.0, 800.0), (15.0, 25.0)),  # 2D T2*-weighted GRE
    "low_contrast": ((25.0, 40.0), (4.0, 8.0)),
}


def draw_protocol(
    ranges: ProtocolRanges,
    grid: Grid,
    rng: np.random.Generator,
    families: dict[str, str] | None = None,
) -> Protocol:
    """Draw one subject's protocol; the subject's ``contrast`` and ``snr`` families (see
    :mod:`cmbdet.synth.families`) replace the preset's timing and SNR ranges."""
    from cmbdet.synth.field import tilted_b0

    families = families or {}
    timing = CONTRAST_TIMING.get(families.get("contrast", "swi_3d"))
    if timing is not None:
        ranges = replace(ranges, tr_ms=timing[0], flip_deg=timing[1])
    if families.get("snr") == "low":
        ranges = replace(ranges, snr_white_matter=LOW_SNR)
    te_ms = rng.uniform(*ranges.te_ms)
    tr_ms = rng.uniform(max(ranges.tr_ms[0], te_ms + 8.0), max(ranges.tr_ms[1], te_ms + 9.0))
    tilt = rng.uniform(*ranges.b0_tilt_deg)
    b0 = tilted_b0(tilt, rng.uniform(0.0, 360.0))
    window = rng.uniform(*ranges.hp_window_per_256mm) * grid.fov_mm[0] / 256.0
    return Protocol(
        field_t=ranges.field_t,
        te_s=te_ms / 1000.0,
        tr_s=tr_ms / 1000.0,
        flip_deg=float(rng.uniform(*ranges.flip_deg)),
        snr_white_matter=float(rng.uniform(*ranges.snr_white_matter)),
        b0_dir=tuple(float(v) for v in b0),
        b0_tilt_deg=float(tilt),
        hp_window=int(2 * round(window / 2)),
        stored_max_intensity=float(np.exp(rng.uniform(*np.log(ranges.stored_max_intensity)))),
        venous_delta_chi_ppm=float(rng.uniform(*ranges.venous_delta_chi_ppm)),
        venous_r2star_per_s=float(rng.uniform(*ranges.venous_r2star_per_s)),
    )


def tissue_at(tissue: Tissue, field_t: float) -> Tissue:
    """A 3 T tissue at another field: T1 scaled by the ratio of white and grey matter's
    measured 1.5, 3 and 7 T values [Wright08] (every tissue but CSF, whose T1 over 3 s barely
    depends on the field), R2* rising linearly with B0 (0.35 + 0.65 B0 / 3 T of its 3 T value
    [LiTQ09])."""
    t1_ratio = float(np.interp(field_t, (1.5, 3.0, 7.0), (0.76, 1.0, 1.3)))
    t1 = tissue.t1_s if tissue.t1_s > 3.0 else tissue.t1_s * t1_ratio
    return replace(tissue, t1_s=t1, r2star_per_s=tissue.r2star_per_s * r2star_scale(field_t))


def r2star_scale(field_t: float) -> float:
    """R2* at ``field_t`` over R2* at 3 T."""
    return 0.35 + 0.65 * field_t / 3.0


def gre_signal(tissue: Tissue, protocol: Protocol, r2star_extra: float | np.ndarray = 0.0):
    """Spoiled gradient-echo magnitude ``M0 sin(a)(1-E1)/(1-cos(a)E1) exp(-TE R2*)`` (the
    tissue's 3 T values taken to the protocol's field)."""
    tissue = tissue_at(tissue, protocol.field_t)
    alpha = np.deg2rad(protocol.flip_deg)
    e1 = np.exp(-protocol.tr_s / tissue.t1_s)
    steady_state = tissue.m0 * np.sin(alpha) * (1 - e1) / (1 - np.cos(alpha) * e1)
    return steady_state * np.exp(-protocol.te_s * (tissue.r2star_per_s + r2star_extra))
