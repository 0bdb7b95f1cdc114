"""The light install (no PyTorch: ONNX Runtime) against the install with PyTorch, side by side
in one run: size on disk, start-up, one-subject ``cmbdet detect`` from the command line, and
whether both report the same detections (positions within 0.5 mm, scores within 0.01).

Make the two environments first (fresh, outside the checkout):

    python3 -m venv /tmp/light && /tmp/light/bin/pip install .
    python3 -m venv /tmp/full && /tmp/full/bin/pip install torch==2.13.0 '.[train]'
    .venv/bin/python benchmarks/light_install.py --light /tmp/light --full /tmp/full \\
        --test data/yardstick/lr --n 3

Start-up: a ``cmbdet detect`` whose SWI is missing (it imports what a run imports, starts the
networks' loading and exits 2 once it is done). Each one-subject run writes into a new folder.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

POSITION_MM = 0.5
SCORE = 0.01


def folder_mib(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def timed(command: list[str], expect: int = 0) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == expect, done.stderr
    return time.perf_counter() - started


def detections(folder: Path) -> np.ndarray:
    """(N, 4) x, y, z mm and score of detections.csv."""
    with open(folder / "detections.csv", newline="") as handle:
        rows = [
            [float(r[k]) for k in ("x_mm", "y_mm", "z_mm", "score")] for r in csv.DictReader(handle)
        ]
    return np.array(rows, dtype=np.float64).reshape(-1, 4)


def same(a: np.ndarray, b: np.ndarray) -> tuple[bool, float, float]:
    """Whether every detection of each has one in the other within the tolerances; the largest
    position and score differences of the nearest pairs."""
    if len(a) != len(b):
        return False, float("inf"), float("inf")
    if len(a) == 0:
        return True, 0.0, 0.0
    distance = np.linalg.norm(a[:, None, :3] - b[None, :, :3], axis=2)
    nearest = distance.argmin(axis=1)
    worst_mm = float(distance[np.arange(len(a)), nearest].max())
    worst_score = float(np.abs(a[:, 3] - b[nearest, 3]).max())
    ok = worst_mm <= POSITION_MM and worst_score <= SCORE and len(set(nearest)) == len(a)
    return ok, worst_mm, worst_score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--light", type=Path, required=True, help="virtual environment, no torch")
    parser.add_argument("--full", type=Path, required=True, help="virtual environment with torch")
    parser.add_argument("--test", type=Path, required=True)
    parser.add_argument("--n", type=int, default=3)
    args = parser.parse_args()
    subjects = sorted(p.resolve() for p in args.test.glob("sub-*") if p.is_dir())[: args.n]
    scratch = Path(tempfile.mkdtemp(prefix="cmbdet-light-"))
    envs = {"light (ONNX Runtime)": args.light, "with PyTorch": args.full}
    rows, outputs = {}, {}
    try:
        for name, env in envs.items():
            cmbdet = str(env / "bin" / "cmbdet")
            missing = [cmbdet, "detect", "--swi", str(scratch / "none.nii.gz")]
            missing += ["--phase", str(scratch / "none.nii.gz"), "--out", str(scratch / "x")]
            startup = statistics.median(timed(missing, expect=2) for _ in range(3))
            seconds = []
            for subject in subjects:
                out = scratch / f"{env.name}-{subject.name}"
                command = [cmbdet, "detect", "--swi", str(subject / "swi.nii.gz")]
                command += ["--phase", str(subject / "phase.nii.gz"), "--out", str(out)]
                seconds.append(timed(command))
                outputs.setdefault(subject.name, []).append(detections(out))
            rows[name] = (folder_mib(env), startup, statistics.median(seconds))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print("| install | size (MiB) | start-up (s) | one subject, CLI (s, median) |")
    print("|---|---|---|---|")
    for name, (size, startup, seconds) in rows.items():
        print(f"| {name} | {size:.0f} | {startup:.2f} | {seconds:.2f} |")
    print()
    print("| subject | detections (light / torch) | same | largest position difference (mm) "
          "| largest score difference |")  # fmt: skip
    print("|---|---|---|---|---|")
    for subject, (light, full) in outputs.items():
        ok, mm, score = same(light, full)
        print(f"| {subject} | {len(light)} / {len(full)} | {ok} | {mm:.4f} | {score:.5f} |")


if __name__ == "__main__":
    main()
