"""``cmbdet review``: a small local web server for a reader's review of an output folder.

Binds 127.0.0.1 only; every request must carry the random token of the printed URL (query
``token=``, or header ``X-Review-Token``) and a loopback ``Host`` header, else 403. It writes
only ``review.json`` and ``reviewed_lesions.csv`` inside the subjects' output folders.

    GET  /?token=T                          the review page (review/page.html)
    GET  /api/subjects                      [{id, items, reviewed}]
    GET  /api/subjects/ID                   the subject: grid, items, decisions, reader
    GET  /api/subjects/ID/slice?view=V&index=N   a PNG slice (axial, coronal or sagittal)
    POST /api/subjects/ID/decide            {item, decision, reason}: record or clear
    POST /api/subjects/ID/add               {voxel: [x, y, z]}: a CMB the model missed
    POST /api/subjects/ID/save              {reader}: write reviewed_lesions.csv

Slices are shown in radiological convention (the patient's right on the left, anterior and
superior up): pixel (column c, row r) of an axial slice is canonical voxel
(X - 1 - c, Y - 1 - r); of a coronal one (X - 1 - c, Z - 1 - r); of a sagittal one
(Y - 1 - c, Z - 1 - r).
"""

from __future__ import annotations

import hmac
import json
import secrets
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np

from cmbdet.errors import InputError
from cmbdet.report.crops import png_bytes
from cmbdet.review.subjects import (
    DECISIONS,
    REASONS,
    ReviewSubject,
    decide,
    find_review_subjects,
    read_state,
    save_reviewed_lesions,
)

HOST = "127.0.0.1"
VIEWS = ("axial", "coronal", "sagittal")
WINDOW_PERCENTILES = (1.0, 99.5)  # of the image's positive voxels: the grey-scale window
MAX_BODY_BYTES = 65536


class ReviewServer(ThreadingHTTPServer):
    """The server: the subjects under review, the token and the reader's name."""

    daemon_threads = True

    def __init__(self, out_dir: Path, reader: str, port: int = 0):
        self.subjects = {s.subject_id: s for s in find_review_subjects(out_dir)}
        self.token = secrets.token_urlsafe(24)
        self.reader = reader
        self.windows: dict[str, tuple[float, float]] = {}
        super().__init__((HOST, port), ReviewHandler)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_port}/?token={self.token}"


class ReviewHandler(BaseHTTPRequestHandler):
    server: ReviewServer

    def log_message(self, format, *args):  # noqa: A002  (quiet: the terminal shows the URL)
        return

    def do_GET(self):
        self._answer(self._get)

    def do_POST(self):
        self._answer(self._post)

    def _answer(self, route) -> None:
        if not self._allowed():
            self._send(HTTPStatus.FORBIDDEN, b"forbidden: the review URL's token is needed")
            return
        try:
            route(urlsplit(self.path))
        except (ValueError, KeyError, TypeError, InputError) as error:
            self._json({"error": str(error)}, HTTPStatus.BAD_REQUEST)
        except OSError as error:  # e.g. an output folder that cannot be written
            self._json({"error": f"{error.strerror or error}"}, HTTPStatus.INTERNAL_SERVER_ERROR)

    def _allowed(self) -> bool:
        query = parse_qs(urlsplit(self.path).query)
        token = self.headers.get("X-Review-Token") or (query.get("token") or [""])[0]
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
        good_host = host in (HOST, "localhost")
        return good_host and hmac.compare_digest(token.encode(), self.server.token.encode())

    def _get(self, url) -> None:
        parts = _parts(url.path)
        if not parts:
            page = resources.files("cmbdet.review").joinpath("page.html").read_bytes()
            self._send(HTTPStatus.OK, page, "text/html; charset=utf-8")
        elif parts == ["api", "subjects"]:
            self._json([_progress(s) for s in self.server.subjects.values()])
        elif len(parts) == 3 and parts[:2] == ["api", "subjects"]:
            self._json(self._subject_view(self._subject(parts[2])))
        elif len(parts) == 4 and parts[3] == "slice":
            query = parse_qs(url.query)
            view, index = query["view"][0], int(query["index"][0])
            png = self._slice_png(self._subject(parts[2]), view, index)
            self._send(HTTPStatus.OK, png, "image/png")
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found")

    def _post(self, url) -> None:
        parts = _parts(url.path)
        if len(parts) != 4 or parts[:2] != ["api", "subjects"]:
            self._send(HTTPStatus.NOT_FOUND, b"not found")
            return
        subject, action, body = self._subject(parts[2]), parts[3], self._body()
        reader = str(body.get("reader") or self.server.reader).strip()[:100] or "unnamed"
        if action == "decide":
            decide(subject, str(body["item"]), body.get("decision"), body.get("reason"), reader)
            self._json(_progress(subject))
        elif action == "add":
            added = self._with_image(subject).add_cmb(tuple(int(v) for v in body["voxel"]), reader)
            self._json({"added": added, **_progress(subject)})
        elif action == "save":
            path = save_reviewed_lesions(self._with_image(subject), reader)
            self._json({"written": str(path), **_progress(subject)})
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found")

    def _subject(self, subject_id: str) -> ReviewSubject:
        if subject_id not in self.server.subjects:
            raise KeyError(f"no subject {subject_id!r}")
        return self.server.subjects[subject_id]

    def _with_image(self, subject: ReviewSubject) -> ReviewSubject:
        """``subject``, whose image may now be read; the others' images are let go (one
        subject's volume in memory at a time, whatever the cohort's size)."""
        for other in self.server.subjects.values():
            if other is not subject:
                other.release_image()
        return subject

    def _subject_view(self, subject: ReviewSubject) -> dict:
        subject = self._with_image(subject)
        state = read_state(subject.folder)
        return {
            "id": subject.subject_id,
            "shape": list(subject.image.shape),
            "spacing_mm": [float(s) for s in subject.image.spacing_mm],
            "threshold": subject.threshold,
            "items": [item.to_json() for item in subject.items()],
            "decisions": state["decisions"],
            "reader": state["reader"] or self.server.reader,
            "choices": {"decisions": list(DECISIONS), "reasons": list(REASONS)},
        }

    def _slice_png(self, subject: ReviewSubject, view: str, index: int) -> bytes:
        data = self._with_image(subject).image.data
        axis = {"sagittal": 0, "coronal": 1, "axial": 2}[view]
        if not 0 <= index < data.shape[axis]:
            raise ValueError(f"{view} slice {index} lies outside 0-{data.shape[axis] - 1}")
        plane = np.take(data, index, axis=axis).T[::-1, ::-1]
        low, high = self._window(subject)
        scaled = (plane.astype(np.float32) - low) / max(high - low, 1e-12)
        return png_bytes(np.round(np.clip(scaled, 0, 1) * 255).astype(np.uint8))

    def _window(self, subject: ReviewSubject) -> tuple[float, float]:
        if subject.subject_id not in self.server.windows:
            values = subject.image.data[::2, ::2, ::2]
            values = values[values > 0] if (values > 0).any() else values.ravel()
            low, high = np.percentile(values, WINDOW_PERCENTILES)
            self.server.windows[subject.subject_id] = (float(low), float(high))
        return self.server.windows[subject.subject_id]

    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_BODY_BYTES:
            raise ValueError("a JSON body is needed")
        body = json.loads(self.rfile.read(length))
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        return body

    def _json(self, value, status: HTTPStatus = HTTPStatus.OK) -> None:
        self._send(status, json.dumps(value).encode(), "application/json")

    def _send(self, status: HTTPStatus, body: bytes, kind: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the page moved on (a newer slice)
            pass


def _progress(subject: ReviewSubject) -> dict:
    """A subject's items and how many are decided (or the problem that stops its review)."""
    try:
        decided = read_state(subject.folder)["decisions"]
        items = subject.item_ids()
    except InputError as error:
        return {"id": subject.subject_id, "items": 0, "reviewed": 0, "error": str(error)}
    reviewed = sum(item in decided for item in items)
    return {"id": subject.subject_id, "items": len(items), "reviewed": reviewed}


def _parts(path: str) -> list[str]:
    """The URL path's segments, percent-decoded (subject ids may hold any character)."""
    return [unquote(part) for part in path.split("/") if part]
