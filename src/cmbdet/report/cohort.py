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
    """

    subject_id: str
    status: str
    cmbs: int | None = None
    candidates: int | None = None
    seconds: float | None = None
    error: str | None = None
    report: str | None = None


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
    seconds = [r.seconds for r in rows if r.seconds is not None]
    if seconds:
        facts.append(("Time", f"{sum(seconds):.0f} s ({sum(seconds) / len(seconds):.1f} s each)"))
    return facts_table(facts)


def _table(rows: list[CohortRow]) -> str:
    if not rows:
        return "<p>No subjects.</p>"
    header = (
        '<tr><th>subject</th><th>status</th><th class="n">CMBs</th>'
        '<th class="n">candidates</th><th class="n">time (s)</th><th>note</th></tr>'
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
        f'<td class="n">{_number(row.cmbs)}</td><td class="n">{_number(row.candidates)}</td>'
        f'<td class="n">{"" if row.seconds is None else f"{row.seconds:.1f}"}</td>'
        f'<td class="error">{escape(row.error or "")}</td></tr>'
    )


def _number(value: int | None) -> str:
    return "" if value is None else str(value)
