"""A batch's results as BIDS derivatives (``--bids-derivatives``): ``derivatives/cmbdet/``
inside the batch folder, with a ``dataset_description.json`` and, per subject (and session),
``anat/`` holding the detections as a label map and a table.

Files, for subject ``01`` session ``2`` (``sub-01_ses-2`` in the batch):

- ``sub-01/ses-2/anat/sub-01_ses-2_desc-cmb_dseg.nii.gz``: the label map of ``detect``
  (``cmb_labels.nii.gz``: detection *n* is the ball of value *n*, 0 elsewhere), on the input's
  grid;
- ``..._desc-cmb_dseg.tsv``: its look-up table (``index``, ``name``, ``score``);
- ``..._desc-cmb_detections.tsv`` (+ ``.json`` describing the columns): ``detections.csv`` as
  a tab-separated table.

They are copies of the subject's outputs, rewritten (atomically, file by file) at the end of
every batch from the subjects whose outputs are complete, so a rerun brings them up to date.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

from cmbdet.batch.subject import FAILED, BatchRow
from cmbdet.errors import InputError
from cmbdet.io.writing import write_atomic
from cmbdet.version import __version__

DERIVATIVES = "derivatives"
PIPELINE = "cmbdet"
BIDS_VERSION = "1.9.0"
ENTITY_TAIL = re.compile(
    r"^(?P<subject>.+?)(?P<entities>(?:_(?:ses|acq|ce|rec|dir|run|inv|mt|chunk)-[^_]+)*)$"
)
"""A batch subject id of a BIDS dataset: ``<sub>[_ses-<ses>][_acq-<acq>][_run-<run>]...``
(:mod:`cmbdet.io.inputs`)."""
COLUMN_HELP = {
    "detection_id": "Detection number: the value of its ball in the _dseg image.",
    "x_mm": "Centre, scanner RAS+ x (mm).",
    "y_mm": "Centre, scanner RAS+ y (mm).",
    "z_mm": "Centre, scanner RAS+ z (mm).",
    "i": "Centre, voxel index along the first axis of the input file's array (0-based).",
    "j": "Centre, voxel index along the second axis.",
    "k": "Centre, voxel index along the third axis.",
    "score": "Stage-2 probability that the candidate is a cerebral microbleed.",
    "stage1_score": "Stage-1 objectness of the candidate.",
    "diameter_mm": "In-plane extent of the candidate's largest stage-1 box (mm).",
    "slices": "Slices of the input the candidate spans.",
    "region": "Approximate region (lobar, deep, infratentorial), without registration.",
}


def write_bids_derivatives(out_dir: Path, rows: list[BatchRow], model: str) -> Path:
    """Write ``out_dir/derivatives/cmbdet/`` from the subjects of ``rows`` with outputs.

    Args:
        out_dir: the batch folder.
        rows: the batch's rows; failed subjects get nothing.
        model: name of the model the batch ran (in ``GeneratedBy``).

    Returns:
        The derivatives pipeline folder.
    """
    root = _real_folder(Path(out_dir), Path(DERIVATIVES) / PIPELINE)
    write_atomic(root / "dataset_description.json", _description(model))
    for row in rows:
        if row.status != FAILED and row.outputs:
            _write_subject(Path(out_dir) / row.outputs, root, row.subject)
    return root


def bids_prefix(subject_id: str) -> tuple[Path, str]:
    """The folder (relative to the pipeline folder) and file-name prefix of a batch subject:
    ``"01_ses-2"`` -> (``sub-01/ses-2/anat``, ``"sub-01_ses-2"``); the other entities of an
    acquisition stay in the name: ``"01_ses-2_run-3"`` -> (``sub-01/ses-2/anat``,
    ``"sub-01_ses-2_run-3"``)."""
    match = ENTITY_TAIL.match(subject_id)
    subject, tail = match["subject"], match["entities"]
    session = next((e[4:] for e in tail.split("_") if e.startswith("ses-")), "")
    folder = Path(f"sub-{subject}") / (f"ses-{session}" if session else "") / "anat"
    return folder, f"sub-{subject}{tail}"


def _write_subject(outputs: Path, root: Path, subject_id: str) -> None:
    folder, prefix = bids_prefix(subject_id)
    anat = _real_folder(root, folder)
    with open(outputs / "detections.csv", newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns, detections = list(reader.fieldnames or []), list(reader)
    labels = (outputs / "cmb_labels.nii.gz").read_bytes()
    write_atomic(anat / f"{prefix}_desc-cmb_dseg.nii.gz", labels)
    lookup = [["index", "name", "score"]]
    lookup += [[d["detection_id"], f"CMB {d['detection_id']}", d["score"]] for d in detections]
    write_atomic(anat / f"{prefix}_desc-cmb_dseg.tsv", _tsv(lookup))
    table = [columns] + [[d[c] for c in columns] for d in detections]
    write_atomic(anat / f"{prefix}_desc-cmb_detections.tsv", _tsv(table))
    sidecar = {c: {"Description": COLUMN_HELP.get(c, c)} for c in columns}
    write_atomic(anat / f"{prefix}_desc-cmb_detections.json", json.dumps(sidecar, indent=2) + "\n")


def _real_folder(base: Path, relative: Path) -> Path:
    """``base / relative``, made as needed; a link on the way is refused (never followed:
    it could lead outside the batch folder)."""
    folder = base
    for part in relative.parts:
        folder = folder / part
        if folder.is_symlink():
            raise InputError(folder, "is a symbolic link; cmbdet never writes through links")
        folder.mkdir(exist_ok=True)
    return folder


def _tsv(rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, delimiter="\t", lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def _description(model: str) -> str:
    description = {
        "Name": "cmbdet: cerebral microbleed detections",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [
            {
                "Name": PIPELINE,
                "Version": __version__,
                "Description": f"two-stage CMB detection on SWI and phase, model {model}",
            }
        ],
    }
    return json.dumps(description, indent=2) + "\n"
