"""The HTML shell shared by the subject and cohort pages: one self-contained file, inline CSS,
no scripts, nothing fetched from anywhere."""

from __future__ import annotations

from html import escape

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif;
  color: #1f2328; background: #fff; margin: 0 auto; max-width: 1160px; padding: 18px 22px 40px; }
h1 { font-size: 22px; margin: 0 0 2px; }
h2 { font-size: 17px; margin: 26px 0 10px; padding-bottom: 4px; border-bottom: 1px solid #d0d7de; }
h3 { font-size: 15px; margin: 0 0 6px; }
.muted { color: #59636e; }
.headline { font-size: 19px; margin: 12px 0 4px; }
.headline strong { font-size: 26px; }
.top { display: flex; flex-wrap: wrap; gap: 18px 40px; align-items: flex-start; }
table { border-collapse: collapse; }
th, td { text-align: left; padding: 3px 10px 3px 0; vertical-align: top; }
table.facts th { color: #59636e; font-weight: 600; white-space: nowrap; }
table.facts td { overflow-wrap: anywhere; max-width: 560px; }
table.counts td.n, table.counts th.n { text-align: right; padding-left: 14px; }
table.counts tr.total td { border-top: 1px solid #8c959f; font-weight: 600; }
table.list { min-width: 620px; }
table.list th { border-bottom: 1px solid #8c959f; font-size: 13px; }
table.list th, table.list td { padding: 4px 26px 4px 0; }
table.list td { border-bottom: 1px solid #eaeef2; }
table.list td.n, table.list th.n { text-align: right; }
table.list td.error { max-width: 520px; overflow-wrap: anywhere; padding-right: 0; }
.note { background: #fff8c5; border: 1px solid #e2c44c; border-radius: 6px; padding: 7px 11px;
  margin: 14px 0 0; font-size: 13px; }
.cards { display: flex; flex-wrap: wrap; gap: 16px; }
.card { border: 1px solid #d0d7de; border-radius: 8px; padding: 10px 12px 12px; width: 532px;
  break-inside: avoid; }
.card .meta { font-size: 13px; margin: 0 0 8px; }
.card .meta span { margin-right: 14px; white-space: nowrap; }
.views { display: grid; grid-template-columns: 42px repeat(3, 160px); gap: 4px 6px;
  align-items: center; }
.views .head { font-size: 12px; color: #59636e; text-align: center; }
.views .side { font-size: 12px; font-weight: 600; color: #59636e; }
figure.crop { position: relative; margin: 0; background: #000; border-radius: 3px;
  overflow: hidden; }
figure.crop img { display: block; width: 100%; height: 100%; }
figure.crop svg { position: absolute; left: 0; top: 0; width: 100%; height: 100%; }
.views figure.crop { width: 160px; height: 160px; }
.mini { border: 1px solid #d0d7de; border-radius: 8px; padding: 8px 10px 10px; width: 300px; }
.mini h3 { font-size: 14px; margin: 0 0 2px; }
.mini .meta { font-size: 12px; margin: 0 0 6px; }
.mini .views { grid-template-columns: 42px repeat(2, 122px); }
.mini .views figure.crop { width: 122px; height: 122px; }
details { margin-top: 6px; }
details summary { cursor: pointer; font-weight: 600; padding: 4px 0; }
.badge { display: inline-block; padding: 0 7px; border-radius: 10px; font-size: 12px;
  font-weight: 600; }
.done { background: #dafbe1; color: #116329; }
.failed { background: #ffebe9; color: #a40e26; }
.skipped { background: #eaeef2; color: #424a53; }
tr.problem td { background: #fff5f5; }
footer { margin-top: 30px; font-size: 12px; color: #59636e; }
@media print { body { max-width: none; } details { display: block; } }
"""


def page(title: str, body: str) -> str:
    """A complete HTML document; ``title`` is plain text, ``body`` is HTML."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{CSS}</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )


def facts_table(rows: list[tuple[str, str]]) -> str:
    """A two-column table of (label, value) plain-text pairs."""
    cells = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
    return f'<table class="facts">{cells}</table>'
