"""Fine-tuning's curve (issue "Fine-tune"): models fine-tuned on more or fewer labelled subjects
of a protocol, and their base, detected on other subjects of that protocol; stage 1 + 2
sensitivity at each model's own thresholds and at its best thresholds within 1.5 and 2 false
positives per subject.

    .venv/bin/python benchmarks/finetune_curve.py --test data/yardstick/held-out-1.5t \\
        base=runs/no15t-short-cal n05=runs/ft15-n05 n10=runs/ft15-n10 n20=runs/ft15-n20

Detections are kept under ``runs/finetune-curve/<label>`` (a label already detected is not run
again; remove its folder to re-detect).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from cmbdet.evaluation.evaluate import score_subjects
from cmbdet.evaluation.metrics import froc
from cmbdet.io.dataset import find_subjects

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "finetune-curve"
CMBDET = str(Path(sys.executable).parent / "cmbdet")
RATES = (1.0, 1.5, 2.0)


def detect(model: Path, test: Path, out: Path) -> None:
    """``cmbdet detect`` of the test set with ``model`` into ``out`` (skipped when done)."""
    if (out / "batch.csv").is_file():
        return
    command = [CMBDET, "detect", "--dataset", str(test), "--out", str(out), "--model", str(model)]
    subprocess.run([*command, "--precision", "float32"], check=True)


def labelled_count(model: Path) -> str:
    """How many labelled subjects fine-tuned the model (trained + calibrated on), or '-'."""
    record = json.loads((model / "model.json").read_text()).get("finetuning")
    if record is None:
        return "-"
    return f"{record['subjects']} + {record['calibration_subjects']}"


def row(label: str, model: Path, test: Path) -> str:
    out = RUNS / label
    detect(model, test, out)
    truth = {s.subject_id: s for s in find_subjects(test)}
    scored = score_subjects({i: out / f"sub-{i}" for i in truth}, truth)
    final = scored.metrics["stage1+2"]
    # the stage-2 scores less the model's threshold: the same curve as the scores themselves
    best = froc(scored.operating, RATES)["sensitivity_at"]
    return (
        f"| {label} | {labelled_count(model)} | {final['tp'] + final['fn']} | "
        f"{final['sensitivity']:.1%} at {final['fp_per_subject']:.2f} | "
        + " | ".join(f"{best[rate]:.1%}" for rate in RATES)
        + " |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--test", type=Path, required=True, help="a labelled dataset folder")
    parser.add_argument("models", nargs="+", help="LABEL=MODEL_FOLDER, the base first")
    args = parser.parse_args()
    rates = " | ".join(f"best at <= {rate:g} FP" for rate in RATES)
    print(f"test set: {args.test} ({len(find_subjects(args.test))} subjects)\n")
    print(f"| model | labelled subjects (train + calibrate) | CMBs | at its thresholds | {rates} |")
    print("|---|---|---|---|" + "---|" * len(RATES))
    for pair in args.models:
        label, model = pair.split("=", 1)
        print(row(label, Path(model), args.test), flush=True)


if __name__ == "__main__":
    main()
