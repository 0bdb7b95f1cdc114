"""The ground truth that training and fine-tuning learn from: which of a subject folder's
tables or masks is its truth, and its CMBs as an instance label map on the SWI's grid (stage 1
learns boxes, so a truth given as points needs an extent)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from cmbdet.errors import InputError
from cmbdet.geometry import world_to_voxel
from cmbdet.io.dataset import SubjectFiles, find_subjects, load_ground_truth
from cmbdet.io.lesions import Lesion
from cmbdet.io.nifti import Volume, load_labels
from cmbdet.io.truth import truth_in_folder

POINT_DIAMETER_MM = 4.0
"""The extent given to a CMB whose diameter was not measured (a reader's added point)."""

GENERATED_TABLE = "lesions.csv"
"""The table whose lesion ids may be the values of the subject's ``labels.nii.gz`` (DESIGN.md;
a reader's review numbers its rows afresh)."""


def labelled_subjects(data_dirs: list[Path]) -> dict[str, SubjectFiles]:
    """The subjects of ``data_dirs`` that have ground truth, keyed ``<folder name>/<subject
    id>``, each with its truth in ``lesions_csv`` and/or ``labels``: in order of preference a
    reader's ``reviewed_lesions.csv``, ``lesions.csv`` (with ``labels.nii.gz`` where there is
    one), a ``labels`` map, a ``cmb_mask`` (each mask read as one CMB per component).

    Raises:
        InputError: a missing dataset folder, one without subject folders, or two folders of
            one name holding a subject of one id.
    """
    subjects = {}
    for folder in data_dirs:
        for files in find_subjects(folder):
            image = files.swi or files.magnitude
            truth = truth_in_folder(image.parent, image.parent.name)
            if truth is None:
                continue
            if truth.lesions_csv is not None and truth.lesions_csv.name != GENERATED_TABLE:
                files = replace(files, lesions_csv=truth.lesions_csv, labels=None)
            elif truth.lesions_csv is None:
                files = replace(files, labels=truth.labels)
            key = f"{Path(folder).name}/{files.subject_id}"
            if key in subjects:
                raise InputError(folder, f"another dataset folder of this name holds {key}")
            subjects[key] = files
    return subjects


def visible_cmbs(subjects: dict[str, SubjectFiles]) -> dict[str, int]:
    """Key -> the number of visible CMBs in the subject's truth."""
    return {
        key: sum(1 for lesion in load_ground_truth(files) or [] if lesion.is_cmb and lesion.visible)
        for key, files in subjects.items()
    }


def cmb_label_map(files: SubjectFiles, swi: Volume, lesions: list[Lesion]) -> np.ndarray:
    """(X, Y, Z) int32 instance labels of the subject's CMBs on the canonical grid of ``swi``:
    its label map where it has a lesion table whose CMB ids are values of that map (the
    generator's ``lesions.csv`` + ``labels.nii.gz``, DESIGN.md), else each CMB of ``lesions``
    painted as a ball of its diameter.

    Raises:
        InputError: a label map that cannot be read or lies on another grid; a CMB id below 1
            or too large for a label map (naming the table).
    """
    ids = [lesion.lesion_id for lesion in lesions if lesion.is_cmb]
    if ids and not 1 <= min(ids) <= max(ids) <= np.iinfo(np.int32).max:
        where = files.lesions_csv or files.labels
        raise InputError(where, "lesion_id of a CMB must be a whole number from 1 (0 is no lesion)")
    if files.labels is not None and files.lesions_csv is not None:
        labels = load_labels(files.labels, swi)
        if np.isin(ids, np.unique(labels[labels > 0])).all():
            return labels
    return painted_labels(lesions, swi)


def painted_labels(lesions: list[Lesion], swi: Volume) -> np.ndarray:
    """(X, Y, Z) int32: each CMB of ``lesions`` as a ball of value ``lesion_id`` (diameter
    ``diameter_mm``, or :data:`POINT_DIAMETER_MM` where not measured; at least its centre
    voxel) at its world centre, on the canonical grid of ``swi``; CMBs outside the grid are
    left out."""
    labels = np.zeros(swi.shape, np.int32)
    spacing = np.asarray(swi.spacing_mm, float)
    for lesion in lesions:
        if not lesion.is_cmb:
            continue
        centre = world_to_voxel(lesion.centre_mm, swi.affine)
        diameter = lesion.diameter_mm if np.isfinite(lesion.diameter_mm) else POINT_DIAMETER_MM
        radius = np.maximum(diameter / 2 / spacing, 0.5)  # voxels per axis
        low = np.maximum(np.floor(centre - radius).astype(int), 0)
        high = np.minimum(np.ceil(centre + radius).astype(int) + 1, swi.shape)
        if np.any(high <= low):
            continue
        axes = [np.arange(a, b) for a, b in zip(low, high, strict=True)]
        grid = np.meshgrid(*axes, indexing="ij")
        inside = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radius, strict=True))
        ball = inside <= 1.0
        nearest = np.rint(centre).astype(int)
        if np.all((nearest >= low) & (nearest < high)):
            ball[tuple(nearest - low)] = True
        labels[tuple(slice(a, b) for a, b in zip(low, high, strict=True))][ball] = lesion.lesion_id
    return labels
