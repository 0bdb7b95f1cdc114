"""Markdown tables of ``cmbdet crossval`` runs, per fold and pooled, beside the paper.

    .venv/bin/python benchmarks/crossval_table.py runs/cv-hr runs/cv-lr

Reads each run's ``crossval.json``. The paper's rows are Al-masni et al. 2020's 5-fold results
on their real HR (72 subjects, 188 CMBs) and LR (107, 572) sets
(``../shared/reference/anchors.md``): a reference, not a head-to-head comparison.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

PAPER = {  # stage 1 sensitivity / FPavg; stage 1+2 sensitivity / precision / FPavg
    "hr": ("93.6%", "52.2", "88.3%", "62%", "1.42"),
    "lr": ("78.9%", "155.5", "about 73%", "67%", "1.89"),
}


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def rows(name: str, result: dict) -> list[str]:
    """One markdown row per fold and one pooled row."""
    lines = []
    folds = [(str(n), m) for n, m in enumerate(result["per_fold"], start=1)]
    for fold, metrics in folds + [("pooled", result["pooled"])]:
        stage1, final = metrics["stage1"], metrics["stage1+2"]
        froc = final["froc"]["sensitivity_at"]
        cells = [
            name if fold == "pooled" else "",
            f"**{fold}**" if fold == "pooled" else fold,
            str(final["subjects"]),
            str(final["tp"] + final["fn"]),
            _pct(stage1["sensitivity"]),
            f"{stage1['fp_per_subject']:.1f}",
            _pct(final["sensitivity"]),
            _pct(final["precision"]),
            f"{final['f1']:.3f}",
            f"{final['fp_per_subject']:.2f}",
            _pct(froc["1.0"]),
            _pct(froc["2.0"]),
            f"{final['froc']['mean']:.3f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+", help="crossval output folders")
    args = parser.parse_args()
    header = (
        "| set | fold | subjects | CMBs | stage 1 sens. | stage 1 FP/subj | stage 1+2 sens. "
        "| precision | F1 | FP/subj | sens. at 1 FP | sens. at 2 FP | FROC mean |"
    )
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for run in args.runs:
        result = json.loads((run / "crossval.json").read_text())
        name = run.name.removeprefix("cv-")
        print("\n".join(rows(name, result)))
        if name in PAPER:
            s1, f1, s2, p2, f2 = PAPER[name]
            print(f"| {name} | paper | | | {s1} | {f1} | {s2} | {p2} | | {f2} | | | |")
    for run in args.runs:
        result = json.loads((run / "crossval.json").read_text())
        settings = result["settings"]
        timings = result["timings_s"]
        train = sum(t["train_s"] for t in timings.values()) / 60
        detect = sum(t["detect_s"] for t in timings.values()) / 60
        print(
            f"\n{run.name}: {result['subjects']} subjects, {result['cmbs']} visible CMBs; "
            f"stage-1 steps {settings['stage1']['steps']}, stage-2 steps "
            f"{settings['stage2']['steps']} per fold; training {train:.0f} min and detecting "
            f"{detect:.0f} min in all"
        )


if __name__ == "__main__":
    main()
