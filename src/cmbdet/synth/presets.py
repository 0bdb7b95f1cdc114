"""The acquisitions the generator makes, by name: each preset's grid and protocol ranges
(``cmbdet synth --preset``; torch-free, so that the command line can list them)."""

from __future__ import annotations

from dataclasses import dataclass

from cmbdet.config import JsonConfig


@dataclass(frozen=True)
class Grid:
    """An acquisition grid: matrix (X, Y, Z) and voxel size in mm, canonical RAS."""

    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]

    @property
    def fov_mm(self) -> tuple[float, float, float]:
        return tuple(n * s for n, s in zip(self.shape, self.spacing_mm, strict=True))

    def with_voxel(self, voxel_mm: tuple[float, float, float]) -> Grid:
        """The grid of another voxel size over (about) the same field of view."""
        fov = self.fov_mm
        shape = tuple(max(8, round(f / v)) for f, v in zip(fov, voxel_mm, strict=True))
        return Grid(shape, tuple(float(v) for v in voxel_mm))

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
    "ukb": Grid((256, 288, 48), (0.8, 0.8, 3.0)),  # UK Biobank-like 3 mm slices
    "1.5t": Grid((256, 224, 64), (0.9, 0.9, 2.0)),  # a 1.5 T clinical slab
    "iso1": Grid((192, 224, 160), (1.0, 1.0, 1.0)),  # 1 mm isotropic 3D, whole brain
    "7t": Grid((384, 448, 96), (0.5, 0.5, 1.0)),  # a 7 T slab, 1 mm slices
    "tiny": Grid((168, 200, 24), (1.0, 1.0, 2.0)),  # tests: whole head in-plane, thin slab
}


PRESET_HELP = {
    "hr": "the paper's high in-plane resolution: 3 T, 0.5 x 0.5 x 2 mm, 512 x 448 x 72",
    "lr": "the paper's low in-plane resolution: 3 T, 0.8 x 0.8 x 2 mm, 288 x 252 x 72",
    "ukb": "UK Biobank-like: 3 T, 0.8 x 0.8 x 3 mm, 256 x 288 x 48, TE about 20 ms",
    "1.5t": "1.5 T clinical: 0.9 x 0.9 x 2 mm, 256 x 224 x 64, TE 25-40 ms",
    "iso1": "1 mm isotropic 3D SWI: 3 T, 192 x 224 x 160, the whole brain",
    "7t": "7 T: 0.5 x 0.5 x 1 mm, 384 x 448 x 96, TE 8-15 ms",
    "tiny": "tests: 3 T, 1 x 1 x 2 mm, 168 x 200 x 24 through the basal ganglia",
}


@dataclass(frozen=True)
class ProtocolRanges(JsonConfig):
    """Ranges of a randomised SWI protocol (uniform draws); 3 T by default."""

    field_t: float = 3.0
    te_ms: tuple[float, float] = (13.0, 25.0)
    tr_ms: tuple[float, float] = (25.0, 45.0)  # at least TE + 8 ms
    flip_deg: tuple[float, float] = (12.0, 20.0)
    snr_white_matter: tuple[float, float] = (12.0, 40.0)
    b0_tilt_deg: tuple[float, float] = (0.0, 15.0)
    hp_window_per_256mm: tuple[float, float] = (20.0, 96.0)  # k-space samples per 256 mm FOV
    stored_max_intensity: tuple[float, float] = (300.0, 4000.0)  # scanner integer scale
    venous_delta_chi_ppm: tuple[float, float] = (0.3, 0.6)
    venous_r2star_per_s: tuple[float, float] = (50.0, 100.0)  # at 3 T; scaled with the field


PROTOCOLS = {  # each preset's acquisition ranges (shared/reference/swi-appearance.md, sec. 6)
    "hr": ProtocolRanges(),
    "lr": ProtocolRanges(),
    "ukb": ProtocolRanges(te_ms=(18.0, 22.0), tr_ms=(26.0, 30.0), flip_deg=(13.0, 17.0)),
    "1.5t": ProtocolRanges(
        field_t=1.5,
        te_ms=(25.0, 40.0),
        tr_ms=(35.0, 55.0),
        flip_deg=(12.0, 20.0),
        snr_white_matter=(10.0, 30.0),
    ),
    "iso1": ProtocolRanges(te_ms=(15.0, 25.0), tr_ms=(25.0, 35.0)),
    "7t": ProtocolRanges(
        field_t=7.0,
        te_ms=(8.0, 15.0),
        tr_ms=(18.0, 30.0),
        flip_deg=(8.0, 15.0),
        snr_white_matter=(20.0, 50.0),
    ),
    "tiny": ProtocolRanges(),
}


LOW_SNR = (5.0, 12.0)
"""White-matter SNR range of ``--snr low``."""
