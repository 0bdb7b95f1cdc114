"""Montages of synthetic subjects for the README: ``docs/synth_montage_{hr,lr}.png``.

For each preset, the first subject (from ``--seed``, by index) that has a visible CMB, a
through-plane vein and a calcification is generated in memory and drawn:

- top row, the axial slice through the CMB: SWI, high-pass phase, lesion labels coloured by
  kind over the SWI, magnitude;
- bottom row, 24 mm crops of SWI and phase around the CMB, a through-plane vein and a
  calcification, each on its own slice and titled with kind, apparent diameter and delta chi.

Images are shown in radiological convention: anterior up, the patient's right on the left.

Usage: ``.venv/bin/python benchmarks/synth_montage.py --out docs/ --seed 0``
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402

from cmbdet.io.lesions import Lesion
from cmbdet.synth.config import SynthConfig  # noqa: E402
from cmbdet.synth.dataset import subject_seed  # noqa: E402
from cmbdet.synth.subject import SyntheticSubject, generate_subject  # noqa: E402

KIND_COLOURS = {"cmb": "red", "calcification": "cyan", "iron": "yellow", "vein": "blue"}
CROP_MM = 24.0
PHASE_WINDOW_RAD = 1.0
MAX_TRIES = 40


def find_subject(preset: str, seed: int) -> tuple[int, SyntheticSubject, dict[str, Lesion]]:
    """The first subject index (from 0) with a visible CMB, a through-plane vein and a
    calcification, with the lesion of each kind to show."""
    config = SynthConfig(preset=preset)
    for index in range(MAX_TRIES):
        subject = generate_subject(config, subject_seed(seed, index))
        chosen = choose_lesions(subject)
        if chosen is not None:
            return index, subject, chosen
    raise SystemExit(f"no {preset} subject among the first {MAX_TRIES} of seed {seed} fits")


def choose_lesions(subject: SyntheticSubject) -> dict[str, Lesion] | None:
    """A visible CMB (apparent diameter nearest 3 mm), a labelled through-plane vein inside
    the brain (the widest) and a visible calcification, or None when one is missing."""

    def voxel(lesion: Lesion) -> tuple[int, int, int]:
        ijk = np.clip(np.round(lesion.centre_ijk).astype(int), 0, np.subtract(subject.swi.shape, 1))
        return tuple(int(v) for v in ijk)

    cmbs = [x for x in subject.lesions if x.is_cmb and x.visible]
    calcifications = [x for x in subject.lesions if x.kind == "calcification" and x.visible]
    veins = [
        x
        for x in subject.lesions
        if x.kind == "vein"
        and x.shape == "through-plane"
        and subject.labels[voxel(x)] == x.lesion_id
        and subject.brain_mask[voxel(x)]
    ]
    if not (cmbs and calcifications and veins):
        return None
    return {
        "cmb": min(cmbs, key=lambda x: abs(x.diameter_mm - 3.0)),
        "vein": max(veins, key=lambda x: x.diameter_mm),
        "calcification": max(calcifications, key=lambda x: x.diameter_mm),
    }


def show(ax, image: np.ndarray, title: str, **kwargs) -> None:
    """An axial (X, Y) image with anterior up and the patient's right on the left."""
    ax.imshow(image.T, origin="lower", interpolation="nearest", **kwargs)
    ax.invert_xaxis()  # radiological: +x (patient right) to the viewer's left
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def label_overlay(subject: SyntheticSubject, k: int) -> np.ndarray:
    """(X, Y) kind codes of the labels on slice ``k``: 0 none, 1.. in KIND_COLOURS order."""
    kinds = list(KIND_COLOURS)
    code_of_id = np.zeros(len(subject.lesions) + 1, dtype=np.int8)
    for lesion in subject.lesions:
        code_of_id[lesion.lesion_id] = kinds.index(lesion.kind) + 1 if lesion.kind in kinds else 0
    return code_of_id[subject.labels[:, :, k]]


def crop(volume: np.ndarray, lesion: Lesion, half_voxels: tuple[int, int]) -> np.ndarray:
    """The (2 hx + 1, 2 hy + 1) axial crop centred on the lesion, zero-padded at the edges."""
    i, j, k = (int(v) for v in np.round(lesion.centre_ijk))
    k = int(np.clip(k, 0, volume.shape[2] - 1))
    hx, hy = half_voxels
    padded = np.pad(volume[:, :, k], ((hx, hx), (hy, hy)))
    return padded[i : i + 2 * hx + 1, j : j + 2 * hy + 1]


def draw(preset: str, index: int, subject: SyntheticSubject, chosen: dict[str, Lesion], out: Path):
    protocol = subject.protocol
    spacing = np.abs(np.diag(subject.affine)[:3])
    swi_max = float(np.percentile(subject.swi[subject.brain_mask], 99.5))
    mag_max = float(np.percentile(subject.magnitude[subject.brain_mask], 99.5))
    cmb = chosen["cmb"]
    k = int(np.clip(round(cmb.k), 0, subject.swi.shape[2] - 1))

    fig = plt.figure(figsize=(16, 7.6))
    grid = fig.add_gridspec(2, 12, height_ratios=[3.7, 2.6], hspace=0.22, wspace=0.08)
    top = [fig.add_subplot(grid[0, 3 * n : 3 * n + 3]) for n in range(4)]
    grey = {"cmap": "gray"}
    show(top[0], subject.swi[:, :, k], f"SWI, slice {k}", vmin=0, vmax=swi_max, **grey)
    show(
        top[1],
        subject.hp_phase[:, :, k],
        "high-pass phase (-1..1 rad)",
        vmin=-PHASE_WINDOW_RAD,
        vmax=PHASE_WINDOW_RAD,
        **grey,
    )
    show(top[2], subject.swi[:, :, k], "labels", vmin=0, vmax=swi_max, **grey)
    overlay = np.ma.masked_equal(label_overlay(subject, k), 0)
    colours = ListedColormap(list(KIND_COLOURS.values()))
    top[2].imshow(
        overlay.T,
        origin="lower",
        cmap=colours,
        vmin=0.5,
        vmax=len(KIND_COLOURS) + 0.5,
        interpolation="nearest",
        alpha=0.85,
    )
    top[2].invert_xaxis()  # imshow reset the limits; radiological again
    legend = [plt.Rectangle((0, 0), 1, 1, color=c) for c in KIND_COLOURS.values()]
    top[2].legend(legend, list(KIND_COLOURS), loc="lower left", fontsize=7, framealpha=0.6)
    show(top[3], subject.magnitude[:, :, k], "magnitude", vmin=0, vmax=mag_max, **grey)
    for ax in top:
        ax.plot(cmb.i, cmb.j, marker="o", markersize=14, mfc="none", mec="orange", lw=0.8)
        ax.text(0.97, 0.5, "R", transform=ax.transAxes, color="w", fontsize=8, va="center")

    half = (round(CROP_MM / 2 / spacing[0]), round(CROP_MM / 2 / spacing[1]))
    for n, (kind, lesion) in enumerate(chosen.items()):
        delta_chi = (
            protocol.venous_delta_chi_ppm if lesion.delta_chi_ppm is None else lesion.delta_chi_ppm
        )
        caption = (
            f"{kind}: {lesion.diameter_mm:.1f} mm, {delta_chi:+.2f} ppm\n"
            f"slice {round(lesion.k)}, true {lesion.true_diameter_mm:.1f} mm"
        )
        ax_swi = fig.add_subplot(grid[1, 4 * n : 4 * n + 2])
        ax_phase = fig.add_subplot(grid[1, 4 * n + 2 : 4 * n + 4])
        swi_crop = crop(subject.swi, lesion, half)
        show(ax_swi, swi_crop, f"SWI  {caption}", vmin=0, vmax=swi_max, **grey)
        show(
            ax_phase,
            crop(subject.hp_phase, lesion, half),
            "phase",
            vmin=-PHASE_WINDOW_RAD,
            vmax=PHASE_WINDOW_RAD,
            **grey,
        )
    fig.suptitle(
        f"synthetic {preset} subject {index}: TE {protocol.te_s * 1000:.1f} ms, "
        f"SNR(WM) {protocol.snr_white_matter:.0f}, B0 tilt {protocol.b0_tilt_deg:.0f} deg, "
        f"voxel {spacing[0]:.1f}x{spacing[1]:.1f}x{spacing[2]:.1f} mm, "
        f"HP window {protocol.hp_window}; crops {CROP_MM:.0f} mm",
        fontsize=11,
    )
    fig.savefig(out, dpi=80, bbox_inches="tight")
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs"), help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default: 0)")
    parser.add_argument("--presets", nargs="+", default=["hr", "lr"], choices=["hr", "lr", "tiny"])
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for preset in args.presets:
        started = time.perf_counter()
        index, subject, chosen = find_subject(preset, args.seed)
        path = args.out / f"synth_montage_{preset}.png"
        draw(preset, index, subject, chosen, path)
        seconds = time.perf_counter() - started
        shown = ", ".join(f"{k} {v.lesion_id}" for k, v in chosen.items())
        size_kb = path.stat().st_size // 1024
        print(f"{path}: subject {index} ({shown}), {size_kb} KB, {seconds:.0f} s")


if __name__ == "__main__":
    main()
