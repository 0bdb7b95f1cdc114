"""FROC sensitivities of ``cmbdet detect`` outputs, swept over every distinct score (exact,
``cmbdet evaluate`` since the hardening issue) beside the 200-quantile sweep that evaluate
used before, on the same candidates.

    .venv/bin/python benchmarks/froc_exact.py PREDICTIONS_DIR DATASET_DIR
"""

import sys
from pathlib import Path

import numpy as np

from cmbdet.evaluation.matching import cmb_centres
from cmbdet.evaluation.metrics import FROC_FP_RATES, SubjectScores, count, froc
from cmbdet.io.dataset import find_subjects, load_ground_truth
from cmbdet.io.results import read_result_table

pred, truth = Path(sys.argv[1]), Path(sys.argv[2])
stage1, final = [], []
for s in find_subjects(truth):
    visible, ignored = cmb_centres(load_ground_truth(s))
    table = read_result_table(pred / f"sub-{s.subject_id}" / "candidates.csv")
    centres, scores, s1 = table.centres_mm, table.scores, table.stage1_scores
    stage1.append(SubjectScores(s.subject_id, centres, s1, visible, ignored))
    final.append(SubjectScores(s.subject_id, centres, scores, visible, ignored))


def quantile_froc(subjects, points=200):
    scores = np.unique(np.concatenate([s.scores for s in subjects]))[::-1]
    if len(scores) > points:
        scores = np.unique(np.quantile(scores, np.linspace(0, 1, points)))[::-1]
    curve = [
        (t, c.sensitivity, c.fp_per_subject) for t in scores for c in [count(subjects, float(t))]
    ]
    return {r: max([s for _, s, f in curve if f <= r] or [0.0]) for r in FROC_FP_RATES}


for name, subjects in (("stage 1", stage1), ("stage 1+2", final)):
    exact, old = froc(subjects)["sensitivity_at"], quantile_froc(subjects)
    n = len(np.unique(np.concatenate([s.scores for s in subjects])))
    print(f"{name}: {n} distinct scores, {sum(len(s.truth_mm) for s in subjects)} CMBs")
    print("  FP/subject  " + "  ".join(f"{r:>6g}" for r in FROC_FP_RATES))
    print("  exact       " + "  ".join(f"{exact[r]:6.3f}" for r in FROC_FP_RATES))
    print("  200 quant.  " + "  ".join(f"{old[r]:6.3f}" for r in FROC_FP_RATES))
