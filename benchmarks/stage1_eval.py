"""Stage 1 on generated data: train the candidate network, then measure sensitivity, false
positives per subject and speed on held-out subjects, beside the 3D FRST baseline.

    .venv/bin/python benchmarks/stage1_eval.py --train 24 --val 6 --steps 1500 \
        --test-lr data/test-lr --test-hr data/test-hr --out runs/stage1

Training and validation subjects are generated in memory from seeds that never appear in the
test sets (made with `cmbdet synth --seed 2026001/2026002`). The operating threshold is the
highest score that keeps >= 97% stage-1 sensitivity on the validation subjects.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from cmbdet.evaluation.matching import match_detections
from cmbdet.geometry import voxel_to_world
from cmbdet.io.dataset import find_subjects, read_lesions_csv
from cmbdet.io.nifti import load_mask, load_volume
from cmbdet.preprocess.pipeline import PreprocessConfig, preprocess_arrays, slice_images
from cmbdet.stage1.frst import frst_candidates
from cmbdet.stage1.inference import detect_candidates
from cmbdet.stage1.model import Stage1Config
from cmbdet.stage1.train import train_stage1, training_volume
from cmbdet.synth.config import SynthConfig
from cmbdet.synth.dataset import subject_seed
from cmbdet.synth.lesions import LesionCounts
from cmbdet.synth.subject import generate_subject
from cmbdet.training import TrainConfig

TRAIN_SEED = 1001  # training/validation subjects; test sets use 2026001 (hr), 2026002 (lr)
RICH_LESIONS = LesionCounts(cmb_none_probability=0.1, cmb_log_mean=1.6)  # more positives
PREPROCESS = PreprocessConfig(target_in_plane_mm=0.625)


def prepare(swi, phase, spacing, magnitude=None, brain=None):
    """Canonical arrays -> (slice images, model-grid brain, preprocessed record)."""
    pre = preprocess_arrays(
        swi, phase, spacing, magnitude=magnitude, brain=brain, config=PREPROCESS
    )
    return slice_images(pre), pre.brain, pre


def candidates_world(net, images, brain_model, pre, affine, threshold):
    linked = detect_candidates(
        net, images, pre.grid.model_spacing_mm[0], brain_model, score_threshold=threshold
    )
    if not linked:
        return np.zeros((0, 3)), np.zeros(0)
    model_ijk = np.array([c.centre for c in linked])
    native = pre.grid.model_to_native(model_ijk)
    return voxel_to_world(native, affine), np.array([c.score for c in linked])


def generated_volumes(presets, count, start, log):
    volumes, subjects = [], []
    for preset in presets:
        config = replace(SynthConfig(preset=preset), lesions=RICH_LESIONS)
        for index in range(start, start + count):
            subject = generate_subject(config, subject_seed(TRAIN_SEED, index))
            images, brain_model, pre = prepare(
                subject.swi,
                subject.hp_phase,
                config.grid.spacing_mm,
                magnitude=subject.magnitude,
                brain=subject.brain_mask,
            )
            volumes.append(
                training_volume(
                    images,
                    brain_model,
                    subject.labels,
                    subject.lesions,
                    pre.grid.model_spacing_mm[0],
                )
            )
            subjects.append((subject, images, brain_model, pre))
        log.info("generated %d %s subjects", count, preset)
    return volumes, subjects


def score_subject(found_mm, scores, lesions, threshold):
    truth = [[c.x_mm, c.y_mm, c.z_mm] for c in lesions if c.is_cmb and c.visible]
    ignored = [[c.x_mm, c.y_mm, c.z_mm] for c in lesions if c.is_cmb and not c.visible]
    keep = scores >= threshold
    result = match_detections(
        found_mm[keep], np.array(truth).reshape(-1, 3), np.array(ignored).reshape(-1, 3)
    )
    return result.true_positives, result.false_positives, len(truth)


def choose_threshold(per_subject, target=0.97):
    """Highest threshold with pooled sensitivity >= target (per_subject: (found, scores, les))."""
    for threshold in np.round(np.arange(0.95, 0.0, -0.01), 2):
        tp = sum(score_subject(f, s, les, threshold)[0] for f, s, les in per_subject)
        total = sum(score_subject(f, s, les, threshold)[2] for f, s, les in per_subject)
        if total and tp / total >= target:
            return float(threshold)
    return 0.01


def evaluate_test_set(folder: Path, net, threshold, log):
    rows = []
    for files in find_subjects(folder):
        swi = load_volume(files.swi, "SWI")
        phase = load_volume(files.phase, "phase")
        brain = load_mask(files.brainmask, swi) if files.brainmask else None
        lesions = read_lesions_csv(files.lesions_csv)
        started = time.perf_counter()
        images, brain_model, pre = prepare(swi.data, phase.data, swi.spacing_mm, brain=brain)
        prepared = time.perf_counter()
        found, scores = candidates_world(net, images, brain_model, pre, swi.affine, 0.01)
        stage1 = time.perf_counter()
        voxels, frst_scores = frst_candidates(pre.swi, pre.brain, pre.spacing_mm)
        frst_done = time.perf_counter()
        frst_mm = (
            voxel_to_world(pre.grid.model_to_native(voxels), swi.affine)
            if len(voxels)
            else np.zeros((0, 3))
        )
        rows.append(
            {
                "subject": files.subject_id,
                "found": found,
                "scores": scores,
                "frst": frst_mm,
                "frst_scores": frst_scores,
                "lesions": lesions,
                "seconds_preprocess": prepared - started,
                "seconds_stage1": stage1 - prepared,
                "seconds_frst": frst_done - stage1,
            }
        )
    log.info("%s: %d subjects", folder, len(rows))
    return rows


def summarise(name, rows, threshold):
    tp = fp = total = 0
    for row in rows:
        a, b, c = score_subject(row["found"], row["scores"], row["lesions"], threshold)
        tp, fp, total = tp + a, fp + b, total + c
    sensitivity = tp / max(total, 1)
    # FRST at matched sensitivity: the highest threshold reaching the network's sensitivity
    all_frst = np.concatenate([r["frst_scores"] for r in rows])
    frst_fp, frst_sensitivity = float("nan"), 0.0
    for t in np.quantile(all_frst, np.linspace(1, 0, 400)) if len(all_frst) else []:
        counts = [score_subject(r["frst"], r["frst_scores"], r["lesions"], t) for r in rows]
        s = sum(c[0] for c in counts) / max(total, 1)
        if s >= sensitivity:
            frst_fp, frst_sensitivity = sum(c[1] for c in counts) / len(rows), s
            break
    t_net = np.median([r["seconds_stage1"] for r in rows])
    t_pre = np.median([r["seconds_preprocess"] for r in rows])
    t_frst = np.median([r["seconds_frst"] for r in rows])
    return {
        "set": name,
        "subjects": len(rows),
        "cmbs": total,
        "threshold": threshold,
        "sensitivity": sensitivity,
        "fp_per_subject": fp / max(len(rows), 1),
        "frst_sensitivity": frst_sensitivity,
        "frst_fp_per_subject": frst_fp,
        "seconds_preprocess": t_pre,
        "seconds_stage1": t_net,
        "seconds_frst": t_frst,
        "frst_over_stage1_time": t_frst / t_net,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=24, help="training subjects per preset")
    parser.add_argument("--val", type=int, default=6, help="validation subjects per preset")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--crop", type=int, default=128, help="training crop, pixels")
    parser.add_argument("--test-lr", type=Path)
    parser.add_argument("--test-hr", type=Path)
    parser.add_argument("--out", type=Path, default=Path("runs/stage1"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    log = logging.getLogger("stage1_eval")
    torch.set_num_threads(max(1, torch.get_num_threads()))

    started = time.perf_counter()
    volumes, _ = generated_volumes(("lr", "hr"), args.train, 0, log)
    generated = time.perf_counter()
    config = TrainConfig(
        steps=args.steps, batch_size=args.batch, checkpoint_every=100, log_every=50
    )
    net, weights = train_stage1(volumes, args.out, config, Stage1Config(), crop=args.crop)
    trained = time.perf_counter()
    log.info("training took %.0f s (data %.0f s)", trained - generated, generated - started)
    del volumes

    _, validation = generated_volumes(("lr", "hr"), args.val, 10_000, log)
    per_subject = []
    for subject, images, brain_model, pre in validation:
        found, scores = candidates_world(net, images, brain_model, pre, subject.affine, 0.01)
        per_subject.append((found, scores, subject.lesions))
    threshold = choose_threshold(per_subject)
    log.info("operating threshold %.2f", threshold)

    results = []
    for name, folder in (("hr", args.test_hr), ("lr", args.test_lr)):
        if folder:
            results.append(
                summarise(name, evaluate_test_set(folder, net, threshold, log), threshold)
            )
    print(
        "| set | subjects | CMBs | threshold | sensitivity | FP/subject | FRST sensitivity | "
        "FRST FP/subject | stage 1 s | preprocess s | FRST s | FRST / stage 1 time |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['set']} | {r['subjects']} | {r['cmbs']} | {r['threshold']:.2f} | "
            f"{r['sensitivity']:.1%} | {r['fp_per_subject']:.1f} | "
            f"{r['frst_sensitivity']:.1%} | {r['frst_fp_per_subject']:.1f} | "
            f"{r['seconds_stage1']:.2f} | {r['seconds_preprocess']:.2f} | "
            f"{r['seconds_frst']:.2f} | {r['frst_over_stage1_time']:.1f} |"
        )
    summary = {
        "training_seconds": trained - generated,
        "threshold": threshold,
        "weights": weights,
        "results": results,
    }
    (args.out / "stage1_eval.json").write_text(json.dumps(summary, indent=2, default=float))


if __name__ == "__main__":
    main()
