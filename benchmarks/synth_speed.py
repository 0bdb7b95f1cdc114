"""Generator speed per subject on this machine, with baselines measured in the same run.

    .venv/bin/python benchmarks/synth_speed.py --presets lr hr --n 3

For each preset, after one warm-up subject (atlas cache on disk and in memory): the time to
generate a subject in memory, and to generate and write it (5 NIfTI volumes + lesions.csv).
Baselines, so that a slower shared machine shows as the same ratio: the time merely to write
the same five volumes (I/O floor), and one zero-padded 3D FFT round trip of the same grid.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.fft

from cmbdet.synth.config import SynthConfig
from cmbdet.synth.dataset import subject_seed, write_subject_files
from cmbdet.synth.subject import generate_subject


def fft_round_trip_seconds(shape: tuple[int, int, int]) -> float:
    volume = np.random.default_rng(0).random(shape, dtype=np.float32)
    padded = (shape[0], shape[1], 2 * shape[2])
    started = time.perf_counter()
    scipy.fft.irfftn(scipy.fft.rfftn(volume, s=padded, workers=-1), s=padded, workers=-1)
    return time.perf_counter() - started


def measure(preset: str, n: int, seed: int) -> dict[str, float]:
    config = SynthConfig.for_preset(preset)
    generate_subject(config, subject_seed(seed, 10_000))  # warm-up: atlas, allocator
    generate, write = [], []
    with tempfile.TemporaryDirectory() as folder:
        for index in range(n):
            started = time.perf_counter()
            subject = generate_subject(config, subject_seed(seed, index))
            generated = time.perf_counter()
            out = Path(folder) / f"sub-{index}"
            out.mkdir()
            write_subject_files(out, subject, config)
            generate.append(generated - started)
            write.append(time.perf_counter() - generated)
    return {
        "generate": float(np.median(generate)),
        "write": float(np.median(write)),
        "fft": min(fft_round_trip_seconds(config.grid.shape) for _ in range(3)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["lr", "hr"])
    parser.add_argument("--n", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7000)
    args = parser.parse_args()
    print(
        "| preset | generate (s) | write (s) | total (s) | total / write floor | "
        "total / FFT round trip |"
    )
    print("|---|---|---|---|---|---|")
    for preset in args.presets:
        t = measure(preset, args.n, args.seed)
        total = t["generate"] + t["write"]
        print(
            f"| {preset} | {t['generate']:.2f} | {t['write']:.2f} | {total:.2f} | "
            f"{total / t['write']:.1f} | {total / t['fft']:.1f} |"
        )


if __name__ == "__main__":
    main()
