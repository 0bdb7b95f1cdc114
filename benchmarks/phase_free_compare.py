"""The same yardstick subjects three ways: SWI + phase (the default model), SWI alone and GRE
magnitude alone (the phase-free model), from the evaluations ``yardstick.py measure`` wrote.

    .venv/bin/python benchmarks/phase_free_compare.py v4 pf1-swi pf1-gre

Prints, per frozen set, each run's sensitivity and false positives per subject at its own
threshold, its sensitivity at 0.5, 1, 2 and 4 false positives per subject (exact FROC), the
sensitivity loss against the first run at matched false positives, and what its false
positives sit on (the generator's mimics: vein, calcification, iron, cavernoma, or nothing).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from yardstick import RUNS, SETS  # noqa: E402  (the frozen sets, one list)

FP_POINTS = (0.5, 1.0, 2.0, 4.0)  # the FROC points evaluate records


def _metrics(label: str, name: str) -> dict | None:
    path = RUNS / label / name / "eval" / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


def sensitivity_at(metrics: dict, fp_per_subject: float) -> float:
    """Stage 1 + 2 sensitivity at ``fp_per_subject`` from the exact FROC of evaluate."""
    curve = metrics["stage1+2"]["froc"]["sensitivity_at"]
    return float(curve[str(fp_per_subject)])


def table(labels: list[str]) -> None:
    points = " / ".join(f"{p:g}" for p in FP_POINTS)
    print(
        f"| set | run | sensitivity, FP/subject at its threshold | sensitivity at {points} FP "
        f"| loss against {labels[0]} at 1 / 2 FP (points) | false positives on |"
    )
    print("|---|---|---|---|---|---|")
    for test_set in SETS:
        first = _metrics(labels[0], test_set.name)
        for label in labels:
            metrics = _metrics(label, test_set.name)
            if metrics is None:
                continue
            reference = None if label == labels[0] else first
            print(_row(test_set.name, label, metrics, reference))


def _row(name: str, label: str, metrics: dict, reference: dict | None) -> str:
    at = metrics["stage1+2"]
    curve = " / ".join(f"{100 * sensitivity_at(metrics, p):.1f}" for p in FP_POINTS)
    loss = ""
    if reference is not None:
        loss = " / ".join(
            f"{100 * (sensitivity_at(reference, p) - sensitivity_at(metrics, p)):+.1f}"
            for p in (1.0, 2.0)
        )
    subjects = at["subjects"]
    sites = metrics["breakdown"]["false_positives_on"]
    on = ", ".join(f"{kind} {count / subjects:.2f}" for kind, count in sorted(sites.items()))
    return (
        f"| {name} | {label} | {100 * at['sensitivity']:.1f}%, {at['fp_per_subject']:.2f} "
        f"| {curve} | {loss} | {on} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("labels", nargs="+", help="yardstick runs, the reference first")
    table(parser.parse_args().labels)


if __name__ == "__main__":
    main()
