"""How volumes are prepared for the networks, as model.json stores it (no NumPy or torch
here: the command line and the model schema read it)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from cmbdet.config import JsonConfig, check_each, check_range

HP_WINDOW_PER_256MM = 48.0
"""Default homodyne window: k-space samples per 256 mm of in-plane field of view (x)."""


@dataclass(frozen=True)
class PreprocessConfig(JsonConfig):
    """How volumes are prepared for the networks (recorded in ``model.json``)."""

    target_in_plane_mm: float = 0.5  # model-grid pixel: HR is kept, LR (0.8 mm) is upsampled
    # model-grid slice thickness: 1 mm or 3 mm slices are resampled to it, so that the networks
    # see the same millimetres through-plane at every protocol; 0 keeps the acquired slices
    target_slice_mm: float = 0.0
    slab_average: int = 1  # SWI channel: mean of each slice and this many neighbours each side
    phase_scale_rad: float = math.pi  # phase of +-this many radians -> +-1 (then clipped)
    hp_window_per_256mm: float = HP_WINDOW_PER_256MM  # homodyne window (raw phase), samples
    # further slice-image channels: the SWI of the slices at these offsets (0 = the slice
    # itself, unaveraged), so stage 1 sees whether a dark dot goes on through the slab (a
    # vein) or ends (a CMB); () gives the paper's two channels
    context_slices: tuple[int, ...] = ()
    # False: a phase-free model (SWI or T2*-weighted magnitude alone): the phase is never read
    # and the networks' phase inputs hold zero phase (no information), so that one network
    # layout serves both kinds of model
    reads_phase: bool = True

    def __post_init__(self):
        object.__setattr__(self, "context_slices", tuple(int(d) for d in self.context_slices))
        check_range("target_in_plane_mm", self.target_in_plane_mm, 0.1, 4.0)
        if self.target_slice_mm != 0:
            check_range("target_slice_mm", self.target_slice_mm, 0.25, 8.0)
        check_range("slab_average", self.slab_average, 0, 8)
        check_range("phase_scale_rad", self.phase_scale_rad, 1e-3, 100.0)
        check_range("hp_window_per_256mm", self.hp_window_per_256mm, 1.0, 1024.0)
        check_each("context_slices", self.context_slices, -8, 8)

    @property
    def channels(self) -> int:
        """Channels of the slice images: averaged SWI, complemented phase, context slices."""
        return 2 + len(self.context_slices)

    def distinct_channels(self, slices: int) -> tuple[int, ...]:
        """The channels of ``slices`` adjacent slice images, stacked slice-major, that are not
        repeats: every slice's phase, each SWI slice once (slice j's context offset d reads
        the SWI of slice j + d, which a later slice of the run may read again), and a slice's
        averaged SWI only where the run does not read all the slices it averages (it is
        otherwise a fixed sum of read channels, which a network's first convolution forms
        itself; at the ends of the slab, where the mean takes fewer slices, nearly so).

        With ``context_slices`` (-2, 0, 2), the training default: one slice, all 5 channels;
        three slices, 10 of 15; four, 12 of 20.
        """
        read = {j + d for j in range(slices) for d in self.context_slices}
        neighbours = max(self.slab_average, 0)  # as the slice images read it
        averaged = range(-neighbours, neighbours + 1)
        kept, seen = [], set()
        for j in range(slices):
            first = j * self.channels
            if not all(j + d in read for d in averaged):
                kept.append(first)  # averaged SWI
            kept.append(first + 1)  # complemented phase
            for channel, offset in enumerate(self.context_slices, start=first + 2):
                if j + offset not in seen:
                    seen.add(j + offset)
                    kept.append(channel)
        return tuple(kept)
