"""Human-readable reports: one self-contained ``report.html`` per subject, and a cohort page
for dataset runs (see DESIGN.md, "Command line")."""

from __future__ import annotations

from cmbdet.report.cohort import CohortRow, write_cohort_report
from cmbdet.report.subject import write_subject_report

__all__ = ["CohortRow", "write_cohort_report", "write_subject_report"]
