"""In-plane work on several cores: a function that treats every slice of an (X, Y, Z) volume
on its own (in-plane filters, in-plane morphology) gives the same array when it runs on slabs
of slices, and SciPy's filters run outside Python's global lock, so the slabs can run on
threads at once. A one-subject run then uses every core for its preprocessing; a batch worker
(one core, ``$CMBDET_THREADS`` = 1) runs the function as it is."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from cmbdet.processes import math_threads

MIN_SLAB_VOXELS = 1_000_000
"""Slabs are at least this big: below it, starting threads costs more than it saves."""


def by_slabs(in_plane: Callable[..., np.ndarray], *volumes: np.ndarray) -> np.ndarray:
    """``in_plane(*volumes)`` for a function of (X, Y, Z) volumes that treats each slice (the
    last axis) on its own and returns an (X, Y, Z) array: computed on slabs of slices in
    :func:`~cmbdet.processes.math_threads` threads, the same values.

    ``in_plane`` must decide nothing from more than one slice (no fallback when a whole
    volume is empty, no statistic over it): a slab would decide it alone. Such decisions are
    taken before, on the whole volume.
    """
    depth = volumes[0].shape[2]
    slabs = min(math_threads(), depth, max(1, volumes[0].size // MIN_SLAB_VOXELS))
    if slabs < 2:
        return in_plane(*volumes)
    bounds = np.linspace(0, depth, slabs + 1).round().astype(int)

    def slab(index: int) -> np.ndarray:
        part = slice(bounds[index], bounds[index + 1])
        return in_plane(*(volume[:, :, part] for volume in volumes))

    with ThreadPoolExecutor(slabs, thread_name_prefix="cmbdet-slab") as pool:
        return np.concatenate(list(pool.map(slab, range(slabs))), axis=2)
