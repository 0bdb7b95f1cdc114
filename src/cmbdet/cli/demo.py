"""The ``demo`` command: a generated subject, detected with the shipped model, compared with its
truth (the generator is imported here, never on the path of ``detect``). Where the generator
cannot run (the light install has neither PyTorch nor nilearn), or with ``--sample``, the
subject is the sample shipped in the package (``cmbdet/sample``, made by
``recipes/make_sample.sh``)."""

from __future__ import annotations

import argparse
import importlib.util
import math
import shutil
import tempfile
from pathlib import Path

from cmbdet.errors import EXIT_OK, InputError

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "sample"
"""A generated subject shipped with the package: a 24-slice slab at 0.8 x 0.8 x 2 mm, CMB-rich."""
GENERATOR_NEEDS = ("torch", "nilearn")


def generator_missing() -> list[str]:
    """The packages the generator needs that are not installed (``cmbdet[train]`` has them)."""
    return [name for name in GENERATOR_NEEDS if importlib.util.find_spec(name) is None]


def demo_command(args: argparse.Namespace) -> int:
    """``cmbdet demo``: generate a subject, detect, and compare with the generated truth."""
    import numpy as np

    from cmbdet.detect.detector import Detector
    from cmbdet.detect.outputs import check_output_folder, write_outputs
    from cmbdet.detect.shipped import MODELS_DIR
    from cmbdet.evaluation.matching import cmb_centres, match_detections
    from cmbdet.io.lesions import read_lesions_csv

    # a demo's own outputs (and kept input) are replaced; a folder with anything else is refused
    out = check_output_folder(args.out, True, (args.model, MODELS_DIR), kept=(KEPT_INPUT,))
    kept = out / KEPT_INPUT
    if kept.exists():
        check_kept_input(kept)
    detector = Detector.load(args.model, args.device, args.precision, backend=args.backend)
    with tempfile.TemporaryDirectory() as scratch:
        if kept.exists():
            shutil.rmtree(kept)  # the outputs below never sit beside another run's input
        root = kept if args.keep else Path(scratch) / "data"
        subject, what = _demo_subject(args, root)
        result = detector.detect(subject.swi, subject.phase)
        write_outputs(out, result, result.reference, overwrite=True, kept=(KEPT_INPUT,))
        lesions = read_lesions_csv(subject.lesions_csv)
    truth, ignored = cmb_centres(lesions)
    found = np.array([[d.x_mm, d.y_mm, d.z_mm] for d in result.detections])
    match = match_detections(found.reshape(-1, 3), truth, ignored)
    print(f"{what}: {len(truth)} visible CMBs")
    print(
        f"found {match.true_positives}, missed {match.false_negatives}, "
        f"false positives {match.false_positives} "
        f"({len(result.candidates)} stage-1 candidates)"
    )
    for line in _errors(result.detections, lesions, match):
        print(line)
    timings = result.record["timings_s"]
    print("time: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    print(f"outputs in {args.out}; open {args.out / 'report.html'} in a browser to see them")
    if args.keep:
        print(f"the synthetic subject and its truth (lesions.csv) are in {args.out / KEPT_INPUT}")
    return EXIT_OK


KEPT_INPUT = "input"  # where --keep puts the generated subject, inside the demo's folder


def _demo_subject(args: argparse.Namespace, root: Path):
    """The demo's subject, written under ``root`` (a dataset folder), and what it is: a
    generated one of ``--preset`` and ``--seed``, or the shipped sample (``--sample``, or
    when the generator's packages are missing, which is said)."""
    from cmbdet.io.dataset import find_subjects

    missing = generator_missing()
    if args.sample or missing:
        if missing and not args.sample:
            print(
                f"the generator needs {' and '.join(missing)} (pip install 'cmbdet[train]'): "
                "running on the sample subject shipped with cmbdet"
            )
        folder = root / "sub-sample"
        folder.mkdir(parents=True)
        shutil.copy2(SAMPLE_DIR / "dataset.json", root / "dataset.json")
        for file in SAMPLE_DIR.iterdir():
            if file.name != "dataset.json":
                shutil.copy2(file, folder / file.name)
        (subject,) = find_subjects(root)
        return subject, "the shipped sample subject (generated: 24 slices, 0.8 x 0.8 x 2 mm)"
    from cmbdet.synth.dataset import generate_dataset

    data = generate_dataset(root, args.preset, 1, args.seed, progress=False)
    (subject,) = find_subjects(data)
    return subject, f"synthetic {args.preset} subject (seed {args.seed})"


def check_kept_input(folder: Path) -> None:
    """Refuse to replace an ``input`` folder that is not a demo's generated dataset (one
    ``dataset.json`` and ``sub-*`` folders, no links): it may be the user's."""
    entries = list(folder.iterdir()) if folder.is_dir() and not folder.is_symlink() else None
    ours = entries is not None and (folder / "dataset.json").is_file()
    ours = ours and all(
        not e.is_symlink() and (e.name == "dataset.json" or e.name.startswith("sub-"))
        for e in entries
    )
    if not ours:
        raise InputError(
            folder, "is not the input an earlier cmbdet demo kept; move it or choose another --out"
        )


MIMIC_REACH_MM = 3.0  # a false positive this close to a generated mimic is said to sit on it


def _errors(detections: list, lesions: list, match) -> list[str]:
    """One line per false positive (numbered as in detections.csv, with the mimic it sits on)
    and per missed CMB, so that the report's cards can be checked against the truth."""
    lines = []
    false_positive = ~match.detection_is_hit & ~match.detection_is_ignored
    mimics = [lesion for lesion in lesions if not lesion.is_cmb]
    for number, detection in enumerate(detections, start=1):
        if not false_positive[number - 1]:
            continue
        place = (detection.x_mm, detection.y_mm, detection.z_mm)
        lines.append(
            f"  false positive: detection {number} at {_mm(place)}, score "
            f"{detection.score:.3f}{_sits_on(place, mimics)}"
        )
    visible = [lesion for lesion in lesions if lesion.is_cmb and lesion.visible]
    for lesion, found in zip(visible, match.truth_is_found, strict=True):
        if not found:
            place = (lesion.x_mm, lesion.y_mm, lesion.z_mm)
            lines.append(
                f"  missed: CMB {lesion.lesion_id} at {_mm(place)}, {lesion.diameter_mm:.1f} mm"
            )
    return lines


def _sits_on(place: tuple, mimics: list) -> str:
    for mimic in mimics:
        centre = (mimic.x_mm, mimic.y_mm, mimic.z_mm)
        if math.dist(place, centre) <= MIMIC_REACH_MM + mimic.diameter_mm / 2:
            return f" (on a mimic: {mimic.kind})"
    return ""


def _mm(place: tuple) -> str:
    return "(" + ", ".join(f"{v:.1f}" for v in place) + ") mm"
