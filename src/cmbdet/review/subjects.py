"""What a reader reviews: the subjects of an output folder, each one's detections and highest
rejected candidates, the reader's decisions (kept in ``review.json`` beside the outputs), and
the table a review writes (``reviewed_lesions.csv``: DESIGN.md ``lesions.csv`` columns plus
reader, time, decision and reason), which ``evaluate`` reads as ground truth.

Decisions: ``cmb`` (confirmed; ``kind`` cmb, ``visible`` 1), ``not_cmb`` with a reason
(``kind`` the reason: vein, calcification, iron, artefact or other; a mimic, so a detection on
it is a false positive), ``unsure`` (``kind`` cmb, ``visible`` 0: evaluation ignores it and any
detection on it). A detection without a decision is written as ``unreviewed`` (``kind`` cmb,
``visible`` 0: a partial review neither confirms nor rejects it); other undecided items are left
out. A CMB the reader adds gets ``decision`` ``added`` (or the decision it was later changed
to), and ``diameter_mm`` from its dark blob (empty when none can be measured). Each row names
the reader who decided it.
"""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from cmbdet.detect.outputs import REVIEW_FILES
from cmbdet.errors import InputError
from cmbdet.geometry import voxel_to_world, world_to_voxel
from cmbdet.io.lesions import LESION_COLUMNS
from cmbdet.io.nifti import Volume, load_echoes, load_volume
from cmbdet.io.writing import write_atomic
from cmbdet.review.blob import blob_diameter_mm

STATE_FILE, REVIEWED_LESIONS = REVIEW_FILES
DECISIONS = ("cmb", "not_cmb", "unsure")
REASONS = ("vein", "calcification", "iron", "artefact", "other")
REVIEW_COLUMNS = (*LESION_COLUMNS, "reader", "time", "decision", "reason")
MAX_REJECTED = 30  # rejected candidates offered for review: the highest scoring ones
_STATE_LOCK = threading.Lock()  # one read-modify-write of a review.json at a time


@dataclass(frozen=True)
class ReviewItem:
    """One point a reader decides on.

    Attributes:
        item_id: ``d<n>`` (detection n of detections.csv), ``c<n>`` (candidate n of
            candidates.csv, rejected by the model) or ``a<n>`` (added by the reader).
        source: ``detection``, ``rejected`` or ``added``.
        world_mm: (3,) scanner RAS+ position, mm.
        voxel: (3,) position in the canonical (RAS+) array shown, voxels (floats).
        input_voxel: (3,) position in the input file's own array order (``i, j, k``).
        score: stage-2 probability; None for an added CMB.
        diameter_mm: the model's (or the dark blob's) diameter; None when not measured.
    """

    item_id: str
    source: str
    world_mm: tuple[float, float, float]
    voxel: tuple[float, float, float]
    input_voxel: tuple[float, float, float]
    score: float | None
    diameter_mm: float | None

    def to_json(self) -> dict:
        return {
            "id": self.item_id,
            "source": self.source,
            "world_mm": list(self.world_mm),
            "voxel": list(self.voxel),
            "score": self.score,
            "diameter_mm": self.diameter_mm,
        }


@dataclass
class ReviewSubject:
    """One subject's output folder under review (its image is read on first use)."""

    subject_id: str
    folder: Path
    image_path: Path
    threshold: float
    echo: int | None = None  # 0-based volume of a 4D image (a multi-echo stack's echo used)
    _image: Volume | None = field(default=None, repr=False)

    @property
    def image(self) -> Volume:
        """The SWI (or, without one, the magnitude) the subject was detected on."""
        if self._image is None:
            if self.echo is None:
                self._image = load_volume(self.image_path, "SWI")
            else:
                self._image = load_echoes(self.image_path, "magnitude", self.echo)
        return self._image

    def release_image(self) -> None:
        """Forget the image (read again on next use)."""
        self._image = None

    def item_ids(self) -> list[str]:
        """The items' ids, in the order of :meth:`items`, without reading the image."""
        detections, rejected = self._rows()
        ids = [f"d{r['detection_id']}" for r in detections]
        ids += [f"c{r['detection_id']}" for r in rejected]
        return ids + [added["id"] for added in read_state(self.folder)["added"]]

    def items(self) -> list[ReviewItem]:
        """The detections, the highest :data:`MAX_REJECTED` rejected candidates, and the
        reader's added CMBs."""
        detections, rejected = self._rows()
        items = [self._item(f"d{r['detection_id']}", "detection", r) for r in detections]
        items += [self._item(f"c{r['detection_id']}", "rejected", r) for r in rejected]
        items += [self._added(added) for added in read_state(self.folder)["added"]]
        return items

    def _rows(self) -> tuple[list[dict], list[dict]]:
        """(detections, the highest :data:`MAX_REJECTED` rejected candidates) as CSV rows."""
        detections = _rows(self.folder / "detections.csv")
        rejected = [r for r in _rows(self.folder / "candidates.csv") if _score(r) < self.threshold]
        return detections, sorted(rejected, key=_score, reverse=True)[:MAX_REJECTED]

    def _item(self, item_id: str, source: str, row: dict) -> ReviewItem:
        world = np.array([float(row[k]) for k in ("x_mm", "y_mm", "z_mm")])
        voxel = world_to_voxel(world, self.image.affine)
        ijk = _floats(float(row[k]) for k in ("i", "j", "k"))
        diameter = float(row["diameter_mm"]) if row.get("diameter_mm") else None
        return ReviewItem(
            item_id, source, _floats(world), _floats(voxel), ijk, _score(row), diameter
        )

    def _added(self, added: dict) -> ReviewItem:
        voxel = np.asarray(added["voxel"], float)
        world = voxel_to_world(voxel, self.image.affine)
        ijk = world_to_voxel(world, self.image.reorientation.original_affine)
        diameter = added.get("diameter_mm")
        return ReviewItem(
            added["id"], "added", _floats(world), _floats(voxel), _floats(ijk), None, diameter
        )

    def add_cmb(self, voxel: tuple[int, int, int], reader: str = "") -> dict:
        """Record a CMB ``reader`` clicked at ``voxel`` (canonical array indices); its
        diameter is measured from the dark blob there (None when none stands out)."""
        shape = self.image.shape
        if len(voxel) != 3 or not all(0 <= int(v) < n for v, n in zip(voxel, shape, strict=True)):
            raise ValueError(f"voxel {voxel} lies outside the image {shape}")
        diameter = blob_diameter_mm(self.image, tuple(int(v) for v in voxel))
        with _STATE_LOCK:
            state = read_state(self.folder)
            number = 1 + max((int(a["id"][1:]) for a in state["added"]), default=0)
            added = {"id": f"a{number}", "voxel": [int(v) for v in voxel], "diameter_mm": diameter}
            state["added"].append(added)
            state["decisions"][added["id"]] = _decision("cmb", None, reader)
            write_state(self.folder, state)
        return added


def find_review_subjects(out_dir: Path) -> list[ReviewSubject]:
    """The subjects of a subject's or a batch's output folder, sorted by id.

    Raises:
        InputError: no outputs there, or a subject whose run.json names no readable image.
    """
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise InputError(out_dir, "output folder not found")
    if (out_dir / "run.json").is_file():
        folders = [out_dir]
    else:  # never through a link: the review writes only inside this folder
        folders = sorted(
            p for p in out_dir.glob("sub-*") if not p.is_symlink() and (p / "run.json").is_file()
        )
    if not folders:
        raise InputError(out_dir, "no detection outputs here (run.json, or sub-*/run.json)")
    return [_subject(folder) for folder in folders]


def _subject(folder: Path) -> ReviewSubject:
    try:
        record = json.loads((folder / "run.json").read_text(encoding="utf-8"))
        inputs = record.get("inputs") or {}
        image = inputs.get("swi") or inputs.get("magnitude")
        threshold = float(record["threshold"])
        echo = None if inputs.get("swi") else (record.get("acquisition") or {}).get("echo_used")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise InputError(folder / "run.json", "not a cmbdet run record") from None
    if not image or not Path(image).is_file():
        raise InputError(folder / "run.json", f"the image it was detected on is not there: {image}")
    stacked = echo is not None and len(nib.load(image).shape) == 4  # the echo used of a stack
    index = int(echo["index"]) - 1 if stacked else None
    return ReviewSubject(folder.name.removeprefix("sub-"), folder, Path(image), threshold, index)


def read_state(folder: Path) -> dict:
    """The reader's decisions and added CMBs of one subject (empty when not yet reviewed)."""
    path = folder / STATE_FILE
    state = {"reader": None, "decisions": {}, "added": []}
    if path.is_file():
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            stored = None
        if not isinstance(stored, dict):
            raise InputError(path, "not a review state (a JSON object)")
        state.update(stored)
    return state


def write_state(folder: Path, state: dict) -> None:
    write_atomic(folder / STATE_FILE, json.dumps(state, indent=1, sort_keys=True))


def decide(
    subject: ReviewSubject,
    item_id: str,
    decision: str | None,
    reason: str | None,
    reader: str = "",
) -> None:
    """Record (or, with ``decision`` None, clear) ``reader``'s decision on one item.

    Raises:
        ValueError: an unknown item, decision or reason (a rejection needs a reason).
    """
    if item_id not in subject.item_ids():
        raise ValueError(f"no item {item_id!r}")
    if decision is not None and decision not in DECISIONS:
        raise ValueError(f"decision must be one of {', '.join(DECISIONS)}")
    if decision is not None and (decision == "not_cmb") != (reason in REASONS):
        raise ValueError(f"a rejection needs a reason: {', '.join(REASONS)}; only it")
    with _STATE_LOCK:
        state = read_state(subject.folder)
        if decision is None:
            state["decisions"].pop(item_id, None)
        else:
            state["decisions"][item_id] = _decision(decision, reason, reader)
        write_state(subject.folder, state)


def _decision(decision: str, reason: str | None, reader: str) -> dict:
    return {"decision": decision, "reason": reason, "reader": reader, "time": _now()}


def save_reviewed_lesions(subject: ReviewSubject, reader: str) -> Path:
    """Write the subject's ``reviewed_lesions.csv`` from its decisions (``reader`` names the
    decisions that name none); undecided detections are ``unreviewed``."""
    with _STATE_LOCK:
        state = read_state(subject.folder)
        state["reader"] = reader
        write_state(subject.folder, state)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(REVIEW_COLUMNS)
    number = 0
    for item in subject.items():
        decided = state["decisions"].get(item.item_id)
        if decided is None and item.source == "detection":
            decided = {"decision": "unreviewed", "reason": None, "reader": "", "time": ""}
        if decided is None:
            continue
        number += 1
        writer.writerow(_lesion_row(item, decided, number, decided.get("reader") or reader))
    return write_atomic(subject.folder / REVIEWED_LESIONS, buffer.getvalue())


def _lesion_row(item: ReviewItem, decided: dict, number: int, reader: str) -> list:
    decision = decided["decision"]
    kind = decided["reason"] if decision == "not_cmb" else "cmb"
    diameter = "" if item.diameter_mm is None else f"{item.diameter_mm:.3f}"
    return [
        number,
        kind,
        *(f"{v:.3f}" for v in item.world_mm),
        *(f"{v:.3f}" for v in item.input_voxel),
        diameter,
        0 if decision in ("unsure", "unreviewed") else 1,
        reader,
        decided["time"],
        "added" if item.source == "added" and decision == "cmb" else decision,
        decided["reason"] or "",
    ]


def _rows(path: Path) -> list[dict]:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    except OSError:
        raise InputError(path, "missing: the outputs of this subject are incomplete") from None


def _score(row: dict) -> float:
    return float(row["score"])


def _floats(values) -> tuple[float, float, float]:
    return tuple(round(float(v), 3) for v in values)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
