"""The stage-2 network's config."""

from __future__ import annotations

from cmbdet.stage2.config import Stage2Config

SMALL = Stage2Config(widths=(8, 8, 16, 16, 16), dense=(8, 4))


def test_config_round_trip():
    assert Stage2Config.from_json(SMALL.to_json()) == SMALL
