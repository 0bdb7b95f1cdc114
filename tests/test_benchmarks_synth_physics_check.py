"""The generator obeys the physics a reader relies on at every field strength, as checked
from its written files by ``benchmarks/synth_physics_check.py`` (on small subjects)."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest

from cmbdet.synth.config import SynthConfig
from cmbdet.synth.dataset import generate_dataset
from cmbdet.synth.lesions import LesionCounts
from cmbdet.synth.presets import PROTOCOLS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from synth_physics_check import check_dataset  # noqa: E402

RICH = replace(
    LesionCounts(), cmb_none_probability=0.0, cmb_log_mean=2.0, calcification_none_probability=0.0
)


@pytest.mark.parametrize("protocol", ["1.5t", "hr", "7t"])
def test_cmbs_are_dark_with_the_paramagnetic_phase_sign(protocol, tmp_path, monkeypatch):
    import cmbdet.synth.dataset as dataset

    def tiny_at(preset, **settings):  # the protocol's physics on the small test grid
        return SynthConfig(preset="tiny", protocol=PROTOCOLS[protocol], **settings)

    monkeypatch.setattr(dataset.SynthConfig, "for_preset", staticmethod(tiny_at))
    monkeypatch.setattr(dataset, "rich_lesion_counts", lambda richness: RICH)
    folder = generate_dataset(tmp_path / "d", "tiny", 3, seed=31, progress=False)
    handedness = generate_dataset(
        tmp_path / "left", "tiny", 2, seed=32, progress=False, handedness="left", orientation="LPS"
    )
    both = [check_dataset(data) for data in (folder, handedness)]
    for counts in both:
        assert counts.cmbs >= 8
        assert counts.passes(), counts.rates()
    # the phase signs were judged (a CMB's or calcification's phase large enough to read)
    assert sum(c.cmbs_judged for c in both) >= 5
    assert sum(c.calcifications for c in both) >= 1
