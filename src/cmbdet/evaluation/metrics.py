"""Detection metrics over subjects: counts, FROC, bootstrap intervals (pure NumPy/SciPy).

Every function works on :class:`SubjectScores`, one per subject: the candidates' world
centres and scores and the truth (visible and ignored CMB centres). The hit rule is that of
:mod:`cmbdet.evaluation.matching`. Subjects without CMBs count for FPavg like any other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.distance import cdist

from cmbdet.evaluation.matching import MATCH_RADIUS_MM, cmb_centres, match_detections

FROC_FP_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


@dataclass(frozen=True)
class SubjectScores:
    """One subject: candidates (N, 3) mm with scores (N,), truth (M, 3) and ignored (K, 3)."""

    subject_id: str
    candidates_mm: np.ndarray
    scores: np.ndarray
    truth_mm: np.ndarray
    ignored_mm: np.ndarray

    @classmethod
    def of(
        cls, subject_id: str, candidates_mm: np.ndarray, scores: np.ndarray, lesions: list
    ) -> SubjectScores:
        """A subject's scored candidates against its ground-truth lesions (visible CMBs are
        the truth, invisible ones ignored, mimics neither)."""
        visible, ignored = cmb_centres(lesions)
        candidates = np.asarray(candidates_mm, dtype=np.float64).reshape(-1, 3)
        return cls(subject_id, candidates, np.asarray(scores, np.float64), visible, ignored)


@dataclass(frozen=True)
class Counts:
    true_positives: int
    false_positives: int
    false_negatives: int
    subjects: int

    @property
    def sensitivity(self) -> float:
        cmbs = self.true_positives + self.false_negatives
        return self.true_positives / cmbs if cmbs else float("nan")

    @property
    def precision(self) -> float:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else float("nan")

    @property
    def f1(self) -> float:
        s, p = self.sensitivity, self.precision
        return 2 * s * p / (s + p) if s + p > 0 else float("nan")

    @property
    def fp_per_subject(self) -> float:
        return self.false_positives / self.subjects if self.subjects else float("nan")

    def to_json(self) -> dict:
        return {
            "tp": self.true_positives,
            "fp": self.false_positives,
            "fn": self.false_negatives,
            "subjects": self.subjects,
            "sensitivity": self.sensitivity,
            "precision": self.precision,
            "f1": self.f1,
            "fp_per_subject": self.fp_per_subject,
        }


def count(subjects: list[SubjectScores], threshold: float) -> Counts:
    """Pooled counts of the candidates scoring at least ``threshold``."""
    tp = fp = fn = 0
    for s in subjects:
        keep = s.scores >= threshold
        result = match_detections(s.candidates_mm[keep], s.truth_mm, s.ignored_mm)
        tp, fp, fn = (
            tp + result.true_positives,
            fp + result.false_positives,
            fn + result.false_negatives,
        )
    return Counts(tp, fp, fn, len(subjects))


def froc(subjects: list[SubjectScores], fp_rates=FROC_FP_RATES) -> dict:
    """Sensitivity at each FPavg in ``fp_rates`` (best over thresholds with FPavg <= rate),
    their mean, and the curve (threshold, sensitivity, FPavg).

    Every distinct score is a threshold, so the curve is exact: at each one the counts equal
    :func:`count` at that threshold. Each subject's candidates are sorted once and matched
    again only when a candidate within reach of a visible CMB joins (the others are false
    positives, or nothing on an ignored CMB, whatever else is kept).
    """
    all_scores = np.concatenate([s.scores for s in subjects] or [np.zeros(0)])
    thresholds = np.unique(all_scores)[::-1]  # (T,) descending
    true_positives = np.zeros(len(thresholds), dtype=np.int64)
    false_positives = np.zeros(len(thresholds), dtype=np.int64)
    for subject in subjects:
        steps = _subject_steps(subject)
        # candidates kept at each threshold: those scoring at least it
        kept = np.searchsorted(-steps.scores, -thresholds, side="right")  # (T,)
        true_positives += steps.true_positives[kept]
        false_positives += steps.false_positives[kept]
    cmbs = sum(len(s.truth_mm) for s in subjects)
    curve = [
        (
            float(t),
            tp / cmbs if cmbs else float("nan"),
            fp / len(subjects) if subjects else float("nan"),
        )
        for t, tp, fp in zip(thresholds, true_positives, false_positives, strict=True)
    ]
    at = {}
    for rate in fp_rates:
        reachable = [sens for _, sens, fps in curve if fps <= rate]
        at[rate] = max(reachable) if reachable else 0.0
    return {"sensitivity_at": at, "mean": float(np.mean(list(at.values()))), "curve": curve}


@dataclass(frozen=True)
class _Steps:
    """One subject's counts as its candidates join in order of falling score.

    Attributes:
        scores: (N,) the scores, descending.
        true_positives, false_positives: (N + 1,) counts with the first n candidates kept.
    """

    scores: np.ndarray
    true_positives: np.ndarray
    false_positives: np.ndarray


def _subject_steps(subject: SubjectScores) -> _Steps:
    order = np.argsort(-subject.scores, kind="stable")
    centres = subject.candidates_mm[order]  # (N, 3)
    near = _within(centres, subject.truth_mm)  # may match a visible CMB
    on_ignored = _within(centres, subject.ignored_mm)
    tp = np.zeros(len(order) + 1, dtype=np.int64)
    fp = np.zeros(len(order) + 1, dtype=np.int64)
    far_fp = near_tp = near_fp = 0
    for n in range(len(order)):
        if near[n]:
            chosen = np.flatnonzero(near[: n + 1])
            match = match_detections(centres[chosen], subject.truth_mm, subject.ignored_mm)
            near_tp, near_fp = match.true_positives, match.false_positives
        else:
            far_fp += int(not on_ignored[n])
        tp[n + 1], fp[n + 1] = near_tp, near_fp + far_fp
    return _Steps(subject.scores[order], tp, fp)


def _within(centres: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(N,) bool: a centre lies within the hit radius of any target."""
    if not len(centres) or not len(targets):
        return np.zeros(len(centres), dtype=bool)
    return (cdist(centres, targets) <= MATCH_RADIUS_MM).any(axis=1)


def bootstrap_interval(
    subjects: list[SubjectScores], threshold: float, statistic: str, n: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """95% percentile interval of a :class:`Counts` statistic, resampling subjects."""
    rng = np.random.default_rng(seed)
    per_subject = [count([s], threshold) for s in subjects]
    values = []
    for _ in range(n):
        chosen = rng.integers(len(per_subject), size=len(per_subject))
        pooled = Counts(
            sum(per_subject[i].true_positives for i in chosen),
            sum(per_subject[i].false_positives for i in chosen),
            sum(per_subject[i].false_negatives for i in chosen),
            len(chosen),
        )
        value = getattr(pooled, statistic)
        if np.isfinite(value):
            values.append(value)
    if not values:
        return float("nan"), float("nan")
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)
