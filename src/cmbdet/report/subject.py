"""One subject's ``report.html``: run summary, CMB count by region, and crops of each detection.

The page is one file a radiologist can open offline: images are embedded as PNG data URIs,
the CSS is inline, nothing is fetched and no script runs. Candidates that stage 2 rejected sit
in a collapsed ``<details>`` section, the highest-scoring ``MAX_REJECTED_SHOWN`` of them with
axial crops. A subject with more than ``MAX_CARDS`` detections gets crops for the first ones
and a table of the rest, so the page stays small and quick to write.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from pathlib import Path

import numpy as np

from cmbdet.geometry import world_to_voxel
from cmbdet.io.nifti import Volume
from cmbdet.records import Candidate, DetectionResult
from cmbdet.report.crops import (
    CROP_FOV_MM,
    CROP_PIXELS,
    ORIENTATION_LETTERS,
    PIXEL_MM,
    VIEWS,
    Window,
    crop_uris,
    darkest_point,
)
from cmbdet.report.inputs import input_rows, phase_text
from cmbdet.report.page import facts_table, page
from cmbdet.report.regions import MniMap, coarse_brain_mask, fit_mni_map
from cmbdet.version import __version__

MAX_CARDS = 100  # detections shown with crops; any further ones are listed in a table
MAX_REJECTED_SHOWN = 30
REJECTED_VIEWS = ("axial", "coronal")
REGIONS = ("lobar", "deep", "infratentorial")
NOT_DETERMINED = "not determined"
SWI_PERCENTILES = (1.0, 99.5)  # of the brain's voxels: CMBs and veins saturate to black
PHASE_PERCENTILE = 99.0  # of |phase - zero| in the brain: the window is symmetric about zero
MARKER_MARGIN_MM = 3.0  # the ring clears the detection's in-plane radius by this much
MIN_MARKER_RADIUS_MM = 5.0
MIN_REACH_MM = 1.0  # crops move at most this far to a candidate's darkest voxel, or its radius


@dataclass(frozen=True)
class SubjectRegions:
    """The approximate region (``lobar``, ``deep``, ``infratentorial`` or ``not determined``)
    of each detection and each candidate, in the order of the result's lists."""

    detections: list[str]
    candidates: list[str]


def write_subject_report(path: Path, result: DetectionResult, title: str) -> SubjectRegions:
    """Write one subject's ``report.html``.

    Args:
        path: the HTML file to write.
        result: the detector's result; its ``reference`` (SWI) and ``phase`` volumes give the
            crops and regions. Without ``reference`` the page has no images and no regions;
            without ``phase`` it shows SWI only.
        title: the subject's name, shown as the page's heading (plain text).

    Returns:
        The regions the page shows, for the detection tables and the cohort counts.
    """
    images = _Images.prepare(result)
    regions = SubjectRegions(
        _regions(images, result.detections), _regions(images, result.candidates)
    )
    Path(path).write_text(_subject_page(result, title, images, regions), encoding="utf-8")
    return regions


def _regions(images: _Images | None, candidates: list[Candidate]) -> list[str]:
    return images.regions(candidates) if images else [NOT_DETERMINED] * len(candidates)


def _subject_page(
    result: DetectionResult, title: str, images: _Images | None, regions: SubjectRegions
) -> str:
    detections = result.detections
    rejected = sorted(
        (n for n, c in enumerate(result.candidates, start=1) if c.score < result.threshold),
        key=lambda n: -result.candidates[n - 1].score,
    )  # candidate numbers as in candidates.csv, highest score first
    body = [
        _header(result, title),
        '<div class="top">',
        _summary(result, images),
        _region_counts(regions.detections),
        "</div>",
        _region_note(images),
        f"<h2>Detections ({len(detections)})</h2>",
        _detections(detections, regions.detections, images),
        "<h2>Candidates rejected by stage 2</h2>",
        _rejected(result, rejected, images),
        _footer(images),
    ]
    return page(f"CMB report: {title}", "\n".join(body))


# ----------------------------------------------------------------------------- images


@dataclass(frozen=True, eq=False)
class _Images:
    """What crops and regions need: the input volumes, display windows and the MNI map."""

    swi: Volume
    phase: Volume | None
    swi_window: Window
    phase_window: Window | None
    mni: MniMap | None

    @classmethod
    def prepare(cls, result: DetectionResult) -> _Images | None:
        swi = result.reference
        if swi is None:
            return None
        mask, factor = coarse_brain_mask(swi.data, swi.spacing_mm)
        mask_spacing = (swi.spacing_mm[0] * factor, swi.spacing_mm[1] * factor, swi.spacing_mm[2])
        mni = fit_mni_map(mask, mask_spacing, swi.affine, swi.spacing_mm)
        if not mask.any():  # no brain found: window on the whole volume
            mask = np.ones_like(mask)

        def brain_sample(volume: Volume) -> np.ndarray:
            # one voxel of each coarse block: (X // f, Y // f, Z), the mask's grid
            grid = volume.data[::factor, ::factor][: mask.shape[0], : mask.shape[1]]
            return grid[mask]

        swi_window = Window.of(brain_sample(swi), SWI_PERCENTILES)
        phase_window = None
        if result.phase is not None:
            # the phase the networks read (radians, filtered, right-handed): zero is zero
            phase_window = Window.symmetric(brain_sample(result.phase), 0.0, PHASE_PERCENTILE)
        return cls(swi, result.phase, swi_window, phase_window, mni)

    def regions(self, candidates: list[Candidate]) -> list[str]:
        """Approximate region of each candidate (``NOT_DETERMINED`` without an MNI map)."""
        if self.mni is None or not candidates:
            return [NOT_DETERMINED] * len(candidates)
        return self.mni.regions(np.array([[c.x_mm, c.y_mm, c.z_mm] for c in candidates]))

    def crops(self, candidate: Candidate, views: tuple[str, ...] = VIEWS) -> dict[str, dict]:
        """``{"SWI": {view: data URI}, "Phase": {...}}`` around a candidate."""
        centre = world_to_voxel([candidate.x_mm, candidate.y_mm, candidate.z_mm], self.swi.affine)
        reach = _reach_mm(candidate, self.swi.spacing_mm[2])
        centre = darkest_point(self.swi.data, self.swi.spacing_mm, centre, reach)
        channels = {"SWI": (self.swi, self.swi_window), "Phase": (self.phase, self.phase_window)}
        return {
            name: crop_uris(volume.data, volume.spacing_mm, centre, window, views)
            for name, (volume, window) in channels.items()
            if volume is not None
        }


def _crop_figure(uri: str, view: str, radius_mm: float, label: str) -> str:
    """An ``<img>`` with an SVG overlay: ring on the centre, orientation letters, 5 mm bar.

    Marks are yellow over a dark halo, so they read on bright tissue and on black alike.
    """
    left, right, top, _ = ORIENTATION_LETTERS[view]
    centre, edge = CROP_PIXELS / 2, CROP_PIXELS - 3
    ring = min(radius_mm, CROP_FOV_MM / 2 - 1.0) / PIXEL_MM
    bar = 5.0 / PIXEL_MM
    halo = 'stroke="#000" stroke-opacity="0.55" paint-order="stroke"'
    text = f'font-size="5" font-family="sans-serif" font-weight="bold" fill="#ffd33d" {halo}'
    return (
        f'<figure class="crop"><img src="{uri}" alt="{escape(label)}">'
        f'<svg viewBox="0 0 {CROP_PIXELS} {CROP_PIXELS}" aria-hidden="true">'
        f'<circle cx="{centre}" cy="{centre}" r="{ring:.2f}" fill="none" stroke="#000" '
        'stroke-opacity="0.55" stroke-width="1.6"/>'
        f'<circle cx="{centre}" cy="{centre}" r="{ring:.2f}" fill="none" stroke="#ffd33d" '
        'stroke-width="0.7"/>'
        f'<g {text} stroke-width="1">'
        f'<text x="1.5" y="{centre + 1.8}">{left}</text>'
        f'<text x="{CROP_PIXELS - 1.5}" y="{centre + 1.8}" text-anchor="end">{right}</text>'
        f'<text x="{centre}" y="6" text-anchor="middle">{top}</text></g>'
        f'<line x1="{edge - bar:.2f}" y1="{edge}" x2="{edge}" y2="{edge}" stroke="#fff" '
        f'stroke-width="0.8" {halo}/>'
        "</svg></figure>"
    )


def _reach_mm(candidate: Candidate, slice_mm: float) -> tuple[float, float]:
    """How far from a candidate's centre its crops may move to its darkest voxel: (in-plane,
    through-plane) mm, within its own radius and the half-length of its track across the
    input's slices (``slice_mm`` thick)."""
    radius = max(candidate.diameter_mm / 2, MIN_REACH_MM)
    return radius, max(radius, (candidate.slices - 1) * slice_mm / 2)


def _marker_radius_mm(candidate: Candidate) -> float:
    return max(candidate.diameter_mm / 2 + MARKER_MARGIN_MM, MIN_MARKER_RADIUS_MM)


# ----------------------------------------------------------------------------- sections


def _header(result: DetectionResult, title: str) -> str:
    record = result.record
    model = (record.get("model") or {}).get("name") or "unnamed model"
    version = record.get("cmbdet_version", __version__)
    count = len(result.detections)
    if count:
        plural = "s" if count > 1 else ""
        headline = f"<strong>{count}</strong> cerebral microbleed{plural} detected"
    else:
        headline = "<strong>No CMBs found</strong> (no candidate reached the threshold)"
    return (
        f"<h1>Cerebral microbleeds: {escape(title)}</h1>"
        f'<div class="muted">cmbdet {escape(str(version))} &middot; model {escape(str(model))}'
        f" &middot; operating threshold {result.threshold:.3f}</div>"
        f'<p class="headline">{headline}</p>'
        f"{_qc_note(record.get('qc_flags') or [])}"
    )


def _qc_note(flags: list[str]) -> str:
    """The run's QC flags (:mod:`cmbdet.detect.qc`) as a note above everything else."""
    if not flags:
        return ""
    items = "".join(f"<li>{escape(str(flag))}</li>" for flag in flags)
    return (
        '<div class="note qc"><b>Check this subject by eye</b>: it lies outside what the model '
        f"was trained on, or a phase convention was guessed.<ul>{items}</ul></div>"
    )


def _summary(result: DetectionResult, images: _Images | None) -> str:
    record = result.record
    inputs = record.get("inputs") or {}
    rows = input_rows(record, inputs) or [
        ("SWI", str(inputs.get("swi") or _path_of(result.reference))),
        ("Phase", str(inputs.get("phase") or _path_of(result.phase))),
    ]
    if images is not None:
        shape = "x".join(str(n) for n in images.swi.shape)
        spacing = " x ".join(f"{s:.2g}" for s in images.swi.spacing_mm)
        rows.append(("Grid", f"{shape} voxels of {spacing} mm"))
    phase = (record.get("preprocessing") or {}).get("phase")
    if phase:
        rows.append(("Phase handling", phase_text(phase)))
    brain = (record.get("preprocessing") or {}).get("brain_mask")
    if brain:
        rows.append(("Brain mask", str(brain)))
    rows.append(
        (
            "Stage 1 / stage 2",
            f"{len(result.candidates)} candidates; {len(result.detections)} at or above "
            f"score {result.threshold:.3f}",
        )
    )
    timings = record.get("timings_s") or {}
    if timings:
        parts = ", ".join(f"{k} {float(v):.1f}" for k, v in timings.items())
        rows.append(("Run time", f"{sum(float(v) for v in timings.values()):.1f} s ({parts})"))
    return facts_table(rows)


def _region_counts(regions: list[str]) -> str:
    names = list(REGIONS) + ([NOT_DETERMINED] if NOT_DETERMINED in regions else [])
    rows = "".join(
        f'<tr><td>{escape(name)}</td><td class="n">{regions.count(name)}</td></tr>'
        for name in names
    )
    total = f'<tr class="total"><td>total</td><td class="n">{len(regions)}</td></tr>'
    return (
        '<table class="counts"><tr><th>Region (approximate)</th><th class="n">CMBs</th></tr>'
        f"{rows}{total}</table>"
    )


def _region_note(images: _Images | None) -> str:
    if images is None:
        return (
            '<p class="note">Images and regions are not available: the input volumes were '
            "not kept with this result.</p>"
        )
    if images.mni is None:
        return '<p class="note">Regions not determined: no brain was found on the SWI.</p>'
    cut = f" The field of view cuts the brain ({escape(images.mni.cut)})." if images.mni.cut else ""
    return (
        '<p class="note"><b>Regions are approximate.</b> The scan is not registered to a '
        "template: the brain's outline on SWI is mapped linearly onto the MNI brain (size from "
        "its width, height fitted to the axial brain area) and each detection is read from "
        "coarse MNI boxes (deep: basal ganglia, thalamus, corpus callosum; infratentorial: "
        f"brainstem, cerebellum). Check borderline locations on the images.{cut}</p>"
    )


def _detections(detections: list[Candidate], regions: list[str], images: _Images | None) -> str:
    if not detections:
        return "<p>No CMBs found.</p>"
    numbered = list(enumerate(zip(detections, regions, strict=True), start=1))
    cards = [_detection_card(n, d, region, images) for n, (d, region) in numbered[:MAX_CARDS]]
    html = '<div class="cards">' + "\n".join(cards) + "</div>"
    rest = numbered[MAX_CARDS:]
    if rest:
        rows = "".join(
            f'<tr><td class="n">{n}</td><td class="n">{d.score:.3f}</td>'
            f'<td class="n">{d.stage1_score:.2f}</td><td class="n">{d.diameter_mm:.1f}</td>'
            f"<td>{escape(region)}</td>"
            f"<td>({d.x_mm:.1f}, {d.y_mm:.1f}, {d.z_mm:.1f})</td></tr>"
            for n, (d, region) in rest
        )
        html += (
            f"<p>CMBs {MAX_CARDS + 1} to {len(detections)}, without crops:</p>"
            '<table class="list"><tr><th class="n">CMB</th><th class="n">score</th>'
            '<th class="n">stage-1 score</th><th class="n">&#8960; mm</th><th>region</th>'
            f"<th>world (x, y, z) mm</th></tr>{rows}</table>"
        )
    return html


def _detection_card(n: int, detection: Candidate, region: str, images: _Images | None) -> str:
    meta = (
        f"<span>region {escape(region)}</span>"
        f"<span>&#8960; {detection.diameter_mm:.1f} mm, {detection.slices} slices</span>"
        f"<span>stage-1 score {detection.stage1_score:.2f}</span><br>"
        f"<span>world ({detection.x_mm:.1f}, {detection.y_mm:.1f}, {detection.z_mm:.1f}) mm"
        "</span>"
        f"<span>voxel ({detection.i:.0f}, {detection.j:.0f}, {detection.k:.0f})</span>"
    )
    heading = f"<h3>CMB {n} &middot; score {detection.score:.3f}</h3>"
    if images is None:
        return f'<div class="card">{heading}<p class="meta">{meta}</p></div>'
    grid = _views_grid(images, detection, VIEWS, f"CMB {n}")
    return f'<div class="card detection">{heading}<p class="meta">{meta}</p>{grid}</div>'


def _views_grid(images: _Images, candidate: Candidate, views: tuple[str, ...], name: str) -> str:
    """Crops of a candidate: a row per channel (SWI, phase), a labelled column per view."""
    radius = _marker_radius_mm(candidate)
    cells = ["<div></div>"] + [f'<div class="head">{view}</div>' for view in views]
    for channel, uris in images.crops(candidate, views).items():
        cells.append(f'<div class="side">{channel}</div>')
        cells += [
            _crop_figure(uris[view], view, radius, f"{name} {channel} {view}") for view in views
        ]
    return f'<div class="views v{len(views)}">' + "".join(cells) + "</div>"


def _rejected(result: DetectionResult, rejected: list[int], images: _Images | None) -> str:
    if not result.candidates:
        return "<p>Stage 1 proposed no candidates.</p>"
    if not rejected:
        return "<p>Stage 2 rejected no candidate.</p>"
    shown = rejected[:MAX_REJECTED_SHOWN]
    candidates = [result.candidates[n - 1] for n in shown]
    regions = images.regions(candidates) if images else [NOT_DETERMINED] * len(shown)
    items = []
    for n, candidate, region in zip(shown, candidates, regions, strict=True):
        thumbnails = ""
        if images is not None:  # coronal beside axial: a vein runs on, a CMB stays round
            thumbnails = _views_grid(images, candidate, REJECTED_VIEWS, f"candidate {n}")
        items.append(
            f'<div class="mini rejected"><h3>Candidate {n} &middot; score '
            f"{candidate.score:.3f}</h3>"
            f'<p class="meta">{escape(region)} &middot; &#8960; {candidate.diameter_mm:.1f} mm'
            f" &middot; stage-1 {candidate.stage1_score:.2f}<br>"
            f"({candidate.x_mm:.1f}, {candidate.y_mm:.1f}, {candidate.z_mm:.1f}) mm</p>"
            f"{thumbnails}</div>"
        )
    more = len(rejected) - len(shown)
    summary = f"{len(rejected)} candidate{'s' if len(rejected) > 1 else ''} scored below " + (
        f"{result.threshold:.3f}" + (f"; the {len(shown)} highest-scoring shown" if more else "")
    )
    caption = "Axial and coronal SWI and phase of each." if images is not None else ""
    extra = f" {more} more are listed in candidates.csv." if more else ""
    return (
        f"<details><summary>{summary}</summary>"
        f'<p class="muted">{caption}{extra}</p>'
        f'<div class="cards">{"".join(items)}</div></details>'
    )


def _footer(images: _Images | None) -> str:
    views = ""
    if images is not None:
        views = (
            f"Crops: {CROP_FOV_MM:.1f} mm square, radiological convention (the patient's right "
            "on the left), yellow ring centred on the detection, white bar 5 mm. SWI window: "
            f"percentiles {SWI_PERCENTILES[0]:g} to {SWI_PERCENTILES[1]:g} in the brain; "
            "phase as the networks read it (high-pass filtered, radians, right-handed), "
            "window symmetric about zero "
            f"(percentile {PHASE_PERCENTILE:g} of |phase| in the brain). "
        )
    return (
        f"<footer>{views}Candidate numbers match candidates.csv and CMB numbers match "
        "detections.csv. Research software: findings need a radiologist's review.</footer>"
    )


def _path_of(volume: Volume | None) -> str:
    return str(volume.path) if volume is not None else "not recorded"
