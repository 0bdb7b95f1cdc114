"""A trained model on held-out generated test sets: stage 1 alone (with the 3D FRST baseline
at matched sensitivity) and stage 1 + 2, per resolution, with timings.

    .venv/bin/python benchmarks/detect_eval.py --model src/cmbdet/models/default \
        --test data/test-hr data/test-lr

Test sets: `cmbdet synth --out data/test-hr --preset hr --n 30 --seed 2026001` and
`--out data/test-lr --preset lr --n 30 --seed 2026002` (seeds never used in training).
"""

from __future__ import annotations

import argparse
import resource
import time
from collections import Counter
from pathlib import Path

import numpy as np
from frst import frst_candidates

from cmbdet.detect.detector import Detector
from cmbdet.evaluation.matching import cmb_centres, match_detections
from cmbdet.geometry import voxel_to_world
from cmbdet.io.dataset import find_subjects
from cmbdet.io.lesions import read_lesions_csv
from cmbdet.io.nifti import load_labels, load_mask, load_volume
from cmbdet.preprocess.pipeline import preprocess


def kind_at(world_mm, labels_volume, lesions, radius_mm=2.0):
    """What a false positive sits on: the most common labelled structure within 2 mm."""
    inverse = np.linalg.inv(labels_volume.affine)
    centre = inverse[:3, :3] @ world_mm + inverse[:3, 3]
    reach = np.ceil(radius_mm / np.asarray(labels_volume.spacing_mm)).astype(int)
    low = np.maximum(np.round(centre).astype(int) - reach, 0)
    high = np.round(centre).astype(int) + reach + 1
    values = labels_volume.data[low[0] : high[0], low[1] : high[1], low[2] : high[2]].astype(int)
    values = values[values > 0]
    if values.size == 0:
        return "nothing"
    by_id = {c.lesion_id: c.kind for c in lesions}
    return by_id.get(int(np.bincount(values).argmax()), "nothing")


def evaluate(detector: Detector, folder: Path) -> dict:
    rows = []
    for files in find_subjects(folder):
        lesions = read_lesions_csv(files.lesions_csv)
        visible, ignored = cmb_centres(lesions)
        started = time.perf_counter()
        result = detector.detect(files.swi, files.phase)
        total = time.perf_counter() - started
        candidates = np.array([[c.x_mm, c.y_mm, c.z_mm] for c in result.candidates]).reshape(-1, 3)
        scores = np.array([c.score for c in result.candidates])
        stage1_scores = np.array([c.stage1_score for c in result.candidates])
        stage1 = match_detections(candidates, visible, ignored)
        final = match_detections(candidates[scores >= result.threshold], visible, ignored)
        # FRST baseline on the same preprocessing
        swi, phase = load_volume(files.swi, "SWI"), load_volume(files.phase, "phase")
        mask = load_mask(files.brainmask, swi) if files.brainmask else None
        pre = preprocess(swi, phase, mask=mask, config=detector.preprocess_config)
        clock = time.perf_counter()
        voxels, frst_scores = frst_candidates(pre.swi, pre.brain, pre.spacing_mm)
        frst_seconds = time.perf_counter() - clock
        frst_mm = voxel_to_world(pre.grid.model_to_native(voxels), swi.affine).reshape(-1, 3)
        labels = load_labels(files.labels, swi)
        labels_volume = type(
            "L", (), {"data": labels, "affine": swi.affine, "spacing_mm": swi.spacing_mm}
        )
        kept = candidates[scores >= result.threshold]
        fp_kinds = [
            kind_at(kept[n], labels_volume, lesions)
            for n in np.flatnonzero(~final.detection_is_hit & ~final.detection_is_ignored)
        ]
        sizes = np.array([c.diameter_mm for c in lesions if c.is_cmb and c.visible])
        rows.append(
            {
                "candidates": candidates,
                "stage1_scores": stage1_scores,
                "final_scores": scores,
                "stage1": stage1,
                "final": final,
                "cmbs": len(visible),
                "sizes": sizes,
                "frst_mm": frst_mm,
                "frst_scores": frst_scores,
                "visible": visible,
                "ignored": ignored,
                "timings": {**result.record["timings_s"], "total": total},
                "frst_seconds": frst_seconds,
                "fp_kinds": fp_kinds,
            }
        )
    return summarise(rows)


STAGE1_THRESHOLDS = (0.9, 0.8, 0.7, 0.6, 0.5, 0.45, 0.4, 0.35, 0.3, 0.25, 0.2)
FINAL_THRESHOLDS = (0.5, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999)


def score_curve(rows, cmbs: int, key: str, thresholds) -> list[tuple[float, float, float]]:
    """(threshold on ``rows[i][key]``, sensitivity, FP/subject) for each threshold."""
    points = []
    for threshold in thresholds:
        hits = fps = 0
        for r in rows:
            keep = r[key] >= threshold
            m = match_detections(r["candidates"][keep], r["visible"], r["ignored"])
            hits, fps = hits + m.true_positives, fps + m.false_positives
        points.append((threshold, hits / max(cmbs, 1), fps / len(rows)))
    return points


def summarise(rows) -> dict:
    n = len(rows)
    cmbs = sum(r["cmbs"] for r in rows)
    s1_tp = sum(r["stage1"].true_positives for r in rows)
    s1_fp = sum(r["stage1"].false_positives for r in rows)
    tp = sum(r["final"].true_positives for r in rows)
    fp = sum(r["final"].false_positives for r in rows)
    sensitivity1 = s1_tp / max(cmbs, 1)
    frst_fp, frst_sens = float("nan"), 0.0
    all_scores = np.concatenate([r["frst_scores"] for r in rows])
    for threshold in np.quantile(all_scores, np.linspace(1, 0, 300)):
        hits = fps = 0
        for r in rows:
            m = match_detections(
                r["frst_mm"][r["frst_scores"] >= threshold], r["visible"], r["ignored"]
            )
            hits, fps = hits + m.true_positives, fps + m.false_positives
        if hits / max(cmbs, 1) >= sensitivity1:
            frst_fp, frst_sens = fps / n, hits / max(cmbs, 1)
            break
    curve = score_curve(rows, cmbs, "stage1_scores", STAGE1_THRESHOLDS)
    final_curve = score_curve(rows, cmbs, "final_scores", FINAL_THRESHOLDS)
    missed_sizes = np.concatenate([r["sizes"][~r["final"].truth_is_found] for r in rows])
    all_sizes = np.concatenate([r["sizes"] for r in rows])
    timing = {k: float(np.median([r["timings"][k] for r in rows])) for k in rows[0]["timings"]}
    precision = tp / max(tp + fp, 1)
    sensitivity = tp / max(cmbs, 1)
    return {
        "subjects": n,
        "cmbs": cmbs,
        "stage1_sensitivity": sensitivity1,
        "stage1_curve": curve,
        "final_curve": final_curve,
        "stage1_fp": s1_fp / n,
        "frst_sensitivity": frst_sens,
        "frst_fp": frst_fp,
        "sensitivity": sensitivity,
        "precision": precision,
        "f1": 2 * precision * sensitivity / max(precision + sensitivity, 1e-9),
        "fp": fp / n,
        "fp_kinds": Counter(k for r in rows for k in r["fp_kinds"]),
        "missed_small": int(np.sum(missed_sizes < 5)),
        "small": int(np.sum(all_sizes < 5)),
        "missed_large": int(np.sum(missed_sizes >= 5)),
        "large": int(np.sum(all_sizes >= 5)),
        "timing": timing,
        "frst_seconds": float(np.median([r["frst_seconds"] for r in rows])),
    }


def print_curve_table(results: dict, key: str) -> None:
    """One row per test set, one column per threshold of ``results[name][key]``."""
    thresholds = [t for t, _, _ in next(iter(results.values()))[key]]
    print("| test set | " + " | ".join(f"{t:g}" for t in thresholds) + " |")
    print("|---" * (1 + len(thresholds)) + "|")
    for name, r in results.items():
        print(
            f"| {name} | "
            + " | ".join(
                f"{s:.1%} / {f:.1f}" if f >= 10 else f"{s:.1%} / {f:.2f}" for _, s, f in r[key]
            )
            + " |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--test", type=Path, nargs="+", required=True)
    parser.add_argument("--precision", default="auto", help="auto, float32 or bfloat16")
    args = parser.parse_args()
    detector = Detector.load(args.model, "cpu", args.precision)
    results = {folder.name: evaluate(detector, folder) for folder in args.test}
    print(
        f"model: {args.model} (stage-1 threshold {detector.info.get('stage1_threshold', 0):g}, "
        f"stage-2 threshold {detector.threshold:g}, {detector.stage2_views} test-time views, "
        f"{detector.precision})\n"
    )
    print(
        "| test set | subjects | CMBs | stage 1 sensitivity | stage 1 FP/subject | FRST FP/subject "
        "at matched sensitivity | sensitivity | precision | F1 | FP/subject |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| {name} | {r['subjects']} | {r['cmbs']} | {r['stage1_sensitivity']:.1%} | "
            f"{r['stage1_fp']:.1f} | {r['frst_fp']:.1f} (at {r['frst_sensitivity']:.1%}) | "
            f"{r['sensitivity']:.1%} | {r['precision']:.1%} | {r['f1']:.3f} | {r['fp']:.2f} |"
        )
    print("\n| test set | false positives sit on | missed < 5 mm | missed 5-10 mm |")
    print("|---|---|---|---|")
    for name, r in results.items():
        kinds = ", ".join(f"{k} {v}" for k, v in r["fp_kinds"].most_common()) or "none"
        print(
            f"| {name} | {kinds} | {r['missed_small']} of {r['small']} | "
            f"{r['missed_large']} of {r['large']} |"
        )
    print(
        "\n| test set | load s | preprocess s | stage 1 s | stage 2 s | total s | FRST s | "
        "FRST / stage 1 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        t = r["timing"]
        print(
            f"| {name} | {t['load']:.2f} | {t['preprocess']:.2f} | {t['stage1']:.2f} | "
            f"{t['stage2']:.2f} | {t['total']:.2f} | {r['frst_seconds']:.2f} | "
            f"{r['frst_seconds'] / t['stage1']:.1f} |"
        )
    for key, what in (
        ("stage1_curve", "stage 1 alone, by stage-1 score"),
        ("final_curve", "stage 1 + 2, by stage-2 probability"),
    ):
        print(f"\n{what} threshold (sensitivity / FP per subject):\n")
        print_curve_table(results, key)
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"\npeak memory of the process: {peak_gib:.1f} GiB")


if __name__ == "__main__":
    main()
