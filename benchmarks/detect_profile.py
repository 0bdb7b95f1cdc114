"""Where ``detect`` spends its time, per stage, against the floor of merely reading the inputs.

    .venv/bin/python benchmarks/detect_profile.py --test data/test-hr data/test-lr --n 5

For each subject, in one process with the model loaded once: the floor (nibabel reads and
decompresses the SWI and phase files into float32 arrays, nothing else), then ``detect`` from
the files with its own per-stage timings (load with checks, preprocessing, stage 1, stage 2),
then writing the outputs (tables, label map, report.html, run.json). Medians per test set; the
ratio to the floor is measured in the same run, so it survives a busy machine better than the
absolute seconds do.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from cmbdet.detect.detector import Detector
from cmbdet.detect.outputs import write_outputs
from cmbdet.io.dataset import find_subjects

STAGES = ("load", "preprocess", "stage1", "stage2")


def read_floor(*paths: Path) -> float:
    """Seconds to read and decompress the files into float32 arrays."""
    started = time.perf_counter()
    for path in paths:
        nib.load(path).get_fdata(dtype=np.float32)
    return time.perf_counter() - started


def profile_subject(detector: Detector, swi: Path, phase: Path, scratch: Path) -> dict:
    floor = read_floor(swi, phase)
    started = time.perf_counter()
    result = detector.detect(swi, phase)
    detected = time.perf_counter()
    write_outputs(scratch / swi.parent.name, result, result.reference, overwrite=True)
    finished = time.perf_counter()
    timings = result.record["timings_s"]
    row = {stage: timings[stage] for stage in STAGES}
    row["write"] = finished - detected
    row["total"] = finished - started
    row["floor"] = floor
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test", type=Path, nargs="+", required=True)
    parser.add_argument("--n", type=int, default=5, help="subjects per test set")
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--precision", default="auto", help="auto, float32 or bfloat16")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    detector = Detector.load(args.model, "cpu", args.precision)
    model_load = time.perf_counter() - started
    threads = torch.get_num_threads()
    print(f"torch threads {threads}; {detector.precision}; model load {model_load:.2f} s")
    columns = [*STAGES, "write", "total", "floor"]
    print("| test set | " + " | ".join(columns) + " | total / floor |")
    print("|---" * (len(columns) + 2) + "|")
    with tempfile.TemporaryDirectory() as scratch:
        for folder in args.test:
            subjects = find_subjects(folder)[: args.n]
            rows = [profile_subject(detector, s.swi, s.phase, Path(scratch)) for s in subjects]
            median = {c: float(np.median([r[c] for r in rows])) for c in columns}
            ratio = float(np.median([r["total"] / r["floor"] for r in rows]))
            cells = " | ".join(f"{median[c]:.2f} s" for c in columns)
            print(f"| {folder.name} | {cells} | {ratio:.1f} |")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"peak memory {peak:.2f} GiB")


if __name__ == "__main__":
    main()
