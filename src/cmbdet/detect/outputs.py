"""Write a subject's results in the DESIGN.md output contract, all or nothing.

Files go to a private staging folder (:mod:`cmbdet.io.writing`) that becomes the output folder
at the end, so an interrupted run leaves no partial output (and the next run cleans what it
left). An existing output folder is replaced only with ``overwrite``, and only when it holds
nothing but a subject's outputs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from cmbdet.errors import InputError
from cmbdet.geometry import world_to_voxel
from cmbdet.io.nifti import Volume, save_like
from cmbdet.io.results import write_result_table
from cmbdet.io.writing import (
    check_not_inputs,
    check_writable,
    is_staging_name,
    leftovers_of,
    publish,
    real_output_path,
    remove_folders,
    staging_folder,
)
from cmbdet.records import Candidate, DetectionResult, centres_mm
from cmbdet.report.subject import NOT_DETERMINED, REGIONS, write_subject_report

OUTPUT_FILES = (  # a subject's outputs (DESIGN.md): all there means complete
    "detections.csv",
    "candidates.csv",
    "cmb_labels.nii.gz",
    "report.html",
    "run.json",  # written last
)
REVIEW_FILES = ("review.json", "reviewed_lesions.csv")  # what ``cmbdet review`` adds beside them
MIN_LABEL_RADIUS_MM = 1.0
SMALL_CMB_MM, LARGE_CMB_MM = 5.0, 10.0  # BOMBS' size classes: < 5 mm and 5-10 mm


def check_output_folder(
    out_dir: Path, overwrite: bool, inputs: Iterable[Path | None] = (), kept: tuple[str, ...] = ()
) -> Path:
    """Refuse, before any work, an output folder that cannot take a subject's outputs.

    Refused: a file where the folder should be; a non-empty folder without ``overwrite``, and
    with it one that holds anything but a subject's outputs (replacing them would delete it);
    a folder that is or holds one of ``inputs`` or the working folder; a place that cannot be
    written. Folders named in ``kept`` may sit beside the outputs (the demo's ``input``).

    Returns:
        The folder's real path (a link given as ``out_dir`` itself followed).

    Raises:
        InputError: naming ``out_dir`` and the problem.
    """
    out = real_output_path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(out_dir, "output path exists and is not a folder")
    check_not_inputs(out, inputs, replaced=True, shown=out_dir)
    held = foreign_files(out, kept)
    if held:
        raise InputError(
            out_dir,
            f"output folder holds files that cmbdet detect did not write ({_some(held)}); "
            "choose another --out",
        )
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError(out_dir, "output folder is not empty (use --overwrite to replace it)")
    check_writable(out if out.is_dir() else out.parent, "--out", shown=out_dir)
    return out


def foreign_files(folder: Path, kept: tuple[str, ...] = ()) -> list[str]:
    """The entries of an output folder that are not a subject's outputs (nor the staging
    folders of unfinished runs, nor the folders named in ``kept``), sorted; [] for a missing
    folder."""
    if not folder.is_dir():
        return []
    return sorted(
        p.name
        for p in folder.iterdir()
        if p.is_symlink()
        or not (
            (p.is_file() and p.name in OUTPUT_FILES)
            or (p.is_dir() and (is_staging_name(p.name) or p.name in kept))
        )
    )


def _some(names: list[str]) -> str:
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


def write_outputs(
    out_dir: Path,
    result: DetectionResult,
    reference: Volume,
    overwrite: bool = False,
    kept: tuple[str, ...] = (),
) -> dict:
    """detections.csv, candidates.csv, cmb_labels.nii.gz, report.html and run.json into
    ``out_dir`` (``run.json`` gains the report's writing time under ``timings_s``).

    ``out_dir`` is used as given (a link there is refused, never followed: resolve a link the
    user gave with :func:`check_output_folder`). Folders named in ``kept`` stay beside the
    outputs. What killed runs of the same output left is
    cleaned first.

    Returns:
        The ``run.json`` record as written (with the detections' ``cmb_counts``).

    Raises:
        InputError: ``out_dir`` is a link or a file, holds files that are not outputs, or is
            not empty without ``overwrite``.
    """
    out = Path(os.path.abspath(out_dir))
    remove_folders(leftovers_of(out))
    held = foreign_files(out, kept)
    if held:
        raise InputError(out_dir, f"holds files that cmbdet detect did not write ({_some(held)})")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError(out_dir, "output folder is not empty (use --overwrite to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_folder(out)
    try:
        record = _write_files(staging, result, reference, _report_title(result, out))
        publish(staging, out, last="run.json")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return record


def _write_files(folder: Path, result: DetectionResult, reference: Volume, title: str) -> dict:
    if result.reference is None:  # the report's crops and regions come from it
        result = dataclasses.replace(result, reference=reference)
    started = time.perf_counter()
    # the label map is written on a thread while the report is drawn (both mostly outside
    # Python's lock: reordering, compressing; sampling the crops)
    with ThreadPoolExecutor(1, thread_name_prefix="cmbdet-labels") as pool:
        labels = pool.submit(_write_labels, folder / "cmb_labels.nii.gz", result, reference)
        regions = write_subject_report(folder / "report.html", result, title)
        write_result_table(folder / "detections.csv", result.detections, regions.detections)
        write_result_table(folder / "candidates.csv", result.candidates, regions.candidates)
        labels.result()
    timings = {**result.record.get("timings_s", {}), "report": time.perf_counter() - started}
    record = {
        **result.record,
        "detections": len(result.detections),
        "cmb_counts": cmb_counts(result.detections, regions.detections),
        "timings_s": timings,
    }
    text = json.dumps(record, indent=2, sort_keys=True, default=_jsonable)
    (folder / "run.json").write_text(text + "\n")
    return json.loads(text)  # as written: plain JSON values


def _write_labels(path: Path, result: DetectionResult, reference: Volume) -> None:
    save_like(path, detection_labels(result.detections, reference), reference, np.int16)


def _report_title(result: DetectionResult, out_dir: Path) -> str:
    """The subject's ``sub-<id>`` folder name when the SWI (or the magnitude) lies in one,
    directly or in a BIDS ``anat/`` folder, else the output folder's name."""
    inputs = result.record.get("inputs") or {}
    image = inputs.get("swi") or inputs.get("magnitude")
    for folder in Path(image).parents[:3] if image else ():
        if folder.name.startswith("sub-"):
            return folder.name
    return out_dir.name


def cmb_counts(detections: list[Candidate], regions: list[str]) -> dict[str, int]:
    """The detections counted as cohort studies count CMBs: by region (MARS: lobar, deep,
    infratentorial; ``region_not_determined`` when the report could not place them) and by
    diameter (BOMBS: ``under_5mm``, ``5_to_10mm``; ``over_10mm`` for larger dark blobs)."""
    diameters = np.array([d.diameter_mm for d in detections], dtype=float)
    return {
        "total": len(detections),
        **{region: regions.count(region) for region in REGIONS},
        "region_not_determined": regions.count(NOT_DETERMINED),
        "under_5mm": int(np.sum(diameters < SMALL_CMB_MM)),
        "5_to_10mm": int(np.sum((diameters >= SMALL_CMB_MM) & (diameters <= LARGE_CMB_MM))),
        "over_10mm": int(np.sum(diameters > LARGE_CMB_MM)),
    }


def detection_labels(detections: list[Candidate], reference: Volume) -> np.ndarray:
    """Instance map on the reference's canonical grid: detection n is a ball of value n."""
    shape = reference.shape
    labels = np.zeros(shape, dtype=np.int16)
    spacing = np.asarray(reference.spacing_mm)
    voxels = world_to_voxel(centres_mm(detections), reference.affine)  # (N, 3) canonical
    for n, (detection, centre) in enumerate(zip(detections, voxels, strict=True), start=1):
        radius_mm = max(detection.diameter_mm / 2, MIN_LABEL_RADIUS_MM)
        reach = np.ceil(radius_mm / spacing).astype(int)
        low = np.maximum(np.floor(centre).astype(int) - reach, 0)
        high = np.minimum(np.ceil(centre).astype(int) + reach + 1, shape)
        if np.any(high <= low):
            continue
        axes = [
            (np.arange(lo, hi) - c) * s
            for lo, hi, c, s in zip(low, high, centre, spacing, strict=True)
        ]
        grid = np.meshgrid(*axes, indexing="ij")
        inside = sum(a**2 for a in grid) <= radius_mm**2
        own_voxel = np.clip(np.round(centre).astype(int) - low, 0, high - low - 1)
        inside[tuple(own_voxel)] = True  # a detection always labels the voxel it sits in
        box = labels[low[0] : high[0], low[1] : high[1], low[2] : high[2]]
        box[inside & (box == 0)] = n
    return labels


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
