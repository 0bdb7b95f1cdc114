"""The generator's families: drawn with their weights, forced or left out, and each with the
effect it names (on small subjects)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from cmbdet.synth.anatomy import load_atlas, random_warp, warp_atlas
from cmbdet.synth.config import (
    PRESETS,
    TISSUES,
    SynthConfig,
    draw_protocol,
    gre_signal,
    tissue_at,
)
from cmbdet.synth.families import AXES, STANDARD, FamilyWeights, parse_choice, standard_weights
from cmbdet.synth.lesions import LesionCounts, random_lesions
from cmbdet.synth.presets import PROTOCOLS
from cmbdet.synth.subject import add_artefacts, generate_subject
from cmbdet.synth.vessels import (
    MEDULLARY_RADIUS_MM,
    _squared_distance_to_segment,
    random_veins,
)

TINY = PRESETS["tiny"]


def test_draws_follow_the_weights_and_forcing_or_leaving_out_holds():
    rng = np.random.default_rng(0)
    weights = FamilyWeights()
    drawn = [weights.draw(rng)["veins"] for _ in range(4000)]
    shares = [drawn.count(v) / len(drawn) for v in AXES["veins"]]
    np.testing.assert_allclose(shares, np.array(weights.veins) / sum(weights.veins), atol=0.03)
    forced = weights.forced("veins", "medullary")
    assert {forced.draw(rng)["veins"] for _ in range(50)} == {"medullary"}
    without = weights.without("contrast", "bright_csf")
    assert "bright_csf" not in {without.draw(rng)["contrast"] for _ in range(500)}
    assert standard_weights().draw(rng) == STANDARD
    assert parse_choice("iron=dark") == ("iron", "dark")
    with pytest.raises(ValueError, match="unknown family axis"):
        parse_choice("colour=red")
    assert FamilyWeights.from_json(forced.to_json()) == forced


@pytest.fixture(scope="module")
def anatomy():
    rng = np.random.default_rng(5)
    work = TINY.work_grid()
    return warp_atlas(load_atlas(), random_warp(rng, TINY.fov_mm[2]), work.shape, work.spacing_mm)


def _lengths(veins) -> np.ndarray:
    return np.array([np.linalg.norm(np.diff(v.points_mm, axis=0), axis=1).sum() for v in veins])


def test_each_vein_family_draws_its_own_geometry(anatomy):
    def family(name):
        veins = random_veins(anatomy, np.random.default_rng(1), family=name)
        return [v for v in veins if v.orientation not in ("through-plane", "in-plane", "oblique")]

    short = [v for v in family("short_segments") if v.orientation == "short"]
    assert len(short) >= 60 and _lengths(short).max() <= 9.0
    medullary = [v for v in family("medullary") if v.orientation == "medullary"]
    assert len(medullary) >= 40 and max(v.radius_mm for v in medullary) <= MEDULLARY_RADIUS_MM[1]
    trunks = [v for v in medullary if _lengths([v])[0] > 13.0]  # side branches: <= 12 mm
    inward = [np.linalg.norm(v.points_mm[-1]) < np.linalg.norm(v.points_mm[0]) for v in trunks]
    assert np.mean(inward) > 0.7  # from the cortex toward the ventricles
    cortical = [v for v in family("cortical_dense") if v.orientation == "cortical"]
    assert len(cortical) >= 100
    long_only = random_veins(anatomy, np.random.default_rng(1), family="long_tubes")
    assert not {"short", "medullary", "cortical"} & {v.orientation for v in long_only}


def _gap_to_vein_mm(point: np.ndarray, vein) -> float:
    """Distance from ``point`` to the wall of ``vein`` (negative inside its lumen), mm."""
    distances = [
        np.sqrt(_squared_distance_to_segment(point[None].astype(np.float32), start, end))[0]
        for start, end in zip(vein.points_mm[:-1], vein.points_mm[1:], strict=True)
    ]
    return float(min(distances)) - vein.radius_mm


def test_cmbs_touch_veins_and_sit_in_dark_nuclei_when_asked(anatomy):
    veins = [
        v
        for v in random_veins(anatomy, np.random.default_rng(2))
        if v.orientation not in ("sinus", "deep")
    ]
    counts = replace(LesionCounts(), cmb_none_probability=0.0, cmb_log_mean=2.5)
    touching = replace(counts, cmb_next_to_vein=1.0, iron_none_probability=1.0)
    cmbs = [
        lesion
        for seed in range(3, 7)
        for lesion in random_lesions(
            anatomy, np.random.default_rng(seed), 0.02, touching, veins=veins
        )
        if lesion.kind == "cmb"
    ]
    assert len(cmbs) >= 5
    for cmb in cmbs:
        gaps = np.array([_gap_to_vein_mm(cmb.centre_mm, v) for v in veins])
        # beside a vein (its centre outside the lumen), its edge reaching into the wall
        assert ((gaps > 0) & (gaps <= 0.8 * cmb.radii_mm[0] + 1e-3)).any()
    in_iron = replace(counts, deep_cmb_in_iron=1.0, cmb_next_to_vein=0.0)
    deep = [
        lesion
        for seed in range(3, 9)
        for lesion in random_lesions(anatomy, np.random.default_rng(seed), 0.02, in_iron)
        if lesion.kind == "cmb" and lesion.region == "deep"
    ]
    assert len(deep) >= 3
    iron = anatomy.channels["iron_chi"]
    for cmb in deep:
        assert iron[_work_index(anatomy, cmb.centre_mm)] > 0.05  # inside an iron-rich nucleus
    cavernoma = random_lesions(
        anatomy, np.random.default_rng(4), 0.02, replace(counts, cavernoma_probability=1.0)
    )
    assert "cavernoma" in {lesion.kind for lesion in cavernoma}


def _work_index(anatomy, centre_mm: np.ndarray) -> tuple[int, int, int]:
    """The work-grid voxel of a subject-mm point (the grid is centred on the field of view)."""
    index = centre_mm / np.asarray(anatomy.spacing_mm) + (np.asarray(anatomy.shape) - 1) / 2
    return tuple(int(i) for i in np.round(index))


def test_contrast_families_change_tissue_contrast_as_named():
    rng = np.random.default_rng(0)

    def ratios(contrast: str) -> tuple[float, float]:
        protocol = draw_protocol(PROTOCOLS["hr"], TINY, rng, {"contrast": contrast})
        csf, wm, gm = (gre_signal(TISSUES[t], protocol) for t in ("csf", "wm", "gm"))
        return csf / wm, gm / wm

    assert ratios("bright_csf")[0] > 1.2  # long-TR 2D GRE: CSF bright
    assert ratios("swi_3d")[0] < 1.0 and ratios("t1_weighted")[0] < ratios("swi_3d")[0]
    assert ratios("t1_weighted")[1] < ratios("swi_3d")[1]  # more T1 weighting: GM darker
    low = draw_protocol(PROTOCOLS["hr"], TINY, rng, {"snr": "low"})
    assert 5.0 <= low.snr_white_matter <= 12.0


def test_field_strength_sets_echo_times_and_relaxation():
    rng = np.random.default_rng(0)
    at_15 = draw_protocol(PROTOCOLS["1.5t"], TINY, rng)
    at_7 = draw_protocol(PROTOCOLS["7t"], TINY, rng)
    assert at_15.field_t == 1.5 and 0.025 <= at_15.te_s <= 0.040
    assert at_7.field_t == 7.0 and 0.008 <= at_7.te_s <= 0.015
    wm = TISSUES["wm"]
    # the same echo time loses more white-matter signal at 7 T (R2* grows with the field)
    same_te = replace(at_7, te_s=0.02, tr_s=0.03, flip_deg=15.0)
    decay_7 = gre_signal(wm, same_te) / gre_signal(wm, replace(same_te, te_s=0.0))
    decay_15 = gre_signal(wm, replace(same_te, field_t=1.5)) / gre_signal(
        wm, replace(same_te, field_t=1.5, te_s=0.0)
    )
    assert decay_7 < decay_15
    # T1 lengthens with the field (white matter, [Wright08]); CSF's stays
    assert tissue_at(wm, 1.5).t1_s < wm.t1_s < tissue_at(wm, 7.0).t1_s
    assert tissue_at(TISSUES["csf"], 7.0).t1_s == TISSUES["csf"].t1_s


def test_artefacts_change_k_space_as_named():
    rng = np.random.default_rng(0)
    clean = (rng.standard_normal((16, 64, 4)) + 1j).astype(np.complex64)
    ringing = clean.copy()
    add_artefacts(ringing, "ringing", np.random.default_rng(1))
    spectrum = np.fft.fft(ringing, axis=1)
    k = np.abs(np.fft.fftfreq(64) * 64)
    assert np.abs(spectrum[:, k > 0.85 * 32, :]).max() < 1e-3  # outer k-space gone
    moved = clean.copy()
    add_artefacts(moved, "motion", np.random.default_rng(1))
    changed = ~np.isclose(np.fft.fft(moved, axis=1), np.fft.fft(clean, axis=1), atol=1e-3)
    lines = changed.any(axis=(0, 2))
    assert 0 < lines.sum() < 32 and not lines[k <= 4].any()  # some lines, never the centre
    untouched = clean.copy()
    add_artefacts(untouched, "none", np.random.default_rng(1))
    assert np.array_equal(untouched, clean)


def test_a_subject_records_its_families_and_shows_them(tmp_path):
    seed = np.random.SeedSequence(8)
    weights = standard_weights()

    def subject(**forced):
        chosen = weights
        for axis, value in forced.items():
            chosen = chosen.forced(axis, value)
        return generate_subject(SynthConfig(preset="tiny", families=chosen), seed)

    standard = subject()
    assert standard.families == STANDARD
    plain = subject(swi_power="0")
    np.testing.assert_allclose(plain.swi, plain.magnitude, rtol=1e-6)
    assert (standard.swi <= standard.magnitude + 1e-3).all()
    assert (standard.swi < 0.9 * standard.magnitude)[standard.brain_mask].mean() > 0.01
    stripped = subject(skull="stripped")
    assert stripped.families["skull"] == "stripped"
    outside = ~stripped.brain_mask
    assert (stripped.magnitude[outside] == 0).mean() > 0.8 and (
        standard.magnitude[outside] > 0
    ).mean() > 0.5
    dark, faint = subject(iron="dark"), subject(iron="faint")
    deep = dark.brain_mask & (dark.magnitude < faint.magnitude - 1.0)
    assert deep.sum() > 20  # the iron-rich nuclei, darker


def test_a_randomised_subject_is_reproducible():
    weights = FamilyWeights().forced("artefacts", "both").forced("veins", "short_segments")
    config = SynthConfig(preset="tiny", families=weights)
    first, again = (generate_subject(config, np.random.SeedSequence(11)) for _ in range(2))
    assert first.families == again.families
    for name in ("swi", "hp_phase", "raw_phase", "labels"):
        assert np.array_equal(getattr(first, name), getattr(again, name)), name
