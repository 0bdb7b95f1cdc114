"""Settings of the synthetic generator: acquisition presets, protocol ranges, tissue values.

Every value here is recorded in ``dataset.json`` so that a dataset states what made it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from cmbdet.config import JsonConfig
from cmbdet.synth.lesions import LesionCounts
from cmbdet.synth.vessels import VeinCounts


@dataclass(frozen=True)
class Grid:
    """An acquisition grid: matrix (X, Y, Z) and voxel size in mm, canonical RAS."""

    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]

    @property
    def fov_mm(self) -> tuple[float, float, float]:
        return tuple(n * s for n, s in zip(self.shape, self.spacing_mm, strict=True))

    def work_grid(self, in_plane_mm: float = 1.0) -> Grid:
        """The coarser grid (about ``in_plane_mm`` in-plane, same slices) that covers the same
        field of view; smooth quantities are computed there and interpolated."""
        fov = self.fov_mm
        shape = (
            max(8, round(fov[0] / in_plane_mm)),
            max(8, round(fov[1] / in_plane_mm)),
            self.shape[2],
        )
        return Grid(shape, (fov[0] / shape[0], fov[1] / shape[1], self.spacing_mm[2]))


PRESETS = {
    "hr": Grid((512, 448, 72), (0.5, 0.5, 2.0)),  # the paper's high in-plane resolution set
    "lr": Grid((288, 252, 72), (0.8, 0.8, 2.0)),  # its low in-plane resolution set
    "tiny": Grid((168, 200, 24), (1.0, 1.0, 2.0)),  # tests: whole head in-plane, thin slab
}


@dataclass(frozen=True)
class ProtocolRanges(JsonConfig):
    """Ranges of the randomised 3 T SWI protocol (uniform draws)."""

    field_t: float = 3.0
    te_ms: tuple[float, float] = (13.0, 25.0)
    tr_ms: tuple[float, float] = (25.0, 45.0)  # at least TE + 8 ms
    flip_deg: tuple[float, float] = (12.0, 20.0)
    snr_white_matter: tuple[float, float] = (12.0, 40.0)
    b0_tilt_deg: tuple[float, float] = (0.0, 15.0)
    hp_window_per_256mm: tuple[float, float] = (24.0, 64.0)  # k-space samples per 256 mm FOV
    stored_max_intensity: tuple[float, float] = (300.0, 4000.0)  # scanner integer scale
    venous_delta_chi_ppm: tuple[float, float] = (0.3, 0.6)
    venous_r2star_per_s: tuple[float, float] = (50.0, 100.0)


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

    @property
    def grid(self) -> Grid:
        return PRESETS[self.preset]


def draw_protocol(ranges: ProtocolRanges, grid: Grid, rng: np.random.Generator) -> Protocol:
    """Draw one subject's protocol."""
    from cmbdet.synth.field import tilted_b0

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


def gre_signal(tissue: Tissue, protocol: Protocol, r2star_extra: float | np.ndarray = 0.0):
    """Spoiled gradient-echo magnitude ``M0 sin(a)(1-E1)/(1-cos(a)E1) exp(-TE R2*)``."""
    alpha = np.deg2rad(protocol.flip_deg)
    e1 = np.exp(-protocol.tr_s / tissue.t1_s)
    steady_state = tissue.m0 * np.sin(alpha) * (1 - e1) / (1 - np.cos(alpha) * e1)
    return steady_state * np.exp(-protocol.te_s * (tissue.r2star_per_s + r2star_extra))
