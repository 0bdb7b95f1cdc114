"""Seconds per subject of ``cmbdet detect`` as a user runs it, against the floor of reading the
inputs, measured side by side in one run (issue "Speed").

For each test set: the floor (nibabel reads and decompresses every subject's SWI and phase into
float32, nothing else), then a batch (``cmbdet detect --manifest``) of the first ``--n``
subjects in a fresh process for each ``--workers`` value (start-up, model loading and every
output included, spread over the subjects), then ``cmbdet detect --swi --phase`` on one
subject from the command line (start-up included; the median of ``--cli-runs`` runs) against
that subject's own floor (the median of as many reads, alternating with the runs). Nothing
is cached between runs: each writes into a new folder.

    .venv/bin/python benchmarks/detect_speed.py --test data/yardstick/hr data/yardstick/lr \
        --n 8 --workers 1 auto
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from cmbdet.batch.log import BATCH_LOG, read_batch_log
from cmbdet.batch.subject import DONE

CMBDET = str(Path(sys.executable).parent / "cmbdet")  # --cmbdet chooses another


def read_floor(subjects: list[Path]) -> float:
    """Seconds to read and decompress the subjects' SWI and phase into float32 arrays."""
    started = time.perf_counter()
    for subject in subjects:
        for name in ("swi.nii.gz", "phase.nii.gz"):
            nib.load(subject / name).get_fdata(dtype=np.float32)
    return time.perf_counter() - started


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def require_done(out: Path, expected: int) -> None:
    """Stop unless the run into ``out`` detected all ``expected`` subjects: a batch's
    ``batch.csv`` rows with status ``done``, else (one subject) a ``detections.csv``. A command
    that failed, or refused its arguments, must not pass for a fast one (a wrapper around an
    old version may lose its exit status)."""
    log = out / BATCH_LOG
    if log.is_file():
        done = sum(row.status == DONE for row in read_batch_log(log).values())
    else:
        done = int((out / "detections.csv").is_file())
    if done != expected:
        sys.exit(f"{out}: {done} of {expected} subjects detected; the timing would be wrong")


def measure(
    cmbdet: str,
    test_set: Path,
    n: int,
    workers: list[str],
    model: list[str],
    scratch: Path,
    cli_runs: int = 5,
) -> dict:
    subjects = sorted(p.resolve() for p in test_set.glob("sub-*") if p.is_dir())[:n]
    manifest = scratch / f"{test_set.name}.csv"
    rows = [f"{s.name},{s / 'swi.nii.gz'},{s / 'phase.nii.gz'}" for s in subjects]
    manifest.write_text("subject,swi,phase\n" + "\n".join(rows) + "\n")
    floor = read_floor(subjects)
    batches = {}
    for count in workers:
        out = scratch / f"{test_set.name}-batch-{count}"
        command = [cmbdet, "detect", "--manifest", str(manifest), "--out", str(out)]
        batches[count] = timed([*command, "--workers", count, *model]) / len(subjects)
        require_done(out, len(subjects))
    one = subjects[0]
    one_floors, singles = [], []
    for run in range(cli_runs):  # the floor and the run alternate, so both see the same load
        one_floors.append(read_floor([one]))
        out = scratch / f"{test_set.name}-one-{run}"
        files = ["--swi", str(one / "swi.nii.gz"), "--phase", str(one / "phase.nii.gz")]
        singles.append(timed([cmbdet, "detect", *files, "--out", str(out), *model]))
        require_done(out, 1)
    single, one_floor = float(np.median(singles)), float(np.median(one_floors))
    return {
        "set": test_set.name,
        "n": len(subjects),
        "floor_per_subject": floor / len(subjects),
        "batches": batches,
        "single": single,
        "single_floor": one_floor,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test", type=Path, nargs="+", required=True)
    parser.add_argument("--n", type=int, default=8, help="subjects per test set (default: 8)")
    parser.add_argument(
        "--workers", nargs="+", default=["1", "auto"], help="--workers values (default: 1 auto)"
    )
    parser.add_argument("--model", help="model folder or installed name (default: the shipped)")
    parser.add_argument(
        "--cli-runs", type=int, default=5, help="one-subject runs, median (default: 5)"
    )
    parser.add_argument(
        "--cmbdet", default=CMBDET, help="the cmbdet command to time (default: this checkout's)"
    )
    args = parser.parse_args()
    model = ["--model", args.model] if args.model else []
    scratch = Path(tempfile.mkdtemp(prefix="cmbdet-speed-"))
    try:
        rows = [
            measure(args.cmbdet, t, args.n, args.workers, model, scratch, args.cli_runs)
            for t in args.test
        ]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    batch_columns = "".join(f"| batch, --workers {w}: s / subject | ratio " for w in args.workers)
    print(f"| set | subjects | floor: s / subject {batch_columns}| one subject (CLI): s "
          "| its floor: s | ratio |")  # fmt: skip
    print("|---" * (6 + 2 * len(args.workers)) + "|")
    for r in rows:
        floor = r["floor_per_subject"]
        batches = "".join(f"| {t:.2f} | {t / floor:.1f} " for t in r["batches"].values())
        print(
            f"| {r['set']} | {r['n']} | {floor:.2f} {batches}| {r['single']:.2f} | "
            f"{r['single_floor']:.2f} | {r['single'] / r['single_floor']:.1f} |"
        )


if __name__ == "__main__":
    main()
