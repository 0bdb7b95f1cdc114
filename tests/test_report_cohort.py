"""The cohort page of a batch."""

from __future__ import annotations

import re

from cmbdet.report.cohort import CohortRow, write_cohort_report


def test_cohort_page_links_each_subject_and_escapes_ids(tmp_path):
    rows = [
        CohortRow("sub-0001", "done", 3, 40, 12.5, None, "sub-0001/report.html"),
        CohortRow('sub-<b>&"x', "done", 0, 12, 9.0, None, 'sub-<b>&"x/report.html'),
        CohortRow("sub 0003", "done", 1, 20, 10.0, None, "sub 0003/report.html"),
        CohortRow("sub-0004", "failed", error="phase.nii.gz: file is empty <0 bytes>"),
    ]
    path = tmp_path / "cohort.html"
    write_cohort_report(path, rows, "study <A>")
    html = path.read_text(encoding="utf-8")
    links = re.findall(r'<a href="([^"]+)">([^<]+)</a>', html)
    assert links == [
        ("sub-0001/report.html", "sub-0001"),
        ("sub-%3Cb%3E%26%22x/report.html", "sub-&lt;b&gt;&amp;&quot;x"),
        ("sub%200003/report.html", "sub 0003"),
    ]
    assert "<b>" not in html and "<A>" not in html and "study &lt;A&gt;" in html
    assert "file is empty &lt;0 bytes&gt;" in html
    assert "4 (3 done, 1 failed)" in html
    assert "4 in all; median 1 per subject" in html and "2 of 3 subjects" in html
    table = re.search(r'<table class="list">.*?</table>', html, re.S).group(0)
    assert table.count("<tr") == 1 + len(rows)  # header + one per subject
    assert table.count('class="problem"') == 1


def test_cohort_page_names_the_model_and_shows_regions_and_flags(tmp_path):
    regions = {"lobar": 2, "deep": 1, "infratentorial": 0}
    rows = [
        CohortRow("sub-0001", "done", 3, 40, 1.0, None, None, regions, "m-v4", 0.98),
        CohortRow("sub-0002", "done", 0, 9, 1.0, None, None, None, "m-v4", 0.98, ("odd <x>",)),
        CohortRow("sub-0003", "skipped", 1, 9, None, None, None, None, "m-v3", 0.5),
    ]
    path = tmp_path / "cohort.html"
    write_cohort_report(path, rows, "study")
    html = path.read_text(encoding="utf-8")
    assert "m-v4 at threshold 0.980 (2 subjects); m-v3 at threshold 0.500 (1 subject)" in html
    assert "1 subject (QC flags)" in html and "odd &lt;x&gt;" in html
    first = re.findall(r"<tr>.*?</tr>", html.split('<table class="list">')[1], re.S)[1]
    cells = re.findall(r'<td class="n">([^<]*)</td>', first)
    assert cells[:4] == ["3", "2", "1", "0"]  # CMBs, then lobar, deep, infratentorial
