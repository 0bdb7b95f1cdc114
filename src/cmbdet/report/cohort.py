"""The cohort page of a ``--dataset`` run: a summary and one row per subject, linking to each
subject's own ``report.html``."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass
from html import escape
from pathlib import Path
from urllib.parse import quote

from cmbdet.report.page import facts_table, page
from cmbdet.version import __version__

STATUSES = ("done", "failed", "skipped")
REGION_COLUMNS = ("lobar", "deep", "infratentorial")  # MARS's regions, as run.json counts them


@dataclass(frozen=True)
class CohortRow:
    """One subject of a dataset run.

    Attributes:
        subject_id: e.g. ``"sub-0001"`` (any text; escaped on the page).
        status: ``"done"``, ``"failed"`` or ``"skipped"``.
        cmbs: CMBs detected, None when the subject did not finish.
        candidates: stage-1 candidates, None when unknown.
        seconds: time the subject took, None when unknown.
        error: why it failed or was skipped (one line), None otherwise.
        report: the subject's ``report.html`` relative to the cohort page, as a path (not
            URL-encoded), e.g. ``"sub-0001/report.html"``; None when there is none.
        regions: CMBs by approximate region (``lobar``, ``deep``, ``infratentorial``);
            None when unknown.
        model: name of the model that made the subject's outputs; "" when unknown.
        threshold: its stage-2 operating threshold; None when unknown.
        qc_flags: what to check by eye.
        input_mode: which files the subject had and what ran (``swi+phase``, ...); "" when
            unknown.
    """

    subject_id: str
    status: str
    cmbs: int | None = None
    candidates: int | None = None
    seconds: float | None = None
    error: str | None = None
    report: str | None = None
    regions: dict[str, int] | None = None
    model: str = ""
    threshold: float | None = None
    qc_flags: tuple[str, ...] = ()
    input_mode: str = ""


def write_cohort_report(path: Path, rows: list[CohortRow], title: str) -> None:
    """Write the cohort page.

    Args:
        path: the HTML file to write (subject links are relative to its folder).
        rows: one per subject, in the order to show.
        title: the dataset's name, shown as the heading (plain text).
    """
    Path(path).write_text(cohort_page(rows, title), encoding="utf-8")


def cohort_page(rows: list[CohortRow], title: str) -> str:
    """The HTML of :func:`write_cohort_report`."""
    body = [
        f"<h1>Cerebral microbleeds: {escape(title)}</h1>",
        f'<div class="muted">cmbdet {escape(__version__)} &middot; cohort summary</div>',
        _summary(rows),
        f"<h2>Subjects ({len(rows)})</h2>",
        _table(rows),
        "<footer>Each subject's page shows its detections with crops and approximate regions. "
        "Research software: findings need a radiologist's review.</footer>",
    ]
    return page(f"CMB cohort: {title}", "\n".join(body))


def _summary(rows: list[CohortRow]) -> str:
    done = [r for r in rows if r.status == "done"]
    counts = [r.cmbs for r in done if r.cmbs is not None]
    statuses = Counter(r.status for r in rows)
    order = sorted(statuses, key=lambda s: (STATUSES.index(s) if s in STATUSES else 3, s))
    status_line = ", ".join(f"{statuses[s]} {s}" for s in order)
    facts = [("Subjects", f"{len(rows)} ({status_line})")]
    if counts:
        facts += [
            ("CMBs", f"{sum(counts)} in all; median {statistics.median(counts):g} per subject"),
            ("With CMBs", f"{sum(c > 0 for c in counts)} of {len(counts)} subjects"),
        ]
    made_with = Counter((r.model, r.threshold) for r in rows if r.model)
    if made_with:
        facts.append(
            ("Model", "; ".join(_made_with(*key, n, len(rows)) for key, n in made_with.items()))
        )
    modes = Counter(r.input_mode for r in rows if r.input_mode)
    if modes:
        shown = ", ".join(f"{mode} ({n})" for mode, n in sorted(modes.items()))
        mixed = " - mixed: compare counts across modes with care" if len(modes) > 1 else ""
        facts.append(("Input modes", f"{shown}{mixed}"))
    flagged = sum(bool(r.qc_flags) for r in rows)
    if flagged:
        facts.append(
            ("To check by eye", f"{flagged} subject{'s' if flagged > 1 else ''} (QC flags)")
        )
    seconds = [r.seconds for r in rows if r.seconds is not None]
    if seconds:
        facts.append(("Time", f"{sum(seconds):.0f} s ({sum(seconds) / len(seconds):.1f} s each)"))
    return facts_table(facts)


def _made_with(model: str, threshold: float | None, count: int, total: int) -> str:
    at = "" if threshold is None else f" at threshold {threshold:.3f}"
    share = "" if count == total else f" ({count} subject{'s' if count > 1 else ''})"
    return f"{model}{at}{share}"


def _table(rows: list[CohortRow]) -> str:
    if not rows:
        return "<p>No subjects.</p>"
    regions = "".join(f'<th class="n">{name}</th>' for name in REGION_COLUMNS)
    header = (
        f'<tr><th>subject</th><th>status</th><th class="n">CMBs</th>{regions}'
        '<th class="n">candidates</th><th class="n">time (s)</th><th>check by eye</th>'
        "<th>note</th></tr>"
    )
    return f'<table class="list">{header}{"".join(_row(r) for r in rows)}</table>'


def _row(row: CohortRow) -> str:
    name = escape(row.subject_id)
    if row.report:
        name = f'<a href="{escape(quote(row.report, safe="/"))}">{name}</a>'
    status = escape(row.status)
    badge = f'<span class="badge {status if row.status in STATUSES else "skipped"}">{status}</span>'
    problem = ' class="problem"' if row.status != "done" else ""
    return (
        f"<tr{problem}><td>{name}</td><td>{badge}</td>"
        f'<td class="n">{_number(row.cmbs)}</td>'
        + "".join(
            f'<td class="n">{_number((row.regions or {}).get(name))}</td>'
            for name in REGION_COLUMNS
        )
        + f'<td class="n">{_number(row.candidates)}</td>'
        f'<td class="n">{"" if row.seconds is None else f"{row.seconds:.1f}"}</td>'
        f'<td class="error">{"<br>".join(escape(flag) for flag in row.qc_flags)}</td>'
        f'<td class="error">{escape(row.error or "")}</td></tr>'
    )


def _number(value: int | None) -> str:
    return "" if value is None else str(value)
